//! [`until`]: a relay, unless what ends it from outside (a close order, the maximum age)
//! completes first.
//!
//! The stop future is polled once at first (it registers its waits) and after that only when
//! its own waker fired, not on every wake of the relay: polling the close-order wait means
//! taking the lock of the close orders' `Event`, shared by every connection of the process,
//! and a bulk relay wakes tens of thousands of times a second. Its waker is a flag in front
//! of the task's waker: firing sets the flag, then wakes the task.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use crate::close::CloseReason;

/// The relay's result, unless `stop` completes first: then its reason. Both are pinned by the
/// caller, so each is stored once in the connection's future (an `async fn` taking them by
/// value would hold them twice); this adds the two pointers, the stop waker's flag (one small
/// allocation per relayed connection) and the task waker it was last given.
pub(super) fn until<'a, T, R, S>(relay: Pin<&'a mut R>, stop: Pin<&'a mut S>) -> Until<'a, R, S>
where
    R: Future<Output = T> + ?Sized,
    S: Future<Output = CloseReason> + ?Sized,
{
    Until {
        relay,
        stop,
        flag: Arc::new(StopFlag::default()),
        task: None,
    }
}

/// The future [`until`] returns.
pub(super) struct Until<'a, R: ?Sized, S: ?Sized> {
    relay: Pin<&'a mut R>,
    stop: Pin<&'a mut S>,
    /// `stop`'s waker: set when it fired.
    flag: Arc<StopFlag>,
    /// The task's waker as last handed to `flag`: a task polled with another one (moved to
    /// another executor, or the first poll) polls `stop` again, which hands over the new one.
    task: Option<Waker>,
}

/// The waker `stop` is polled with: a flag, then the task's waker.
#[derive(Default)]
struct StopFlag {
    /// `stop` was woken since it was last polled.
    fired: AtomicBool,
    /// The task to wake (locked only when `stop` is polled with a new task waker or fires).
    task: Mutex<Option<Waker>>,
}

impl Wake for StopFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // The flag first: the task's next poll must see it.
        self.fired.store(true, Ordering::Release);
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl<T, R, S> Future for Until<'_, R, S>
where
    R: Future<Output = T> + ?Sized,
    S: Future<Output = CloseReason> + ?Sized,
{
    type Output = Result<T, CloseReason>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(v) = this.relay.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        // Cleared before `stop` is polled: a wake while it is polled is kept for the next poll.
        let fired = this.flag.fired.swap(false, Ordering::AcqRel);
        let same_task = this.task.as_ref().is_some_and(|t| t.will_wake(cx.waker()));
        if !same_task {
            *this
                .flag
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
            this.task = Some(cx.waker().clone());
        } else if !fired {
            return Poll::Pending;
        }
        let waker = Waker::from(this.flag.clone());
        this.stop
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .map(Err)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::pin::pin;
    use std::sync::atomic::AtomicUsize;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::actors::connection::close::Order;
    use crate::net::copy::Progress;

    /// A relay that wakes itself `wakes` times (as a busy relay does on every socket edge),
    /// then waits for nothing more; it completes with the count if `done`.
    struct Busy {
        wakes: usize,
        polls: usize,
        done: bool,
    }

    impl Future for Busy {
        type Output = usize;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            self.polls += 1;
            if self.polls <= self.wakes {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if self.done {
                Poll::Ready(self.polls)
            } else {
                Poll::Pending
            }
        }
    }

    /// A stop future that never fires and counts its polls.
    struct Counted<'a>(&'a AtomicUsize);

    impl Future for Counted<'_> {
        type Output = CloseReason;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<CloseReason> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Poll::Pending
        }
    }

    #[test]
    fn stop_is_polled_once_however_often_the_relay_wakes() {
        let polls = AtomicUsize::new(0);
        let relay = Busy {
            wakes: 1000,
            polls: 0,
            done: true,
        };
        let got = crate::rt::block_on(until(pin!(relay), pin!(Counted(&polls))));
        assert_eq!(got.ok(), Some(1001), "the relay ran to its end");
        assert_eq!(
            polls.load(Ordering::Relaxed),
            1,
            "stop polled on the first poll only, not on the relay's 1000 wakes"
        );
    }

    /// A stop future that counts its polls: its first poll has its waker woken from another
    /// thread a little later (a close order coming), the poll after that is ready.
    struct Fires<'a> {
        polls: &'a AtomicUsize,
        fired: bool,
    }

    impl Future for Fires<'_> {
        type Output = CloseReason;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CloseReason> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            if self.fired {
                return Poll::Ready(CloseReason::Retired);
            }
            self.fired = true;
            // Its own wake, from another thread a little later.
            let waker = cx.waker().clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                waker.wake();
            });
            Poll::Pending
        }
    }

    #[test]
    fn stop_is_polled_again_once_per_its_own_wake() {
        let polls = AtomicUsize::new(0);
        let relay = Busy {
            wakes: 500,
            polls: 0,
            done: false,
        };
        let stop = Fires {
            polls: &polls,
            fired: false,
        };
        let got = crate::rt::block_on(until(pin!(relay), pin!(stop)));
        assert!(
            matches!(got, Err(CloseReason::Retired)),
            "stop's reason ends the relay"
        );
        assert_eq!(
            polls.load(Ordering::Relaxed),
            2,
            "the first poll and the one after its wake"
        );
    }

    #[test]
    fn a_close_order_mid_relay_ends_it_as_retired() {
        let shared = crate::actors::Shared::for_tests(None);
        let progress = Progress::default();
        let accepted = Instant::now();
        let stop = super::super::relay::retired(&shared, &progress, accepted);
        // A relay still moving bytes: it wakes itself many times, then waits for more.
        let relay = Busy {
            wakes: 10_000,
            polls: 0,
            done: false,
        };
        let giver = shared.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let now = Instant::now();
            giver.close.give(Order {
                accepted_before: now,
                at: now,
                spread: Duration::ZERO,
                close_idle: false,
            });
        });
        let started = Instant::now();
        let got = crate::rt::block_on(until(pin!(relay), pin!(stop)));
        t.join().unwrap();
        assert!(
            matches!(got, Err(CloseReason::Retired)),
            "the relay ended with the close order's reason"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "ended when the order came"
        );
    }
}
