//! Endpoints at run time: each upstream's endpoint set (the service's addresses, refreshed
//! from the ResolverActor's answers when their TTL runs out), each endpoint's health and
//! load, and the per-client connection counts.
//!
//! ```text
//! EndpointRegistry ── (mapping, service, families, health_check) ─▶ UpstreamState (Weak)
//!   UpstreamState: list (RwLock<Arc<EndpointList>>), pick counter, per-IP counts, metrics
//!     EndpointList: [Endpoint] in family order, expiry, lazily built ring / maglev tables
//!       Endpoint: address; open connections, failure streak, ejection (atomics); probe state
//! ```
//!
//! The choice itself is `crate::route::balance` (pure); this file feeds it the atomics.
//! A state is shared by every generation that has the same mapping and service, so health,
//! loads and per-IP counts survive reloads; it is dropped with the last generation holding
//! it. The hot path takes one uncontended read lock (the list) and does atomic adds; the
//! per-IP map's mutex is taken only by mappings with `max_connections_per_ip`.
//!
//! In a worker process the per-IP counts of a mapping with a shared index live in a table
//! shared by every worker ([`ClientCounts`](super::clients::ClientCounts), implemented in
//! shared memory by the workers), so the limit holds over every worker; only a client whose
//! table set is full is counted in this process.
//!
//! Files: this one (the registry, the keys, the `/config` view), `endpoint.rs` (one endpoint
//! and one list of them), `upstream.rs` (one upstream's set: pick, record, probe, per-client
//! slots), `report.rs` (the status page's plain view of every set, merged over workers).

mod endpoint;
mod report;
#[cfg(test)]
mod tests;
mod upstream;

pub(crate) use endpoint::{EndpointLoad, EndpointState};
#[cfg(test)]
pub(crate) use report::merge as merge_reports;
pub(crate) use report::{EndpointRow, EndpointSet, LastCheck, Row, unix_ms};
pub(crate) use upstream::{ClientSlot, UpstreamState};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

use super::clients::ClientCounts;
use crate::metrics::Metrics;
use crate::route::balance::HealthCheck;
use crate::route::{Families, MappingId, ServiceHost, Upstream};

/// What identifies an endpoint set across generations.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct EndpointKey {
    mapping: MappingId,
    host: ServiceHost,
    port: u16,
    families: Families,
    health: Option<HealthCheck>,
}

impl EndpointKey {
    /// The key of `upstream` in a group resolving `families`.
    pub(crate) fn of(upstream: &Upstream, families: Families) -> Self {
        EndpointKey {
            mapping: (*upstream.mapping).clone(),
            host: upstream.host.clone(),
            port: upstream.port,
            families,
            health: upstream.endpoints.health_check,
        }
    }
}

/// Every live endpoint set of the process.
pub(crate) struct EndpointRegistry {
    epoch: Instant,
    metrics: Arc<Metrics>,
    states: Mutex<HashMap<EndpointKey, Weak<UpstreamState>>>,
    /// The shared client table (a worker) and each mapping's index in it.
    shared_clients: Mutex<SharedClients>,
    /// Notified when a set with a health check is created, so the HealthActor probes it
    /// at once instead of at the end of its current sleep (up to a second).
    checks_added: event_listener::Event,
}

/// The client table shared with other workers and the mappings counted in it.
#[derive(Default)]
struct SharedClients {
    table: Option<Arc<dyn ClientCounts>>,
    index: HashMap<MappingId, u32>,
}

impl EndpointRegistry {
    /// An empty registry counting into `metrics`.
    pub(crate) fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(EndpointRegistry {
            epoch: Instant::now(),
            metrics,
            states: Mutex::new(HashMap::new()),
            shared_clients: Mutex::new(SharedClients::default()),
            checks_added: event_listener::Event::new(),
        })
    }

    /// Counts `max_connections_per_ip` of the mappings given an index ([`Self::share_clients`])
    /// in `table`, shared with the other workers.
    pub(crate) fn use_client_table(&self, table: Arc<dyn ClientCounts>) {
        self.shared_clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .table = Some(table);
    }

    /// Counts mapping `id`'s clients in the shared table under `index`. Takes effect for
    /// states created after the call (a worker calls it before the mapping's first apply).
    pub(crate) fn share_clients(&self, id: MappingId, index: u32) {
        self.shared_clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .index
            .insert(id, index);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EndpointKey, Weak<UpstreamState>>> {
        self.states.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state of `key`, created when no generation holds one. Called when a config is
    /// applied (takes a lock), never per connection.
    pub(crate) fn state(&self, key: EndpointKey) -> Arc<UpstreamState> {
        let mut states = self.lock();
        if let Some(s) = states.get(&key).and_then(Weak::upgrade) {
            return s;
        }
        let metrics = self.metrics.endpoints(&key.mapping);
        let shared = {
            let c = self
                .shared_clients
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            c.table.clone().zip(c.index.get(&key.mapping).copied())
        };
        let checked = key.health.is_some();
        let s = Arc::new(UpstreamState::new(key.clone(), self.epoch, metrics, shared));
        states.insert(key, Arc::downgrade(&s));
        drop(states);
        if checked {
            self.checks_added.notify(usize::MAX);
        }
        s
    }

    /// A listener notified when a set with a health check is created after this call.
    pub(crate) fn checks_added(&self) -> event_listener::EventListener {
        self.checks_added.listen()
    }

    /// Forgets the states no generation holds any more (called once per applied config).
    pub(crate) fn prune(&self) {
        self.lock().retain(|_, w| w.strong_count() > 0);
    }

    /// The state of `key`, if a generation holds one.
    pub(crate) fn get(&self, key: &EndpointKey) -> Option<Arc<UpstreamState>> {
        self.lock().get(key).and_then(Weak::upgrade)
    }

    /// Every live state (for the health checks and the state gauges).
    pub(crate) fn live(&self) -> Vec<Arc<UpstreamState>> {
        self.lock().values().filter_map(Weak::upgrade).collect()
    }
}

/// Every upstream of `table` with its endpoints and their state (the `/config` view).
pub(crate) fn table_json(
    table: &crate::route::RouteTable,
    registry: &EndpointRegistry,
) -> serde_json::Value {
    let mut out = Vec::new();
    for (listener, group, up) in table.upstreams() {
        let key = EndpointKey::of(up, group.families);
        let mut v = registry
            .get(&key)
            .map(|s| s.to_json())
            .unwrap_or_else(|| serde_json::json!({"resolved": false, "endpoints": []}));
        if let Some(obj) = v.as_object_mut() {
            obj.insert("mapping".into(), up.mapping.name.clone().into());
            obj.insert("namespace".into(), up.mapping.namespace.clone().into());
            obj.insert("listener".into(), listener.addr.to_string().into());
            obj.insert("host".into(), up.mapping.host.clone().into());
            obj.insert("service".into(), up.service().into());
            obj.insert(
                "policy".into(),
                up.endpoints.load_balancer.policy.as_str().into(),
            );
        }
        out.push(v);
    }
    serde_json::Value::Array(out)
}
