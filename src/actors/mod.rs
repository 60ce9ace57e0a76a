//! The five actors and what they share.
//!
//! ```text
//!   start / SIGHUP / file watch / ProxyHandle::reload()      ProxyHandle::shutdown
//!                 │ Reload / ApplyYaml                             │ Shutdown
//!                 ▼                                                ▼
//!          ┌─────────────┐  Apply / Rejected ─▶ reply    ┌──────────────┐ publishes Snapshot
//!          │ ConfigActor │ ─────────────────────────────▶ │  Supervisor  │ ──▶ admin, handle
//!          └─────────────┘                                └──────┬───────┘
//!                                 Retarget(Generation) / Stop    │ spawn (bound socket)
//!                                                                ▼
//!                                                       ┌────────────────┐
//!                                                       │ ListenerActor  │ one per (address, port)
//!                                                       └──────┬─────────┘
//!                                                              │ spawn per accepted socket
//!                                                              │ (with its Admission)
//!                                                              ▼
//!                           Resolve{host, families} ┌──────────────────┐
//!        ┌───────────────┐ ◀─────────────────────── │ ConnectionActor  │ route → admit →
//!        │ ResolverActor │ ───────────────────────▶ │                  │ connect → relay
//!        └───────────────┘        reply (addrs)     └──────────────────┘
//! ```
//!
//! Beside the ResolverActor runs the HealthActor (`health.rs`): no mailbox, one timer; it
//! probes the endpoint sets (`crate::state::endpoints`) that have a `health_check` and refreshes the
//! endpoint-state gauges.
//!
//! Bounded sends only go down this chain; replies come back on one-shot channels, so there
//! is no cycle of bounded sends. Every listener and connection holds a [`DrainToken`]
//! (crate::rt) and the Supervisor's drain waits until all are dropped.

pub(crate) mod config;
pub(crate) mod connection;
pub(crate) mod health;
pub(crate) mod listener;
pub(crate) mod resolver;
pub(crate) mod supervisor;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::metrics::{MappingMetrics, Metrics};
use crate::route::{GroupId, MappingId, RouteTable, UpstreamId};
use crate::rt::Tripwire;
use crate::state::ratelog::RateLimitedLog;
pub(crate) use crate::state::{Count, Limits};
use crate::state::{admission, endpoints};

/// A connection's admission, counted against [`Shared`].
pub(crate) type Admission = admission::Admission<Shared>;

/// Process-wide state every connection reads; built once at start.
pub(crate) struct Shared {
    pub(crate) resolver: resolver::ResolverHandle,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limits: Limits,
    /// Connections currently open (for `--max-connections`): this process's, or in a worker
    /// the count over all workers.
    pub(crate) active: Count,
    /// Trips when the drain timeout passes: remaining connections end with `shutdown`.
    pub(crate) kill: Tripwire,
    /// Rate limit for the log line about connections a circuit breaker refused.
    pub(crate) breaker_log: RateLimitedLog,
    /// Rate limit for the log line about connections closed for a bad PROXY protocol header.
    pub(crate) proxy_log: RateLimitedLog,
    /// Every upstream's endpoint set (health, loads, per-client counts), across generations.
    pub(crate) endpoints: Arc<endpoints::EndpointRegistry>,
    /// Orders to close the connections at set times (`--drain-strategy spread`), whatever
    /// their generation: [`connection::close::CloseOrders::give`].
    pub(crate) close: connection::close::CloseOrders,
    /// The connection rate limits' buckets: a worker's shared table, else made on first use.
    pub(crate) rates: std::sync::OnceLock<crate::state::ratelimit::RateTable>,
    /// Rate limit for the warning about rate-limited connections.
    pub(crate) rate_log: RateLimitedLog,
}

impl admission::Gate for Shared {
    fn active(&self) -> &Count {
        &self.active
    }
    fn limits(&self) -> &Limits {
        &self.limits
    }
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

impl Shared {
    /// The one way to build it (the library, a worker process and unit tests): `active`
    /// counts this process's connections, or in a worker every worker's; `kill` trips when
    /// the drain timeout passes.
    pub(crate) fn new(
        resolver: resolver::ResolverHandle,
        metrics: Arc<Metrics>,
        endpoints: Arc<endpoints::EndpointRegistry>,
        limits: Limits,
        active: Count,
        kill: Tripwire,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            resolver,
            metrics,
            limits,
            active,
            kill,
            breaker_log: RateLimitedLog::new(std::time::Duration::from_secs(1)),
            proxy_log: RateLimitedLog::new(std::time::Duration::from_secs(1)),
            endpoints,
            close: Default::default(),
            rates: std::sync::OnceLock::new(),
            rate_log: RateLimitedLog::new(std::time::Duration::from_secs(1)),
        })
    }

    /// A `Shared` for unit tests: a fresh resolver and registry, `max` connections overall,
    /// a 1 s handshake deadline, zero-copy on, and a kill wire that never trips.
    #[cfg(test)]
    pub(crate) fn for_tests(max: Option<usize>) -> Arc<Shared> {
        let (kill, tripwire) = crate::rt::tripwire();
        // The trigger is leaked so the wire stays untripped for the test's life.
        std::mem::forget(kill);
        let metrics = Metrics::new();
        Shared::new(
            resolver::ResolverHandle::spawn(Default::default()),
            metrics.clone(),
            endpoints::EndpointRegistry::new(metrics),
            Limits {
                max_connections: max,
                handshake_timeout: std::time::Duration::from_secs(1),
                zero_copy: true,
                drain_spread: false,
                dont_log_null: false,
            },
            Default::default(),
            tripwire,
        )
    }
}

