//! The connection rate limit (`connection_rate_limit`, SPEC section 15), checked once the
//! client address is known and before the ClientHello is read or any TLS work is done: a
//! connection without a token closes at once (`rate_limit`, no access line), counted in
//! `tcpmap_connections_rate_limited_total{listener}`, with at most one warning a second;
//! `dry_run` counts and warns but serves.
//!
//! Without the PROXY protocol the client is the peer, so the listener checks right after
//! `accept` ([`refuse_at_accept`]): a refused connection costs no task, no reactor
//! registration and no admission, and is closed with a reset. After a PROXY protocol header
//! the connection's task checks ([`Conn::check_rate`]).

use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use super::Conn;
use crate::actors::Shared;
use crate::close::CloseReason;
use crate::metrics::fleet::ListenerLabel;
use crate::proxy_protocol::Accept;
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

/// At `accept`, on a listener without the PROXY protocol: `Some(stream)` to serve, `None`
/// when the connection was refused (and closed, with a reset: the client learns at once and
/// no socket lingers in a closing state).
pub(crate) fn refuse_at_accept(
    shared: &Shared,
    routes: Option<&Listener>,
    stream: TcpStream,
    listener: SocketAddr,
    client: SocketAddr,
) -> Option<TcpStream> {
    let Some(routes) = routes.filter(|r| r.proxy_protocol == Accept::Off) else {
        return Some(stream);
    };
    let Some(limit) = of(routes) else {
        return Some(stream);
    };
    match check(shared, &limit, listener, client) {
        Ok(()) => Some(stream),
        Err(_) => {
            // SO_LINGER 0: the close sends RST and frees the socket at once.
            let _ =
                rustix::net::sockopt::set_socket_linger(&stream, Some(std::time::Duration::ZERO));
            None
        }
    }
}

/// Whether the listener's PROXY protocol setting leaves the check to the connection's task.
pub(super) fn checked_by_task(routes: &Listener) -> bool {
    routes.proxy_protocol != Accept::Off
}

impl Conn {
    /// Takes a token for this connection; `Err(RateLimit)` when there was none (unless
    /// `dry_run`).
    pub(super) fn check_rate(&self, limit: &RateLimit) -> Result<(), CloseReason> {
        check(
            &self.admission.shared,
            limit,
            self.rec.listener,
            self.rec.client,
        )
    }
}

/// Takes a token for a connection from `client` on `listener`; `Err(RateLimit)` when there
/// was none (unless `dry_run`), counted and warned about.
fn check(
    shared: &Shared,
    limit: &RateLimit,
    listener: SocketAddr,
    client: SocketAddr,
) -> Result<(), CloseReason> {
    let table = own_table(&shared.rates);
    if table.take(limit, listener, client.ip()) == Verdict::Allowed {
        return Ok(());
    }
    shared
        .metrics
        .fleet
        .rate_limited
        .get_or_create(&ListenerLabel {
            listener: listener.to_string(),
        })
        .inc();
    if let Some(held_back) = shared.rate_log.allow(Instant::now()) {
        tracing::warn!(
            listener = %listener,
            client = %client,
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
