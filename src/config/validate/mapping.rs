//! `TCPMapping` rules, one small function per attribute, and their assembly into a
//! [`Mapping`]. Every problem of a mapping is reported, not just the first.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use super::service::{self, check_dns_name, parse_service};
use crate::config::ConfigError;
use crate::config::model::{Mapping, Origin};
use crate::config::raw::{Loc, RawMapping, RawTls};
use crate::proxy_protocol::Version;
use crate::route::{Families, ServiceHost};

/// Default `connect_timeout_ms` (ext).
pub(crate) const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 3000;

/// `port`: required, 1–65535.
pub(crate) fn check_port(port: Option<i64>, present: bool) -> Result<Option<u16>, String> {
    match port {
        None if present => Ok(None), // wrong type, already reported
        None => Err("`port` is required".into()),
        Some(p) => match u16::try_from(p) {
            Ok(p) if p > 0 => Ok(Some(p)),
            _ => Err(format!("port {p} is out of range (1-65535)")),
        },
    }
}

/// `service`: required.
pub(crate) fn check_service_present(service: Option<&str>, present: bool) -> Result<(), String> {
    match service {
        None if !present => Err("`service` is required".into()),
        _ => Ok(()),
    }
}

/// `address`: an IP literal, IPv6 with or without brackets; default `0.0.0.0`.
pub(crate) fn parse_address(address: Option<&str>) -> Result<IpAddr, String> {
    let Some(a) = address else {
        return Ok(IpAddr::from([0, 0, 0, 0]));
    };
    let t = a.trim();
    let inner = t
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(t);
    inner
        .parse()
        .map_err(|_| format!("address `{a}` is not an IP address (names are not allowed)"))
}

/// `host`: a DNS name, a `*.suffix` wildcard or the catch-all `*`; returned lower-cased without
/// a trailing dot. An IP address is refused: a client never sends one as its server name
/// (RFC 6066 §3), so such a mapping could not match.
pub(crate) fn check_host(host: &str) -> Result<String, String> {
    let h = host.trim().to_ascii_lowercase();
    let h = h.strip_suffix('.').unwrap_or(&h).to_string();
    if h == crate::route::host::CATCH_ALL {
        return Ok(h);
    }
    let bare = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(&h);
    if bare.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "host `{host}` is an IP address, but `host` is matched against the TLS server name (SNI), \
             which is never an IP address (RFC 6066 §3): clients connecting by address send no SNI. \
             Use `host: \"*\"` to serve them, or leave `host` out for a raw relay"
        ));
    }
    let name = h.strip_prefix("*.").unwrap_or(&h);
    check_dns_name(name).map_err(|_| {
        format!("host `{host}` must be a DNS name, a `*.example.com` wildcard or `*` (any name)")
    })?;
    Ok(h)
}

/// `tls` and the `https://` scheme together: the origination mode.
pub(crate) fn origin(tls: Option<&RawTls>, https: bool) -> Result<Origin, String> {
    match (tls, https) {
        (Some(RawTls::Bool(false)), true) => {
            Err("`tls: false` contradicts the `https://` service, which originates TLS".into())
        }
        (Some(RawTls::Context(c)), _) => Ok(Origin::Context(c.clone())),
        (Some(RawTls::Bool(true)), _) | (_, true) => Ok(Origin::Insecure),
        _ => Ok(Origin::Plain),
    }
}

/// `tls: CONTEXT` must name a declared TLSContext.
pub(crate) fn check_context_known(
    origin: &Origin,
    contexts: &BTreeSet<String>,
) -> Result<(), String> {
    match origin {
        Origin::Context(c) if !contexts.contains(c) => {
            Err(format!("tls: unknown TLSContext `{c}`"))
        }
        _ => Ok(()),
    }
}

/// `weight`: an integer 0–100.
pub(crate) fn check_weight(w: i64) -> Result<u8, String> {
    u8::try_from(w)
        .ok()
        .filter(|w| *w <= 100)
        .ok_or_else(|| format!("weight {w} must be from 0 to 100"))
}

