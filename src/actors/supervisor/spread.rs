//! `--drain-strategy spread` (SPEC section 15): on a graceful drain, every open connection is
//! ordered to close at its own random instant spread evenly over the drain timeout (those
//! idle for the order's first second close then), so a rolled replica's clients come back a
//! few at a time instead of all at the timeout; `tcpmap_draining_connections` shows what is
//! left while the drain runs. Used by both data planes (`threads.rs`, `local.rs`).

use std::future::Future;
use std::time::{Duration, Instant};

use crate::actors::Shared;
use crate::actors::connection::close::Order;
use crate::rt;

/// How often the gauge is refreshed during a drain.
const GAUGE_EVERY: Duration = Duration::from_millis(250);

/// The part of `timeout` the closes spread over: it leaves the last ones a margin (a tenth of
/// the timeout, at most 1 s) to send their close_notify before the kill.
pub(crate) fn window(timeout: Duration) -> Duration {
    timeout.saturating_sub((timeout / 10).min(Duration::from_secs(1)))
}

/// With the spread strategy, orders every connection open now to close over the drain.
pub(crate) fn order(shared: &Shared, timeout: Duration) {
    if !shared.limits.drain_spread {
        return;
    }
    let now = Instant::now();
    shared.close.give(Order {
        accepted_before: now,
        at: now,
        spread: window(timeout),
        close_idle: true,
    });
}

/// Waits for `drained`, up to `timeout`, keeping `tcpmap_draining_connections` at `open()`
/// meanwhile (0 once done); true when drained in time.
pub(crate) async fn wait<F, O>(shared: &Shared, timeout: Duration, drained: F, open: O) -> bool
where
    F: Future<Output = ()>,
    O: Fn() -> usize,
{
    let gauge = &shared.metrics.fleet.draining;
    let tick = async {
        loop {
            gauge.set(i64::try_from(open()).unwrap_or(i64::MAX));
            rt::sleep(GAUGE_EVERY).await;
        }
    };
    let done = rt::timeout(timeout, futures_lite::future::or(drained, tick))
        .await
        .is_some();
    if done {
        gauge.set(0);
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spread_leaves_a_margin_before_the_kill() {
        assert_eq!(window(Duration::from_secs(30)), Duration::from_secs(29));
        assert_eq!(window(Duration::from_secs(5)), Duration::from_millis(4500));
        assert_eq!(window(Duration::ZERO), Duration::ZERO);
    }
}
