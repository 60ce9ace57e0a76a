//! A served Gateway's listeners: which are served (protocol, port, distinct on their port),
//! the certificate of a Terminate listener (a Secret, through a ReferenceGrant when it is in
//! another namespace), and ReferenceGrant lookups.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::ParsedCertificate;

use super::raw::{GROUP, ObjRef, RawGateway, RawListener};
use super::status::{ListenerStatus, Why};
use super::translate::{Env, Resources};
use crate::config::ConfigError;
use crate::config::model::Model;
use crate::config::raw::{Loc, RawHost};

/// A listener of a served Gateway, ready to take routes.
pub(super) struct Served<'r> {
    pub gateway: &'r RawGateway,
    pub namespace: String,
    pub listener: &'r RawListener,
    pub addresses: Vec<IpAddr>,
    pub port: u16,
    /// `Passthrough` TLS (`None` for TCP, `Some(false)`: Terminate).
    pub passthrough: Option<bool>,
    /// The certificates of a Terminate listener, in `certificateRefs` order (those that
    /// load).
    pub certs: Vec<Cert>,
    /// Its status: `(Gateway, listener)` indexes into the translation's status lists.
    pub slot: (usize, usize),
}

/// A Terminate listener's certificate: the model Host it became, and its leaf certificate
/// (to pick a certificate by hostname).
pub(super) struct Cert {
    /// The index into the model's Hosts.
    pub host: usize,
    /// The leaf certificate.
    pub leaf: CertificateDer<'static>,
}

impl Served<'_> {
    /// The certificate a Terminate listener serves `host` with: the first of its certificates
    /// valid for that name (for a `*.example.com` route hostname, one valid for the names
    /// below it), else the first (the default, and the catch-all's); `None` for TCP and
    /// Passthrough listeners.
    pub(super) fn cert_for(&self, host: Option<&str>) -> Option<usize> {
        let first = self.certs.first()?.host;
        let Some(h) = host.filter(|h| *h != crate::route::host::CATCH_ALL) else {
            return Some(first);
        };
        let probe = match h.strip_prefix("*.") {
            Some(rest) => format!("wildcard-probe.{rest}"),
            None => h.to_string(),
        };
        let Ok(name) = ServerName::try_from(probe) else {
            return Some(first);
        };
        let valid = |c: &&Cert| {
            ParsedCertificate::try_from(&c.leaf)
                .is_ok_and(|p| rustls::client::verify_server_name(&p, &name).is_ok())
        };
        Some(self.certs.iter().find(valid).map_or(first, |c| c.host))
    }

    pub(super) fn label(&self) -> String {
        format!(
            "{}/{} listener {}",
            self.namespace, self.gateway.loc.name, self.listener.name
        )
    }
}

