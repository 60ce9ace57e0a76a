//! Serde-free mirrors of the four kinds: attributes as written, typed but unchecked.

use std::collections::BTreeSet;

use serde_yaml_ng::Value;

use super::Loc;
use super::endpoints::{self, RawHealthCheck, RawLoadBalancer};
use super::fields::{Fields, string_bool};
use crate::config::ConfigError;
use crate::proxy_protocol::Accept;

/// `tls:` as written: a boolean or a TLSContext name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawTls {
    /// `tls: true` / `tls: false`.
    Bool(bool),
    /// `tls: CONTEXT`.
    Context(String),
}

/// A `TCPMapping` as written.
#[derive(Debug, Clone)]
pub(crate) struct RawMapping {
    /// Where it is.
    pub loc: Loc,
    /// `namespace` / `metadata.namespace`.
    pub namespace: Option<String>,
    /// Attribute keys present (also those with a wrong type).
    pub present: BTreeSet<String>,
    /// `port`.
    pub port: Option<i64>,
    /// `service`.
    pub service: Option<String>,
    /// `address`.
    pub address: Option<String>,
    /// `host`.
    pub host: Option<String>,
    /// `tls`.
    pub tls: Option<RawTls>,
    /// `weight`.
    pub weight: Option<i64>,
    /// `idle_timeout_ms`.
    pub idle_timeout_ms: Option<i64>,
    /// `enable_ipv4`.
    pub enable_ipv4: Option<bool>,
    /// `enable_ipv6`.
    pub enable_ipv6: Option<bool>,
    /// `circuit_breakers[..].max_connections` of the default-priority entry.
    pub max_connections: Option<i64>,
    /// `connect_timeout_ms` (ext).
    pub connect_timeout_ms: Option<i64>,
    /// `use_proxy_proto` (ext on a mapping): `true`, `false` or `optional`.
    pub use_proxy_proto: Option<Accept>,
    /// `send_proxy_proto` (ext): `v1` or `v2`, checked by validation.
    pub send_proxy_proto: Option<String>,
    /// `load_balancer` (ext).
    pub load_balancer: Option<RawLoadBalancer>,
    /// `max_connect_attempts` (ext).
    pub max_connect_attempts: Option<i64>,
    /// `health_check` (ext).
    pub health_check: Option<RawHealthCheck>,
    /// `max_connections_per_ip` (ext).
    pub max_connections_per_ip: Option<i64>,
    /// `tls_passthrough` (ext).
    pub tls_passthrough: Option<bool>,
    /// `match_alpn` (ext): a list of protocol names (or a comma-separated string).
    pub match_alpn: Option<Vec<String>>,
    /// `starttls` (ext): `postgres` or `none`, checked by validation.
    pub starttls: Option<String>,
    /// `max_connection_duration_ms`, `connection_rate_limit` (ext, `fleet.rs`).
    pub fleet: super::fleet::RawFleet,
}

impl RawMapping {
    /// True when the attribute was written (even with a wrong type).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.present.contains(key)
    }
}

/// TCPMapping CRD fields that change nothing a TCP client or upstream sees (Envoy cluster
/// naming, the v2→v3 conversion marker): read without a warning.
const MAPPING_NO_EFFECT: [&str; 2] = ["cluster_tag", "v2ExplicitTLS"];

/// TCPMapping CRD fields tcpmap does not apply, with what it does instead.
const MAPPING_NOT_APPLIED: [(&str, &str); 3] = [
    (
        "resolver",
        "`resolver` is not applied: tcpmap resolves services with the system resolver (DNS, /etc/hosts)",
    ),
    (
        "stats_name",
        "`stats_name` is not applied: metrics name a mapping by its name, port and host",
    ),
    (
        "v3StatsName",
        "`v3StatsName` is not applied: metrics name a mapping by its name, port and host",
    ),
];

