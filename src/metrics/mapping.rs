//! Per-mapping metric handles: what a connection touches on the hot path.
//!
//! A [`MappingMetrics`] holds pre-resolved clones of the registry's series for one
//! mapping (prometheus-client metrics are `Arc`s of atomics, so a clone shares the
//! value). Connections only do atomic adds on them; no map lookup and no lock.
//! This file must not create registry families: [`super::Metrics`] owns those.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::text::escape_label;
use crate::close::{CloseReason, Side};
use crate::route::MappingId;

/// Number of close reasons (the length of `CloseReason::ALL`).
pub(super) const REASONS: usize = CloseReason::ALL.len();

/// Labels identifying a mapping's series: `mapping`, `namespace`, `port`, `host`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct MappingLabels {
    /// The mapping's name.
    pub(super) mapping: String,
    /// The mapping's namespace.
    pub(super) namespace: String,
    /// The listener port.
    pub(super) port: u16,
    /// The SNI host; empty when the mapping has none.
    pub(super) host: String,
}

impl MappingLabels {
    /// The (escaped) labels of `id`.
    pub(super) fn of(id: &MappingId) -> Self {
        Self {
            mapping: escape_label(&id.name),
            namespace: escape_label(&id.namespace),
            port: id.port,
            host: escape_label(&id.host),
        }
    }
}

/// Mapping labels plus the close `reason` (the derive's `flatten` is broken in 0.23,
/// so the fields are repeated).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct EndedLabels {
    mapping: String,
    namespace: String,
    port: u16,
    host: String,
    reason: &'static str,
}

impl EndedLabels {
    /// `labels` plus `reason`.
    pub(super) fn new(labels: &MappingLabels, reason: CloseReason) -> Self {
        let l = labels.clone();
        Self {
            mapping: l.mapping,
            namespace: l.namespace,
            port: l.port,
            host: l.host,
            reason: reason.as_str(),
        }
    }
}

/// Mapping labels plus the `side` of an I/O error (`client`|`upstream`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SideLabels {
    mapping: String,
    namespace: String,
    port: u16,
    host: String,
    side: &'static str,
}

impl SideLabels {
    /// `labels` plus `side`.
    pub(super) fn new(labels: &MappingLabels, side: Side) -> Self {
        let l = labels.clone();
        Self {
            mapping: l.mapping,
            namespace: l.namespace,
            port: l.port,
            host: l.host,
            side: side.as_str(),
        }
    }
}

/// Mapping labels plus the byte `direction` (`client_to_upstream`|`upstream_to_client`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BytesLabels {
    mapping: String,
    namespace: String,
    port: u16,
    host: String,
    direction: &'static str,
}

impl BytesLabels {
    /// `labels` plus `direction`.
    pub(super) fn new(labels: &MappingLabels, direction: &'static str) -> Self {
        let l = labels.clone();
        Self {
            mapping: l.mapping,
            namespace: l.namespace,
            port: l.port,
            host: l.host,
            direction,
        }
    }
}

/// The live metric handles of one mapping.
///
/// Obtained once per config generation from [`super::Metrics::mapping`]; the same
/// `MappingId` always yields the same `Arc`, so values (including [`Self::in_flight`])
/// survive reloads.
#[derive(Debug)]
pub(crate) struct MappingMetrics {
    pub(super) id: MappingId,
    pub(super) accepted: Counter,
    pub(super) active: Gauge,
    /// By position in `CloseReason::ALL`; both `IoError` sides share the `io_error` series.
    pub(super) ended: [Counter; REASONS],
    /// `io_error` ends by side: client, upstream.
    pub(super) io_errors: [Counter; 2],
    pub(super) bytes_c2u: Counter,
    pub(super) bytes_u2c: Counter,
    pub(super) connect_failures: Counter,
    pub(super) connect_latency: super::latency::Latency,
    pub(super) in_flight: Breaker,
}

/// A mapping's circuit-breaker count: its own, or a slot shared with other processes (the
/// workers' shared counters) plus this worker's share of it, set with
/// [`super::Metrics::share_breaker`].
#[derive(Debug)]
pub(super) enum Breaker {
    /// Counted in this process only.
    Own(AtomicU32),
    /// Counted in memory every worker maps.
    Shared {
        /// Over all workers (the limit is checked against it).
        total: &'static AtomicU32,
        /// This worker's share (taken back out of `total` if the worker dies).
        mine: &'static AtomicU32,
    },
}

