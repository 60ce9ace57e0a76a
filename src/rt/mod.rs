//! The runtime seam: the only directory that names async-std, async-io, flume and signal-hook
//! (`tests/layering.rs` checks it).
//!
//! async-std is discontinued upstream (RUSTSEC-2025-0052) and is a thin layer over
//! `async-io` + `async-executor`. Everything else in tcpmap is written against
//! `futures-io`, `futures-lite` and this module: data-plane sockets are [`Async`]`<std::net::…>`
//! on tcpmap's own edge-triggered reactor ([`reactor`]), deadlines are the coarse clock in
//! [`timer`], pacing sleeps are [`sleep`], the admin endpoint's sockets are [`ControlListener`]
//! and [`ControlStream`]. So moving to smol means rewriting files in `src/rt/` alone: this one
//! (executor, channels, signals, sleeps), `control.rs` (the admin sockets) and the coarse
//! clock's driver timer in `timer/mod.rs`.
//!
//! Where tasks run:
//! - **data-plane threads** ([`local`]): every listener and connection. Each thread runs its
//!   tasks and drives its own reactor and coarse clock (no wake-up crosses a thread); what a
//!   task there spawns, registers or waits for stays on that thread. The library runs N
//!   of them beside its control plane; a worker process and `tcpmap run --workers 1` run
//!   one, [`local::install`]ed, that runs every task of the process.
//! - **async-std** (the library's and the worker pool's control plane: Supervisor,
//!   ConfigActor, ResolverActor, HealthActor, admin): tasks spawned off the data-plane threads
//!   when nothing is installed; sockets registered there use the process's reactor, which
//!   then has a thread of its own that wakes them.
//!
//! The admin endpoint and the signal stream stay on async-io's reactor (its own thread drives
//! it when nobody else does); they are not per connection.
//!
//! Layout: `mod.rs` (this seam), `reactor.rs` (the data plane's epoll reactor),
//! `socket.rs` ([`Async`], a socket registered with it), `local.rs` (the local runtime's loop), `park.rs` (the loop's sleep/wake-up handshake),
//! `timer/` (the coarse clock; `timer/queue.rs` is
//! its pure deadline queue) and `control.rs` (the admin endpoint's sockets).
//!
//! Linux only, on purpose: the reactor is raw epoll (edge-triggered, `EPOLLRDHUP` and
//! `EPOLLPRI` read as the peer's FIN and urgent data), the plain relay is splice(2), accepts are
//! `accept4`, and the workers share a memfd. A reactor over `mio` was measured against it (issue
//! 20: the same syscalls per connection, no less CPU) and would have ported only the first of
//! these (docs/architecture.md, "Runtime and reactor").

// One place says so, instead of dead fallbacks for other systems throughout `src/`.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "tcpmap runs on Linux only: its data plane is built on epoll, splice(2), accept4 and memfd \
     (see src/rt/mod.rs and docs/architecture.md, \"Runtime and reactor\")"
);

mod control;
pub(crate) mod local;
mod park;
pub(crate) mod reactor;
mod socket;
pub(crate) mod timer;

use std::future::Future;
use std::pin::Pin;
// What `park.rs` is written against (a loom model compiles it with loom's atomics).
use std::sync::atomic;
use std::task::{Context, Poll};
use std::time::Duration;

pub(crate) use control::{ControlListener, ControlStream};
pub(crate) use socket::Async;

/// A handle to a spawned task; dropping it detaches the task (it keeps running).
#[derive(Debug)]
pub(crate) struct Task<T>(TaskKind<T>);

#[derive(Debug)]
enum TaskKind<T> {
    Std(async_std::task::JoinHandle<T>),
    /// `None` once dropped (detached).
    Local(Option<async_task::Task<T>>),
}

impl<T> Future for Task<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.get_mut().0 {
            TaskKind::Std(handle) => Pin::new(handle).poll(cx),
            TaskKind::Local(Some(task)) => Pin::new(task).poll(cx),
            // Only Drop empties it.
            TaskKind::Local(None) => Poll::Pending,
        }
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        if let TaskKind::Local(task) = &mut self.0 {
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

/// What a look into a mailbox found without waiting.
#[derive(Debug)]
pub(crate) enum TryRecv<T> {
    /// A message.
    Msg(T),
    /// Nothing queued.
    Empty,
    /// Every sender is gone.
    Closed,
}

/// Takes a message from `rx` if one is queued, without waiting.
pub(crate) fn try_recv<T>(rx: &Receiver<T>) -> TryRecv<T> {
    match rx.try_recv() {
        Ok(msg) => TryRecv::Msg(msg),
        Err(flume::TryRecvError::Empty) => TryRecv::Empty,
        Err(flume::TryRecvError::Disconnected) => TryRecv::Closed,
    }
}

/// A one-shot reply channel (a bounded channel of one; a dropped sender means the actor is gone).
pub(crate) fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    flume::bounded(1)
}

/// Spawns a task on the runtime's executor — this thread's loop when called from a
/// data-plane thread (`local`), else the installed local runtime, else async-std's — and runs
/// it to its end whatever becomes of it:
/// nobody waits for it. Every actor and connection task is started this way; say `detach`
/// rather than dropping a [`Task`], because runtimes differ there (smol's `Task` cancels
/// on drop, async-std's detaches).
pub(crate) fn detach<F>(future: F)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if let Some(runtime) = local::here() {
        runtime.spawn(future).detach();
    } else {
        drop(async_std::task::spawn(future));
    }
}

/// Spawns a task on the runtime's executor; await the returned [`Task`] for its output.
pub(crate) fn spawn<F>(future: F) -> Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if let Some(runtime) = local::here() {
        Task(TaskKind::Local(Some(runtime.spawn(future))))
    } else {
        Task(TaskKind::Std(async_std::task::spawn(future)))
    }
}

/// Runs a future to completion on the current thread, driving the runtime.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    async_std::task::block_on(future)
}

/// Sleeps for `duration` on a timer of its own (precise; for backoffs and pacing, which are
/// not per connection: per-connection deadlines use [`timeout`]).
pub(crate) async fn sleep(duration: Duration) {
    async_io::Timer::after(duration).await;
}

/// Races `future` against a coarse deadline (0–10 ms late, never early: [`timer`]);
/// `None` when the deadline wins.
pub(crate) async fn timeout<F: Future>(duration: Duration, future: F) -> Option<F::Output> {
    timer::timeout(duration, future).await
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

/// Waits for every [`DrainToken`] to be dropped (clones wait for the same tokens).
#[derive(Debug, Clone)]
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

pub(crate) use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR2};

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
