//! The endpoints as the status page shows them: every live endpoint set of a process as plain
//! values ([`EndpointSet`]), which a worker sends to its Supervisor in its `Status` reply, and
//! the merge of several processes' sets into one total ([`merge`]).
//!
//! A set is named by its mapping and service (`host:port`), not by its listener: the mapping's
//! id carries the port, and a mapping routes to one service per group.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::endpoint::EndpointState;
use super::{EndpointRegistry, UpstreamState};
use crate::route::MappingId;

/// One upstream's endpoints in one process (or summed over processes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EndpointSet {
    /// The mapping's name.
    pub(crate) mapping: String,
    /// The mapping's namespace.
    pub(crate) namespace: String,
    /// The mapping's listener port.
    pub(crate) port: u16,
    /// The mapping's SNI host (empty when none).
    pub(crate) host: String,
    /// `host:port` of the service.
    pub(crate) service: String,
    /// Its endpoints, in the order DNS gave them.
    pub(crate) endpoints: Vec<EndpointRow>,
}

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EndpointRow {
    /// `ip:port`.
    pub(crate) address: String,
    /// `healthy`, `ejected` or `unhealthy`.
    pub(crate) state: String,
    /// Connections open (and connects in progress) to it now.
    pub(crate) active: u64,
    /// Failed connects to it since it appeared.
    pub(crate) connect_failures: u64,
    /// The last active health check (`None`: no check configured, or none ran yet).
    pub(crate) last_check: Option<LastCheck>,
}

/// An active health check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LastCheck {
    /// The TCP connect succeeded within the check's timeout.
    pub(crate) ok: bool,
    /// When it ended (wall clock, ms since the Unix epoch).
    pub(crate) at_unix_ms: u64,
}

impl EndpointSet {
    /// What sets are merged and sorted by: namespace, mapping, port, host, service.
    pub(crate) fn key(&self) -> (&str, &str, u16, &str, &str) {
        (
            &self.namespace,
            &self.mapping,
            self.port,
            &self.host,
            &self.service,
        )
    }
}

/// One endpoint's numbers, typed: what an [`EndpointRow`] shows, without its strings (the
/// status page's per-request form; the address and state are spelled out when written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Row {
    /// The address.
    pub(crate) addr: SocketAddr,
    /// Its state.
    pub(crate) state: EndpointState,
    /// Connections open (and connects in progress) to it now.
    pub(crate) active: u64,
    /// Failed connects to it since it appeared.
    pub(crate) connect_failures: u64,
    /// The last active health check.
    pub(crate) last_check: Option<LastCheck>,
}

impl Row {
    /// Adds another process's view of the same address: counts add up, the worst state and
    /// the latest check win (what [`merge`] does with rows).
    pub(crate) fn add(&mut self, other: &Row) {
        self.active = self.active.saturating_add(other.active);
        self.connect_failures = self.connect_failures.saturating_add(other.connect_failures);
        if badness(other.state.as_str()) > badness(self.state.as_str()) {
            self.state = other.state;
        }
        if other.last_check.map(|c| c.at_unix_ms) > self.last_check.map(|c| c.at_unix_ms) {
            self.last_check = other.last_check;
        }
    }

    /// The row as the snapshot shows it.
    pub(crate) fn view(&self) -> EndpointRow {
        EndpointRow {
            address: self.addr.to_string(),
            state: self.state.as_str().to_string(),
            active: self.active,
            connect_failures: self.connect_failures,
            last_check: self.last_check,
        }
    }
}

impl EndpointRow {
    /// The row typed (`None`: an address or state this binary does not read).
    pub(crate) fn row(&self) -> Option<Row> {
        let state = [
            EndpointState::Healthy,
            EndpointState::Ejected,
            EndpointState::Unhealthy,
        ]
        .into_iter()
        .find(|s| s.as_str() == self.state)?;
        Some(Row {
            addr: self.address.parse().ok()?,
            state,
            active: self.active,
            connect_failures: self.connect_failures,
            last_check: self.last_check,
        })
    }
}

impl UpstreamState {
    /// The mapping this set belongs to.
    pub(crate) fn mapping(&self) -> &MappingId {
        &self.key.mapping
    }

    /// Appends this set's endpoints, as rows, to `out`.
    pub(crate) fn rows(&self, out: &mut Vec<Row>) {
        let now_ms = self.now_ms();
        let list = self.list();
        out.extend(list.endpoints.iter().map(|e| {
            Row {
                addr: e.addr,
                state: e.state(now_ms),
                active: u64::from(e.active()),
                connect_failures: e.connect_failures.load(Ordering::Relaxed),
                last_check: e
                    .last_check()
                    .map(|(ok, at_unix_ms)| LastCheck { ok, at_unix_ms }),
            }
        }));
    }
}

/// The wall clock in ms since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl EndpointRegistry {
    /// Every live endpoint set of this process, merged by mapping and service.
    pub(crate) fn report(&self) -> Vec<EndpointSet> {
        let sets = self.live().into_iter().map(|s| {
            let (host, port, _) = s.service();
            let mut rows = Vec::new();
            s.rows(&mut rows);
            EndpointSet {
                mapping: s.key.mapping.name.clone(),
                namespace: s.key.mapping.namespace.clone(),
                port: s.key.mapping.port,
                host: s.key.mapping.host.clone(),
                service: format!("{host}:{port}"),
                endpoints: rows.iter().map(Row::view).collect(),
            }
        });
        merge(sets)
    }
}