impl Breaker {
    /// The share of a shared count (none for an own one).
    fn mine(&self) -> Option<&AtomicU32> {
        match self {
            Breaker::Own(_) => None,
            Breaker::Shared { mine, .. } => Some(mine),
        }
    }
}

impl std::ops::Deref for Breaker {
    type Target = AtomicU32;
    fn deref(&self) -> &AtomicU32 {
        match self {
            Breaker::Own(n) => n,
            Breaker::Shared { total, .. } => total,
        }
    }
}

impl MappingMetrics {
    /// A connection was accepted for this mapping: `accepted_total += 1`, `active += 1`.
    pub(crate) fn accepted(&self) {
        self.accepted.inc();
        self.active.inc();
    }

    /// A connection of this mapping ended: `active -= 1`, `ended_total{reason} += 1`.
    ///
    /// The byte arguments are only the bytes **not yet reported** through
    /// [`Self::add_bytes`] (the remainder), so nothing is counted twice.
    pub(crate) fn ended(
        &self,
        reason: CloseReason,
        client_to_upstream: u64,
        upstream_to_client: u64,
    ) {
        self.active.dec();
        if let Some(counter) = self.ended.get(reason_index(reason)) {
            counter.inc();
        }
        if let Some(counter) = reason
            .side()
            .and_then(|s| self.io_errors.get(side_index(s)))
        {
            counter.inc();
        }
        self.add_bytes(client_to_upstream, upstream_to_client);
    }

    /// Connections of this mapping that ended for `reason` (an `IoError`: on that side).
    pub(super) fn ended_count(&self, reason: CloseReason) -> u64 {
        let counter = match reason.side() {
            Some(side) => self.io_errors.get(side_index(side)),
            None => self.ended.get(reason_index(reason)),
        };
        counter.map_or(0, Counter::get)
    }

    /// Adds bytes moved since the last report (deltas, not totals), for live
    /// progress of long connections.
    pub(crate) fn add_bytes(&self, client_to_upstream: u64, upstream_to_client: u64) {
        if client_to_upstream > 0 {
            self.bytes_c2u.inc_by(client_to_upstream);
        }
        if upstream_to_client > 0 {
            self.bytes_u2c.inc_by(upstream_to_client);
        }
    }

    /// The byte counters `(client_to_upstream, upstream_to_client)` themselves, for the relay
    /// to add to as bytes move (one relaxed add per delivered chunk).
    pub(crate) fn byte_counters(
        &self,
    ) -> (&std::sync::atomic::AtomicU64, &std::sync::atomic::AtomicU64) {
        (self.bytes_c2u.inner(), self.bytes_u2c.inner())
    }

    /// Connections of this mapping currently open (the tests' view; the exposition and the
    /// snapshot read the gauge).
    #[cfg(test)]
    pub(crate) fn active(&self) -> i64 {
        self.active.get()
    }

    /// The circuit-breaker slot counter (connections holding a slot), for the tests to read;
    /// slots are taken and given back with [`Self::try_acquire`] / [`Self::release`] only.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> &AtomicU32 {
        &self.in_flight
    }

    /// Takes a circuit-breaker slot unless `max` are taken (compare-and-increment).
    /// `None` means unlimited (the slot is still counted). Pair with [`Self::release`].
    pub(crate) fn try_acquire(&self, max: Option<u32>) -> bool {
        let limit = max.unwrap_or(u32::MAX);
        // A shared count: the share first (a death in between leaves the total short).
        if let Some(mine) = self.in_flight.mine() {
            mine.fetch_add(1, Ordering::AcqRel);
        }
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            if let Some(mine) = self.in_flight.mine() {
                mine.fetch_sub(1, Ordering::AcqRel);
            }
        }
        taken
    }

    /// Gives back a slot taken by [`Self::try_acquire`] (never goes below zero).
    pub(crate) fn release(&self) {
        let released = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if let Some(mine) = self.in_flight.mine().filter(|_| released) {
            let _ = mine.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    /// Records one upstream connect attempt (called by [`super::Metrics::upstream_connect`]).
    pub(super) fn record_connect(&self, ok: bool, latency: Duration) {
        if ok {
            self.connect_latency.observe(latency.as_secs_f64());
        } else {
            self.connect_failures.inc();
        }
    }
}

/// Position of `reason` in `CloseReason::ALL`.
pub(super) fn reason_index(reason: CloseReason) -> usize {
    CloseReason::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(0)
}

/// Position of `side` in [`MappingMetrics::io_errors`].
fn side_index(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Upstream => 1,
    }
}
