//! The fleet series (SPEC section 15): `tcpmap_draining_connections` (connections left in a
//! `--drain-strategy spread` drain) and `tcpmap_connections_rate_limited_total{listener}`.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The fleet series of one registry.
#[derive(Debug)]
pub(crate) struct FleetMetrics {
    /// Connections still open during a drain (0 outside one).
    pub(crate) draining: Gauge,
}

impl FleetMetrics {
    /// Both families, registered in `r`.
    pub(crate) fn register(r: &mut Registry) -> Self {
        let draining = Gauge::default();
        r.register(
            "draining_connections",
            "Connections still open during a drain (0 when not draining)",
            draining.clone(),
        );
        FleetMetrics { draining }
    }
}