/// The served listeners of Gateway `g` (status slot `gi`): TCP and TLS ones with a port
/// (and, for Terminate, a certificate that loads); every listener's status goes to `status`,
/// and the address that is not an IP address, if any, is returned with them.
#[allow(clippy::too_many_arguments)]
pub(super) fn listeners<'r>(
    g: &'r RawGateway,
    ns: String,
    gi: usize,
    res: &Resources,
    env: &Env<'_>,
    model: &mut Model,
    problems: &mut Vec<ConfigError>,
    status: &mut Vec<ListenerStatus>,
) -> (Vec<Served<'r>>, Option<String>) {
    let mut addresses = Vec::new();
    let mut bad_address = None;
    for a in &g.addresses {
        match a.parse::<IpAddr>() {
            Ok(ip) => addresses.push(ip),
            Err(_) => {
                bad_address.get_or_insert_with(|| a.clone());
                problems.push(g.loc.warn(
                    &["addresses"],
                    format!("address `{a}` is not an IP address; not applied"),
                ));
            }
        }
    }
    if addresses.is_empty() {
        addresses.push(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
    let mut out = Vec::new();
    for l in &g.listeners {
        let warning = |why: String| {
            super::warn_at_item(
                &g.loc,
                "listeners",
                &l.name,
                format!("listener {}: {why}; not served", l.name),
            )
        };
        let mut st = ListenerStatus::new(&l.name, warning(String::new()).line);
        let li = status.len();
        match listener(g, &ns, l, res, env, model) {
            Ok((port, passthrough, certs, partly)) => {
                st.kinds = vec![if passthrough.is_some() {
                    "TLSRoute"
                } else {
                    "TCPRoute"
                }];
                if let Some((reason, why)) = partly {
                    // Served with the certificates that load; the listener says which did not.
                    problems.push(super::warn_at_item(
                        &g.loc,
                        "listeners",
                        &l.name,
                        format!(
                            "listener {}: {why} (ResolvedRefs False, {reason}); served with its other certificates",
                            l.name
                        ),
                    ));
                    st.resolved = Err((reason, why));
                }
                out.push(Served {
                    gateway: g,
                    namespace: ns.clone(),
                    listener: l,
                    addresses: addresses.clone(),
                    port,
                    passthrough,
                    certs,
                    slot: (gi, li),
                });
            }
            Err(Refused::Accepted((reason, why))) => {
                problems.push(warning(why.clone()));
                st.accepted = Err((reason, why));
            }
            Err(Refused::Refs((reason, why))) => {
                st.kinds = vec!["TLSRoute"];
                problems.push(warning(format!(
                    "not programmed (ResolvedRefs False, {reason}): {why}"
                )));
                st.resolved = Err((reason, why));
            }
        }
        status.push(st);
    }
    (out, bad_address)
}

/// Why a listener is not served: not `Accepted`, or its references not resolved.
enum Refused {
    Accepted(Why),
    Refs(Why),
}

/// One listener's port, TLS mode (`None`: TCP; `Some(true)`: Passthrough), certificates
/// (Terminate) and, when some certificateRefs did not resolve but others did, why.
type Accepted = (u16, Option<bool>, Vec<Cert>, Option<Why>);

/// One listener as served, or why not.
fn listener(
    g: &RawGateway,
    ns: &str,
    l: &RawListener,
    res: &Resources,
    env: &Env<'_>,
    model: &mut Model,
) -> Result<Accepted, Refused> {
    let port = l
        .port
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            Refused::Accepted(("UnsupportedValue", "port must be 1-65535".to_string()))
        })?;
    let passthrough = match l.protocol.as_str() {
        "TCP" => None,
        "TLS" => match l.tls_mode.as_deref().unwrap_or("Terminate") {
            "Passthrough" => Some(true),
            "Terminate" => Some(false),
            other => {
                return Err(Refused::Accepted((
                    "UnsupportedValue",
                    format!("unknown tls.mode `{other}`"),
                )));
            }
        },
        other => {
            return Err(Refused::Accepted((
                "UnsupportedProtocol",
                format!(
                    "protocol {other} (UnsupportedProtocol): tcpmap serves TCP and TLS listeners"
                ),
            )));
        }
    };
    if passthrough != Some(false) {
        return Ok((port, passthrough, Vec::new(), None));
    }
    let mut certs = Vec::new();
    let mut failed = None;
    for (i, r) in l.certificate_refs.iter().enumerate() {
        match certificate(g, ns, l, (i, r), res, env, model) {
            Ok(c) => certs.push(c),
            Err(why) => {
                failed.get_or_insert(why);
            }
        }
    }
    if certs.is_empty() {
        return Err(Refused::Refs(failed.unwrap_or_else(|| {
            (
                "InvalidCertificateRef",
                "tls.mode Terminate needs tls.certificateRefs".into(),
            )
        })));
    }
    Ok((port, passthrough, certs, failed))
}

/// Loads certificateRef `r` (number `i`, from 0) of a Terminate listener into the model's
/// Hosts.
fn certificate(
    g: &RawGateway,
    ns: &str,
    l: &RawListener,
    (i, r): (usize, &ObjRef),
    res: &Resources,
    env: &Env<'_>,
    model: &mut Model,
) -> Result<Cert, Why> {
    let invalid = |why: String| ("InvalidCertificateRef", why);
    let (group, kind) = (
        r.group.as_deref().unwrap_or(""),
        r.kind.as_deref().unwrap_or("Secret"),
    );
    if !group.is_empty() || kind != "Secret" {
        return Err(invalid(format!(
            "certificateRef {kind} {}: only Secrets are read",
            r.name
        )));
    }
    let target = r.namespace.clone().unwrap_or_else(|| ns.to_string());
    if target != ns
        && !granted(
            res,
            env.namespace,
            (GROUP, "Gateway", ns),
            ("", "Secret", &r.name),
            &target,
        )
    {
        return Err((
            "RefNotPermitted",
            format!(
                "Secret {target}/{} is in another namespace and no ReferenceGrant there allows it",
                r.name
            ),
        ));
    }
    let raw = cert_host(g, l, (i, r), &target);
    let (host, problems) = crate::config::validate::tls::host(&raw, env.secrets_dir, env.files);
    match host {
        Some(h) => {
            let leaf = h.cert.chain.first().cloned();
            model.hosts.push(h);
            let host = model.hosts.len() - 1;
            leaf.map(|leaf| Cert { host, leaf })
                .ok_or_else(|| invalid(format!("Secret {target}/{} holds no certificate", r.name)))
        }
        None => Err(invalid(problems.iter().find(|p| p.is_error()).map_or_else(
            || "the Secret did not load".into(),
            |p| p.message.clone(),
        ))),
    }
}

