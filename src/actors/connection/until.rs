//! [`until`]: a relay, unless what ends it from outside (a close order, the maximum age)
//! completes first.
//!
//! A busy relay wakes tens of thousands of times a second, and polling the stop future means
//! taking the lock of the close orders' `Event`, shared by every connection of the process.
//! So `stop` is polled on each of the relay's first [`EAGER`] polls (a short connection ends
//! within them), then once with a waker of its own, a flag in front of the task's waker, and
//! after that only when that waker fired.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use crate::close::CloseReason;

/// Polls during which `stop` is polled each time with the task's own waker. A short plain
/// connection's relay is done within about five: it never allocates the flag (measured with
/// callgrind: the flag from the first poll on cost 2 % more instructions per short connection).
const EAGER: u8 = 16;

/// The relay's result, unless `stop` completes first: then its reason. Both are pinned by the
/// caller, so each is stored once in the connection's future (an `async fn` taking them by
/// value would hold them twice); this adds the two pointers, the stop waker's flag (allocated
/// after [`EAGER`] polls) and the task waker it was last given.
pub(super) fn until<'a, T, R, S>(relay: Pin<&'a mut R>, stop: Pin<&'a mut S>) -> Until<'a, R, S>
where
    R: Future<Output = T> + ?Sized,
    S: Future<Output = CloseReason> + ?Sized,
{
    Until {
        relay,
        stop,
        eager: EAGER,
        flag: None,
        task: None,
    }
}

/// The future [`until`] returns.
pub(super) struct Until<'a, R: ?Sized, S: ?Sized> {
    relay: Pin<&'a mut R>,
    stop: Pin<&'a mut S>,
    /// Eager polls left.
    eager: u8,
    /// `stop`'s own waker, once the eager polls are over: set when it fired.
    flag: Option<Arc<StopFlag>>,
    /// The task's waker as last handed to `flag`: a task polled with another one (moved to
    /// another executor) polls `stop` again, which hands over the new one.
    task: Option<Waker>,
}

/// The waker `stop` is polled with after the eager polls: a flag, then the task's waker.
struct StopFlag {
    /// `stop` was woken since it was last polled.
    fired: AtomicBool,
    /// The task to wake (locked only when the task's waker changes or `stop` fires).
    task: Mutex<Waker>,
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
        task.wake();
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
        let Some(flag) = &this.flag else {
            if this.eager > 0 {
                this.eager -= 1;
                return this.stop.as_mut().poll(cx).map(Err);
            }
            // From now on `stop` wakes the flag (its waits take the new waker when polled).
            let flag = Arc::new(StopFlag {
                fired: AtomicBool::new(false),
                task: Mutex::new(cx.waker().clone()),
            });
            this.task = Some(cx.waker().clone());
            let waker = Waker::from(flag.clone());
            this.flag = Some(flag);
            return this
                .stop
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .map(Err);
        };
        // Cleared before `stop` is polled: a wake while it is polled is kept for the next poll.
        let fired = flag.fired.swap(false, Ordering::AcqRel);
        let same_task = this.task.as_ref().is_some_and(|t| t.will_wake(cx.waker()));
        if !same_task {
            *flag.task.lock().unwrap_or_else(PoisonError::into_inner) = cx.waker().clone();
            this.task = Some(cx.waker().clone());
        } else if !fired {
            return Poll::Pending;
        }
        let waker = Waker::from(flag.clone());
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
    fn stop_is_polled_once_more_after_the_eager_polls_however_often_the_relay_wakes() {
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
            usize::from(EAGER) + 1,
            "stop polled on the eager polls and the switch, not on the relay's other wakes"
        );
    }

    #[test]
    fn a_short_relay_never_allocates_the_flag() {
        let polls = AtomicUsize::new(0);
        let relay = Busy {
            wakes: 5,
            polls: 0,
            done: true,
        };
        let (mut relay, mut stop) = (pin!(relay), pin!(Counted(&polls)));
        let mut fut = pin!(until(relay.as_mut(), stop.as_mut()));
        let mut cx = Context::from_waker(Waker::noop());
        let got = loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                break v;
            }
        };
        assert_eq!(got.ok(), Some(6));
        assert!(
            fut.flag.is_none(),
            "no flag for a relay done in its eager polls"
        );
        assert_eq!(
            polls.load(Ordering::Relaxed),
            5,
            "stop polled on each eager poll"
        );
    }

    /// A stop future that is ready once `released` is set, and counts its polls; it keeps
    /// the waker of its latest poll, as a real wait does.
    struct Released {
        state: Arc<(AtomicBool, Mutex<Option<Waker>>)>,
        polls: Arc<AtomicUsize>,
    }

    impl Future for Released {
        type Output = CloseReason;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CloseReason> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.state.0.load(Ordering::SeqCst) {
                return Poll::Ready(CloseReason::Retired);
            }
            *self.state.1.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[test]
    fn stop_is_polled_again_once_per_its_own_wake() {
        let state = Arc::new((AtomicBool::new(false), Mutex::new(None::<Waker>)));
        let polls = Arc::new(AtomicUsize::new(0));
        let stop = Released {
            state: state.clone(),
            polls: polls.clone(),
        };
        // The relay keeps waking (500 times), then waits; stop fires after the switch.
        let relay = Busy {
            wakes: 500,
            polls: 0,
            done: false,
        };
        let (st, counted) = (state.clone(), polls.clone());
        let t = std::thread::spawn(move || {
            while counted.load(Ordering::SeqCst) < usize::from(EAGER) + 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(20));
            st.0.store(true, Ordering::SeqCst);
            if let Some(w) = st.1.lock().unwrap().take() {
                w.wake();
            }
        });
        let got = crate::rt::block_on(until(pin!(relay), pin!(stop)));
        t.join().unwrap();
        assert!(
            matches!(got, Err(CloseReason::Retired)),
            "stop's reason ends the relay"
        );
        assert_eq!(
            polls.load(Ordering::SeqCst),
            usize::from(EAGER) + 2,
            "the eager polls, the switch, and the one after its own wake"
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
