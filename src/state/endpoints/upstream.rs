//! One upstream's endpoint set: the list (refreshed from DNS answers), the pick, what
//! connects and probes learned, and the per-client slots under `max_connections_per_ip`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::super::clients::{ClientCounts, Take};
use super::EndpointKey;
use super::endpoint::{Endpoint, EndpointList, EndpointLoad, EndpointState};
use crate::metrics::EndpointMetrics;
use crate::route::balance::hash::client_hash;
use crate::route::balance::health::EJECT_AFTER;
use crate::route::balance::{EndpointView, HealthCheck, PickKey, Policy, pick};
use crate::route::{Families, ServiceHost};

/// One upstream's endpoints and what is counted per client address.
pub(crate) struct UpstreamState {
    epoch: Instant,
    list: RwLock<Arc<EndpointList>>,
    picks: AtomicU64,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    /// The shared client table and this mapping's index in it (a worker), else `None`.
    shared: Option<(Arc<dyn ClientCounts>, u32)>,
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
    /// An empty set for `key` (the registry's, once per key).
    pub(super) fn new(
        key: EndpointKey,
        epoch: Instant,
        metrics: EndpointMetrics,
        shared: Option<(Arc<dyn ClientCounts>, u32)>,
    ) -> Self {
        UpstreamState {
            shared,
            epoch,
            list: RwLock::new(Arc::new(EndpointList::empty())),
            picks: AtomicU64::new(0),
            per_ip: Mutex::new(HashMap::new()),
            next_probe: Mutex::new(None),
            metrics,
            key,
        }
    }

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
        ep.checked(ok, super::report::unix_ms());
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
    /// is counted in this process instead (docs/config.md, `max_connections_per_ip`).
    pub(crate) fn take_client_slot(self: &Arc<Self>, ip: IpAddr, max: u32) -> Option<ClientSlot> {
        if let Some((table, index)) = &self.shared {
            match table.take(*index, ip, max) {
                Take::Taken(entry) => {
                    let table = Arc::clone(table);
                    return Some(ClientSlot::Shared { table, entry });
                }
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
        table: Arc<dyn ClientCounts>,
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
