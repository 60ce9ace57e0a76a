//! The connection rate limit (`connection_rate_limit`, SPEC section 15), checked once the
//! client address is known (after a PROXY protocol header) and before the ClientHello is read
//! or any TLS work is done: a connection without a token closes at once (`rate_limit`, no
//! access line), counted in `tcpmap_connections_rate_limited_total{listener}`, with at most
//! one warning a second; `dry_run` counts and warns but serves.

use std::time::Instant;

use super::Conn;
use crate::close::CloseReason;
use crate::metrics::fleet::ListenerLabel;
use crate::route::Listener;
use crate::route::fleet::RateLimit;
use crate::state::ratelimit::{Verdict, own_table};

/// The listener's rate limit: its mappings all have the same (validation), so the first
/// upstream's says it.
pub(super) fn of(routes: &Listener) -> Option<RateLimit> {
    routes
        .groups()
        .next()
        .and_then(|g| g.upstreams.first())
        .and_then(|u| u.endpoints.rate_limit)
}

impl Conn {
    /// Takes a token for this connection; `Err(RateLimit)` when there was none (unless
    /// `dry_run`).
    pub(super) fn check_rate(&self, limit: &RateLimit) -> Result<(), CloseReason> {
        let shared = &self.admission.shared;
        let table = own_table(&shared.rates);
        if table.take(limit, self.rec.listener, self.rec.client.ip()) == Verdict::Allowed {
            return Ok(());
        }
        shared
            .metrics
            .fleet
            .rate_limited
            .get_or_create(&ListenerLabel {
                listener: self.rec.listener.to_string(),
            })
            .inc();
        if let Some(held_back) = shared.rate_log.allow(Instant::now()) {
            tracing::warn!(
                listener = %self.rec.listener,
                client = %self.rec.client,
                rate = limit.rate,
                burst = limit.burst,
                per = ?limit.per,
                dry_run = limit.dry_run,
                suppressed = held_back,
                "{} (at most one such line per second; `suppressed` counts those not logged since the last line)",
                if limit.dry_run {
                    "connection over connection_rate_limit, served (dry_run)"
                } else {
                    "connection closed: connection_rate_limit reached"
                }
            );
        }
        if limit.dry_run {
            Ok(())
        } else {
            Err(CloseReason::RateLimit)
        }
    }
}