pub(super) fn mapping(f: &mut Fields<'_>, loc: &Loc, namespace: Option<String>) -> RawMapping {
    f.known(&MAPPING_NO_EFFECT);
    for (key, why) in MAPPING_NOT_APPLIED {
        if f.value(key).is_some() {
            f.problems.push(loc.warn(&[key], why));
        }
    }
    let tls = match f.value("tls") {
        Some(Value::Bool(b)) => Some(RawTls::Bool(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(RawTls::Bool(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Some(RawTls::Bool(false)),
        Some(Value::String(_)) => f.string("tls").map(RawTls::Context),
        Some(_) => {
            f.problems
                .push(loc.err(&["tls"], "`tls` must be true, false or a TLSContext name"));
            None
        }
        None => None,
    };
    let use_proxy_proto = accept(f.value("use_proxy_proto"));
    if use_proxy_proto.is_none() && f.value("use_proxy_proto").is_some() {
        f.problems.push(loc.err(
            &["use_proxy_proto"],
            "`use_proxy_proto` must be true, false or optional",
        ));
    }
    RawMapping {
        loc: loc.clone(),
        namespace,
        present: f.present(),
        port: f.integer("port"),
        service: f.string("service"),
        address: f.string("address"),
        host: f.string("host"),
        tls,
        weight: f.integer("weight"),
        idle_timeout_ms: f.integer_or_string("idle_timeout_ms"),
        enable_ipv4: f.boolean("enable_ipv4"),
        enable_ipv6: f.boolean("enable_ipv6"),
        max_connections: {
            let v = f.value("circuit_breakers");
            circuit_breakers(v, loc, &[], &mut f.problems)
        },
        connect_timeout_ms: f.integer("connect_timeout_ms"),
        load_balancer: {
            let v = f.value("load_balancer");
            endpoints::load_balancer(v, loc, &[], &mut f.problems)
        },
        max_connect_attempts: f.integer("max_connect_attempts"),
        health_check: {
            let v = f.value("health_check");
            endpoints::health_check(v, loc, &mut f.problems)
        },
        max_connections_per_ip: f.integer("max_connections_per_ip"),
        use_proxy_proto,
        send_proxy_proto: f.string("send_proxy_proto"),
        tls_passthrough: f.boolean("tls_passthrough"),
        match_alpn: f.strings("match_alpn"),
        starttls: f.string("starttls"),
        fleet: {
            let mut problems = Vec::new();
            let fleet = super::fleet::read(|k| f.value(k), loc, &[], &mut problems);
            f.problems.extend(problems);
            fleet
        },
    }
}

/// `use_proxy_proto` as written: a boolean (also as a string) or `optional`; `None` when
/// absent or anything else.
fn accept(v: Option<&Value>) -> Option<Accept> {
    match v? {
        Value::Bool(true) => Some(Accept::Required),
        Value::Bool(false) => Some(Accept::Off),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(Accept::Required),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(Accept::Off),
        Value::String(s) if s.eq_ignore_ascii_case("optional") => Some(Accept::Optional),
        _ => None,
    }
}

/// `circuit_breakers: [{max_connections: N}]` (the value at `prefix` + `circuit_breakers`):
/// the entry without `priority: high` counts.
fn circuit_breakers(
    value: Option<&Value>,
    loc: &Loc,
    prefix: &[&'static str],
    problems: &mut Vec<ConfigError>,
) -> Option<i64> {
    let at = |keys: &[&'static str]| -> Vec<&'static str> {
        prefix.iter().chain(keys).copied().collect()
    };
    let items = match value? {
        Value::Null => return None,
        Value::Sequence(items) => items,
        _ => {
            problems.push(loc.err(
                &at(&["circuit_breakers"]),
                "`circuit_breakers` must be a list like [{max_connections: N}]",
            ));
            return None;
        }
    };
    const KNOWN: [&str; 5] = [
        "priority",
        "max_connections",
        "max_pending_requests",
        "max_requests",
        "max_retries",
    ];
    let mut found = None;
    for item in items {
        let Some(m) = item.as_mapping() else {
            problems.push(loc.err(
                &at(&["circuit_breakers"]),
                "each circuit_breakers entry must be a mapping",
            ));
            continue;
        };
        for key in m.keys() {
            let k = key.as_str().unwrap_or("?");
            if !KNOWN.contains(&k) {
                problems.push(loc.warn(
                    &at(&["circuit_breakers"]),
                    format!("unknown attribute `circuit_breakers.{k}` (ignored)"),
                ));
            }
        }
        if m.get("priority").and_then(Value::as_str) == Some("high") {
            continue;
        }
        match m.get("max_connections") {
            None => {}
            Some(Value::Number(n)) if n.as_i64().is_some() => {
                found = found.or(n.as_i64());
            }
            Some(_) => problems.push(loc.err(
                &at(&["circuit_breakers", "max_connections"]),
                "`circuit_breakers.max_connections` must be an integer",
            )),
        }
    }
    found
}

/// A `TLSContext` as written.
#[derive(Debug, Clone)]
pub(crate) struct RawTlsContext {
    /// Where it is.
    pub loc: Loc,
    /// `namespace` / `metadata.namespace`: where a `kind: Secret` document of the config is
    /// looked for (`--secrets-dir` folders are not namespaced by it).
    pub namespace: Option<String>,
    /// `hosts`.
    pub hosts: Option<Vec<String>>,
    /// `secret`.
    pub secret: Option<String>,
    /// `ca_secret`.
    pub ca_secret: Option<String>,
    /// `cert_required`.
    pub cert_required: Option<bool>,
    /// `sni`.
    pub sni: Option<String>,
    /// `alpn_protocols` (list or comma-separated string).
    pub alpn_protocols: Option<Vec<String>>,
    /// `min_tls_version`.
    pub min_tls_version: Option<String>,
    /// `max_tls_version`.
    pub max_tls_version: Option<String>,
    /// `cipher_suites`.
    pub cipher_suites: Option<Vec<String>>,
    /// `cert_chain_file`.
    pub cert_chain_file: Option<String>,
    /// `private_key_file`.
    pub private_key_file: Option<String>,
    /// `cacert_chain_file`.
    pub cacert_chain_file: Option<String>,
    /// `secret_namespacing`.
    pub secret_namespacing: Option<bool>,
    /// `crl_secret`: a Secret whose `crl.pem` (else `tls.crt`) holds PEM CRLs.
    pub crl_secret: Option<String>,
    /// `ecdh_curves` (OpenSSL names).
    pub ecdh_curves: Option<Vec<String>>,
    /// What reading it found (type errors, unknown attributes): judged by validation, which
    /// knows whether a TCPMapping uses the resource.
    pub problems: Vec<ConfigError>,
}

impl RawTlsContext {
    /// The context without its certificate (`secret`, the file pair, `hosts`): its TLS
    /// settings alone, as a Host that takes them uses it.
    pub(crate) fn without_certificate(&self) -> RawTlsContext {
        RawTlsContext {
            secret: None,
            cert_chain_file: None,
            private_key_file: None,
            hosts: None,
            ..self.clone()
        }
    }
}

/// TLSContext (and Host `tls:`) attributes that only matter to Emissary's HTTP side.
const CONTEXT_HTTP_ONLY: [&str; 1] = ["redirect_cleartext_from"];

pub(super) fn context(f: &mut Fields<'_>, loc: &Loc, namespace: Option<String>) -> RawTlsContext {
    f.known(&CONTEXT_HTTP_ONLY);
    RawTlsContext {
        loc: loc.clone(),
        namespace,
        hosts: f.strings("hosts"),
        secret: f.string("secret"),
        ca_secret: f.string("ca_secret"),
        cert_required: f.boolean("cert_required"),
        sni: f.string("sni"),
        alpn_protocols: f.strings("alpn_protocols"),
        min_tls_version: f.string("min_tls_version"),
        max_tls_version: f.string("max_tls_version"),
        cipher_suites: f.strings("cipher_suites"),
        cert_chain_file: f.string("cert_chain_file"),
        private_key_file: f.string("private_key_file"),
        cacert_chain_file: f.string("cacert_chain_file"),
        secret_namespacing: f.boolean("secret_namespacing"),
        // `v3CRLSecret` is the v2 CRD's spelling.
        crl_secret: {
            let v3 = f.string("crl_secret");
            let v2 = f.string("v3CRLSecret");
            v3.or(v2)
        },
        ecdh_curves: f.strings("ecdh_curves"),
        problems: Vec::new(),
    }
}

/// A `Host` with a `tlsSecret` as written.
#[derive(Debug, Clone)]
pub(crate) struct RawHost {
    /// Where it is.
    pub loc: Loc,
    /// `namespace` / `metadata.namespace`: where a `kind: Secret` document of the config is
    /// looked for (`--secrets-dir` folders are not namespaced by it).
    pub namespace: Option<String>,
    /// `hostname` (a glob such as `*.example.com`).
    pub hostname: Option<String>,
    /// `tlsSecret.name`.
    pub secret: String,
    /// `tlsSecret.namespace`.
    pub secret_namespace: Option<String>,
    /// The inline `tls: {…}` block (TLSContext attributes; its settings come first).
    pub tls: Option<Box<RawTlsContext>>,
    /// `tlsContext.name`: the TLSContext whose settings apply (after an inline `tls:`).
    pub tls_context: Option<String>,
    /// What reading it found: judged by validation (see [`RawTlsContext::problems`]).
    pub problems: Vec<ConfigError>,
}

/// Host attributes that only matter to Ambassador's HTTP side: known, ignored, no warning.
const HOST_HTTP_ONLY: [&str; 5] = [
    "acmeProvider",
    "requestPolicy",
    "selector",
    "mappingSelector",
    "previewUrl",
];

pub(super) fn host(f: &mut Fields<'_>, loc: &Loc, namespace: Option<String>) -> Option<RawHost> {
    f.known(&HOST_HTTP_ONLY);
    let hostname = f.string("hostname");
    let tls = f.mapping("tls").map(|m| {
        let mut tf = Fields::new(loc, m);
        let mut c = context(&mut tf, loc, namespace.clone());
        c.problems = tf.finish();
        Box::new(c)
    });
    let tls_context = f
        .mapping("tlsContext")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let Some(secret) = f.mapping("tlsSecret") else {
        tracing::debug!(name = %loc.name, "skipping a Host without tlsSecret");
        return None;
    };
    let name = secret.get("name").and_then(Value::as_str);
    let Some(name) = name else {
        tracing::debug!(name = %loc.name, "skipping a Host whose tlsSecret has no name");
        return None;
    };
    Some(RawHost {
        loc: loc.clone(),
        namespace,
        hostname,
        secret: name.to_string(),
        secret_namespace: secret
            .get("namespace")
            .and_then(Value::as_str)
            .map(str::to_string),
        tls,
        tls_context,
        problems: Vec::new(),
    })
}

/// The `ambassador` Module's `config` as far as tcpmap reads it.
#[derive(Debug, Clone)]
pub(crate) struct RawModule {
    /// Where it is.
    pub loc: Loc,
    /// `config.enable_ipv4`.
    pub enable_ipv4: Option<bool>,
    /// `config.enable_ipv6`.
    pub enable_ipv6: Option<bool>,
    /// `config.use_proxy_proto`: every listener requires a PROXY protocol header.
    pub use_proxy_proto: Option<bool>,
    /// `config.load_balancer` (ext): the mappings' default.
    pub load_balancer: Option<RawLoadBalancer>,
    /// `config.max_connections_per_ip` (ext): the mappings' default.
    pub max_connections_per_ip: Option<i64>,
    /// `config.circuit_breakers[..].max_connections`: the default of mappings that set none.
    pub max_connections: Option<i64>,
    /// `config.use_ambassador_namespace_for_service_resolution`.
    pub own_namespace_resolution: Option<bool>,
    /// `config.keepalive: {time, interval, probes}` (seconds, seconds, count).
    pub keepalive: Option<[Option<i64>; 3]>,
    /// `config.max_connection_duration_ms`, `config.connection_rate_limit` (ext): defaults.
    pub fleet: super::fleet::RawFleet,
}

pub(super) fn module(f: &mut Fields<'_>, loc: &Loc) -> RawModule {
    let mut m = RawModule {
        loc: loc.clone(),
        enable_ipv4: None,
        enable_ipv6: None,
        load_balancer: None,
        max_connections_per_ip: None,
        use_proxy_proto: None,
        max_connections: None,
        own_namespace_resolution: None,
        keepalive: None,
        fleet: super::fleet::RawFleet::default(),
    };
    // The Module's `config` holds many HTTP settings; only the families, `use_proxy_proto` and
    // the endpoint defaults (`load_balancer`, `max_connections_per_ip`) are read here.
    if let Some(config) = f.mapping("config") {
        for (key, field) in [
            ("enable_ipv4", &mut m.enable_ipv4),
            ("enable_ipv6", &mut m.enable_ipv6),
            ("use_proxy_proto", &mut m.use_proxy_proto),
            (
                "use_ambassador_namespace_for_service_resolution",
                &mut m.own_namespace_resolution,
            ),
        ] {
            match config.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::Bool(b)) => *field = Some(*b),
                Some(Value::String(s)) if string_bool(s).is_some() => {
                    *field = string_bool(s);
                    f.problems.push(loc.warn(
                        &["config", key],
                        format!("`config.{key}` is the string {s:?}; read as a boolean"),
                    ));
                }
                Some(_) => f.problems.push(loc.err(
                    &["config", key],
                    format!("`config.{key}` must be true or false"),
                )),
            }
        }
        m.load_balancer = endpoints::load_balancer(
            config.get("load_balancer"),
            loc,
            &["config"],
            &mut f.problems,
        );
        m.max_connections_per_ip = endpoints::integer(
            config.get("max_connections_per_ip"),
            loc,
            &["config", "max_connections_per_ip"],
            &mut f.problems,
        );
        m.max_connections = circuit_breakers(
            config.get("circuit_breakers"),
            loc,
            &["config"],
            &mut f.problems,
        );
        m.keepalive = keepalive(config.get("keepalive"), loc, &mut f.problems);
        m.fleet = super::fleet::read(|k| config.get(k), loc, &["config"], &mut f.problems);
    }
    m
}

/// `config.keepalive: {time, interval, probes}`, each an integer when present.
fn keepalive(
    value: Option<&Value>,
    loc: &Loc,
    problems: &mut Vec<ConfigError>,
) -> Option<[Option<i64>; 3]> {
    let map = match value? {
        Value::Null => return None,
        Value::Mapping(m) => m,
        _ => {
            problems.push(loc.err(
                &["config", "keepalive"],
                "`config.keepalive` must be a mapping like {time: 60, interval: 10, probes: 5}",
            ));
            return None;
        }
    };
    let mut out = [None; 3];
    for (slot, key) in out.iter_mut().zip(["time", "interval", "probes"]) {
        *slot = endpoints::integer(map.get(key), loc, &["config", "keepalive", key], problems);
    }
    Some(out)
}
