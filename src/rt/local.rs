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
//! reactor's eventfd. Installed once per process, before any socket is registered
//! ([`install`]); the process then never starts the reactor's own thread.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use async_task::Runnable;
use concurrent_queue::ConcurrentQueue;

use super::reactor::Reactor;

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

fn schedule(runnable: Runnable) {
    // The queue is unbounded: push fails only when it is closed, and it never is.
    let _ = queue().push(runnable);
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
        let next = clock.rearm(&unpark);
        let timeout = park_timeout(queue, reactor, next);
        if let Err(e) = reactor.turn(timeout) {
            tracing::error!(error = %e, "epoll_wait failed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// How long the loop may wait in `epoll_wait`: not at all while tasks are queued, else until
/// the clock's next occupied tick (`None`: until an event).
fn park_timeout(
    queue: &ConcurrentQueue<Runnable>,
    reactor: &Reactor,
    next: Option<Instant>,
) -> Option<Duration> {
    if !queue.is_empty() {
        return Some(Duration::ZERO);
    }
    // From here a task scheduled by another thread writes the eventfd; the second look
    // catches one pushed just before.
    reactor.will_sleep();
    if !queue.is_empty() {
        return Some(Duration::ZERO);
    }
    next.map(|at| at.saturating_duration_since(Instant::now()))
}
