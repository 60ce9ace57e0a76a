//! Cross-resource rules: groups `(address, port, host, match_alpn)`, agreement inside a group,
//! ALPN lists of one host that overlap, certificates for host groups, duplicate names.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::config::ConfigError;
use crate::config::model::{CertSource, Mapping};
use crate::config::raw::{Loc, RawListener};
use crate::proxy_protocol::Accept;
use crate::route::host::{CATCH_ALL, matches};

/// The group key of a mapping: mappings that differ in `match_alpn` are separate groups of
/// one host.
pub(crate) type GroupKey = (IpAddr, u16, Option<String>, Vec<String>);

/// The mappings' groups as index lists, groups in order of first appearance.
pub(crate) fn group(mappings: &[Mapping]) -> Vec<Vec<usize>> {
    let mut order: Vec<GroupKey> = Vec::new();
    let mut by_key: BTreeMap<GroupKey, Vec<usize>> = BTreeMap::new();
    for (i, m) in mappings.iter().enumerate() {
        let key = (m.address, m.port, m.host.clone(), m.match_alpn.clone());
        let slot = by_key.entry(key.clone()).or_default();
        if slot.is_empty() {
            order.push(key);
        }
        slot.push(i);
    }
    order
        .into_iter()
        .filter_map(|k| by_key.remove(&k))
        .collect()
}

fn describe(m: &Mapping) -> String {
    let alpn = if m.match_alpn.is_empty() {
        String::new()
    } else {
        format!(" match_alpn [{}]", m.match_alpn.join(", "))
    };
    format!(
        "{}:{} host {}{alpn}",
        m.address,
        m.port,
        m.host.as_deref().unwrap_or("(none)")
    )
}

/// `tls`, `tls_passthrough`, `enable_ipv4`, `enable_ipv6` and `idle_timeout_ms` must agree
/// inside a group:
/// each member that differs from the first gets an error naming both.
pub(crate) fn check_agreement(mappings: &[Mapping], members: &[usize]) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let mut it = members.iter().filter_map(|i| mappings.get(*i));
    let Some(first) = it.next() else {
        return errs;
    };
    let ms = |d: Option<std::time::Duration>| {
        d.map_or("unset".to_string(), |d| d.as_millis().to_string())
    };
    for m in it {
        let diffs = [
            ("tls", first.origin.to_string(), m.origin.to_string()),
            (
                "tls_passthrough",
                first.passthrough.to_string(),
                m.passthrough.to_string(),
            ),
            (
                "enable_ipv4",
                first.families.ipv4().to_string(),
                m.families.ipv4().to_string(),
            ),
            (
                "enable_ipv6",
                first.families.ipv6().to_string(),
                m.families.ipv6().to_string(),
            ),
            (
                "idle_timeout_ms",
                ms(first.idle_timeout),
                ms(m.idle_timeout),
            ),
        ];
        for (key, a, b) in diffs {
            if a != b {
                errs.push(m.loc.err(
                    &[key],
                    format!(
                        "`{key}` is {b} here but {a} in TCPMapping {} ({}); mappings sharing {} must agree",
                        first.loc.name,
                        first.loc.place(),
                        describe(m)
                    ),
                ));
            }
        }
    }
    errs
}

/// The `match_alpn` groups of one `(address, port, host)` must not share a protocol (a client
/// offering it could go to either): each group's first mapping that lists a protocol an
/// earlier group of the host lists gets an error naming both. `groups` are index lists as
/// [`group`] returns them.
pub(crate) fn check_alpn_overlap(mappings: &[Mapping], groups: &[Vec<usize>]) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    // (address, port, host, protocol) → the mapping of the first group listing it.
    let mut seen: BTreeMap<(IpAddr, u16, String, &str), &Mapping> = BTreeMap::new();
    for members in groups {
        let Some(m) = members.first().and_then(|i| mappings.get(*i)) else {
            continue;
        };
        let Some(host) = &m.host else {
            continue;
        };
        for p in &m.match_alpn {
            let key = (m.address, m.port, host.clone(), p.as_str());
            match seen.get(&key) {
                Some(other) => errs.push(m.loc.err(
                    &["match_alpn"],
                    format!(
                        "`match_alpn` protocol `{p}` is also listed by TCPMapping {} ({}) with a different \
                         list; a client offering it could go to either group of {}: give both mappings \
                         the same list (one group, weighted) or lists without common protocols",
                        other.loc.name,
                        other.loc.place(),
                        describe(m)
                    ),
                )),
                None => {
                    seen.insert(key, m);
                }
            }
        }
    }
    errs
}

/// `use_proxy_proto` as a config value.
fn accept_word(a: Accept) -> &'static str {
    match a {
        Accept::Off => "false",
        Accept::Required => "true",
        Accept::Optional => "optional",
    }
}

