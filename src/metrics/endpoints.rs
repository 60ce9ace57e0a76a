//! Per-mapping endpoint series (ext, SPEC section 10): endpoints by state, ejections,
//! connect attempts and retries, refusals by the per-client limit.
//!
//! ```text
//! tcpmap_upstream_endpoints{mapping,namespace,port,host,state}     gauge  healthy|ejected|unhealthy
//! tcpmap_upstream_ejections_total{mapping,namespace,port,host}      counter (passive health)
//! tcpmap_upstream_connect_attempts_total{mapping,namespace,port,host}
//! tcpmap_upstream_connect_retries_total{mapping,namespace,port,host}  attempts after the first
//! tcpmap_connections_refused_per_ip_total{mapping,namespace,port,host}
//! ```
//!
//! Handles are cloned out of the families once per endpoint set; connections only add.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use super::mapping::MappingLabels;
use crate::route::MappingId;

/// The counters of one mapping's endpoint series: ejections, attempts, retries, refused per IP.
pub(super) const COUNTERS: usize = 4;

/// Mapping labels plus the endpoint `state`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    mapping: String,
    namespace: String,
    port: u16,
    host: String,
    state: &'static str,
}

/// The registered families.
#[derive(Default)]
pub(super) struct EndpointFamilies {
    endpoints: Family<StateLabels, Gauge>,
    ejections: Family<MappingLabels, Counter>,
    attempts: Family<MappingLabels, Counter>,
    retries: Family<MappingLabels, Counter>,
    per_ip: Family<MappingLabels, Counter>,
    /// The handles made, by mapping (what a worker's retained counts read).
    made: Mutex<BTreeMap<MappingId, EndpointMetrics>>,
}

impl EndpointFamilies {
    /// Registers the families in `r`.
    pub(super) fn register(r: &mut Registry) -> Self {
        let f = EndpointFamilies::default();
        r.register(
            "upstream_endpoints",
            "Endpoints of a mapping's service, by state (healthy|ejected|unhealthy)",
            f.endpoints.clone(),
        );
        r.register(
            "upstream_ejections",
            "Endpoints ejected after consecutive connect failures, per mapping",
            f.ejections.clone(),
        );
        r.register(
            "upstream_connect_attempts",
            "Upstream connect attempts, per mapping (first tries and retries)",
            f.attempts.clone(),
        );
        r.register(
            "upstream_connect_retries",
            "Upstream connect attempts after a failed one (failover), per mapping",
            f.retries.clone(),
        );
        r.register(
            "connections_refused_per_ip",
            "Connections refused by max_connections_per_ip, per mapping",
            f.per_ip.clone(),
        );
        f
    }

    /// The handles of mapping `id`.
    pub(super) fn handles(&self, id: &MappingId) -> EndpointMetrics {
        let l = MappingLabels::of(id);
        let state = |state| {
            let s = StateLabels {
                mapping: l.mapping.clone(),
                namespace: l.namespace.clone(),
                port: l.port,
                host: l.host.clone(),
                state,
            };
            self.endpoints.get_or_create(&s).clone()
        };
        let handles = EndpointMetrics {
            healthy: state("healthy"),
            ejected: state("ejected"),
            unhealthy: state("unhealthy"),
            ejections: self.ejections.get_or_create(&l).clone(),
            attempts: self.attempts.get_or_create(&l).clone(),
            retries: self.retries.get_or_create(&l).clone(),
            per_ip: self.per_ip.get_or_create(&l).clone(),
        };
        self.made
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.clone())
            .or_insert_with(|| handles.clone());
        handles
    }

    /// Calls `f` with the handles made, by mapping (under their lock).
    pub(super) fn with_made<T>(
        &self,
        f: impl FnOnce(&BTreeMap<MappingId, EndpointMetrics>) -> T,
    ) -> T {
        f(&self.made.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The endpoint series of one mapping.
#[derive(Debug, Clone)]
pub(crate) struct EndpointMetrics {
    healthy: Gauge,
    ejected: Gauge,
    unhealthy: Gauge,
    ejections: Counter,
    attempts: Counter,
    retries: Counter,
    per_ip: Counter,
}

impl EndpointMetrics {
    /// Sets the endpoint counts by state.
    pub(crate) fn set_states(&self, healthy: usize, ejected: usize, unhealthy: usize) {
        let g = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.healthy.set(g(healthy));
        self.ejected.set(g(ejected));
        self.unhealthy.set(g(unhealthy));
    }

    /// Counts an ejection.
    pub(crate) fn ejected(&self) {
        self.ejections.inc();
    }

    /// Counts a connect attempt; `retry` when it follows a failed one.
    pub(crate) fn attempt(&self, retry: bool) {
        self.attempts.inc();
        if retry {
            self.retries.inc();
        }
    }

    /// The counters: ejections, attempts, retries, refused per IP.
    pub(super) fn counters(&self) -> [u64; COUNTERS] {
        [&self.ejections, &self.attempts, &self.retries, &self.per_ip].map(Counter::get)
    }

    /// Adds `counters` (as [`Self::counters`] gives them).
    pub(super) fn add_counters(&self, counters: &[u64; COUNTERS]) {
        for (c, n) in [&self.ejections, &self.attempts, &self.retries, &self.per_ip]
            .into_iter()
            .zip(counters)
        {
            c.inc_by(*n);
        }
    }

    /// Counts a connection refused by `max_connections_per_ip`.
    pub(crate) fn refused_per_ip(&self) {
        self.per_ip.inc();
    }
}
