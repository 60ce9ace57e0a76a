//! Close orders: how the data plane asks its connections to close at a given time (a
//! gradual drain, `--drain-strategy spread`), and a connection's maximum age
//! (`max_connection_duration_ms`).
//!
//! ```text
//! drain ──give(Order)──▶ Shared::close ──notify──▶ every waiting Conn
//!                                                   │ accepted before?
//!                                                   ▼
//!                     idle for the order's first second? ─▶ close then
//!                     else sleep until at + (its own random share of `spread`) ─▶ close
//! ```
//!
//! Costs nothing per connection until an order is given: the connection's wait is a listener
//! on the stack of its own future (no allocation, no syscall), and the deadline, once there
//! is one, waits on the coarse clock like every other deadline. A connection that is
//! relaying when its time comes closes from inside the relay (`relay.rs`), so a terminated
//! TLS client gets a close_notify first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use event_listener::{Event, listener};
use futures_lite::FutureExt;

use crate::close::CloseReason;
use crate::net::copy::Progress;
use crate::rt::timer::Sleep;

/// How long a connection must have moved no byte, from the order on, to close at once.
pub(crate) const IDLE: Duration = Duration::from_secs(1);

/// An order to close connections: those accepted before `accepted_before` close at `at` plus
/// each its own random part of `spread` (at once if that has passed), ending with
/// [`crate::close::CloseReason::Retired`]; with `close_idle`, one that moves no byte in the
/// order's first [`IDLE`] closes then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Order {
    /// Connections accepted at or after this instant are not concerned.
    pub(crate) accepted_before: Instant,
    /// When they close (the first of them, with a `spread`).
    pub(crate) at: Instant,
    /// Each connection closes at a uniformly random instant in `[at, at + spread)`.
    pub(crate) spread: Duration,
    /// Close the connections idle for [`IDLE`] after `at` then.
    pub(crate) close_idle: bool,
}

/// The close orders of the data plane's connections. The latest order replaces the one
/// before (so a later order can also move a time earlier or later).
#[derive(Debug, Default)]
pub(crate) struct CloseOrders {
    /// The latest order.
    order: Mutex<Option<Order>>,
    /// True once an order was given: until then a connection's check is this one load.
    given: AtomicBool,
    /// Wakes every waiting connection when an order is given.
    changed: Event,
}

impl CloseOrders {
    /// Gives `order` to every connection, open now or accepted later.
    pub(crate) fn give(&self, order: Order) {
        *self.order.lock().unwrap_or_else(PoisonError::into_inner) = Some(order);
        self.given.store(true, Ordering::Release);
        self.changed.notify(usize::MAX);
    }

    /// The order concerning a connection accepted at `accepted`, if one does.
    fn order_for(&self, accepted: Instant) -> Option<Order> {
        if !self.given.load(Ordering::Acquire) {
            return None;
        }
        let order = *self.order.lock().unwrap_or_else(PoisonError::into_inner);
        order.filter(|o| accepted < o.accepted_before)
    }

    /// When a connection accepted at `accepted` is to close, if it is (its random share of
    /// the spread drawn now).
    #[cfg(test)]
    fn deadline(&self, accepted: Instant) -> Option<Instant> {
        self.order_for(accepted).map(|o| own_instant(&o))
    }

    /// Completes (`retired`) when the connection accepted at `accepted` is ordered to close and
    /// its time has come; follows later orders while it waits. `moved` has the bytes the
    /// connection moved so far (how an idle one is told apart; `None`: never idle).
    ///
    /// Until an order concerns the connection this waits on a listener inside the future
    /// (no allocation); the wait for an ordered time is boxed, which only connections given
    /// an order pay for (it keeps the Sleep out of every connection's future).
    pub(crate) async fn closed(&self, accepted: Instant, moved: Option<&Progress>) -> CloseReason {
        loop {
            // Listening before reading the order: an order given in between still wakes us.
            listener!(self.changed => changed);
            if self.order_for(accepted).is_none() {
                changed.await;
                continue;
            }
            if Box::pin(self.ordered(accepted, moved)).await {
                return CloseReason::Retired;
            }
        }
    }

    /// Under an order: true when the connection's time came, false when another order came
    /// first. Boxed by its caller, so only connections given an order hold its state.
    async fn ordered(&self, accepted: Instant, moved: Option<&Progress>) -> bool {
        let changed = self.changed.listen();
        let Some(order) = self.order_for(accepted) else {
            return false;
        };
        let own = own_instant(&order);
        if Instant::now() >= own {
            return true;
        }
        let check = order.at + IDLE;
        let idle_check = moved.filter(|_| order.close_idle && check < own);
        let before = idle_check.map(Progress::moved);
        let due = async {
            if let (Some(moved), Some(before)) = (idle_check, before) {
                Sleep::until(check).await;
                if moved.moved() == before {
                    return true;
                }
            }
            Sleep::until(own).await;
            true
        };
        due.or(async {
            changed.await;
            false
        })
        .await
    }
}

/// `order.at` plus a uniformly random part of its spread.
fn own_instant(order: &Order) -> Instant {
    if order.spread.is_zero() {
        return order.at;
    }
    order.at + order.spread.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_order_closes_the_connections_accepted_before_it_at_its_time() {
        let orders = CloseOrders::default();
        let old = Instant::now();
        let young = old + Duration::from_secs(60);
        assert_eq!(orders.deadline(old), None, "no order yet");
        let at = old + Duration::from_millis(150);
        orders.give(Order {
            accepted_before: old + Duration::from_secs(1),
            at,
            spread: Duration::ZERO,
            close_idle: false,
        });
        assert_eq!(orders.deadline(old), Some(at));
        assert_eq!(orders.deadline(young), None, "accepted after the cutoff");
    }

    #[test]
    fn a_waiting_connection_wakes_for_a_later_order_and_closes_at_its_time() {
        let orders = std::sync::Arc::new(CloseOrders::default());
        let accepted = Instant::now();
        let giver = orders.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            giver.give(Order {
                accepted_before: Instant::now(),
                at: Instant::now() + Duration::from_millis(200),
                spread: Duration::ZERO,
                close_idle: false,
            });
        });
        let started = Instant::now();
        crate::rt::block_on(orders.closed(accepted, None));
        let took = started.elapsed();
        t.join().unwrap();
        assert!(
            took >= Duration::from_millis(240) && took < Duration::from_secs(2),
            "closed after {took:?}"
        );
    }
}
