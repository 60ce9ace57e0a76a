//! Each mapping's counters for the status page: a process's own registry ([`from_metrics`],
//! read in place; what threads mode shows and what each worker sends in its `Status` reply),
//! summed over processes with [`sum`] (the Supervisor, every worker and the counts the workers
//! that died left behind). `from_snapshot` (tests) and [`from_openmetrics`] read the same numbers
//! from the library's snapshot and from a metrics text (a dead worker's last one); all give
//! the same [`MappingTotals`] for the same counts (unit tests hold them to it).

use std::collections::BTreeMap;

use std::cmp::Ordering;

use super::MappingTotals;
use crate::metrics::Metrics;
#[cfg(test)]
use crate::metrics::MetricsSnapshot;

/// The families read, and what each sets.
const ACCEPTED: &str = "tcpmap_connections_accepted_total";
const ACTIVE: &str = "tcpmap_connections_active";
const ENDED: &str = "tcpmap_connections_ended_total";
const BYTES: &str = "tcpmap_bytes_total";
const CONNECT_FAILURES: &str = "tcpmap_upstream_connect_failures_total";

type Key = (String, String, u16, String);

/// A sample's labels, `(name, unescaped value)` in order.
pub(crate) type Labels = Vec<(String, String)>;

/// The totals of `metrics`, sorted by namespace, mapping, port and host, read in place (the
/// names copied once per mapping, nothing per counter).
pub(crate) fn from_metrics(metrics: &Metrics) -> Vec<MappingTotals> {
    let mut out = Vec::new();
    metrics.each_mapping(|id, c| {
        let mut t = MappingTotals {
            mapping: id.name.clone(),
            namespace: id.namespace.clone(),
            port: id.port,
            host: id.host.clone(),
            active: c.active,
            accepted: c.accepted,
            bytes_client_to_upstream: c.bytes_client_to_upstream,
            bytes_upstream_to_client: c.bytes_upstream_to_client,
            connect_failures: c.connect_failures,
            ended: BTreeMap::new(),
        };
        for (reason, n) in c.ended {
            if n > 0 {
                *t.ended.entry(reason.as_str().to_string()).or_insert(0) += n;
            }
        }
        out.push(t);
    });
    out.sort_unstable_by(order);
    out
}

/// The order of every list here: namespace, mapping, port, host.
pub(crate) fn order(a: &MappingTotals, b: &MappingTotals) -> Ordering {
    (&a.namespace, &a.mapping, a.port, &a.host).cmp(&(&b.namespace, &b.mapping, b.port, &b.host))
}

/// The sum of sorted lists (several processes' totals), sorted: each mapping's counters and
/// open connections add up. Linear in the lists' lengths; nothing is copied when they name
/// the same mappings (every worker serves the same config).
pub(crate) fn sum(lists: impl IntoIterator<Item = Vec<MappingTotals>>) -> Vec<MappingTotals> {
    lists
        .into_iter()
        .fold(Vec::new(), |a, b| zip(a, b, u64::saturating_add))
}

/// The latest of two sorted lists of one process's counters (its last `Status` reply and its
/// last metrics text, whichever is newer per counter), without its open connections: what a
/// worker that died leaves to [`sum`].
pub(crate) fn latest(a: Vec<MappingTotals>, b: Vec<MappingTotals>) -> Vec<MappingTotals> {
    let mut out = zip(a, b, u64::max);
    for t in &mut out {
        t.active = 0;
    }
    out
}

/// Merges sorted `a` and `b`, combining the counters of a mapping in both with `f` (open
/// connections add up).
fn zip(a: Vec<MappingTotals>, b: Vec<MappingTotals>, f: fn(u64, u64) -> u64) -> Vec<MappingTotals> {
    if a.is_empty() {
        return b;
    }
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => match order(x, y) {
                Ordering::Less => a.next(),
                Ordering::Greater => b.next(),
                Ordering::Equal => match (a.next(), b.next()) {
                    (Some(mut x), Some(y)) => {
                        combine(&mut x, y, f);
                        Some(x)
                    }
                    (x, _) => x,
                },
            },
            (Some(_), None) => a.next(),
            (None, _) => b.next(),
        };
        match next {
            Some(t) => out.push(t),
            None => return out,
        }
    }
}