/// `idle_timeout_ms`: not negative; 0 means no idle timeout (as in Envoy).
pub(crate) fn idle_timeout(ms: i64) -> Result<Option<Duration>, String> {
    match u64::try_from(ms) {
        Ok(0) => Ok(None),
        Ok(ms) => Ok(Some(Duration::from_millis(ms))),
        Err(_) => Err(format!("idle_timeout_ms {ms} must not be negative")),
    }
}

/// `connect_timeout_ms` (ext): at least 1; default 3000.
pub(crate) fn connect_timeout(ms: Option<i64>) -> Result<Duration, String> {
    match ms.map(u64::try_from) {
        None => Ok(Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS)),
        Some(Ok(ms)) if ms > 0 => Ok(Duration::from_millis(ms)),
        Some(_) => Err(format!(
            "connect_timeout_ms {} must be at least 1",
            ms.unwrap_or(0)
        )),
    }
}

/// `circuit_breakers.max_connections`: at least 1.
pub(crate) fn max_connections(n: i64) -> Result<u32, String> {
    u32::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("circuit_breakers max_connections {n} must be at least 1"))
}

/// `send_proxy_proto` (ext): `v1` or `v2`.
pub(crate) fn send_proxy(v: &str) -> Result<Version, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "v1" | "1" => Ok(Version::V1),
        "v2" | "2" => Ok(Version::V2),
        _ => Err(format!("send_proxy_proto `{v}` must be v1 or v2")),
    }
}

/// Default upstream port of a passthrough mapping: the upstream speaks TLS itself.
pub(crate) const PASSTHROUGH_PORT: u16 = 443;

/// `tls_passthrough` (ext): only with `host` (the route is the ClientHello's server name), and
/// never with origination (`tls: true`, `tls: CONTEXT`, `https://`): the client's own TLS is
/// relayed, so the proxy has none to originate.
pub(crate) fn passthrough(
    on: Option<bool>,
    host: Option<&str>,
    origin: &Origin,
) -> Result<bool, (&'static str, String)> {
    if on != Some(true) {
        return Ok(false);
    }
    if host.is_none() {
        return Err((
            "tls_passthrough",
            "`tls_passthrough` needs `host`: a passthrough mapping is chosen by the server name (SNI)              in the client's ClientHello (use `host: \"*\"` for any name and clients without one)"
                .into(),
        ));
    }
    match origin {
        Origin::Plain => Ok(true),
        Origin::Insecure | Origin::Context(_) => Err((
            "tls",
            format!(
                "`tls: {origin}` (or an `https://` service) together with `tls_passthrough`: a passthrough                  mapping relays the client's own TLS untouched, so there is nothing to terminate or                  originate; remove one of them"
            ),
        )),
    }
}

/// `match_alpn` (ext): only with `host`; a non-empty list of protocol names of 1-255 bytes
/// (RFC 7301 §3.1). Returned sorted without duplicates (ALPN names are compared as bytes:
/// case matters).
pub(crate) fn match_alpn(
    names: Option<&[String]>,
    host: Option<&str>,
) -> Result<Vec<String>, String> {
    let Some(names) = names else {
        return Ok(Vec::new());
    };
    if host.is_none() {
        return Err(
            "`match_alpn` needs `host`: the ALPN list is read from the ClientHello of TLS clients"
                .into(),
        );
    }
    if names.is_empty() {
        return Err(
            "`match_alpn` must list at least one protocol (leave it out to take any client)".into(),
        );
    }
    if let Some(bad) = names.iter().find(|n| n.is_empty() || n.len() > 255) {
        return Err(format!(
            "`match_alpn` protocol `{bad}` must be 1 to 255 bytes long (RFC 7301)"
        ));
    }
    let mut out: Vec<String> = names.to_vec();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Effective families: the mapping's own values over the Module's; both off → IPv4, with the
/// warning text (Emissary's fallback).
pub(crate) fn families(
    v4: Option<bool>,
    v6: Option<bool>,
    module: Families,
) -> (Families, Option<String>) {
    match Families::new(v4.unwrap_or(module.ipv4()), v6.unwrap_or(module.ipv6())) {
        Some(f) => (f, None),
        None => (
            Families::V4,
            Some(
                "enable_ipv4 and enable_ipv6 are both false: IPv4 is used (as Emissary does)"
                    .into(),
            ),
        ),
    }
}

/// An IP-literal service must be of an enabled family.
pub(crate) fn check_literal_family(host: &ServiceHost, f: Families) -> Result<(), String> {
    match host {
        ServiceHost::Ip(IpAddr::V6(_)) if !f.ipv6() => {
            Err("service is an IPv6 address but enable_ipv6 is false".into())
        }
        ServiceHost::Ip(IpAddr::V4(_)) if !f.ipv4() => {
            Err("service is an IPv4 address but enable_ipv4 is false".into())
        }
        _ => Ok(()),
    }
}

/// What a mapping is checked against.
pub(crate) struct MappingEnv<'a> {
    /// The proxy's namespace.
    pub namespace: &'a str,
    /// Module defaults.
    pub module: Families,
    /// Names of every declared TLSContext (also broken ones, to avoid follow-up errors).
    pub contexts: &'a BTreeSet<String>,
    /// The Module's `circuit_breakers` max_connections: for mappings that set none.
    pub max_connections: Option<u32>,
    /// The Module's `use_ambassador_namespace_for_service_resolution`: no service is
    /// namespace-qualified (they resolve in the proxy's namespace).
    pub own_namespace: bool,
}

