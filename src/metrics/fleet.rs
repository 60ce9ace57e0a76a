//! The fleet series (SPEC section 15): `tcpmap_draining_connections` (connections left in a
//! `--drain-strategy spread` drain) and `tcpmap_connections_rate_limited_total{listener}`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The `listener` label: the listener's address.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ListenerLabel {
    pub(crate) listener: String,
}

/// The fleet series of one registry.
#[derive(Debug)]
pub(crate) struct FleetMetrics {
    /// Connections still open during a drain (0 outside one).
    pub(crate) draining: Gauge,
    /// Connections a connection rate limit found without a token (closed, or served with
    /// `dry_run`), by listener.
    pub(crate) rate_limited: Family<ListenerLabel, Counter>,
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
        let rate_limited = Family::<ListenerLabel, Counter>::default();
        r.register(
            "connections_rate_limited",
            "Connections a connection_rate_limit found without a token (closed, or served with dry_run), by listener",
            rate_limited.clone(),
        );
        FleetMetrics {
            draining,
            rate_limited,
        }
    }
}
