//! Admission: one connection's claim on the proxy's limits and its mapping's metrics.
//!
//! ```text
//! accept ─▶ Admission::enter (global slot under --max-connections)
//!        ─▶ route ─▶ Admission::claim (mapping: accepted += 1, active += 1, breaker slot)
//!        ─▶ ... ─▶ Admission::end(reason)      (ended_total{reason} += 1, active -= 1)
//!                   or drop without end         (the same with reason `internal`)
//! ```
//!
//! One value owns every counter a connection moves up, so each goes down exactly once on
//! every path: a normal end, a refusal, a panic caught by the listener (the task's state is
//! dropped while it unwinds) or a cancelled task. Nothing else increments or decrements
//! these counters for a connection.
//!
//! Must not: block on I/O, or log (the access line is the ConnectionActor's). Only a mapping
//! with `max_connections_per_ip` costs more than atomics: a short lock on its per-client map
//! (which holds only addresses with open connections) and one small allocation.

use std::net::IpAddr;
use std::sync::Arc;

use super::endpoints::{ClientSlot, EndpointLoad, UpstreamState};
use super::{Count, Limits};
use crate::close::CloseReason;
use crate::metrics::{MappingMetrics, Metrics, Refusal};
use crate::net::copy::Progress;

/// What an admission counts against: the open-connection count, the limits and the metrics
/// (the actors' `Shared`, which the connection reaches through [`Admission::shared`]).
pub(crate) trait Gate {
    /// Open connections, checked against [`Limits::max_connections`].
    fn active(&self) -> &Count;
    /// The proxy's limits.
    fn limits(&self) -> &Limits;
    /// Where refusals and internal errors are counted.
    fn metrics(&self) -> &Metrics;
}

/// One connection's slots and metrics, released exactly once when it ends or is dropped.
///
/// The fields are separate so that the connection task can borrow [`Self::shared`] while
/// it claims a mapping slot through [`Self::claim`] (disjoint field borrows).
pub(crate) struct Admission<S: Gate> {
    /// Everything the connection shares with the rest of the proxy; holding it holds the
    /// connection's global slot (counted in [`Gate::active`]).
    pub(crate) shared: Arc<S>,
    /// The relay's byte counters; `progress.live` is the mapping's metrics once claimed.
    pub(crate) progress: Progress,
    /// The per-mapping part of the claim.
    pub(crate) claim: Claim,
}

/// What the connection holds of its mapping: whether it counts as accepted and holds a
/// circuit-breaker slot, its slot under `max_connections_per_ip`, its endpoint's load
/// count, and whether its end was already counted.
#[derive(Debug, Default)]
pub(crate) struct Claim {
    /// Holds a slot under the mapping's `circuit_breakers.max_connections`.
    breaker: bool,
    /// The end is counted (by [`Admission::end`]); the drop then only releases slots.
    ended: bool,
    /// The slot under `max_connections_per_ip`, given back when dropped. Boxed: the claim
    /// lives in every connection's future and most mappings have no such limit, so only
    /// their connections pay for it (one small allocation).
    client: Option<Box<ClientSlot>>,
    /// The connected endpoint's open-connection count (`least_request`), given back when
    /// dropped.
    endpoint: Option<EndpointLoad>,
}

impl<S: Gate> Admission<S> {
    /// Takes a global slot, or refuses (`None`) when `--max-connections` are open; a refusal
    /// is counted here, and logging it is the caller's.
    pub(crate) fn enter(shared: Arc<S>) -> Option<Self> {
        let before = shared.active().up();
        if shared
            .limits()
            .max_connections
            .is_some_and(|max| before >= max)
        {
            shared.active().down();
            shared.metrics().rejected(Refusal::Global);
            return None;
        }
        Some(Self {
            shared,
            progress: Progress::default(),
            claim: Claim::default(),
        })
    }

