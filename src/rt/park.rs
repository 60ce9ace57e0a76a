//! The local loop's sleep/wake-up handshake: whether the loop sleeps (or is about to), and so
//! whether whoever queued something for it must wake it (one eventfd write).
//!
//! ```text
//! loop thread                          another thread
//! will_sleep(): sleeping = true        push onto the run queue (or queue a deadline)
//!               fence(SeqCst)          unpark():  fence(SeqCst)
//! look at the run queue and the clock             sleeping.swap(false) == true?
//! nothing queued: epoll_wait ◀──────────────────── then write the eventfd
//! ```
//!
//! This is a store-then-load on each side (the Dekker pattern): the loop stores its flag and
//! loads the queue, the other thread stores into the queue and loads the flag. Correct only if
//! at least one of them sees the other's store, which needs a sequentially consistent fence
//! on both sides: with the two fences, either the loop's fence comes first in their single
//! order, and the swap reads `true` (the eventfd is written), or the other's does, and the
//! loop finds what was queued. Without them it would rest on the run queue's own (internal,
//! unstated) orderings. `tests/park_model.rs` checks the handshake under loom, which explores
//! the weak-memory outcomes that fences rule out.
//!
//! Written against `super::atomic`: std's atomics in the crate (`rt/mod.rs`), loom's in the
//! model, which compiles this file again.

use super::atomic::{AtomicBool, Ordering, fence};

/// Whether the loop sleeps or is about to; whoever clears it owes the loop a wake-up.
#[derive(Debug)]
pub(crate) struct Park {
    sleeping: AtomicBool,
}

impl Park {
    /// A loop that is running.
    pub(crate) fn new() -> Park {
        Park {
            sleeping: AtomicBool::new(false),
        }
    }

    /// The loop is about to sleep: call before its last look at what was queued for it. From
    /// here on, [`Park::unpark`] after a push tells the pusher to wake it.
    pub(crate) fn will_sleep(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
        // Orders the store above before the loop's next loads (the queue, the clock).
        fence(Ordering::SeqCst);
    }

    /// Something was queued for the loop (pushed before this call): true when the loop sleeps
    /// or is about to, and the caller must wake it; false when it is running (it will find
    /// what was pushed before it sleeps) or another caller already owes the wake-up.
    pub(crate) fn unpark(&self) -> bool {
        // Orders the caller's push before the load of the flag.
        fence(Ordering::SeqCst);
        self.sleeping.swap(false, Ordering::SeqCst)
    }

    /// The loop woke up (its wait returned): nobody owes it a wake-up until its next
    /// [`Park::will_sleep`].
    pub(crate) fn woke(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }
}
