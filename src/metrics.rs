//! The metrics registry: counters, gauges and histograms, rendered as Prometheus text.
//!
//! Public: the read-only numbers an embedding application gets from
//! [`ProxyHandle::metrics`](crate::ProxyHandle::metrics) ([`MetricsSnapshot`],
//! [`MappingSnapshot`]); the text is `ProxyHandle::metrics_text`. Everything that counts is
//! crate-private.
//!
//! One `Metrics` per process, shared as `Arc<Metrics>`. Per-mapping series live in
//! `MappingMetrics`, looked up once per config generation with `Metrics::mapping`
//! (a lock there is fine) and then updated by connections with atomics only.
//! Global, rarely-hit events (reloads, handshake failures, DNS, limits) go through
//! the methods on `Metrics`. The families and their registration: `families.rs`; the
//! connect latency histogram: `latency.rs`; a worker's counters by place for the pool's
//! snapshot: `kept.rs`.
//!
//! Every name has the `tcpmap_` prefix; per-mapping series carry the labels
//! `mapping`, `namespace`, `port`, `host` (`host=""` when the mapping has no SNI host).
//!
//! Pure: values in, text out. No sockets, no tasks, no clock (latencies are passed in).

mod endpoints;
mod families;
pub(crate) mod fleet;
pub(crate) mod kept;
mod latency;
mod mapping;
#[cfg(test)]
mod tests;
mod text;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub(crate) use endpoints::EndpointMetrics;
pub(crate) use kept::{Kept, KeptMapping};
pub(crate) use mapping::MappingMetrics;

/// Prometheus text 0.0.4 of an OpenMetrics text (what [`Metrics::render`] does to its own).
pub(crate) fn openmetrics_to_prometheus(om: &str) -> String {
    text::openmetrics_to_prometheus(om)
}
use families::{
    ActorLabel, Globals, MappingFamilies, ReasonLabel, TlsLabels, TlsRoutedLabels, VersionLabel,
    WhatLabel,
};
use mapping::{Breaker, BytesLabels, EndedLabels, MappingLabels, REASONS, SideLabels};

use crate::close::CloseReason;
use crate::route::MappingId;

/// A mapping's shared circuit-breaker count: the total and this worker's share.
type SharedBreaker = (
    &'static std::sync::atomic::AtomicU32,
    &'static std::sync::atomic::AtomicU32,
);

/// The process-wide metrics registry.
pub(crate) struct Metrics {
    /// The families in the order of the exposition, one registry per part: per mapping,
    /// process-wide, endpoints, fleet (a worker's retained counts render the first and third
    /// from numbers, and take the others as text: `kept.rs`).
    registries: [Registry; 4],
    families: MappingFamilies,
    globals: Globals,
    mappings: Mutex<BTreeMap<MappingId, Arc<MappingMetrics>>>,
    /// Circuit-breaker counts shared with other processes, by mapping ([`Metrics::share_breaker`]).
    shared_breakers: Mutex<BTreeMap<MappingId, SharedBreaker>>,
    endpoints: endpoints::EndpointFamilies,
    /// `tcpmap_draining_connections`, `tcpmap_connections_rate_limited_total` (`fleet.rs`).
    pub(crate) fleet: fleet::FleetMetrics,
}

/// The `reason` labels of `tcpmap_proxy_protocol_rejected_total`, registered at zero.
pub(crate) const PROXY_REJECT_REASONS: [&str; 5] =
    ["missing", "malformed", "too_long", "timeout", "closed"];

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Plain numbers of one mapping, for the library API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingSnapshot {
    /// Which mapping.
    pub id: MappingId,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Connections open now.
    pub active: i64,
    /// Connections ended, by reason (every reason present, zero included).
    pub ended: BTreeMap<CloseReason, u64>,
    /// Bytes relayed client → upstream.
    pub bytes_client_to_upstream: u64,
    /// Bytes relayed upstream → client.
    pub bytes_upstream_to_client: u64,
    /// Failed upstream connect attempts.
    pub connect_failures: u64,
}

/// One mapping's numbers as [`Metrics::each_mapping`] gives them (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MappingCounts {
    /// Connections accepted since start.
    pub(crate) accepted: u64,
    /// Connections open now.
    pub(crate) active: i64,
    /// Connections ended, by reason (every reason, in `CloseReason::ALL`'s order).
    pub(crate) ended: [(CloseReason, u64); CloseReason::ALL.len()],
    /// Bytes relayed client → upstream.
    pub(crate) bytes_client_to_upstream: u64,
    /// Bytes relayed upstream → client.
    pub(crate) bytes_upstream_to_client: u64,
    /// Failed upstream connect attempts.
    pub(crate) connect_failures: u64,
}

