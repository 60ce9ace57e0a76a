//! The runtime seam: the only file that names async-std and flume.
//!
//! async-std is discontinued upstream (RUSTSEC-2025-0052) and is a thin layer over
//! `async-io` + `async-executor`. Everything else in tcpmap is written against
//! `futures-io`, `futures-lite` and `async-io` (sockets are `async_io::Async<std::net::…>`,
//! deadlines are the coarse clock in `crate::timer`), so moving to smol means rewriting this
//! file alone.
//!
//! Two ways to run: async-std's thread pool (the library's default: tasks move between
//! threads, async-io's reactor is driven by whichever thread is idle), or
//! [`block_on_single_threaded`]: one thread runs one executor and drives the reactor itself,
//! so a ready socket's task runs on the thread that saw it ready (no futex or eventfd
//! hand-off per wakeup). `tcpmap run` picks the second with `ASYNC_STD_THREAD_COUNT=1`
//! ([`block_on_main`]), and a worker process runs that way.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

/// The executor of a single-threaded runtime, once [`block_on_single_threaded`] started one:
/// from then on [`spawn`] and [`detach`] put every task of the process on it.
static SINGLE: OnceLock<async_executor::Executor<'static>> = OnceLock::new();

/// A handle to a spawned task; dropping it detaches the task (it keeps running).
#[derive(Debug)]
pub(crate) struct Task<T>(TaskInner<T>);

#[derive(Debug)]
enum TaskInner<T> {
    Pool(async_std::task::JoinHandle<T>),
    /// `None` only after the output was taken or the task detached on drop.
    Single(Option<async_executor::Task<T>>),
}

impl<T> Future for Task<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.get_mut().0 {
            TaskInner::Pool(handle) => Pin::new(handle).poll(cx),
            TaskInner::Single(Some(task)) => Pin::new(task).poll(cx),
            // Polled after completion: a contract breach of the caller's, but not a panic.
            TaskInner::Single(None) => Poll::Pending,
        }
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        // async-executor cancels a task whose handle is dropped; async-std detaches it.
        // Same meaning on both: detach.
        if let TaskInner::Single(task) = &mut self.0 {
            if let Some(task) = task.take() {
                task.detach();
            }
        }
    }
}

/// Sending side of an actor mailbox or a reply channel.
pub(crate) type Sender<T> = flume::Sender<T>;
/// Receiving side of an actor mailbox or a reply channel.
pub(crate) type Receiver<T> = flume::Receiver<T>;

/// A bounded actor mailbox.
pub(crate) fn mailbox<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    flume::bounded(capacity)
}

/// A one-shot reply channel (a bounded channel of one; a dropped sender means the actor is gone).
pub(crate) fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    flume::bounded(1)
}

/// Spawns a task on the runtime's executor and runs it to its end whatever becomes of it:
/// nobody waits for it. Every actor and connection task is started this way; say `detach`
/// rather than dropping a [`Task`], because runtimes differ there (smol's `Task` cancels
/// on drop, async-std's detaches).
pub(crate) fn detach<F>(future: F)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match SINGLE.get() {
        Some(executor) => executor.spawn(future).detach(),
        None => drop(async_std::task::spawn(future)),
    }
}

/// Spawns a task on the runtime's executor; await the returned [`Task`] for its output.
pub(crate) fn spawn<F>(future: F) -> Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match SINGLE.get() {
        Some(executor) => Task(TaskInner::Single(Some(executor.spawn(future)))),
        None => Task(TaskInner::Pool(async_std::task::spawn(future))),
    }
}

/// Runs a future to completion on the current thread, driving the runtime (in a
/// single-threaded process: running its executor meanwhile).
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    match SINGLE.get() {
        Some(executor) => async_io::block_on(executor.run(future)),
        None => async_std::task::block_on(future),
    }
}

