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
//! In a worker process the per-IP counts of a mapping with a shared index live in the
//! Supervisor's shared table (`crate::workers::shm::ClientTable`), so the limit holds over
//! every worker; only a client whose table set is full is counted in this process.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use crate::metrics::{EndpointMetrics, Metrics};
use crate::route::balance::hash::{client_hash, endpoint_hash};
use crate::route::balance::health::{EJECT_AFTER, ProbeState, ejection_time};
use crate::route::balance::{
    EndpointView, HashTable, HealthCheck, Maglev, PickKey, Policy, Ring, pick,
};
use crate::route::{Families, MappingId, ServiceHost, Upstream};
use crate::workers::shm::{ClientTable, Take};

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
}

/// The client table shared with other workers and the mappings counted in it.
#[derive(Default)]
struct SharedClients {
    table: Option<ClientTable>,
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
        })
    }

    /// Counts `max_connections_per_ip` of the mappings given an index ([`Self::share_clients`])
    /// in `table`, shared with the other workers.
    pub(crate) fn use_client_table(&self, table: ClientTable) {
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
            c.table.zip(c.index.get(&key.mapping).copied())
        };
        let s = Arc::new(UpstreamState {
            shared,
            epoch: self.epoch,
            list: RwLock::new(Arc::new(EndpointList::empty())),
            picks: AtomicU64::new(0),
            per_ip: Mutex::new(HashMap::new()),
            next_probe: Mutex::new(None),
            metrics,
            key: key.clone(),
        });
        states.insert(key, Arc::downgrade(&s));
        s
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
    for listener in table.listeners.values() {
        let groups = listener
            .plain
            .iter()
            .map(|g| &**g)
            .chain(listener.host_groups().map(|(_, h)| &h.group));
        for group in groups {
            for up in &group.upstreams {
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
        }
    }
    serde_json::Value::Array(out)
}

