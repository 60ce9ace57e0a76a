//! The local runtime: data-plane threads, each running its own tasks and driving its own
//! reactor and coarse clock, so a socket that turns ready wakes its task on the same thread,
//! with no futex, no eventfd and no timer syscall in between. Every connection runs on one:
//! in a worker process and `tcpmap run --workers 1` (one thread, [`install`]ed: it runs every
//! task of the process), and in the library (N threads, [`threads`], beside the control
//! plane on async-std).
//!
//! Each thread's loop:
//!
//! ```text
//! run queued tasks (at most BUDGET) ─▶ expire due deadlines (its clock)
//!        ▲                                      │
//!        └── wake the tasks of ready sockets ◀── epoll_wait(until the clock's next tick;
//!                                                0 if tasks are queued; ∞ if no deadline)
//! ```
//!
//! What a task on a data-plane thread starts stays there: `rt::detach`/`rt::spawn` from it
//! queue on its runtime, a socket it registers joins its reactor ([`reactor`]), a deadline it
//! queues waits on its clock ([`clock`]). Another thread (the control plane, async-io's
//! thread for `rt::sleep` and signals) schedules a task by pushing it on the queue and, only
//! if the loop sleeps, writing the reactor's eventfd; a deadline queued from another thread
//! earlier than the loop's timeout does the same. The loop says it will sleep before its
//! last look at the queue and the clock ([`park_timeout`]), so neither is missed.
//! [`install`] is called once per process, before any socket is registered; the process then
//! never starts the reactor's own thread, and its reactor and clock are the installed
//! thread's.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use async_task::Runnable;
use concurrent_queue::ConcurrentQueue;

use super::reactor::Reactor;
use super::timer::Clock;

/// Tasks run between two looks at the reactor.
const BUDGET: usize = 128;

static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Every data-plane thread this process started, in order; the first is the installed one
/// when [`install`] was called. Threads live as long as the process and are shared by every
/// proxy it runs (the library may start several), like a thread pool.
static THREADS: Mutex<Vec<&'static Runtime>> = Mutex::new(Vec::new());
/// The installed runtime (see [`install`]).
static DEFAULT: OnceLock<&'static Runtime> = OnceLock::new();

/// One data-plane thread: its run queue, its reactor and its coarse clock. A task spawned on
/// it runs there to its end; a socket registered from it is watched by its reactor, a
/// deadline queued from it waits on its clock.
pub(crate) struct Runtime {
    name: String,
    queue: ConcurrentQueue<Runnable>,
    reactor: &'static Reactor,
    clock: &'static Clock,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// The runtime whose loop runs on this thread, if any: a task scheduled there needs no
    /// unpark (the loop looks at the queue before it sleeps), which saves the handshake's
    /// fence on every local wake.
    static CURRENT: Cell<Option<&'static Runtime>> = const { Cell::new(None) };
}

/// Whether this process runs the local runtime for everything (a worker process,
/// `tcpmap run --workers 1`).
pub(crate) fn installed() -> bool {
    INSTALLED.load(Ordering::Acquire)
}

/// The runtime of this thread's loop, if this is a data-plane thread.
pub(crate) fn current() -> Option<&'static Runtime> {
    CURRENT.get()
}

/// Where a task spawned from this thread runs: this thread's loop, else the installed
/// runtime (`None`: neither; the caller's executor then).
pub(crate) fn here() -> Option<&'static Runtime> {
    current().or_else(|| DEFAULT.get().copied())
}

/// The reactor a socket registered from this thread joins: this loop's, else the process's.
pub(crate) fn reactor() -> std::io::Result<&'static Reactor> {
    match current() {
        Some(rt) => Ok(rt.reactor),
        None => super::reactor::get(),
    }
}

/// The clock a deadline queued from this thread waits on: this loop's, else the process's.
pub(crate) fn clock() -> &'static Clock {
    match current() {
        Some(rt) => rt.clock,
        None => super::timer::clock(),
    }
}

/// Switches this process to the local runtime and starts its thread (the first data-plane
/// thread, `tcpmap-local`, driving the process's reactor and clock). Call before anything
/// registers a socket or spawns a task; a second call does nothing.
pub(crate) fn install() -> std::io::Result<()> {
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    let mut threads = super::reactor::lock(&THREADS);
    super::timer::clock().drive_externally();
    let runtime = start(
        "tcpmap-local".into(),
        super::reactor::get()?,
        super::timer::clock(),
    )?;
    let _ = DEFAULT.set(runtime);
    threads.insert(0, runtime);
    Ok(())
}