/// A Terminate listener's Secret (certificateRef `i`, from 0) as the Host that
/// [`crate::config::validate::tls::host`] loads (also used to list the files to read from
/// `--secrets-dir`). It is named `GATEWAY/LISTENER` (the first ref) or `GATEWAY/LISTENER#N`
/// (the Nth, from 2) in `check`'s `terminate(Gateway …)`.
pub(crate) fn cert_host(
    g: &RawGateway,
    l: &RawListener,
    (i, r): (usize, &ObjRef),
    target: &str,
) -> RawHost {
    let name = match i {
        0 => format!("{}/{}", g.loc.name, l.name),
        i => format!("{}/{}#{}", g.loc.name, l.name, i + 1),
    };
    RawHost {
        loc: Loc {
            name,
            ..g.loc.clone()
        },
        namespace: Some(target.to_string()),
        hostname: None,
        secret: r.name.clone(),
        secret_namespace: Some(target.to_string()),
        tls: None,
        tls_context: None,
        problems: Vec::new(),
    }
}

/// True when a ReferenceGrant in `target` lets `from` (group, kind, namespace) refer to
/// `to` (group, kind, name); a grant without a namespace is in `default_ns`.
pub(super) fn granted(
    res: &Resources,
    default_ns: &str,
    from: (&str, &str, &str),
    to: (&str, &str, &str),
    target: &str,
) -> bool {
    res.grants.iter().any(|g| {
        g.namespace.as_deref().unwrap_or(default_ns) == target
            && g.from
                .iter()
                .any(|(gr, k, n)| (gr.as_str(), k.as_str(), n.as_str()) == from)
            && g.to.iter().any(|(gr, k, name)| {
                gr == to.0 && k == to.1 && name.as_deref().is_none_or(|n| n == to.2)
            })
    })
}

/// Listeners on one address and port must be distinct (Gateway API `Conflicted`): one TCP
/// listener alone, or TLS listeners with different hostnames. A TCP and a TLS listener on one
/// port are a `ProtocolConflict`, two of one protocol with one hostname a `HostnameConflict`.
pub(super) fn without_conflicts<'r>(
    served: Vec<Served<'r>>,
    problems: &mut Vec<ConfigError>,
    status: &mut [Vec<ListenerStatus>],
) -> Vec<Served<'r>> {
    let mut by_port: BTreeMap<(IpAddr, u16), Vec<usize>> = BTreeMap::new();
    for (i, s) in served.iter().enumerate() {
        for a in &s.addresses {
            by_port.entry((*a, s.port)).or_default().push(i);
        }
    }
    let mut bad: BTreeMap<usize, &'static str> = BTreeMap::new();
    for ids in by_port.values().filter(|ids| ids.len() > 1) {
        let list: Vec<&Served> = ids.iter().filter_map(|i| served.get(*i)).collect();
        let tcp = list.iter().filter(|s| s.passthrough.is_none()).count();
        let mut hosts = BTreeSet::new();
        let dup = list
            .iter()
            .any(|s| !hosts.insert(s.listener.hostname.clone()));
        let reason = if tcp > 0 && tcp < list.len() {
            "ProtocolConflict"
        } else {
            "HostnameConflict"
        };
        if tcp > 0 || dup {
            for i in ids {
                bad.entry(*i).or_insert(reason);
            }
        }
    }
    let mut out = Vec::new();
    for (i, s) in served.into_iter().enumerate() {
        let Some(reason) = bad.get(&i).copied() else {
            out.push(s);
            continue;
        };
        let why = format!(
            "port {} is shared with a listener it is not distinct from (Conflicted, {reason})",
            s.port
        );
        problems.push(super::warn_at_item(
            &s.gateway.loc,
            "listeners",
            &s.listener.name,
            format!("listener {}: {why}; not served", s.listener.name),
        ));
        if let Some(st) = status.get_mut(s.slot.0).and_then(|g| g.get_mut(s.slot.1)) {
            st.conflicted = Some(reason);
            st.accepted = Err((reason, why));
        }
    }
    out
}

/// The files of `--secrets-dir` the Terminate listeners' Secrets are in (Gateways without a
/// namespace are in `namespace`, the proxy's).
pub(crate) fn referenced_files(
    resources: &[crate::config::raw::Resource],
    namespace: &str,
    secrets_dir: Option<&std::path::Path>,
    files: &crate::config::secrets::Files,
) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for r in resources {
        let crate::config::raw::Resource::Gateway(super::raw::GatewayResource::Gateway(g)) = r
        else {
            continue;
        };
        let own = g.namespace.as_deref().unwrap_or(namespace);
        for l in &g.listeners {
            for (i, c) in l.certificate_refs.iter().enumerate() {
                let target = c.namespace.as_deref().unwrap_or(own);
                let raw = cert_host(g, l, (i, c), target);
                out.extend(crate::config::validate::tls::host_files(
                    &raw,
                    secrets_dir,
                    files,
                ));
            }
        }
    }
    out
}