/// The errors of one mapping's checks, each at the key it is about.
struct Checks<'a> {
    loc: &'a Loc,
    errs: Vec<ConfigError>,
}

impl Checks<'_> {
    /// The value, or `None` with the error recorded at `key`.
    fn take<T>(&mut self, r: Result<T, String>, key: &[&str]) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(m) => {
                self.errs.push(self.loc.err(key, m));
                None
            }
        }
    }

    /// An optional attribute: `Some(None)` when absent, `Some(Some(v))` when valid, `None`
    /// (error recorded) when invalid.
    fn optional<U, T>(
        &mut self,
        value: Option<U>,
        check: impl FnOnce(U) -> Result<T, String>,
        key: &[&str],
    ) -> Option<Option<T>> {
        match value {
            Some(v) => self.take(check(v), key).map(Some),
            None => Some(None),
        }
    }
}

/// Weight, timeouts and the circuit breaker of a mapping (each `None` when invalid).
struct Limits {
    weight: Option<Option<u8>>,
    idle: Option<Option<Duration>>,
    connect: Option<Duration>,
    max_connections: Option<Option<u32>>,
}

fn limits(raw: &RawMapping, env: &MappingEnv<'_>, c: &mut Checks<'_>) -> Limits {
    Limits {
        weight: c.optional(raw.weight, check_weight, &["weight"]),
        idle: match raw.idle_timeout_ms {
            Some(ms) => c.take(idle_timeout(ms), &["idle_timeout_ms"]),
            None => Some(None),
        },
        connect: c.take(
            connect_timeout(raw.connect_timeout_ms),
            &["connect_timeout_ms"],
        ),
        max_connections: match raw.max_connections {
            Some(n) => c
                .take(max_connections(n), &["circuit_breakers", "max_connections"])
                .map(Some),
            None => Some(env.max_connections),
        },
    }
}

/// The mapping's address families, and the warnings its service and families give (both
/// families off falls back to IPv4; an `http://` service is cleartext).
fn families_and_warnings(
    raw: &RawMapping,
    env: &MappingEnv<'_>,
    http: bool,
) -> (Families, Vec<ConfigError>) {
    let (fam, fallback) = families(raw.enable_ipv4, raw.enable_ipv6, env.module);
    // The Module's families are never both off (the Module falls back to IPv4 itself), so
    // the fallback here comes from the mapping's own attributes.
    let key = if raw.enable_ipv4.is_some() {
        "enable_ipv4"
    } else {
        "enable_ipv6"
    };
    let mut warnings: Vec<ConfigError> = fallback
        .map(|m| raw.loc.warn(&[key], m))
        .into_iter()
        .collect();
    if http {
        warnings.push(raw.loc.warn(
            &["service"],
            "`http://` service: the upstream is reached in cleartext (as Emissary does for a \
             TCPMapping); leave the scheme out to say so without this warning",
        ));
    }
    (fam, warnings)
}

