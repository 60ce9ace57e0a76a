//! Cross-resource rules: groups `(address, port, host)`, agreement inside a group,
//! certificates for host groups, duplicate names.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::config::ConfigError;
use crate::config::model::{CertSource, Mapping};
use crate::config::raw::Loc;
use crate::proxy_protocol::Accept;
use crate::route::host::matches;

/// The group key of a mapping.
pub(crate) type GroupKey = (IpAddr, u16, Option<String>);

/// The mappings' groups as index lists, groups in order of first appearance.
pub(crate) fn group(mappings: &[Mapping]) -> Vec<Vec<usize>> {
    let mut order: Vec<GroupKey> = Vec::new();
    let mut by_key: BTreeMap<GroupKey, Vec<usize>> = BTreeMap::new();
    for (i, m) in mappings.iter().enumerate() {
        let key = (m.address, m.port, m.host.clone());
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
    format!(
        "{}:{} host {}",
        m.address,
        m.port,
        m.host.as_deref().unwrap_or("(none)")
    )
}

/// `tls`, `enable_ipv4`, `enable_ipv6` and `idle_timeout_ms` must agree inside a group:
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

/// `use_proxy_proto` as a config value.
fn accept_word(a: Accept) -> &'static str {
    match a {
        Accept::Off => "false",
        Accept::Required => "true",
        Accept::Optional => "optional",
    }
}

/// Resolves what each listener `(address, port)` does with PROXY protocol headers: the
/// value its mappings write (they must agree: each one that differs from the first gets an
/// error naming both), else the Module's `use_proxy_proto` (`module`). Every mapping's
/// `listener_proxy` is set to its listener's value.
pub(crate) fn listener_proxy(mappings: &mut [Mapping], module: Accept) -> Vec<ConfigError> {
    let mut errs = Vec::new();
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

/// Which certificate serves `host`: a `Host` whose hostname glob matches (exact, then the
/// longest glob), else a TLSContext listing it in `hosts` (exact, then the longest wildcard,
/// then `*`). The catch-all host `*` is served only by a `Host` or `hosts` entry `*`.
pub(crate) fn find_cert(
    host: &str,
    host_globs: &[&str],
    context_hosts: &[&[String]],
) -> Option<CertSource> {
    let glob_match = |g: &str| g == "*" || matches(g, host);
    let best_host = host_globs
        .iter()
        .enumerate()
        .filter(|(_, g)| glob_match(g))
        .max_by_key(|(i, g)| (g.eq_ignore_ascii_case(host), g.len(), std::cmp::Reverse(*i)));
    if let Some((i, _)) = best_host {
        return Some(CertSource::Host(i));
    }
    context_hosts
        .iter()
        .enumerate()
        .flat_map(|(i, hs)| hs.iter().map(move |h| (i, h)))
        .filter(|(_, h)| h.as_str() == "*" || matches(h, host))
        .max_by_key(|(i, h)| (h.eq_ignore_ascii_case(host), h.len(), std::cmp::Reverse(*i)))
        .map(|(i, _)| CertSource::Context(i))
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