/// One applied config generation as the data plane sees it: the route table plus the
/// per-mapping metric handles, looked up once here instead of once per connection.
pub(crate) struct Generation {
    pub(crate) table: Arc<RouteTable>,
    pub(crate) metrics: HashMap<Arc<MappingId>, Arc<MappingMetrics>>,
    /// Each upstream's endpoint set, keyed by the upstream's id in `table` —
    /// [`Generation::endpoints_of`].
    endpoints: HashMap<UpstreamId, Arc<endpoints::UpstreamState>>,
    /// Each host group's `tcpmap_tls_routed_connections_total` series, keyed by the id of
    /// its group — [`Generation::tls_routed`].
    routed: HashMap<GroupId, prometheus_client::metrics::counter::Counter>,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("generation", &self.table.generation())
            .finish_non_exhaustive()
    }
}

impl Generation {
    /// Binds a table's mappings to their metric handles and endpoint sets.
    pub(crate) fn new(
        table: Arc<RouteTable>,
        metrics: &Metrics,
        registry: &endpoints::EndpointRegistry,
    ) -> Self {
        let mut map = HashMap::new();
        let mut sets = HashMap::new();
        let mut routed = HashMap::new();
        registry.prune();
        for listener in table.listeners().values() {
            for (_, host) in listener.host_groups() {
                let tls = host.client_tls().as_str();
                let pattern = host.group.host.as_deref().unwrap_or_default();
                let series = metrics.tls_routed_series(tls, pattern);
                routed.insert(host.group.id(), series);
            }
            for group in listener.groups() {
                for (id, up) in group.upstream_ids() {
                    map.entry(up.mapping.clone())
                        .or_insert_with(|| metrics.mapping(&up.mapping));
                    let key = endpoints::EndpointKey::of(up, group.families);
                    sets.insert(id, registry.state(key));
                }
            }
        }
        Generation {
            table,
            metrics: map,
            endpoints: sets,
            routed,
        }
    }

    /// Counts a TLS connection routed by its ClientHello to `host` (a host group of this
    /// generation's table): one atomic add on a series resolved when the generation was made.
    pub(crate) fn tls_routed(&self, host: &crate::route::HostGroup) {
        if let Some(series) = self.routed.get(&host.group.id()) {
            series.inc();
        }
    }

    /// The endpoint set of upstream `id` (an upstream of this generation's table).
    pub(crate) fn endpoints_of(&self, id: UpstreamId) -> Option<&Arc<endpoints::UpstreamState>> {
        self.endpoints.get(&id)
    }
}

/// The last reload's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ReloadResult {
    pub(crate) ok: bool,
    pub(crate) generation: u64,
    pub(crate) at_unix_ms: u64,
    pub(crate) errors: Vec<String>,
    pub(crate) warnings: Vec<String>,
}

impl ReloadResult {
    /// An outcome stamped with the current wall-clock time.
    pub(crate) fn now(
        ok: bool,
        generation: u64,
        errors: Vec<String>,
        warnings: Vec<String>,
    ) -> Self {
        let at_unix_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        ReloadResult {
            ok,
            generation,
            at_unix_ms,
            errors,
            warnings,
        }
    }
}

/// The proxy's state as readers (the admin endpoint, [`crate::ProxyHandle`]) see it: one
/// immutable value, replaced whole by the Supervisor, its only writer
/// ([`supervisor::Status`]).
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// The active route table (its `generation` is the one below).
    pub(crate) table: Arc<RouteTable>,
    /// True once every listener of the active table is bound; false while shutting down.
    pub(crate) ready: bool,
    /// The last reload's outcome (the first load counts).
    pub(crate) last_reload: Option<ReloadResult>,
}

impl Snapshot {
    /// The active config generation (0 before the first config is applied).
    pub(crate) fn generation(&self) -> u64 {
        self.table.generation()
    }
}