/// Plain numbers of the whole process, for the library API.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsSnapshot {
    /// Per mapping, sorted by `MappingId`.
    pub mappings: Vec<MappingSnapshot>,
    /// Reloads applied.
    pub reloads_ok: u64,
    /// Reloads rejected.
    pub reloads_error: u64,
    /// The active config generation.
    pub generation: u64,
    /// Listeners bound now.
    pub listeners: i64,
    /// DNS lookups done.
    pub dns_lookups: u64,
    /// DNS lookups that failed.
    pub dns_failures: u64,
    /// Connections refused by the global limit (`--max-connections`).
    pub rejected_global: u64,
    /// Connections refused by a mapping's circuit breaker.
    pub rejected_mapping: u64,
}

/// Which limit refused a connection (`tcpmap_connections_rejected_total{scope}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Refusal {
    /// `--max-connections`, checked at accept.
    Global,
    /// A mapping's `circuit_breakers.max_connections`.
    Mapping,
}

impl Refusal {
    /// The `scope` label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::Global => "global",
            Refusal::Mapping => "mapping",
        }
    }
}

/// The side of a connection (a TLS handshake's, an I/O error's): defined with the close
/// reasons, named here too for the handshake-failure counters.
pub(crate) use crate::close::Side;

/// Why a TLS handshake failed (`tcpmap_tls_handshake_failures_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum HandshakeFailure {
    /// The ClientHello was malformed (answered with `decode_error`, `record_overflow` or
    /// `unexpected_message`).
    MalformedHello,
    /// The ClientHello's host name is not a valid DNS name (answered with `illegal_parameter`).
    BadSni,
    /// The SNI matched no route (answered with `unrecognized_name`).
    UnknownSni,
    /// The ClientHello had no SNI and the listener no catch-all (answered with
    /// `unrecognized_name`).
    NoSni,
    /// The ClientHello did not arrive in time, or the client closed before sending it.
    TimeoutOrEof,
    /// The handshake itself failed (a TLS error from either peer).
    Error,
    /// The handshake did not finish within the handshake deadline.
    Timeout,
    /// No valid server name to send upstream (neither the context's `sni` nor the service).
    BadServerName,
}

impl HandshakeFailure {
    /// The `reason` label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::MalformedHello => "malformed_hello",
            HandshakeFailure::BadSni => "bad_sni",
            HandshakeFailure::UnknownSni => "unknown_sni",
            HandshakeFailure::NoSni => "no_sni",
            HandshakeFailure::TimeoutOrEof => "timeout_or_eof",
            HandshakeFailure::Error => "error",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::BadServerName => "bad_server_name",
        }
    }
}

/// A share of `tcpmap_client_hello_bytes_buffered`: what one connection's ClientHello read
/// holds now. Given back when dropped, so a cancelled read leaves nothing counted.
#[derive(Debug)]
pub(crate) struct HelloBuffer {
    gauge: Gauge,
    held: i64,
}

impl HelloBuffer {
    /// This connection now holds `bytes`.
    pub(crate) fn set(&mut self, bytes: usize) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.gauge.inc_by(bytes - self.held);
        self.held = bytes;
    }
}

impl Drop for HelloBuffer {
    fn drop(&mut self) {
        self.gauge.dec_by(self.held);
    }
}

impl Metrics {
    /// Creates the registry with every family registered (globals start at zero), in the
    /// order of the exposition: per mapping, process-wide, endpoints.
    pub(crate) fn new() -> Arc<Metrics> {
        let mut registries = [(); 4].map(|()| Registry::with_prefix("tcpmap"));
        let [r_mappings, r_globals, r_endpoints, r_fleet] = &mut registries;
        let families = MappingFamilies::register(r_mappings);
        let globals = Globals::register(r_globals);
        let endpoints = endpoints::EndpointFamilies::register(r_endpoints);
        let fleet = fleet::FleetMetrics::register(r_fleet);
        Arc::new(Metrics {
            registries,
            families,
            globals,
            mappings: Mutex::new(BTreeMap::new()),
            shared_breakers: Mutex::new(BTreeMap::new()),
            endpoints,
            fleet,
        })
    }