    /// Counts the end of the connection once; later calls and the drop count nothing more.
    pub(crate) fn end(&mut self, reason: CloseReason) {
        if std::mem::replace(&mut self.claim.ended, true) {
            return;
        }
        if let Some(m) = &self.progress.live {
            // The bytes were added to the mapping's counters live, as they moved.
            m.ended(reason, 0, 0);
        }
    }
}

impl Claim {
    /// Counts the connection as accepted for mapping `m` and takes a slot under `max`; `false`
    /// (after counting the refusal) when the mapping's circuit breaker is open. Either way the
    /// connection then belongs to `m`: its end is counted there.
    ///
    /// `progress` is the admission's; a claim is made at most once per connection.
    pub(crate) fn take(
        &mut self,
        progress: &mut Progress,
        m: Arc<MappingMetrics>,
        max: Option<u32>,
        shared: &impl Gate,
    ) -> bool {
        if progress.live.is_some() {
            return true;
        }
        m.accepted();
        // Unlimited mappings take no slot (nothing to give back).
        let admitted = max.is_none_or(|max| m.try_acquire(Some(max)));
        self.breaker = max.is_some() && admitted;
        progress.live = Some(m);
        if !admitted {
            shared.metrics().rejected(Refusal::Mapping);
        }
        admitted
    }

    /// Takes one of the mapping's `max` slots for client address `ip` (no limit: nothing to
    /// take); `false` (after counting the refusal) when `max` connections from `ip` are open.
    pub(crate) fn take_client_slot(
        &mut self,
        state: &Arc<UpstreamState>,
        ip: IpAddr,
        max: Option<u32>,
    ) -> bool {
        let Some(max) = max else {
            return true;
        };
        match state.take_client_slot(ip, max) {
            Some(slot) => {
                self.client = Some(Box::new(slot));
                true
            }
            None => {
                state.metrics.refused_per_ip();
                false
            }
        }
    }

    /// Keeps the connected endpoint's load count for the connection's life.
    pub(crate) fn hold_endpoint(&mut self, load: Option<EndpointLoad>) {
        self.endpoint = load;
    }
}