/// The first `n` data-plane threads of this process (at least one), starting those that do
/// not run yet: `tcpmap-data-1`, `tcpmap-data-2`… each with a reactor and a clock of its own.
/// The installed runtime, if any, is the first.
pub(crate) fn threads(n: usize) -> std::io::Result<Vec<&'static Runtime>> {
    let mut threads = super::reactor::lock(&THREADS);
    while threads.len() < n.max(1) {
        let reactor: &'static Reactor = Box::leak(Box::new(Reactor::new()?));
        let clock: &'static Clock = Box::leak(Box::new(Clock::new()));
        clock.drive_externally();
        let name = format!("tcpmap-data-{}", threads.len() + 1);
        threads.push(start(name, reactor, clock)?);
    }
    Ok(threads.iter().take(n.max(1)).copied().collect())
}

/// Starts a loop thread for a new runtime (leaked: it lives as long as the process).
fn start(
    name: String,
    reactor: &'static Reactor,
    clock: &'static Clock,
) -> std::io::Result<&'static Runtime> {
    let runtime: &'static Runtime = Box::leak(Box::new(Runtime {
        name: name.clone(),
        queue: ConcurrentQueue::unbounded(),
        reactor,
        clock,
    }));
    std::thread::Builder::new()
        .name(name)
        .spawn(move || run(runtime))?;
    Ok(runtime)
}

impl Runtime {
    /// The loop thread's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Registers a listening socket with this runtime's reactor (from any thread).
    pub(crate) fn listener(
        &'static self,
        io: std::net::TcpListener,
    ) -> std::io::Result<super::Async<std::net::TcpListener>> {
        super::Async::listener_on(io, self.reactor)
    }

    /// Spawns `future` on this runtime (from any thread).
    pub(crate) fn spawn<F>(&'static self, future: F) -> async_task::Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        // A panicking task ends alone: the panic is kept for whoever awaits its Task (dropped
        // if nobody does), the loop goes on.
        let (runnable, task) = async_task::Builder::new()
            .propagate_panic(true)
            .spawn(move |()| future, move |r| self.schedule(r));
        runnable.schedule();
        task
    }

    fn schedule(&'static self, runnable: Runnable) {
        // The queue is unbounded: push fails only when it is closed, and it never is.
        let _ = self.queue.push(runnable);
        if current().is_some_and(|rt| std::ptr::eq(rt, self)) {
            return;
        }
        self.reactor.unpark();
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

fn run(runtime: &'static Runtime) {
    let (queue, reactor, clock) = (&runtime.queue, runtime.reactor, runtime.clock);
    let unpark = Waker::from(Arc::new(Unpark(reactor)));
    CURRENT.set(Some(runtime));
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

    /// The name of the thread running this.
    fn thread_name() -> String {
        std::thread::current()
            .name()
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn what_a_data_plane_task_starts_stays_on_its_thread() {
        let runtimes = threads(2).unwrap();
        assert_eq!(runtimes.len(), 2);
        assert!(!std::ptr::eq(runtimes[0], runtimes[1]), "two threads");
        let second = runtimes[1];
        let task = second.spawn(async move {
            let here = thread_name();
            // A task it spawns, the socket it registers and a deadline it queues.
            let child = crate::rt::spawn(async { thread_name() }).await;
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let listener = super::super::Async::listener(l).unwrap();
            let on_its_reactor = std::ptr::eq(listener.reactor(), second.reactor);
            let client = std::thread::spawn(move || std::net::TcpStream::connect(addr));
            listener.readable().await.unwrap();
            let started = Instant::now();
            crate::rt::timer::Sleep::after(Duration::from_millis(30)).await;
            let slept = started.elapsed();
            let _ = client.join();
            (
                here,
                child,
                on_its_reactor,
                current().map(|rt| rt.name().to_string()),
                slept,
            )
        });
        let (here, child, on_its_reactor, current, slept) = crate::rt::block_on(task);
        assert_eq!(here, second.name());
        assert_eq!(child, second.name(), "a spawned task left its thread");
        assert!(on_its_reactor, "the socket joined another reactor");
        assert_eq!(current.as_deref(), Some(second.name()));
        assert!(slept >= Duration::from_millis(30) && slept < Duration::from_secs(5));
        // The clock it waited on is its thread's: the process's holds nothing of it.
        assert!(!std::ptr::eq(second.clock, super::super::timer::clock()));
    }
}