    /// The handles of mapping `id`, created on first use. The same `id` always returns
    /// the same `Arc` (values and circuit-breaker slots survive reloads).
    ///
    /// Takes a lock: call it when a config is applied, not per connection.
    pub(crate) fn mapping(&self, id: &MappingId) -> Arc<MappingMetrics> {
        let mut map = self.mappings.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = map.get(id) {
            return Arc::clone(m);
        }
        let labels = MappingLabels::of(id);
        let f = &self.families;
        let ended: [Counter; REASONS] = CloseReason::ALL.map(|reason| {
            f.ended
                .get_or_create(&EndedLabels::new(&labels, reason))
                .clone()
        });
        let io_errors = [Side::Client, Side::Upstream].map(|side| {
            f.io_errors
                .get_or_create(&SideLabels::new(&labels, side))
                .clone()
        });
        let bytes = |direction| {
            f.bytes
                .get_or_create(&BytesLabels::new(&labels, direction))
                .clone()
        };
        let m = Arc::new(MappingMetrics {
            id: id.clone(),
            accepted: f.accepted.get_or_create(&labels).clone(),
            active: f.active.get_or_create(&labels).clone(),
            ended,
            io_errors,
            bytes_c2u: bytes("client_to_upstream"),
            bytes_u2c: bytes("upstream_to_client"),
            connect_failures: f.connect_failures.get_or_create(&labels).clone(),
            connect_latency: f.connect_latency.get_or_create(&labels).clone(),
            in_flight: self.breaker(id),
        });
        map.insert(id.clone(), Arc::clone(&m));
        m
    }

