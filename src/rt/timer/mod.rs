//! One coarse timer per runtime: every deadline in tcpmap (idle timeouts, the ClientHello and
//! TLS handshake deadlines, connect timeouts, drain and DNS timeouts) waits here instead of
//! arming a timer of its own.
//!
//! Why: a reactor timer per connection costs syscalls per connection (async-io notifies its
//! reactor on every timer insert: an eventfd write and read, then a `timerfd_settime`). Here a
//! deadline is an entry in one [`queue::DeadlineQueue`] (a mutex-guarded B-tree, no syscall),
//! and one driver task sleeps on a single `async_io::Timer` until the earliest occupied tick,
//! wakes every waiter that is due, and sleeps again. The driver re-arms at most once per tick
//! while deadlines keep coming, and sleeps without a timer when none is queued.
//!
//! Granularity: [`GRANULARITY`] (10 ms). A deadline is rounded up to the next tick, so it
//! **never fires early and fires at most 10 ms late** (plus the time the executor takes to
//! run the driver and the woken task). A deadline waits on the clock of the thread that
//! queues it: each data-plane thread (`rt::local`) has one, driven by its loop; other threads
//! (the control plane) share the process's, driven by a [`Driver`] task. Must not: decide what a deadline means (callers do), or block.

mod queue;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use queue::{DeadlineQueue, Key, tick_at_or_after, tick_at_or_before, tick_start};

/// The clock's tick: deadlines fire 0–10 ms after they pass, never before.
pub(crate) const GRANULARITY: Duration = Duration::from_millis(10);

/// A deadline clock: the process's ([`clock`]), a data-plane thread's (`rt::local`), or one
/// of a test's own.
pub(crate) struct Clock {
    epoch: Instant,
    state: Mutex<State>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock").finish_non_exhaustive()
    }
}

struct State {
    /// Queued deadlines, each with the waker of the task waiting for it (None until polled).
    queue: DeadlineQueue<Option<Waker>>,
    /// The driver's waker, to wake it when a deadline earlier than its timer arrives.
    driver: Option<Waker>,
    /// The tick the driver's timer is set for; `None` while it sleeps without a timer.
    armed: Option<u64>,
    /// The driver task has been spawned (or the clock is driven by the local runtime).
    started: bool,
}

/// The process's deadline clock.
pub(crate) fn clock() -> &'static Clock {
    static CLOCK: OnceLock<Clock> = OnceLock::new();
    CLOCK.get_or_init(Clock::new)
}