fn combine(into: &mut MappingTotals, t: MappingTotals, f: fn(u64, u64) -> u64) {
    into.active = into.active.saturating_add(t.active);
    into.accepted = f(into.accepted, t.accepted);
    into.bytes_client_to_upstream = f(into.bytes_client_to_upstream, t.bytes_client_to_upstream);
    into.bytes_upstream_to_client = f(into.bytes_upstream_to_client, t.bytes_upstream_to_client);
    into.connect_failures = f(into.connect_failures, t.connect_failures);
    for (reason, n) in t.ended {
        let slot = into.ended.entry(reason).or_insert(0);
        *slot = f(*slot, n);
    }
}

/// The totals of this process's registry through the library's snapshot (the page's old
/// path, kept for the tests and the benchmark), sorted as [`from_metrics`]'s.
#[cfg(test)]
pub(crate) fn from_snapshot(snapshot: &MetricsSnapshot) -> Vec<MappingTotals> {
    let mut out: BTreeMap<Key, MappingTotals> = BTreeMap::new();
    for m in &snapshot.mappings {
        let t = entry(&mut out, &m.id.name, &m.id.namespace, m.id.port, &m.id.host);
        t.active = m.active;
        t.accepted = m.accepted;
        t.bytes_client_to_upstream = m.bytes_client_to_upstream;
        t.bytes_upstream_to_client = m.bytes_upstream_to_client;
        t.connect_failures = m.connect_failures;
        for (reason, n) in &m.ended {
            if *n > 0 {
                *t.ended.entry(reason.as_str().to_string()).or_insert(0) += n;
            }
        }
    }
    out.into_values().collect()
}

/// The totals in an OpenMetrics (or Prometheus) text, sorted as [`from_metrics`]'s. Lines
/// that do not parse are skipped.
pub(crate) fn from_openmetrics(text: &str) -> Vec<MappingTotals> {
    let mut out: BTreeMap<Key, MappingTotals> = BTreeMap::new();
    for line in text.lines() {
        // Most of the text is other families (histogram buckets): skip them unparsed.
        let wanted = [ACCEPTED, ACTIVE, ENDED, BYTES, CONNECT_FAILURES]
            .iter()
            .any(|f| {
                line.strip_prefix(f)
                    .is_some_and(|rest| rest.starts_with('{'))
            });
        if !wanted {
            continue;
        }
        let Some((family, labels, value)) = sample(line) else {
            continue;
        };
        let label = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let (Some(mapping), Some(namespace), Some(port), Some(host)) = (
            label("mapping"),
            label("namespace"),
            label("port").and_then(|p| p.parse::<u16>().ok()),
            label("host"),
        ) else {
            continue;
        };
        let count = value.max(0.0) as u64;
        let t = entry(&mut out, mapping, namespace, port, host);
        match family {
            ACCEPTED => t.accepted = count,
            ACTIVE => t.active = value as i64,
            CONNECT_FAILURES => t.connect_failures = count,
            BYTES => match label("direction") {
                Some("client_to_upstream") => t.bytes_client_to_upstream = count,
                Some("upstream_to_client") => t.bytes_upstream_to_client = count,
                _ => {}
            },
            _ => {
                if let (Some(reason), true) = (label("reason"), count > 0) {
                    *t.ended.entry(reason.to_string()).or_insert(0) += count;
                }
            }
        }
    }
    out.into_values().collect()
}

fn entry<'a>(
    out: &'a mut BTreeMap<Key, MappingTotals>,
    mapping: &str,
    namespace: &str,
    port: u16,
    host: &str,
) -> &'a mut MappingTotals {
    let key = (
        namespace.to_string(),
        mapping.to_string(),
        port,
        host.to_string(),
    );
    out.entry(key).or_insert_with(|| MappingTotals {
        mapping: mapping.to_string(),
        namespace: namespace.to_string(),
        port,
        host: host.to_string(),
        ..MappingTotals::default()
    })
}

/// One sample line: `name{a="1",b="x\"y"} value [timestamp]`, label values unescaped.
pub(crate) fn sample(line: &str) -> Option<(&str, Labels, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = line.get(..name_end)?;
    let mut rest = line.get(name_end..)?;
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            rest = rest.trim_start_matches(',');
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=')?;
            let key = rest.get(..eq)?.trim().to_string();
            let (value, after) = quoted(rest.get(eq + 1..)?)?;
            labels.push((key, value));
            rest = after;
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

/// A quoted label value at the start of `s` (`\\`, `\"` and `\n` unescaped) and what follows.
fn quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, body.get(i + 1..)?)),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}
