//! The local runtime of a worker process: one thread runs every task, drives the reactor and
//! the coarse clock, so a socket that turns ready wakes its task on the same thread, with no
//! futex, no eventfd and no timer syscall in between.
//!
//! The loop, on the thread `tcpmap-local`:
//!
//! ```text
//! run queued tasks (at most BUDGET) ─▶ expire due deadlines (rt::timer)
//!        ▲                                      │
//!        └── wake the tasks of ready sockets ◀── epoll_wait(until the clock's next tick;
//!                                                0 if tasks are queued; ∞ if no deadline)
//! ```
//!
//! Another thread (the worker's control thread, async-io's for `rt::sleep` and signals)
//! schedules a task by pushing it on the queue and, only if the loop sleeps, writing the
//! reactor's eventfd; a deadline queued from another thread earlier than the loop's timeout
//! does the same. The loop says it will sleep before its last look at the queue and the clock
//! ([`park_timeout`]), so neither is missed. Installed once per process, before any socket is registered
//! ([`install`]); the process then never starts the reactor's own thread.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use async_task::Runnable;
use concurrent_queue::ConcurrentQueue;

use super::reactor::Reactor;
use super::timer::Clock;

/// Tasks run between two looks at the reactor.
const BUDGET: usize = 128;

static INSTALLED: AtomicBool = AtomicBool::new(false);
static QUEUE: OnceLock<ConcurrentQueue<Runnable>> = OnceLock::new();

/// Whether this process runs the local runtime.
pub(crate) fn installed() -> bool {
    INSTALLED.load(Ordering::Acquire)
}

fn queue() -> &'static ConcurrentQueue<Runnable> {
    QUEUE.get_or_init(ConcurrentQueue::unbounded)
}

/// Switches this process to the local runtime and starts its thread. Call before anything
/// registers a socket or spawns a task; a second call does nothing.
pub(crate) fn install() -> std::io::Result<()> {
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    super::timer::clock().drive_externally();
    let reactor = super::reactor::get()?;
    std::thread::Builder::new()
        .name("tcpmap-local".into())
        .spawn(move || run(reactor))?;
    Ok(())
}

/// Spawns `future` on the local runtime.
pub(crate) fn spawn<F>(future: F) -> async_task::Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // A panicking task ends alone: the panic is kept for whoever awaits its Task (dropped if
    // nobody does), the loop goes on.
    let (runnable, task) = async_task::Builder::new()
        .propagate_panic(true)
        .spawn(move |()| future, schedule);
    runnable.schedule();
    task
}

thread_local! {
    /// Set on the loop's own thread: a task scheduled there needs no unpark (the loop looks
    /// at the queue before it sleeps), which saves the handshake's fence on every local wake.
    static ON_LOOP: Cell<bool> = const { Cell::new(false) };
}

fn schedule(runnable: Runnable) {
    // The queue is unbounded: push fails only when it is closed, and it never is.
    let _ = queue().push(runnable);
    if ON_LOOP.get() {
        return;
    }
    if let Ok(reactor) = super::reactor::get() {
        reactor.unpark();
    }
}

/// Wakes the loop (the coarse clock's driver waker: an earlier deadline shortens its sleep).
struct Unpark(&'static Reactor);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

fn run(reactor: &'static Reactor) {
    let queue = queue();
    let clock = super::timer::clock();
    let unpark = Waker::from(Arc::new(Unpark(reactor)));
    ON_LOOP.set(true);
    loop {
        for _ in 0..BUDGET {
            match queue.pop() {
                Ok(runnable) => {
                    runnable.run();
                }
                Err(_) => break,
            }
        }
        clock.drive();
        let timeout = park_timeout(queue, reactor, clock, &unpark);
        if let Err(e) = reactor.turn(timeout) {
            tracing::error!(error = %e, "epoll_wait failed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// How long the loop may wait in `epoll_wait`: not at all while tasks are queued, else until
/// the clock's next occupied tick (`None`: until an event).
///
/// The order is the handshake with other threads: first [`Reactor::will_sleep`], from which on
/// a task scheduled or a deadline queued elsewhere writes the eventfd; then a look at what was
/// queued before that (the run queue, then the clock: [`Clock::rearm`] reads its next tick and
/// hands it the loop's waker). A deadline queued between the loop's last look at the clock and
/// `will_sleep` used to be missed: its wake found the loop awake (no eventfd write), and the
/// loop slept on the tick it had read before.
fn park_timeout(
    queue: &ConcurrentQueue<Runnable>,
    reactor: &Reactor,
    clock: &Clock,
    unpark: &Waker,
) -> Option<Duration> {
    if !queue.is_empty() {
        return Some(Duration::ZERO);
    }
    reactor.will_sleep();
    if !queue.is_empty() {
        return Some(Duration::ZERO);
    }
    clock
        .rearm(unpark)
        .map(|at| at.saturating_duration_since(Instant::now()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! One turn of the loop, step by step, on a reactor and a clock of the test's own (the
    //! process's are driven by other tests' threads).

    use super::*;

    #[test]
    fn a_deadline_queued_from_another_thread_before_the_loop_sleeps_is_met() {
        let reactor: &'static Reactor = Box::leak(Box::new(Reactor::new().unwrap()));
        let clock: &'static Clock = Box::leak(Box::new(Clock::new()));
        clock.drive_externally();
        let queue = ConcurrentQueue::unbounded();
        let unpark = Waker::from(Arc::new(Unpark(reactor)));
        // The loop's turn up to its decision to sleep: nothing is due, nothing is queued.
        clock.drive();
        // Now another thread queues a deadline 30 ms away (an upstream connect started by
        // the worker's control thread, say): it wakes the loop's waker.
        let at = Instant::now() + Duration::from_millis(30);
        std::thread::scope(|s| {
            s.spawn(|| clock.register(at, Waker::noop()).unwrap());
        });
        let timeout = park_timeout(&queue, reactor, clock, &unpark);
        assert!(
            timeout.is_some_and(|t| t <= Duration::from_millis(50)),
            "the loop would sleep past the deadline: timeout {timeout:?}"
        );
        // And the wait it makes ends by the deadline's tick.
        let started = Instant::now();
        reactor
            .turn(timeout.or(Some(Duration::from_secs(2))))
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