impl<S: Gate> Drop for Admission<S> {
    fn drop(&mut self) {
        if !self.claim.ended {
            // Dropped without an end: the task panicked or was cancelled, which is a bug.
            self.shared.metrics().internal_error("connection");
            self.end(CloseReason::Internal);
        }
        if self.claim.breaker {
            if let Some(m) = &self.progress.live {
                m.release();
            }
        }
        self.shared.active().down();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::route::MappingId;
    use std::sync::atomic::Ordering;

    /// What a connection counts against in these tests.
    struct Shared {
        active: Count,
        limits: Limits,
        metrics: Arc<Metrics>,
        endpoints: Arc<crate::state::endpoints::EndpointRegistry>,
    }

    impl Gate for Shared {
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

    fn shared(max: Option<usize>) -> Arc<Shared> {
        let metrics = Metrics::new();
        Arc::new(Shared {
            active: Count::default(),
            limits: Limits {
                max_connections: max,
                handshake_timeout: std::time::Duration::from_secs(1),
                zero_copy: true,
                drain_spread: false,
                dont_log_null: false,
            },
            endpoints: crate::state::endpoints::EndpointRegistry::new(metrics.clone()),
            metrics,
        })
    }

    fn mapping(shared: &Shared) -> Arc<MappingMetrics> {
        shared.metrics.mapping(&MappingId {
            name: "m".into(),
            namespace: "default".into(),
            port: 1,
            host: String::new(),
        })
    }

    fn claim(a: &mut Admission<Shared>, m: &Arc<MappingMetrics>, max: Option<u32>) -> bool {
        a.claim.take(&mut a.progress, m.clone(), max, &*a.shared)
    }

    #[test]
    fn the_global_limit_refuses_and_gives_the_slot_back() {
        let s = shared(Some(1));
        let first = Admission::enter(s.clone()).unwrap();
        assert!(Admission::enter(s.clone()).is_none());
        assert_eq!(s.active.load(Ordering::SeqCst), 1);
        drop(first);
        assert_eq!(s.active.load(Ordering::SeqCst), 0);
        assert!(Admission::enter(s).is_some());
    }

    #[test]
    fn an_ended_connection_counts_once() {
        let s = shared(None);
        let m = mapping(&s);
        let mut a = Admission::enter(s.clone()).unwrap();
        assert!(claim(&mut a, &m, Some(5)));
        assert_eq!((m.active(), m.in_flight().load(Ordering::SeqCst)), (1, 1));
        a.end(CloseReason::ClientClosed);
        a.end(CloseReason::IoError(crate::close::Side::Client));
        drop(a);
        assert_eq!((m.active(), m.in_flight().load(Ordering::SeqCst)), (0, 0));
        let text = s.metrics.render();
        assert!(text.contains("reason=\"client_closed\"} 1"), "{text}");
        assert!(!text.contains("reason=\"io_error\"} 1"), "{text}");
        assert!(!text.contains("what=\"connection\"} 1"), "{text}");
    }

    #[test]
    fn a_dropped_connection_ends_as_internal() {
        let s = shared(None);
        let m = mapping(&s);
        let mut a = Admission::enter(s.clone()).unwrap();
        assert!(claim(&mut a, &m, None));
        drop(a);
        assert_eq!(m.active(), 0);
        assert_eq!(s.active.load(Ordering::SeqCst), 0);
        let text = s.metrics.render();
        assert!(text.contains("reason=\"internal\"} 1"), "{text}");
        assert!(text.contains("what=\"connection\"} 1"), "{text}");
    }

    #[test]
    fn a_per_client_slot_is_given_back_when_the_connection_goes() {
        use crate::route::{Families, ServiceHost, Upstream, balance::EndpointPolicy};
        let s = shared(None);
        let up = Upstream {
            mapping: Arc::new(MappingId {
                name: "m".into(),
                namespace: "default".into(),
                port: 1,
                host: String::new(),
            }),
            host: ServiceHost::Dns("svc.test".into()),
            port: 80,
            share: 100,
            connect_timeout: std::time::Duration::from_secs(1),
            max_connections: None,
            refused: None,
            send_proxy: None,
            endpoints: EndpointPolicy::default(),
        };
        let state = s
            .endpoints
            .state(crate::state::endpoints::EndpointKey::of(&up, Families::V4));
        let ip: IpAddr = "10.1.1.1".parse().unwrap();
        let mut first = Admission::enter(s.clone()).unwrap();
        assert!(first.claim.take_client_slot(&state, ip, Some(1)));
        let mut second = Admission::enter(s.clone()).unwrap();
        assert!(!second.claim.take_client_slot(&state, ip, Some(1)));
        assert!(
            second.claim.take_client_slot(&state, ip, None),
            "no limit, no slot"
        );
        drop(second);
        first.end(CloseReason::ClientClosed);
        drop(first);
        let mut third = Admission::enter(s.clone()).unwrap();
        assert!(third.claim.take_client_slot(&state, ip, Some(1)));
        third.end(CloseReason::ClientClosed);
        let text = s.metrics.render();
        assert!(
            text.contains("tcpmap_connections_refused_per_ip_total{mapping=\"m\""),
            "{text}"
        );
    }

    #[test]
    fn an_open_breaker_refuses_without_taking_a_slot() {
        let s = shared(None);
        let m = mapping(&s);
        let mut held = Admission::enter(s.clone()).unwrap();
        assert!(claim(&mut held, &m, Some(1)));
        let mut refused = Admission::enter(s.clone()).unwrap();
        assert!(!claim(&mut refused, &m, Some(1)));
        refused.end(CloseReason::Limit);
        drop(refused);
        // The refused connection did not give back the slot it never had.
        assert_eq!(m.in_flight().load(Ordering::SeqCst), 1);
        assert_eq!(m.active(), 1);
        held.end(CloseReason::UpstreamClosed);
        drop(held);
        assert_eq!(m.in_flight().load(Ordering::SeqCst), 0);
        assert_eq!(m.active(), 0);
    }
}
