//! One endpoint (its address, load, failure streak, ejection and probe state) and one
//! resolved list of them with its lazily built hash tables.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::route::balance::hash::endpoint_hash;
use crate::route::balance::health::{EJECT_AFTER, ProbeState, ejection_time};
use crate::route::balance::{HashTable, Maglev, Policy, Ring};

/// One endpoint: an address and what connections and probes learned about it.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// The address (IP from DNS, the service port).
    pub(crate) addr: SocketAddr,
    /// Open connections (and connects in progress): `least_request`'s load.
    pub(super) active: AtomicU32,
    /// Failed connects in a row.
    pub(super) failures: AtomicU32,
    /// Ejections in a row (each doubles the next).
    pub(super) ejections: AtomicU32,
    /// Ejected until this many ms after the registry's epoch (0: not ejected).
    pub(super) ejected_until: AtomicU64,
    /// Failing its active health check.
    pub(super) unhealthy: AtomicBool,
    /// The active check's state (only the health checker touches it).
    pub(super) probe: Mutex<ProbeState>,
    /// Failed connects since the endpoint appeared (the status page's column).
    pub(super) connect_failures: AtomicU64,
    /// The last active check: `at_unix_ms * 2 + passed`, 0 before the first
    /// ([`Endpoint::last_check`]).
    pub(super) last_check: AtomicU64,
}

/// An endpoint's state as `/config` and the gauges show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndpointState {
    /// Receives connections.
    Healthy,
    /// Skipped after consecutive connect failures, until the ejection ends.
    Ejected,
    /// Skipped because its active health check fails.
    Unhealthy,
}

impl EndpointState {
    /// The label / JSON spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EndpointState::Healthy => "healthy",
            EndpointState::Ejected => "ejected",
            EndpointState::Unhealthy => "unhealthy",
        }
    }
}

impl Endpoint {
    pub(super) fn new(addr: SocketAddr) -> Self {
        Endpoint {
            addr,
            active: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            unhealthy: AtomicBool::new(false),
            probe: Mutex::new(ProbeState::default()),
            connect_failures: AtomicU64::new(0),
            last_check: AtomicU64::new(0),
        }
    }

    /// Records an active check's outcome at wall-clock `at_unix_ms`.
    pub(super) fn checked(&self, ok: bool, at_unix_ms: u64) {
        let v = at_unix_ms.saturating_mul(2).saturating_add(u64::from(ok));
        self.last_check.store(v.max(2), Ordering::Relaxed);
    }

    /// The last active check: `(passed, at_unix_ms)`, `None` before the first.
    pub(crate) fn last_check(&self) -> Option<(bool, u64)> {
        match self.last_check.load(Ordering::Relaxed) {
            0 => None,
            v => Some((v % 2 == 1, v / 2)),
        }
    }

    pub(super) fn ejected(&self, now_ms: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now_ms
    }

    /// Its state at `now_ms` (unhealthy wins over ejected).
    pub(crate) fn state(&self, now_ms: u64) -> EndpointState {
        if self.unhealthy.load(Ordering::Relaxed) {
            EndpointState::Unhealthy
        } else if self.ejected(now_ms) {
            EndpointState::Ejected
        } else {
            EndpointState::Healthy
        }
    }

    pub(super) fn usable(&self, now_ms: u64) -> bool {
        self.state(now_ms) == EndpointState::Healthy
    }

    /// Open connections now.
    pub(crate) fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// A connect succeeded: the failure streak and the ejection repeat count end. Writes
    /// only what is not already zero (no shared-cache-line writes on the usual path).
    pub(super) fn connected(&self) {
        for a in [&self.failures, &self.ejections] {
            if a.load(Ordering::Relaxed) != 0 {
                a.store(0, Ordering::Relaxed);
            }
        }
        if self.ejected_until.load(Ordering::Relaxed) != 0 {
            self.ejected_until.store(0, Ordering::Relaxed);
        }
    }

    /// A connect failed at `now_ms`; true when this failure ejected the endpoint.
    pub(super) fn failed(&self, now_ms: u64) -> bool {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
        let streak = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if streak < EJECT_AFTER || self.ejected(now_ms) {
            return false;
        }
        self.failures.store(0, Ordering::Relaxed);
        let nth = self
            .ejections
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let until = now_ms.saturating_add(ejection_time(nth).as_millis() as u64);
        self.ejected_until.store(until.max(1), Ordering::Relaxed);
        true
    }
}

/// A connection's hold on an endpoint's load count, released on drop.
#[derive(Debug)]
pub(crate) struct EndpointLoad(Arc<Endpoint>);

impl EndpointLoad {
    pub(super) fn new(ep: &Arc<Endpoint>) -> Self {
        ep.active.fetch_add(1, Ordering::Relaxed);
        EndpointLoad(Arc::clone(ep))
    }
}

impl Drop for EndpointLoad {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The endpoints of one DNS answer.
#[derive(Debug)]
pub(crate) struct EndpointList {
    /// In family order (preferred family first).
    pub(crate) endpoints: Vec<Arc<Endpoint>>,
    /// When to resolve again (`None`: never — an IP literal).
    pub(super) expires: Option<Instant>,
    /// Not resolved yet (the initial empty list).
    pub(super) unresolved: bool,
    pub(super) ring: OnceLock<HashTable>,
    pub(super) maglev: OnceLock<HashTable>,
}

impl EndpointList {
    pub(super) fn empty() -> Self {
        EndpointList {
            endpoints: Vec::new(),
            expires: None,
            unresolved: true,
            ring: OnceLock::new(),
            maglev: OnceLock::new(),
        }
    }

    /// True when the list must be resolved (again) before use at `now`.
    pub(crate) fn stale(&self, now: Instant) -> bool {
        self.unresolved || self.expires.is_some_and(|e| now >= e)
    }

    /// The consistent-hash table for `policy` (built on first use, once per list).
    pub(super) fn table(&self, policy: Policy) -> Option<&HashTable> {
        let keys = || -> Vec<u64> {
            self.endpoints
                .iter()
                .map(|e| endpoint_hash(e.addr))
                .collect()
        };
        match policy {
            Policy::RingHash => Some(
                self.ring
                    .get_or_init(|| HashTable::Ring(Ring::build(&keys()))),
            ),
            Policy::Maglev => Some(
                self.maglev
                    .get_or_init(|| HashTable::Maglev(Maglev::build(&keys()))),
            ),
            _ => None,
        }
    }
}