    /// Counts mapping `id`'s circuit-breaker slots in `total` (memory shared by every worker,
    /// this worker's share in `mine`) instead of in this process. Takes effect for handles
    /// created after the call, so a worker calls it before it first looks the mapping up.
    pub(crate) fn share_breaker(
        &self,
        id: MappingId,
        total: &'static std::sync::atomic::AtomicU32,
        mine: &'static std::sync::atomic::AtomicU32,
    ) {
        self.shared_breakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, (total, mine));
    }

    fn breaker(&self, id: &MappingId) -> Breaker {
        let shared = self
            .shared_breakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match shared.get(id) {
            Some((total, mine)) => Breaker::Shared { total, mine },
            None => Breaker::Own(std::sync::atomic::AtomicU32::new(0)),
        }
    }

    /// The endpoint series of mapping `id` (the same series for the same `id`).
    ///
    /// Takes the families' lock: call it when an endpoint set is created, not per connection.
    pub(crate) fn endpoints(&self, id: &MappingId) -> EndpointMetrics {
        self.endpoints.handles(id)
    }

    /// Prometheus text exposition format 0.0.4 (serve as `text/plain; version=0.0.4`).
    pub(crate) fn render(&self) -> String {
        text::openmetrics_to_prometheus(&self.render_openmetrics())
    }

    /// OpenMetrics 1.0 text (serve as `application/openmetrics-text; version=1.0.0`).
    pub(crate) fn render_openmetrics(&self) -> String {
        let mut out = self.render_parts(&[0, 1, 2, 3]);
        out.push_str("# EOF\n");
        out
    }

    /// The families of registries `parts` (places in `registries`), without `# EOF`.
    fn render_parts(&self, parts: &[usize]) -> String {
        let mut out = String::new();
        for r in parts.iter().filter_map(|p| self.registries.get(*p)) {
            // Writing into a String cannot fail.
            let _ = prometheus_client::encoding::text::encode_registry(&mut out, r);
        }
        out
    }

    /// Plain numbers for the library API.
    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let map = self.mappings.lock().unwrap_or_else(PoisonError::into_inner);
        let mappings = map
            .values()
            .map(|m| MappingSnapshot {
                id: m.id.clone(),
                accepted: m.accepted.get(),
                active: m.active.get(),
                ended: CloseReason::ALL
                    .iter()
                    .map(|r| (*r, m.ended_count(*r)))
                    .collect(),
                bytes_client_to_upstream: m.bytes_c2u.get(),
                bytes_upstream_to_client: m.bytes_u2c.get(),
                connect_failures: m.connect_failures.get(),
            })
            .collect();
        MetricsSnapshot {
            mappings,
            reloads_ok: self.globals.reload_ok.get(),
            reloads_error: self.globals.reload_error.get(),
            generation: self.globals.generation.get(),
            listeners: self.globals.listeners.get(),
            dns_lookups: self.globals.dns_lookups.get(),
            dns_failures: self.globals.dns_failures.get(),
            rejected_global: self.globals.rejected_global.get(),
            rejected_mapping: self.globals.rejected_mapping.get(),
        }
    }

    /// Calls `f` with each mapping's id and plain numbers, sorted by `MappingId`, under the
    /// registry's lock and without copying anything (the status page reads its counters here,
    /// not from [`Metrics::snapshot`]). `f` must not call back into this registry.
    pub(crate) fn each_mapping(&self, mut f: impl FnMut(&MappingId, MappingCounts)) {
        let map = self.mappings.lock().unwrap_or_else(PoisonError::into_inner);
        for m in map.values() {
            f(
                &m.id,
                MappingCounts {
                    accepted: m.accepted.get(),
                    active: m.active.get(),
                    ended: CloseReason::ALL.map(|r| (r, m.ended_count(r))),
                    bytes_client_to_upstream: m.bytes_c2u.get(),
                    bytes_upstream_to_client: m.bytes_u2c.get(),
                    connect_failures: m.connect_failures.get(),
                },
            );
        }
    }

    /// Counts a config reload: `tcpmap_config_reloads_total{result="ok"|"error"}`.
    pub(crate) fn reload(&self, ok: bool) {
        if ok {
            self.globals.reload_ok.inc();
        } else {
            self.globals.reload_error.inc();
        }
    }

    /// Sets `tcpmap_config_generation`.
    pub(crate) fn set_generation(&self, g: u64) {
        self.globals.generation.set(g);
    }

    /// Counts a TLS handshake failure on `side` for `reason`.
    pub(crate) fn tls_handshake_failure(&self, side: Side, reason: HandshakeFailure) {
        self.globals
            .tls_failures
            .get_or_create(&TlsLabels {
                side: side.as_str(),
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Counts a DNS lookup (and a failure when `!ok`).
    pub(crate) fn dns_lookup(&self, ok: bool) {
        self.globals.dns_lookups.inc();
        if !ok {
            self.globals.dns_failures.inc();
        }
    }

    /// Records an upstream connect attempt of mapping `m`: a failure count, or the
    /// latency of a successful connect.
    pub(crate) fn upstream_connect(&self, m: &MappingMetrics, ok: bool, latency: Duration) {
        m.record_connect(ok, latency);
    }

    /// Counts a connection refused by a limit.
    pub(crate) fn rejected(&self, by: Refusal) {
        match by {
            Refusal::Global => self.globals.rejected_global.inc(),
            Refusal::Mapping => self.globals.rejected_mapping.inc(),
        };
    }

    /// Counts a caught internal error (a panic) in component `what`.
    pub(crate) fn internal_error(&self, what: &'static str) {
        self.globals
            .internal_errors
            .get_or_create(&WhatLabel { what })
            .inc();
    }

    /// Counts a restart of `actor`.
    pub(crate) fn actor_restart(&self, actor: &'static str) {
        self.globals
            .actor_restarts
            .get_or_create(&ActorLabel { actor })
            .inc();
    }

    /// A connection's share of `tcpmap_client_hello_bytes_buffered`, starting at zero.
    pub(crate) fn hello_buffer(&self) -> HelloBuffer {
        HelloBuffer {
            gauge: self.globals.hello_bytes.clone(),
            held: 0,
        }
    }

    /// Counts an accepted PROXY protocol header of `version` (`v1`|`v2`).
    pub(crate) fn proxy_header(&self, version: &'static str) {
        self.globals
            .proxy_headers
            .get_or_create(&VersionLabel { version })
            .inc();
    }

    /// The series counting TLS connections routed to a host group (resolved once per config
    /// generation, so a connection pays one atomic add): `tls` is what is done with the client's
    /// TLS (`terminate`, `terminate+originate`, `passthrough`), `host` the group's pattern
    /// (bounded by the config, unlike the SNI a client sends).
    pub(crate) fn tls_routed_series(&self, tls: &'static str, host: &str) -> Counter {
        self.globals
            .tls_routed
            .get_or_create(&TlsRoutedLabels {
                tls,
                host: text::escape_label(host),
            })
            .clone()
    }

    /// Counts a connection closed for its PROXY protocol header (one of
    /// [`PROXY_REJECT_REASONS`]).
    pub(crate) fn proxy_rejected(&self, reason: &'static str) {
        self.globals
            .proxy_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Sets the `tcpmap_listeners` gauge.
    pub(crate) fn listeners(&self, bound: usize) {
        self.globals
            .listeners
            .set(i64::try_from(bound).unwrap_or(i64::MAX));
    }
}