/// Runs `future` and every task spawned from now on on the current thread alone: one
/// executor, and this thread drives async-io's reactor whenever the executor is idle, so a
/// socket found ready is served on the thread that found it. Process-wide and for good:
/// call it once, from the thread that runs the process (`main`, a worker's entry point),
/// before anything is spawned. Blocking work ([`spawn_blocking`]) still runs on its own
/// threads, and async-io keeps its fallback thread: when this thread was off the CPU (or
/// idle) for one of that thread's naps (up to 10 ms), it takes the reactor over and hands
/// wakeups to this thread (futex + eventfd) until this thread takes it back.
pub(crate) fn block_on_single_threaded<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let executor = SINGLE.get_or_init(async_executor::Executor::new);
    // The main future runs as a task too, so it is polled only when woken: `run(future)`
    // would poll it after every wakeup of any task (the daemon's signal stream then tries a
    // read each time).
    let main = executor.spawn(future);
    async_io::block_on(executor.run(main))
}

/// The daemon's runtime: single-threaded ([`block_on_single_threaded`]) when
/// `ASYNC_STD_THREAD_COUNT=1`, else async-std's pool (that many threads, default one per core).
pub(crate) fn block_on_main<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if std::env::var("ASYNC_STD_THREAD_COUNT").is_ok_and(|n| n.trim() == "1") {
        block_on_single_threaded(future)
    } else {
        block_on(future)
    }
}

/// Sleeps for `duration` on a timer of its own (precise; for backoffs and pacing, which are
/// not per connection: per-connection deadlines use [`timeout`]).
pub(crate) async fn sleep(duration: Duration) {
    async_io::Timer::after(duration).await;
}

/// Races `future` against a coarse deadline; `None` when the deadline wins (`crate::timer`).
pub(crate) async fn timeout<F: Future>(duration: Duration, future: F) -> Option<F::Output> {
    crate::timer::timeout(duration, future).await
}

/// The firing side of a [`Tripwire`]: dropping (or [`Trigger::fire`]) trips every clone.
#[derive(Debug)]
pub(crate) struct Trigger(#[allow(dead_code)] Sender<()>);

impl Trigger {
    /// Trips the wire.
    pub(crate) fn fire(self) {}
}

/// A cheap, cloneable signal that completes once its [`Trigger`] is gone.
#[derive(Debug, Clone)]
pub(crate) struct Tripwire(Receiver<()>);

impl Tripwire {
    /// Waits until the trigger fires (returns at once if it already has).
    pub(crate) async fn tripped(&self) {
        while self.0.recv_async().await.is_ok() {}
    }
}

/// A trigger and its wire.
pub(crate) fn tripwire() -> (Trigger, Tripwire) {
    let (tx, rx) = flume::bounded(1);
    (Trigger(tx), Tripwire(rx))
}

/// Held by every listener and connection; the Supervisor's [`DrainWait`] completes when
/// all tokens are dropped (the "shutdown complete" trick: no counters).
#[derive(Debug, Clone)]
pub(crate) struct DrainToken(#[allow(dead_code)] Sender<()>);

/// Waits for every [`DrainToken`] to be dropped.
#[derive(Debug)]
pub(crate) struct DrainWait(Receiver<()>);

impl DrainWait {
    /// Completes once no token is left.
    pub(crate) async fn all_dropped(&self) {
        while self.0.recv_async().await.is_ok() {}
    }

    /// Tokens still held (listeners + connections).
    pub(crate) fn outstanding(&self) -> usize {
        self.0.sender_count()
    }
}

/// A token source and its waiter.
pub(crate) fn drain_pair() -> (DrainToken, DrainWait) {
    let (tx, rx) = flume::bounded(1);
    (DrainToken(tx), DrainWait(rx))
}

pub(crate) use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// A stream of the Unix signals in `which` (registered when this returns, so none sent
/// after it is lost).
pub(crate) fn signals(
    which: &[std::ffi::c_int],
) -> std::io::Result<impl futures_lite::Stream<Item = std::ffi::c_int> + Unpin> {
    signal_hook_async_std::Signals::new(which)
}

/// Runs `f` on a thread meant for blocking work (file reads, config parsing).
pub(crate) async fn spawn_blocking<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    async_std::task::spawn_blocking(f).await
}

/// Runs `future` on this runtime's executor and awaits its output from any other executor
/// (the actix adapter's tokio threads): the future travels to a spawned task, the output
/// comes back on a one-shot channel. `None` if the task died before replying.
#[cfg(feature = "actix")]
pub(crate) async fn bridge<F>(future: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = flume::bounded(1);
    detach(async move {
        // The requester may have given up (dropped its future); nothing to do then.
        let _ = tx.send_async(future.await).await;
    });
    rx.recv_async().await.ok()
}