/// Resolves what each listener `(address, port)` does with PROXY protocol headers: an
/// Emissary `Listener` of that port decides (`protocolStack` starting with `PROXY`:
/// required; else none), and a mapping that writes another `use_proxy_proto` is an error
/// naming both; else the value its mappings write (they must agree: each one that differs
/// from the first gets an error naming both), else the Module's `use_proxy_proto`
/// (`module`). Every mapping's `listener_proxy` is set to its listener's value.
pub(crate) fn listener_proxy(
    mappings: &mut [Mapping],
    module: Accept,
    listeners: &[RawListener],
) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let mut by_port: BTreeMap<u16, (Accept, &RawListener)> = BTreeMap::new();
    for l in listeners {
        let Some(port) = l.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        let mine = if l.proxy() {
            Accept::Required
        } else {
            Accept::Off
        };
        match by_port.get(&port) {
            Some((theirs, other)) if *theirs != mine => errs.push(l.loc.err(
                &["protocolStack"],
                format!(
                    "port {port}: PROXY protocol is {} here but {} in Listener {} ({})",
                    accept_word(mine),
                    accept_word(*theirs),
                    other.loc.name,
                    other.loc.place()
                ),
            )),
            Some(_) => {}
            None => {
                by_port.insert(port, (mine, l));
            }
        }
    }
    for m in mappings.iter_mut() {
        let Some((want, l)) = by_port.get(&m.port) else {
            continue;
        };
        if let Some(mine) = m.use_proxy_proto.filter(|mine| mine != want) {
            errs.push(m.loc.err(
                &["use_proxy_proto"],
                format!(
                    "`use_proxy_proto` is {} here but Listener {} ({}) on port {} says {} \
                     (protocolStack {}); they must agree",
                    accept_word(mine),
                    l.loc.name,
                    l.loc.place(),
                    m.port,
                    accept_word(*want),
                    if l.stack.is_empty() {
                        "unset".to_string()
                    } else {
                        format!("[{}]", l.stack.join(", "))
                    }
                ),
            ));
        }
        // The Listener decides for its port; the mappings' agreement below is moot there.
        m.use_proxy_proto = Some(*want);
    }
    let mut first: BTreeMap<(IpAddr, u16), usize> = BTreeMap::new();
    for (i, m) in mappings.iter().enumerate() {
        let Some(mine) = m.use_proxy_proto else {
            continue;
        };
        let key = (m.address, m.port);
        let Some(&j) = first.get(&key) else {
            first.insert(key, i);
            continue;
        };
        let Some(other) = mappings.get(j) else {
            continue;
        };
        let theirs = other.use_proxy_proto.unwrap_or_default();
        if theirs != mine {
            errs.push(m.loc.err(
                &["use_proxy_proto"],
                format!(
                    "`use_proxy_proto` is {} here but {} in TCPMapping {} ({}); mappings on listener {}:{} must agree",
                    accept_word(mine),
                    accept_word(theirs),
                    other.loc.name,
                    other.loc.place(),
                    m.address,
                    m.port
                ),
            ));
        }
    }
    let decided: BTreeMap<(IpAddr, u16), Accept> = first
        .iter()
        .filter_map(|(k, &i)| Some((*k, mappings.get(i)?.use_proxy_proto?)))
        .collect();
    for m in mappings.iter_mut() {
        m.listener_proxy = decided.get(&(m.address, m.port)).copied().unwrap_or(module);
    }
    errs
}

/// Which certificate serves `host`, by specificity over Hosts and TLSContexts together: an
/// exact name (a Host's `hostname`, a TLSContext's `hosts` entry), then the longest matching
/// `*.suffix`, then a catch-all `*`; at equal specificity a Host before a TLSContext, then
/// the earlier one. So a catch-all Host never serves a name something more specific covers.
pub(crate) fn find_cert(
    host: &str,
    host_globs: &[&str],
    context_hosts: &[&[String]],
) -> Option<CertSource> {
    let fits = |p: &str| p == CATCH_ALL || matches(p, host);
    let rank = |p: &str| (p.eq_ignore_ascii_case(host), p != CATCH_ALL, p.len());
    let hosts = host_globs
        .iter()
        .enumerate()
        .filter(|(_, g)| fits(g))
        .map(|(i, g)| (rank(g), 1u8, std::cmp::Reverse(i), CertSource::Host(i)));
    let contexts = context_hosts
        .iter()
        .enumerate()
        .flat_map(|(i, hs)| hs.iter().map(move |h| (i, h)))
        .filter(|(_, h)| fits(h))
        .map(|(i, h)| (rank(h), 0u8, std::cmp::Reverse(i), CertSource::Context(i)));
    hosts
        .chain(contexts)
        .max_by_key(|(r, kind, i, _)| (*r, *kind, *i))
        .map(|(_, _, _, src)| src)
}

/// A host group without a certificate source is an error for each of its mappings.
pub(crate) fn check_host_cert(m: &Mapping, found: Option<CertSource>) -> Option<ConfigError> {
    let host = m.host.as_deref()?;
    if found.is_some() {
        return None;
    }
    Some(m.loc.err(
        &["host"],
        format!(
            "no certificate for host `{host}`: no Host matches it and no TLSContext lists it in `hosts`"
        ),
    ))
}

/// Same `key` twice → a warning at the later one naming the earlier place; both are kept.
pub(crate) fn duplicate_names<'a>(
    items: impl IntoIterator<Item = (String, &'a Loc)>,
) -> Vec<ConfigError> {
    let mut seen: BTreeMap<String, &Loc> = BTreeMap::new();
    let mut out = Vec::new();
    for (key, loc) in items {
        match seen.get(&key) {
            Some(first) => out.push(loc.warn(
                &[],
                format!(
                    "{} `{}` is also defined at {}; both are kept (names should be unique)",
                    loc.kind,
                    loc.name,
                    first.place()
                ),
            )),
            None => {
                seen.insert(key, loc);
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "groups_tests.rs"]
mod tests;