/// How bad a state is: the merge keeps the worst a process reports.
fn badness(state: &str) -> u8 {
    match state {
        s if s == EndpointState::Unhealthy.as_str() => 2,
        s if s == EndpointState::Ejected.as_str() => 1,
        _ => 0,
    }
}

/// Sums sets of the same mapping and service (several processes, or two generations holding
/// different keys): per address the connections and failures add up, the state is the worst
/// one reported and the last check the latest. Sorted by mapping, then service.
pub(crate) fn merge(sets: impl IntoIterator<Item = EndpointSet>) -> Vec<EndpointSet> {
    let mut sets: Vec<EndpointSet> = sets.into_iter().collect();
    // Stable: the sets of one key stay in the order given (their rows' order below).
    sets.sort_by(|a, b| a.key().cmp(&b.key()));
    let mut out: Vec<EndpointSet> = Vec::with_capacity(sets.len());
    for set in sets {
        let Some(into) = out.last_mut().filter(|into| into.key() == set.key()) else {
            out.push(set);
            continue;
        };
        for row in set.endpoints {
            match into.endpoints.iter_mut().find(|r| r.address == row.address) {
                None => into.endpoints.push(row),
                Some(r) => {
                    r.active = r.active.saturating_add(row.active);
                    r.connect_failures = r.connect_failures.saturating_add(row.connect_failures);
                    if badness(&row.state) > badness(&r.state) {
                        r.state = row.state;
                    }
                    if row.last_check.map(|c| c.at_unix_ms) > r.last_check.map(|c| c.at_unix_ms) {
                        r.last_check = row.last_check;
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;
    use crate::metrics::Metrics;
    use crate::route::balance::HealthCheck;

    fn row(address: &str, state: &str, active: u64, failures: u64, at: Option<u64>) -> EndpointRow {
        EndpointRow {
            address: address.into(),
            state: state.into(),
            active,
            connect_failures: failures,
            last_check: at.map(|at_unix_ms| LastCheck {
                ok: at_unix_ms % 2 == 0,
                at_unix_ms,
            }),
        }
    }

    fn set(mapping: &str, endpoints: Vec<EndpointRow>) -> EndpointSet {
        EndpointSet {
            mapping: mapping.into(),
            namespace: "default".into(),
            port: 1,
            host: String::new(),
            service: "svc.test:80".into(),
            endpoints,
        }
    }

    /// What connects and probes did shows in the report: failures counted per endpoint, the
    /// last probe's outcome and time, the state.
    #[test]
    fn the_report_shows_connect_failures_and_the_last_check() {
        let reg = EndpointRegistry::new(Metrics::new());
        let s = reg.state(super::super::tests::key());
        let addrs: Vec<SocketAddr> = vec![([127, 0, 0, 1], 80).into(), ([127, 0, 0, 2], 80).into()];
        let list = s.refresh(&addrs, None);
        s.record(&list, 1, false);
        s.record(&list, 1, false);
        let _load = s.hold(&list, 0);
        let hc = HealthCheck {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            unhealthy_threshold: 1,
            healthy_threshold: 1,
        };
        let before = unix_ms();
        s.probed(&list.endpoints[1], false, &hc);
        let report = reg.report();
        assert_eq!(report.len(), 1);
        let r = &report[0];
        assert_eq!(
            (r.mapping.as_str(), r.service.as_str()),
            ("m", "svc.test:80")
        );
        assert_eq!(r.endpoints[0], row("127.0.0.1:80", "healthy", 1, 0, None));
        let e = &r.endpoints[1];
        assert_eq!((e.state.as_str(), e.connect_failures), ("unhealthy", 2));
        let check = e.last_check.unwrap();
        assert!(!check.ok);
        assert!(check.at_unix_ms >= before && check.at_unix_ms <= unix_ms());
    }

    /// Two workers' sets: counts add up, the worst state and the latest check win, an address
    /// only one worker knows is kept, and other mappings stay apart.
    #[test]
    fn merging_sums_counts_and_keeps_the_worst_state_and_latest_check() {
        let a = set(
            "m",
            vec![
                row("10.0.0.1:80", "healthy", 1, 2, Some(10)),
                row("10.0.0.2:80", "ejected", 0, 5, None),
            ],
        );
        let b = set(
            "m",
            vec![
                row("10.0.0.1:80", "unhealthy", 2, 1, Some(7)),
                row("10.0.0.2:80", "healthy", 3, 0, Some(4)),
                row("10.0.0.3:80", "healthy", 1, 0, None),
            ],
        );
        let other = set("n", vec![row("10.0.0.9:80", "healthy", 0, 0, None)]);
        let merged = merge([a, other.clone(), b]);
        assert_eq!(merged.len(), 2);
        assert_eq!(
            merged[0].endpoints,
            [
                row("10.0.0.1:80", "unhealthy", 3, 3, Some(10)),
                row("10.0.0.2:80", "ejected", 3, 5, Some(4)),
                row("10.0.0.3:80", "healthy", 1, 0, None),
            ]
        );
        assert_eq!(merged[1], other);
    }
}
