//! Close orders: how the Supervisor (or a listener) asks the connections of a generation to
//! close at a given time, for a gradual drain or a maximum connection age.
//!
//! ```text
//! Supervisor ──order(accepted_before, at)──▶ Generation::close ──notify──▶ every waiting Conn
//!                                                                          │ accepted before?
//!                                                                          ▼
//!                                                         sleep until `at` ─▶ end `retired`
//! ```
//!
//! Costs nothing per connection until an order is given: the connection's wait is a listener
//! on the stack of its own future (no allocation, no syscall), and the deadline, once there
//! is one, waits on the coarse clock like every other deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use event_listener::{Event, listener};
use futures_lite::FutureExt;

use crate::rt::timer::Sleep;

/// An order to close connections: those accepted before `accepted_before` close at `at`
/// (at once if `at` has passed), ending with [`crate::close::CloseReason::Retired`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Order {
    /// Connections accepted at or after this instant are not concerned.
    pub(crate) accepted_before: Instant,
    /// When they close.
    pub(crate) at: Instant,
}

/// The close orders of one generation's connections. The latest order replaces the one
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
    /// Gives `order` to every connection of the generation, open now or accepted later.
    // Only the tests give orders until the fleet's gradual drain and maximum age do (then
    // this attribute goes).
    #[cfg(test)]
    pub(crate) fn give(&self, order: Order) {
        *self.order.lock().unwrap_or_else(PoisonError::into_inner) = Some(order);
        self.given.store(true, Ordering::Release);
        self.changed.notify(usize::MAX);
    }

    /// When a connection accepted at `accepted` is to close, if it is.
    fn deadline(&self, accepted: Instant) -> Option<Instant> {
        if !self.given.load(Ordering::Acquire) {
            return None;
        }
        let order = *self.order.lock().unwrap_or_else(PoisonError::into_inner);
        order.filter(|o| accepted < o.accepted_before).map(|o| o.at)
    }

    /// Completes when the connection accepted at `accepted` is ordered to close and its time
    /// has come; follows later orders while it waits.
    ///
    /// Until an order concerns the connection this waits on a listener inside the future
    /// (no allocation); the wait for an ordered time is boxed, which only connections given
    /// an order pay for (it keeps the Sleep out of every connection's future).
    pub(crate) async fn closed(&self, accepted: Instant) {
        loop {
            // Listening before reading the order: an order given in between still wakes us.
            listener!(self.changed => changed);
            let Some(at) = self.deadline(accepted) else {
                changed.await;
                continue;
            };
            if Instant::now() >= at {
                return;
            }
            let due = async {
                Sleep::until(at).await;
                true
            };
            if Box::pin(due.or(async {
                changed.await;
                false
            }))
            .await
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

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
            });
        });
        let started = Instant::now();
        crate::rt::block_on(orders.closed(accepted));
        let took = started.elapsed();
        t.join().unwrap();
        assert!(
            took >= Duration::from_millis(240) && took < Duration::from_secs(2),
            "closed after {took:?}"
        );
    }
}
