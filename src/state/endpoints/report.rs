//! The endpoints as the status page shows them: every live endpoint set of a process as plain
//! values ([`EndpointSet`]), which a worker sends to its Supervisor in its `Status` reply, and
//! the merge of several processes' sets into one total ([`merge`]).
//!
//! A set is named by its mapping and service (`host:port`), not by its listener: the mapping's
//! id carries the port, and a mapping routes to one service per group.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::EndpointRegistry;
use super::endpoint::EndpointState;
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
    /// True when the set belongs to `id` and routes to `service`.
    pub(crate) fn is(&self, id: &MappingId, service: &str) -> bool {
        self.mapping == id.name
            && self.namespace == id.namespace
            && self.port == id.port
            && self.host == id.host
            && self.service == service
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
            let now_ms = s.now_ms();
            let list = s.list();
            let (host, port, _) = s.service();
            EndpointSet {
                mapping: s.key.mapping.name.clone(),
                namespace: s.key.mapping.namespace.clone(),
                port: s.key.mapping.port,
                host: s.key.mapping.host.clone(),
                service: format!("{host}:{port}"),
                endpoints: list
                    .endpoints
                    .iter()
                    .map(|e| EndpointRow {
                        address: e.addr.to_string(),
                        state: e.state(now_ms).as_str().to_string(),
                        active: u64::from(e.active()),
                        connect_failures: e.connect_failures.load(Ordering::Relaxed),
                        last_check: e
                            .last_check()
                            .map(|(ok, at_unix_ms)| LastCheck { ok, at_unix_ms }),
                    })
                    .collect(),
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
    type Key = (String, String, u16, String, String);
    let mut out: BTreeMap<Key, EndpointSet> = BTreeMap::new();
    for set in sets {
        let key = (
            set.namespace.clone(),
            set.mapping.clone(),
            set.port,
            set.host.clone(),
            set.service.clone(),
        );
        let Some(into) = out.get_mut(&key) else {
            out.insert(key, set);
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
    out.into_values().collect()
}