/// One endpoint: an address and what connections and probes learned about it.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// The address (IP from DNS, the service port).
    pub(crate) addr: SocketAddr,
    /// Open connections (and connects in progress): `least_request`'s load.
    active: AtomicU32,
    /// Failed connects in a row.
    failures: AtomicU32,
    /// Ejections in a row (each doubles the next).
    ejections: AtomicU32,
    /// Ejected until this many ms after the registry's epoch (0: not ejected).
    ejected_until: AtomicU64,
    /// Failing its active health check.
    unhealthy: AtomicBool,
    /// The active check's state (only the health checker touches it).
    probe: Mutex<ProbeState>,
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
    fn new(addr: SocketAddr) -> Self {
        Endpoint {
            addr,
            active: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            unhealthy: AtomicBool::new(false),
            probe: Mutex::new(ProbeState::default()),
        }
    }

    fn ejected(&self, now_ms: u64) -> bool {
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

    fn usable(&self, now_ms: u64) -> bool {
        self.state(now_ms) == EndpointState::Healthy
    }

    /// Open connections now.
    pub(crate) fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// A connect succeeded: the failure streak and the ejection repeat count end. Writes
    /// only what is not already zero (no shared-cache-line writes on the usual path).
    fn connected(&self) {
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
    fn failed(&self, now_ms: u64) -> bool {
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
    fn new(ep: &Arc<Endpoint>) -> Self {
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
    expires: Option<Instant>,
    /// Not resolved yet (the initial empty list).
    unresolved: bool,
    ring: OnceLock<HashTable>,
    maglev: OnceLock<HashTable>,
}

impl EndpointList {
    fn empty() -> Self {
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
    fn table(&self, policy: Policy) -> Option<&HashTable> {
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

/// One upstream's endpoints and what is counted per client address.
pub(crate) struct UpstreamState {
    epoch: Instant,
    list: RwLock<Arc<EndpointList>>,
    picks: AtomicU64,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    /// The shared client table and this mapping's index in it (a worker), else `None`.
    shared: Option<(ClientTable, u32)>,
    /// When the health checker probes next (`None`: not yet scheduled).
    next_probe: Mutex<Option<Instant>>,
    pub(crate) metrics: EndpointMetrics,
    pub(crate) key: EndpointKey,
}

impl std::fmt::Debug for UpstreamState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamState")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl UpstreamState {
    /// Milliseconds since the registry's epoch.
    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The current list.
    pub(crate) fn list(&self) -> Arc<EndpointList> {
        Arc::clone(&self.list.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The service host, port and families to resolve.
    pub(crate) fn service(&self) -> (&ServiceHost, u16, Families) {
        (&self.key.host, self.key.port, self.key.families)
    }

    /// The mapping's name (for logs).
    pub(crate) fn key_name(&self) -> &str {
        &self.key.mapping.name
    }

    /// The active health check, if any.
    pub(crate) fn health_check(&self) -> Option<HealthCheck> {
        self.key.health
    }

    /// Replaces the list with a fresh answer, keeping the state of addresses already known.
    pub(crate) fn refresh(
        &self,
        addrs: &[SocketAddr],
        expires: Option<Instant>,
    ) -> Arc<EndpointList> {
        let mut guard = self.list.write().unwrap_or_else(PoisonError::into_inner);
        let same = !guard.unresolved
            && guard.endpoints.len() == addrs.len()
            && guard.endpoints.iter().zip(addrs).all(|(e, a)| e.addr == *a);
        let endpoints = if same {
            guard.endpoints.clone()
        } else {
            addrs
                .iter()
                .map(|a| match guard.endpoints.iter().find(|e| e.addr == *a) {
                    Some(e) => Arc::clone(e),
                    None => Arc::new(Endpoint::new(*a)),
                })
                .collect()
        };
        let (ring, maglev) = if same {
            (guard.ring.clone(), guard.maglev.clone())
        } else {
            (OnceLock::new(), OnceLock::new())
        };
        let list = Arc::new(EndpointList {
            endpoints,
            expires,
            unresolved: false,
            ring,
            maglev,
        });
        *guard = Arc::clone(&list);
        drop(guard);
        if !same {
            tracing::debug!(mapping = %self.key.mapping.name, endpoints = ?addrs, "endpoint set changed");
        }
        self.update_gauges();
        list
    }

    /// Chooses an endpoint of `list` not in `tried` for a client at `client`: `policy` over
    /// usable endpoints of the preferred family, then the fallbacks (`route::balance`). The
    /// policy comes from the connection's route, so a reload that changes it applies at once.
    pub(crate) fn pick(
        &self,
        list: &EndpointList,
        policy: Policy,
        client: IpAddr,
        tried: &[usize],
    ) -> Option<usize> {
        let now_ms = self.now_ms();
        let eps = &list.endpoints;
        let preferred_v6 = self.key.families.ipv6();
        let key = PickKey {
            seq: if tried.is_empty() {
                self.picks.fetch_add(1, Ordering::Relaxed)
            } else {
                self.picks.load(Ordering::Relaxed)
            },
            random: if policy == Policy::Random {
                fastrand::u64(..)
            } else {
                0
            },
            client: if policy.hashes() {
                client_hash(client)
            } else {
                0
            },
        };
        let view = |i: usize| match eps.get(i) {
            Some(e) => EndpointView {
                usable: e.usable(now_ms),
                preferred: e.addr.is_ipv6() == preferred_v6,
                tried: tried.contains(&i),
                load: e.active(),
            },
            // Out of range cannot be asked (`pick` asks 0..len); never chosen if it were.
            None => EndpointView {
                usable: false,
                preferred: false,
                tried: true,
                load: u32::MAX,
            },
        };
        pick(policy, eps.len(), view, list.table(policy), &key)
    }

    /// Takes a load slot on endpoint `i` of `list` for the connect attempt.
    pub(crate) fn hold(&self, list: &EndpointList, i: usize) -> Option<EndpointLoad> {
        list.endpoints.get(i).map(EndpointLoad::new)
    }

    /// Records the outcome of a connect to endpoint `i` of `list`.
    pub(crate) fn record(&self, list: &EndpointList, i: usize, ok: bool) {
        let Some(ep) = list.endpoints.get(i) else {
            return;
        };
        if ok {
            ep.connected();
            return;
        }
        let now_ms = self.now_ms();
        if ep.failed(now_ms) {
            self.metrics.ejected();
            let until = ep
                .ejected_until
                .load(Ordering::Relaxed)
                .saturating_sub(now_ms);
            tracing::warn!(
                mapping = %self.key.mapping.name,
                endpoint = %ep.addr,
                ejected_for_s = until / 1000,
                "endpoint ejected after {EJECT_AFTER} consecutive connect failures"
            );
            self.update_gauges();
        }
    }

    /// Records an active probe of `ep`; true when its health flipped.
    pub(crate) fn probed(&self, ep: &Endpoint, ok: bool, hc: &HealthCheck) -> bool {
        let mut probe = ep.probe.lock().unwrap_or_else(PoisonError::into_inner);
        let before = probe.healthy;
        *probe = probe.after(ok, hc);
        ep.unhealthy.store(!probe.healthy, Ordering::Relaxed);
        before != probe.healthy
    }

    /// Sets the endpoint-state gauges from the current list.
    pub(crate) fn update_gauges(&self) {
        let now_ms = self.now_ms();
        let list = self.list();
        let (mut healthy, mut ejected, mut unhealthy) = (0, 0, 0);
        for e in &list.endpoints {
            match e.state(now_ms) {
                EndpointState::Healthy => healthy += 1,
                EndpointState::Ejected => ejected += 1,
                EndpointState::Unhealthy => unhealthy += 1,
            }
        }
        self.metrics.set_states(healthy, ejected, unhealthy);
    }

    /// The list as `/config` shows it.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let now_ms = self.now_ms();
        let list = self.list();
        let endpoints: Vec<serde_json::Value> = list
            .endpoints
            .iter()
            .map(|e| {
                let until = e.ejected_until.load(Ordering::Relaxed);
                serde_json::json!({
                    "address": e.addr.to_string(),
                    "state": e.state(now_ms).as_str(),
                    "active": e.active(),
                    "consecutive_failures": e.failures.load(Ordering::Relaxed),
                    "ejections": e.ejections.load(Ordering::Relaxed),
                    "ejected_for_ms": until.saturating_sub(now_ms),
                })
            })
            .collect();
        let expires_in_ms = list
            .expires
            .map(|e| e.saturating_duration_since(Instant::now()).as_millis() as u64);
        serde_json::json!({
            "resolved": !list.unresolved,
            "expires_in_ms": expires_in_ms,
            "endpoints": endpoints,
        })
    }

    /// When the health checker should probe next; `None` schedules it now.
    pub(crate) fn probe_due(&self, now: Instant) -> bool {
        let next = self
            .next_probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        next.is_none_or(|t| now >= t)
    }

    /// Schedules the next probe `after` from `now`; returns that instant.
    pub(crate) fn schedule_probe(&self, now: Instant, after: Duration) -> Instant {
        let at = now + after;
        *self
            .next_probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(at);
        at
    }

    /// The next scheduled probe.
    pub(crate) fn next_probe(&self) -> Option<Instant> {
        *self
            .next_probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one of `max` connection slots for client address `ip`; `None` when `max` are
    /// open. The slot is given back (and the entry removed at zero) when the guard drops.
    ///
    /// With a shared table the count is over every worker; a client whose table set is full
    /// is counted in this process instead (docs/configuration.md, `max_connections_per_ip`).
    pub(crate) fn take_client_slot(self: &Arc<Self>, ip: IpAddr, max: u32) -> Option<ClientSlot> {
        if let Some((table, index)) = self.shared {
            match table.take(index, ip, max) {
                Take::Taken(entry) => return Some(ClientSlot::Shared { table, entry }),
                Take::Refused => return None,
                Take::Full => warn_table_full(),
            }
        }
        let mut map = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientSlot::Own {
            state: Arc::clone(self),
            ip,
        })
    }

    /// Client addresses with open connections counted (bounded by the open connections).
    #[cfg(test)]
    pub(crate) fn clients_counted(&self) -> usize {
        self.per_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Warns, once per process, that a client is counted per worker because its set of the
/// shared client table is full.
fn warn_table_full() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "the shared max_connections_per_ip table has no free entry for a client; it is counted in this worker only (logged once per worker)"
        );
    }
}

/// One connection's slot under `max_connections_per_ip`, given back on drop.
#[derive(Debug)]
pub(crate) enum ClientSlot {
    /// Counted in this process.
    Own {
        /// The state whose map counts it.
        state: Arc<UpstreamState>,
        /// The client address.
        ip: IpAddr,
    },
    /// Counted in the table shared by the workers.
    Shared {
        /// The table.
        table: ClientTable,
        /// The entry of the client.
        entry: usize,
    },
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        match self {
            ClientSlot::Own { state, ip } => {
                let mut map = state.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(n) = map.get_mut(ip) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        map.remove(ip);
                    }
                }
            }
            ClientSlot::Shared { table, entry } => table.give(*entry),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn state() -> Arc<UpstreamState> {
        let reg = EndpointRegistry::new(Metrics::new());
        let key = EndpointKey {
            mapping: MappingId {
                name: "m".into(),
                namespace: "default".into(),
                port: 1,
                host: String::new(),
            },
            host: ServiceHost::Dns("svc.test".into()),
            port: 80,
            families: Families::V4,
            health: None,
        };
        // The registry holds only a Weak: the state lives as long as the test holds it.
        reg.state(key)
    }

    fn addrs(n: u8) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([127, 0, 0, i], 80)))
            .collect()
    }

    #[test]
    fn five_failures_eject_and_a_success_clears() {
        let s = state();
        let list = s.refresh(&addrs(3), None);
        for _ in 0..4 {
            s.record(&list, 0, false);
        }
        assert_eq!(list.endpoints[0].state(s.now_ms()), EndpointState::Healthy);
        s.record(&list, 0, false);
        assert_eq!(list.endpoints[0].state(s.now_ms()), EndpointState::Ejected);
        let ip = "10.0.0.1".parse().unwrap();
        for _ in 0..20 {
            assert_ne!(
                s.pick(&list, Policy::RoundRobin, ip, &[]),
                Some(0),
                "an ejected endpoint is skipped"
            );
        }
        s.record(&list, 0, true);
        assert_eq!(list.endpoints[0].state(s.now_ms()), EndpointState::Healthy);
    }

    #[test]
    fn a_refresh_keeps_the_state_of_known_addresses() {
        let s = state();
        let list = s.refresh(&addrs(2), None);
        for _ in 0..5 {
            s.record(&list, 1, false);
        }
        let mut more = addrs(3);
        more.reverse();
        let list = s.refresh(&more, None);
        let two = list
            .endpoints
            .iter()
            .find(|e| e.addr == addrs(2)[1])
            .unwrap();
        assert_eq!(two.state(s.now_ms()), EndpointState::Ejected);
    }

    #[test]
    fn per_ip_slots_are_bounded_and_entries_go_at_zero() {
        let s = state();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| s.take_client_slot(a, 3).unwrap()).collect();
        assert!(s.take_client_slot(a, 3).is_none());
        let other = s.take_client_slot(b, 3).unwrap();
        assert_eq!(s.clients_counted(), 2);
        drop(held);
        drop(other);
        assert_eq!(s.clients_counted(), 0, "no entry outlives its connections");
        for i in 0..10_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(i));
            drop(s.take_client_slot(ip, 1).unwrap());
        }
        assert_eq!(s.clients_counted(), 0);
    }

    #[test]
    fn least_request_counts_held_loads() {
        let s = state();
        let list = s.refresh(&addrs(3), None);
        let ip = "10.0.0.1".parse().unwrap();
        let _busy: Vec<_> = (0..3).map(|_| s.hold(&list, 0).unwrap()).collect();
        for _ in 0..10 {
            assert_ne!(s.pick(&list, Policy::LeastRequest, ip, &[]), Some(0));
        }
    }
}