impl Clock {
    /// An empty clock whose epoch is now.
    pub(crate) fn new() -> Clock {
        Clock {
            epoch: Instant::now(),
            state: Mutex::new(State {
                queue: DeadlineQueue::default(),
                driver: None,
                armed: None,
                started: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the queue consistent (every operation on it
        // is a single B-tree call), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The ticks that have fully passed.
    fn now_tick(&self) -> u64 {
        tick_at_or_before(self.epoch.elapsed(), GRANULARITY)
    }

    /// When `tick` starts.
    fn tick_instant(&self, tick: u64) -> Option<Instant> {
        self.epoch.checked_add(tick_start(tick, GRANULARITY))
    }

    /// Queues a deadline at `at` for `waker`'s task, from any thread; `None` when `at` has
    /// already passed (nothing is queued). Wakes the driver if the deadline is earlier than
    /// its timer, and starts a driver task if nobody drives this clock yet.
    pub(super) fn register(&'static self, at: Instant, waker: &Waker) -> Option<Key> {
        let tick = tick_at_or_after(at.saturating_duration_since(self.epoch), GRANULARITY);
        if tick <= self.now_tick() {
            return None;
        }
        let mut wake_driver = None;
        let key = {
            let mut state = self.lock();
            let key = state.queue.insert(tick, Some(waker.clone()));
            if state.armed.is_none_or(|armed| tick < armed) {
                // Earlier than the driver's timer (or it sleeps without one): wake it once.
                wake_driver = state.driver.take();
                if !state.started {
                    state.started = true;
                    crate::rt::detach(Driver::new(self));
                }
            }
            key
        };
        if let Some(driver) = wake_driver {
            driver.wake();
        }
        Some(key)
    }

    /// The clock is driven by the local runtime's loop (`rt::local`), not by a [`Driver`] task:
    /// call once, before any deadline is queued.
    pub(crate) fn drive_externally(&self) {
        self.lock().started = true;
    }

    /// Wakes every deadline that is due (the local runtime's loop, once per turn).
    pub(crate) fn drive(&self) {
        let mut due = Vec::new();
        self.lock().queue.expire(self.now_tick(), |_, w| {
            if let Some(w) = w {
                due.push(w);
            }
        });
        for w in due {
            w.wake();
        }
    }

    /// The local runtime's loop is about to sleep: returns when the next occupied tick starts
    /// (`None`: nothing is queued), and from now until the loop's next `rearm` a deadline
    /// queued earlier than that wakes `waker` (which wakes the loop).
    pub(crate) fn rearm(&self, waker: &Waker) -> Option<Instant> {
        let next = {
            let mut state = self.lock();
            let next = state.queue.next_tick();
            state.armed = next;
            if !state.driver.as_ref().is_some_and(|w| w.will_wake(waker)) {
                state.driver = Some(waker.clone());
            }
            next
        };
        next.and_then(|tick| self.tick_instant(tick))
    }
}

/// Completes once `at` has passed (0–10 ms after it, see [`GRANULARITY`]); `None` = never.
///
/// Registers on first poll, follows the polling task's waker, and leaves the queue when
/// dropped: a deadline that is no longer needed costs nothing after its drop.
#[derive(Debug)]
pub(crate) struct Sleep {
    at: Option<Instant>,
    /// Where it is queued, with the clock that holds it (the polling thread's, see
    /// `rt::local::clock`).
    key: Option<(&'static Clock, Key)>,
    done: bool,
}

impl Sleep {
    /// Sleeps until `at`.
    pub(crate) fn until(at: Instant) -> Sleep {
        Sleep {
            at: Some(at),
            key: None,
            done: false,
        }
    }

    /// Never completes (a deadline too far to represent).
    pub(crate) fn never() -> Sleep {
        Sleep {
            at: None,
            key: None,
            done: false,
        }
    }

    /// Sleeps for `duration` from now (never, if that overflows `Instant`).
    pub(crate) fn after(duration: Duration) -> Sleep {
        Sleep {
            at: Instant::now().checked_add(duration),
            key: None,
            done: false,
        }
    }

    /// Moves the deadline to `at` (re-armed on the next poll); `None` = never.
    pub(crate) fn reset(&mut self, at: Option<Instant>) {
        self.cancel();
        self.at = at;
        self.done = false;
    }

    fn cancel(&mut self) {
        if let Some((clock, key)) = self.key.take() {
            clock.lock().queue.remove(key);
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(());
        }
        let Some(at) = this.at else {
            return Poll::Pending;
        };
        if let Some((clock, key)) = this.key {
            let mut state = clock.lock();
            match state.queue.get_mut(key) {
                // Gone from the queue: the driver expired it.
                None => {
                    this.key = None;
                    this.done = true;
                    return Poll::Ready(());
                }
                Some(slot) => {
                    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        *slot = Some(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
            }
        }
        let clock = crate::rt::local::clock();
        match clock.register(at, cx.waker()) {
            Some(key) => {
                this.key = Some((clock, key));
                Poll::Pending
            }
            None => {
                this.done = true;
                Poll::Ready(())
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Races `future` against a coarse deadline `duration` from now; `None` when the deadline wins.
pub(crate) async fn timeout<F: Future>(duration: Duration, future: F) -> Option<F::Output> {
    use futures_lite::FutureExt;
    async { Some(future.await) }
        .or(async {
            Sleep::after(duration).await;
            None
        })
        .await
}

/// The driver: expires what is due, then sleeps on its one timer until the next occupied tick.
struct Driver {
    clock: &'static Clock,
    timer: async_io::Timer,
    /// The tick `timer` is set for.
    set_for: Option<u64>,
    /// Wakers taken out of the queue, woken after the lock is released (kept for its capacity).
    due: Vec<Waker>,
}

impl Driver {
    fn new(clock: &'static Clock) -> Self {
        Driver {
            clock,
            timer: async_io::Timer::never(),
            set_for: None,
            due: Vec::new(),
        }
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let clock = this.clock;
        loop {
            let next = {
                let mut state = clock.lock();
                let due = &mut this.due;
                state.queue.expire(clock.now_tick(), |_, waker| {
                    if let Some(w) = waker {
                        due.push(w);
                    }
                });
                let next = state.queue.next_tick();
                state.armed = next;
                if !state
                    .driver
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    state.driver = Some(cx.waker().clone());
                }
                next
            };
            for waker in this.due.drain(..) {
                waker.wake();
            }
            let Some(tick) = next else {
                // Nothing queued: sleep without a timer until an insert wakes us.
                return Poll::Pending;
            };
            if this.set_for != Some(tick) {
                let at = clock
                    .tick_instant(tick)
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
                this.timer.set_at(at);
                this.set_for = Some(tick);
            }
            match Pin::new(&mut this.timer).poll(cx) {
                Poll::Ready(_) => this.set_for = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The driver against the real clock: never early, not much late, and dropped deadlines
    //! leave the queue. Bounds on lateness are generous (this machine is shared): they check
    //! that a deadline fires, not how fast.

    use super::*;

    #[test]
    fn fires_after_the_deadline_never_before() {
        futures_lite::future::block_on(async {
            let start = Instant::now();
            let sleeps = [30u64, 10, 50, 20].map(|ms| async move {
                let at = start + Duration::from_millis(ms);
                Sleep::until(at).await;
                assert!(Instant::now() >= at, "fired early");
            });
            let [a, b, c, d] = sleeps;
            futures_lite::future::zip(
                futures_lite::future::zip(a, b),
                futures_lite::future::zip(c, d),
            )
            .await;
        });
    }

    #[test]
    fn a_past_deadline_is_ready_at_once_and_never_is_never() {
        futures_lite::future::block_on(async {
            Sleep::until(Instant::now() - Duration::from_millis(5)).await;
            let never = timeout(Duration::from_millis(30), Sleep::never()).await;
            assert!(never.is_none());
        });
    }

    #[test]
    fn timeout_returns_the_value_or_none() {
        futures_lite::future::block_on(async {
            assert_eq!(timeout(Duration::from_secs(5), async { 7 }).await, Some(7));
            let slow = timeout(
                Duration::from_millis(20),
                Sleep::after(Duration::from_secs(60)),
            );
            assert_eq!(slow.await, None);
        });
    }

    #[test]
    fn reset_moves_the_deadline() {
        futures_lite::future::block_on(async {
            let start = Instant::now();
            let mut s = Sleep::after(Duration::from_secs(3600));
            // Register the far deadline, then move it close.
            assert!(futures_lite::future::poll_once(&mut s).await.is_none());
            s.reset(Some(start + Duration::from_millis(20)));
            (&mut s).await;
            assert!(start.elapsed() >= Duration::from_millis(20));
            assert!(start.elapsed() < Duration::from_secs(60));
        });
    }

    #[test]
    fn dropped_deadlines_leave_the_queue() {
        futures_lite::future::block_on(async {
            let mut sleeps: Vec<Sleep> = (0..100)
                .map(|i| Sleep::after(Duration::from_secs(7200 + i)))
                .collect();
            for s in &mut sleeps {
                assert!(futures_lite::future::poll_once(s).await.is_none());
            }
            let keys: Vec<Key> = sleeps.iter().filter_map(|s| s.key.map(|k| k.1)).collect();
            assert_eq!(keys.len(), 100, "every polled deadline is queued");
            drop(sleeps);
            let mut state = clock().lock();
            assert!(
                keys.iter().all(|k| state.queue.get_mut(*k).is_none()),
                "dropped deadlines stayed queued"
            );
        });
    }
}