/// How the mapping treats TLS towards the client: `match_alpn` and `tls_passthrough`, read
/// against its `host` and origin (`None` when invalid or when those were).
fn client_tls(
    raw: &RawMapping,
    host: Option<&Option<String>>,
    origin: Option<&Origin>,
    c: &mut Checks<'_>,
) -> (Option<Vec<String>>, Option<bool>) {
    let alpn = host.and_then(|h| {
        c.take(
            match_alpn(raw.match_alpn.as_deref(), h.as_deref()),
            &["match_alpn"],
        )
    });
    let pass = match (host, origin) {
        (Some(h), Some(o)) => match passthrough(raw.tls_passthrough, h.as_deref(), o) {
            Ok(p) => Some(p),
            Err((key, m)) => {
                c.errs.push(c.loc.err(&[key], m));
                None
            }
        },
        _ => None,
    };
    (alpn, pass)
}

/// Applies every rule to one mapping; `None` when any rule failed.
pub(crate) fn mapping(
    raw: &RawMapping,
    env: &MappingEnv<'_>,
) -> (Option<Mapping>, Vec<ConfigError>) {
    let loc = &raw.loc;
    let mut c = Checks {
        loc,
        errs: Vec::new(),
    };
    let port = c
        .take(check_port(raw.port, raw.has("port")), &["port"])
        .flatten();
    c.take(
        check_service_present(raw.service.as_deref(), raw.has("service")),
        &["service"],
    );
    let parsed = (raw.service.as_deref()).and_then(|s| c.take(parse_service(s), &["service"]));
    let address = c.take(parse_address(raw.address.as_deref()), &["address"]);
    let host = c.optional(raw.host.as_deref(), check_host, &["host"]);
    let https = parsed.as_ref().is_some_and(|p| p.https);
    let origin = c.take(origin(raw.tls.as_ref(), https), &["tls"]);
    if let Some(o) = &origin {
        c.take(check_context_known(o, env.contexts), &["tls"]);
    }
    let limits = limits(raw, env, &mut c);
    let http = parsed.as_ref().is_some_and(|p| p.http);
    let (fam, warnings) = families_and_warnings(raw, env, http);
    let send = c.optional(
        raw.send_proxy_proto.as_deref(),
        send_proxy,
        &["send_proxy_proto"],
    );
    let (alpn, pass) = client_tls(raw, host.as_ref(), origin.as_ref(), &mut c);
    let namespace = (raw.namespace.clone()).unwrap_or_else(|| env.namespace.to_string());
    if let Some(p) = &parsed {
        c.take(check_literal_family(&p.host, fam), &["service"]);
    }
    let mut errs = c.errs;
    if !errs.is_empty() {
        errs.extend(warnings);
        return (None, errs);
    }
    let (Some(port), Some(p), Some(address), Some(host), Some(origin)) =
        (port, parsed, address, host, origin)
    else {
        return (None, errs);
    };
    let Limits {
        weight: Some(weight),
        idle: Some(idle),
        connect: Some(connect),
        max_connections: Some(max_conn),
    } = limits
    else {
        return (None, errs);
    };
    let (Some(send), Some(pass), Some(alpn)) = (send, pass, alpn) else {
        return (None, errs);
    };
    let service_port = p.port.unwrap_or(if pass {
        PASSTHROUGH_PORT
    } else {
        service::default_port(origin.originates())
    });
    let m = Mapping {
        loc: loc.clone(),
        service_host: if env.own_namespace {
            p.host
        } else {
            service::qualify(p.host, &namespace, env.namespace)
        },
        namespace,
        address,
        port,
        host,
        origin,
        service_port,
        weight,
        idle_timeout: idle,
        families: fam,
        max_connections: max_conn,
        refused: None,
        connect_timeout: connect,
        // Set by `validate::endpoints`, which reads the Module's endpoint defaults.
        endpoints: Default::default(),
        cert: None,
        use_proxy_proto: raw.use_proxy_proto,
        listener_proxy: Default::default(),
        send_proxy: send,
        passthrough: pass,
        match_alpn: alpn,
    };
    (Some(m), warnings)
}

#[cfg(test)]
#[path = "mapping_tests.rs"]
mod tests;
