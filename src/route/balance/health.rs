//! The health rules, as pure functions of counts and durations.
//!
//! Passive (outlier detection on connect failures): [`EJECT_AFTER`] consecutive failed
//! connects eject an endpoint for [`ejection_time`] (30 s, doubling on each repeat, at most
//! 300 s). A successful connect clears the failure streak and the repeat count.
//!
//! Active (`health_check`): a probe result moves [`ProbeState`] by [`ProbeState::after`];
//! `unhealthy_threshold` failures in a row make an endpoint unhealthy, `healthy_threshold`
//! passes in a row make it healthy again. Endpoints start healthy.

use std::time::Duration;

use super::HealthCheck;

/// Consecutive connect failures that eject an endpoint.
pub(crate) const EJECT_AFTER: u32 = 5;
/// The first ejection's length.
pub(crate) const BASE_EJECTION: Duration = Duration::from_secs(30);
/// The longest ejection.
pub(crate) const MAX_EJECTION: Duration = Duration::from_secs(300);

/// How long the `nth` ejection (1-based) of an endpoint lasts: 30 s, 60 s, 120 s, 240 s,
/// then 300 s.
pub(crate) fn ejection_time(nth: u32) -> Duration {
    let doublings = nth.saturating_sub(1).min(16);
    BASE_EJECTION
        .saturating_mul(1u32 << doublings)
        .min(MAX_EJECTION)
}

/// An endpoint's active-check state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProbeState {
    /// Healthy (the endpoint receives connections).
    pub healthy: bool,
    /// Probes in a row that disagreed with `healthy` (towards a flip).
    pub streak: u32,
}

impl Default for ProbeState {
    fn default() -> Self {
        Self {
            healthy: true,
            streak: 0,
        }
    }
}

impl ProbeState {
    /// The state after one probe that passed (`ok`) or failed.
    pub(crate) fn after(self, ok: bool, hc: &HealthCheck) -> ProbeState {
        if ok == self.healthy {
            return ProbeState {
                healthy: self.healthy,
                streak: 0,
            };
        }
        let streak = self.streak + 1;
        let threshold = if self.healthy {
            hc.unhealthy_threshold
        } else {
            hc.healthy_threshold
        };
        if streak >= threshold.max(1) {
            ProbeState {
                healthy: ok,
                streak: 0,
            }
        } else {
            ProbeState {
                healthy: self.healthy,
                streak,
            }
        }
    }
}
