//! tcpmap's reactor: one epoll set per process, every socket registered once, edge-triggered.
//!
//! Why not async-io's: it registers every socket in `EPOLLONESHOT` mode, so each wait for
//! readiness costs an `epoll_ctl(MOD)` to re-arm (plus ADD and DEL per socket), and each of its
//! reactor turns costs five syscalls (a timerfd set and re-armed, the wait, an eventfd read and
//! re-arm) — about 25 of the 46 syscalls a short connection cost (docs/benchmarks.md). Here a
//! socket is added once with `EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET` and never modified;
//! closing it removes it from the set (sockets a worker took from elsewhere, which may be open
//! in another process, are deleted explicitly). Readiness is a counter per direction that the
//! reactor bumps on every edge, so a waiter knows whether an edge came after its last
//! `EAGAIN` (see [`Async`]'s rule below).
//!
//! Who drives it: in a worker process, the local executor's own thread (`super::local`), with
//! the coarse clock's next tick as the `epoll_wait` timeout and an eventfd only to wake it from
//! another thread; elsewhere (the library, `--workers 1`) a thread of its own,
//! `tcpmap-reactor`, that waits and wakes tasks on the async-std executor.
//!
//! Events name sources by a key (slot index + generation), never by address: an event that was
//! already collected for a socket closed meanwhile finds its slot reused or empty and is
//! dropped.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_io::{AsyncRead, AsyncWrite};
use rustix::event::epoll::{self, EventData, EventFlags};

/// The event key of the wake-up eventfd.
const NOTIFY_KEY: u64 = u64::MAX;

/// What a stream socket is registered for (once, never modified). `PRI`: TCP urgent data
/// (see [`Async::urgent_seen`]).
const STREAM: EventFlags = EventFlags::IN
    .union(EventFlags::OUT)
    .union(EventFlags::RDHUP)
    .union(EventFlags::PRI)
    .union(EventFlags::ET);

/// Events taken per `epoll_wait`.
const EVENT_BATCH: usize = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a few field updates: a panic cannot leave them torn.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One direction's readiness: a count of edges and the wakers of the tasks waiting for the
/// next.
#[derive(Debug, Default)]
struct Interest {
    /// Edges seen by the reactor (bumped under `waiters`' lock).
    tick: AtomicU64,
    /// The tick the user last found drained (`EAGAIN`) or consumed.
    seen: AtomicU64,
    waiters: Mutex<Waiters>,
}

/// The tasks waiting for a direction's next edge: usually one (no allocation); any number may
/// (two tasks reading one socket through `&Async`), and an edge wakes them all.
#[derive(Debug, Default)]
struct Waiters {
    first: Option<Waker>,
    more: Vec<Waker>,
}

impl Waiters {
    fn add(&mut self, waker: &Waker) {
        match &self.first {
            None => self.first = Some(waker.clone()),
            Some(w) if w.will_wake(waker) => {}
            Some(_) => {
                // A waker of a task that stopped waiting stays until the next edge, which
                // wakes it for nothing: harmless, and every edge empties the list.
                if !self.more.iter().any(|w| w.will_wake(waker)) {
                    self.more.push(waker.clone());
                }
            }
        }
    }

    fn take(&mut self) -> (Option<Waker>, Vec<Waker>) {
        (self.first.take(), std::mem::take(&mut self.more))
    }
}

impl Interest {
    fn fire(&self) {
        let (first, more) = {
            let mut waiters = lock(&self.waiters);
            self.tick.fetch_add(1, Ordering::AcqRel);
            waiters.take()
        };
        if let Some(w) = first {
            w.wake();
        }
        for w in more {
            w.wake();
        }
    }

    /// Ready when an edge came after `since`; that consumes every edge so far.
    fn poll_since(&self, cx: &mut Context<'_>, since: u64) -> Poll<()> {
        let mut waiters = lock(&self.waiters);
        let now = self.tick.load(Ordering::Acquire);
        if now != since {
            self.seen.store(now, Ordering::Relaxed);
            return Poll::Ready(());
        }
        self.seen.store(since, Ordering::Relaxed);
        waiters.add(cx.waker());
        Poll::Pending
    }
}

/// A registered file descriptor's readiness.
#[derive(Debug)]
struct Source {
    key: u64,
    read: Interest,
    write: Interest,
    /// [`OPEN`], [`FIN_SEEN`] (the peer's FIN has been reported) or [`ERROR_SEEN`] (an
    /// error has): set before the read edge that reports it is counted, and never lowered.
    read_closed: AtomicU8,
    /// TCP urgent data was reported (`EPOLLPRI`): set before the read edge that reports it is
    /// counted (and before a later FIN is recorded), never lowered.
    urgent: AtomicBool,
}

/// No FIN and no error reported yet.
const OPEN: u8 = 0;
/// The peer's FIN was reported (`EPOLLRDHUP`, or `EPOLLHUP` once both halves are shut),
/// no error.
const FIN_SEEN: u8 = 1;
/// An error was reported (`EPOLLERR`: a reset, a failed connect).
const ERROR_SEEN: u8 = 2;

#[derive(Default)]
struct Slab {
    /// Slot `i` holds its generation and the source registered under it, if any.
    slots: Vec<(u32, Option<Arc<Source>>)>,
    free: Vec<u32>,
}

impl Slab {
    fn insert(&mut self) -> Arc<Source> {
        let (index, slot) = match self.free.pop() {
            Some(i) => match self.slots.get_mut(i as usize) {
                Some(slot) => (i, slot),
                // The free list only holds indexes of slots: not reached.
                None => self.push(),
            },
            None => self.push(),
        };
        let source = Arc::new(Source {
            key: (u64::from(slot.0) << 32) | u64::from(index),
            read: Interest::default(),
            read_closed: AtomicU8::new(OPEN),
            urgent: AtomicBool::new(false),
            write: Interest::default(),
        });
        slot.1 = Some(source.clone());
        source
    }

    fn push(&mut self) -> (u32, &mut (u32, Option<Arc<Source>>)) {
        let index = self.slots.len() as u32;
        self.slots.push((0, None));
        let slot = self.slots.last_mut();
        match slot {
            Some(slot) => (index, slot),
            None => unreachable!("just pushed"),
        }
    }

    fn get(&self, key: u64) -> Option<&Arc<Source>> {
        let (generation, source) = self.slots.get((key & 0xffff_ffff) as usize)?;
        match source {
            Some(s) if u64::from(*generation) == key >> 32 => Some(s),
            _ => None,
        }
    }

    fn remove(&mut self, key: u64) {
        let index = (key & 0xffff_ffff) as u32;
        if let Some(slot) = self.slots.get_mut(index as usize) {
            if slot.1.as_ref().is_some_and(|s| s.key == key) {
                slot.1 = None;
                slot.0 = slot.0.wrapping_add(1);
                self.free.push(index);
            }
        }
    }
}

thread_local! {
    /// The event buffer of the thread that drives the reactor (`epoll::Event` is not `Send`).
    static EVENTS: std::cell::RefCell<Vec<epoll::Event>> =
        std::cell::RefCell::new(Vec::with_capacity(EVENT_BATCH));
}

/// The wake list of one driver turn (only one thread drives at a time).
#[derive(Default)]
struct Turn {
    ready: Vec<(Arc<Source>, EventFlags)>,
}

/// The process's epoll set.
pub(crate) struct Reactor {
    epoll: OwnedFd,
    notify: OwnedFd,
    /// Whether the driver sleeps in `epoll_wait` or is about to; whoever clears it owes a
    /// wake-up ([`Reactor::unpark`]).
    park: super::park::Park,
    slab: Mutex<Slab>,
    turn: Mutex<Turn>,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor").finish_non_exhaustive()
    }
}

static REACTOR: OnceLock<Result<Reactor, (io::ErrorKind, String)>> = OnceLock::new();
static THREAD: std::sync::Once = std::sync::Once::new();

/// The process's reactor, made on first use; outside local mode its driver thread is started
/// then too.
pub(crate) fn get() -> io::Result<&'static Reactor> {
    let made = REACTOR.get_or_init(|| Reactor::new().map_err(|e| (e.kind(), e.to_string())));
    let reactor = made
        .as_ref()
        .map_err(|(kind, msg)| io::Error::new(*kind, msg.clone()))?;
    if !super::local::installed() {
        THREAD.call_once(|| {
            let spawned = std::thread::Builder::new()
                .name("tcpmap-reactor".into())
                .spawn(move || {
                    loop {
                        if let Err(e) = reactor.turn(None) {
                            tracing::error!(error = %e, "epoll_wait failed");
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the reactor thread");
            }
        });
    }
    Ok(reactor)
}

impl Reactor {
    pub(super) fn new() -> io::Result<Reactor> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let notify = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        epoll::add(
            &epoll,
            &notify,
            EventData::new_u64(NOTIFY_KEY),
            EventFlags::IN | EventFlags::ET,
        )?;
        Ok(Reactor {
            epoll,
            notify,
            park: super::park::Park::new(),
            slab: Mutex::new(Slab::default()),
            turn: Mutex::new(Turn::default()),
        })
    }

    fn register(&self, fd: impl AsFd, flags: EventFlags) -> io::Result<Arc<Source>> {
        let source = lock(&self.slab).insert();
        if let Err(e) = epoll::add(&self.epoll, fd, EventData::new_u64(source.key), flags) {
            lock(&self.slab).remove(source.key);
            return Err(e.into());
        }
        Ok(source)
    }

    fn deregister(&self, source: &Source, fd: Option<impl AsFd>) {
        if let Some(fd) = fd {
            // Gone already (closed elsewhere) is fine: the slot is freed either way.
            let _ = epoll::delete(&self.epoll, fd);
        }
        lock(&self.slab).remove(source.key);
    }

    /// The driver is about to sleep: from now on a wake from another thread must
    /// [`unpark`](Reactor::unpark) it. Call before the last look at what was queued for it
    /// (`super::park`: the handshake and its fences).
    pub(crate) fn will_sleep(&self) {
        self.park.will_sleep();
    }

    /// Wakes the driver if it sleeps (one eventfd write); nothing when it is running. Call
    /// after queuing what the driver is to find.
    pub(crate) fn unpark(&self) {
        if self.park.unpark() {
            let _ = rustix::io::write(&self.notify, &1u64.to_ne_bytes());
        }
    }

    /// Waits up to `timeout` (None: forever; zero: not at all) for events and wakes their
    /// waiters. Returns the number of events.
    pub(crate) fn turn(&self, timeout: Option<Duration>) -> io::Result<usize> {
        let mut turn = lock(&self.turn);
        let ready = &mut turn.ready;
        EVENTS.with_borrow_mut(|events| self.wait(events, ready, timeout))?;
        let n = ready.len();
        for (source, flags) in ready.drain(..) {
            let broken = flags.intersects(EventFlags::ERR | EventFlags::HUP);
            if flags.contains(EventFlags::PRI) {
                source.urgent.store(true, Ordering::Release);
            }
            if flags.contains(EventFlags::ERR) {
                source.read_closed.fetch_max(ERROR_SEEN, Ordering::Release);
            } else if broken || flags.contains(EventFlags::RDHUP) {
                source.read_closed.fetch_max(FIN_SEEN, Ordering::Release);
            }
            if broken || flags.intersects(EventFlags::IN | EventFlags::RDHUP | EventFlags::PRI) {
                source.read.fire();
            }
            if broken || flags.contains(EventFlags::OUT) {
                source.write.fire();
            }
        }
        Ok(n)
    }

    /// One `epoll_wait`; the sources of its events go to `ready`.
    fn wait(
        &self,
        events: &mut Vec<epoll::Event>,
        ready: &mut Vec<(Arc<Source>, EventFlags)>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        events.clear();
        events.reserve(EVENT_BATCH);
        // Whole milliseconds, rounded up: a wait that ends early costs a turn for nothing.
        let spec = timeout.map(|t| {
            let ms = t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i64;
            rustix::event::Timespec {
                tv_sec: ms / 1000,
                tv_nsec: (ms % 1000) * 1_000_000,
            }
        });
        let waited = match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(events),
            spec.as_ref(),
        ) {
            Ok(_) => Ok(()),
            Err(rustix::io::Errno::INTR) => Ok(()),
            Err(e) => Err(io::Error::from(e)),
        };
        self.park.woke();
        waited?;
        let slab = lock(&self.slab);
        for event in events.iter() {
            let key = event.data.u64();
            let flags = event.flags;
            if key == NOTIFY_KEY {
                let mut buf = [0u8; 8];
                let _ = rustix::io::read(&self.notify, &mut buf);
            } else if let Some(source) = slab.get(key) {
                ready.push((source.clone(), flags));
            }
        }
        Ok(())
    }
}

/// A non-blocking socket registered with the [`Reactor`].
///
/// The rule for its users (every `net/` helper follows it): wait for readiness only after an
/// operation on the socket came back `EAGAIN`, and tell the socket which edge that was — take
/// [`Async::read_tick`] before the operation and give it to [`Async::read_drained`] after the
/// `EAGAIN` (the `poll_*_with` helpers and the futures-io impls do both). Then
/// [`Async::poll_readable`] is ready exactly when an edge came after the drained one: no wake-up
/// is missed and none is spurious. Waiting without a drained operation is ready at the next edge
/// after the last one consumed (a socket's first wait is ready if anything came since it was
/// registered).
///
/// Any number of tasks may wait on one direction of one socket (two readers of `&Async`, or a
/// reader and a task watching for the peer's FIN): an edge wakes every waiter, and each
/// retries its own operation, so none is forgotten. The edge count is the socket's, not a
/// waiter's: one waiter's `EAGAIN` does not hide an edge from another, and one's read may
/// leave the other its `EAGAIN` (woken for nothing, it waits again).
#[derive(Debug)]
pub(crate) struct Async<T: AsFd> {
    io: Option<T>,
    source: Arc<Source>,
    /// Delete the registration explicitly on drop: the descriptor may be open elsewhere (a
    /// listener a worker shares), so closing it would not remove it from the set.
    shared: bool,
}

impl<T: AsFd> Async<T> {
    /// Registers `io`, making it non-blocking first (tests, and accepted sockets where
    /// `accept4` flags are not available).
    #[cfg_attr(all(not(test), target_os = "linux"), allow(dead_code))]
    pub(crate) fn new(io: T) -> io::Result<Async<T>> {
        rustix::io::ioctl_fionbio(&io, true)?;
        Self::register(io, true, STREAM)
    }

    /// Registers `io`, which is already non-blocking and open in this process only (accepted
    /// or connected here): its close takes it out of the set, no `epoll_ctl(DEL)`.
    pub(crate) fn new_nonblocking(io: T) -> io::Result<Async<T>> {
        Self::register(io, false, STREAM)
    }

    fn register(io: T, shared: bool, flags: EventFlags) -> io::Result<Async<T>> {
        let source = get()?.register(&io, flags)?;
        Ok(Async {
            io: Some(io),
            source,
            shared,
        })
    }

    /// The socket.
    pub(crate) fn get_ref(&self) -> &T {
        match &self.io {
            Some(io) => io,
            // Only `into_inner` takes it, and that consumes `self`.
            None => unreachable!("Async without its socket"),
        }
    }

    /// Deregisters and returns the socket (left non-blocking).
    pub(crate) fn into_inner(mut self) -> io::Result<T> {
        let io = self
            .io
            .take()
            .ok_or_else(|| io::Error::other("socket already taken"))?;
        get()?.deregister(&self.source, Some(&io));
        Ok(io)
    }

    /// The read edge count now; take it before an operation that may return `EAGAIN`.
    pub(crate) fn read_tick(&self) -> u64 {
        self.source.read.tick.load(Ordering::Acquire)
    }

    /// The write edge count now (see [`Async::read_tick`]).
    pub(crate) fn write_tick(&self) -> u64 {
        self.source.write.tick.load(Ordering::Acquire)
    }

    /// Whether the reactor has reported the peer's FIN (or an error) on this socket. A read
    /// that came back short with this still unset drained the socket (unless urgent data was
    /// reported: [`Async::urgent_seen`]): whatever arrives later, the FIN included, is an edge
    /// after the tick taken before that read, so the next read may wait for it instead of
    /// probing (and getting EAGAIN).
    pub(crate) fn read_closed_seen(&self) -> bool {
        self.source.read_closed.load(Ordering::Acquire) != OPEN
    }

    /// Whether the reactor has reported TCP urgent data (`MSG_OOB`) on this socket, ever. A
    /// read stops at the urgent mark, so a short read does not mean the socket is drained
    /// (bytes after the mark may be queued, with no edge to come for them), and `splice(2)`
    /// never passes the mark (only `recv` skips the urgent byte). Set before the edge that
    /// reports it is counted, and before any later FIN is recorded.
    pub(crate) fn urgent_seen(&self) -> bool {
        self.source.urgent.load(Ordering::Acquire)
    }

    /// Whether the reactor has reported an error (`EPOLLERR`) on this socket.
    pub(crate) fn error_seen(&self) -> bool {
        self.source.read_closed.load(Ordering::Acquire) == ERROR_SEEN
    }

    /// Whether the reactor has reported the peer's FIN and no error on this socket. A read
    /// that came back short after this was set took everything before the FIN: the next
    /// read would return end of stream.
    pub(crate) fn fin_seen_without_error(&self) -> bool {
        self.source.read_closed.load(Ordering::Acquire) == FIN_SEEN
    }

    /// A read operation started at `tick` came back `EAGAIN`.
    pub(crate) fn read_drained(&self, tick: u64) {
        self.source.read.seen.store(tick, Ordering::Relaxed);
    }

    /// A write operation started at `tick` came back `EAGAIN`: ready at the next write edge.
    pub(crate) fn write_drained_then_poll(
        &self,
        tick: u64,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        self.source.write.poll_since(cx, tick).map(Ok)
    }

    /// Ready at the first read edge after the last one drained or consumed. "Consumed" is the
    /// socket's, not the caller's: of two tasks waiting here, the first to be polled after an
    /// edge consumes it for both. Two readers use [`Async::poll_read_with`] (or the
    /// futures-io impls), which wait from their own operation's tick.
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let since = self.source.read.seen.load(Ordering::Relaxed);
        self.source.read.poll_since(cx, since).map(Ok)
    }

    /// Ready at the first write edge after the last one drained or consumed.
    pub(crate) fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let since = self.source.write.seen.load(Ordering::Relaxed);
        self.source.write.poll_since(cx, since).map(Ok)
    }

    /// Waits for [`Async::poll_readable`].
    pub(crate) async fn readable(&self) -> io::Result<()> {
        futures_lite::future::poll_fn(|cx| self.poll_readable(cx)).await
    }

    /// Waits for [`Async::poll_writable`].
    pub(crate) async fn writable(&self) -> io::Result<()> {
        futures_lite::future::poll_fn(|cx| self.poll_writable(cx)).await
    }

    /// Runs the read operation `op` until it does not say `EAGAIN`, waiting for an edge between.
    pub(crate) fn poll_read_with<R>(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            let tick = self.read_tick();
            match op(self.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.source.read.poll_since(cx, tick).is_pending() {
                        return Poll::Pending;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                done => return Poll::Ready(done),
            }
        }
    }

    /// Runs the write operation `op` until it does not say `EAGAIN`, waiting for an edge between.
    pub(crate) fn poll_write_with<R>(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            let tick = self.write_tick();
            match op(self.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.source.write.poll_since(cx, tick).is_pending() {
                        return Poll::Pending;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                done => return Poll::Ready(done),
            }
        }
    }
}

impl<T: AsFd> Drop for Async<T> {
    fn drop(&mut self) {
        let io = self.io.take();
        if let Ok(reactor) = get() {
            match (&io, self.shared) {
                (Some(io), true) => reactor.deregister(&self.source, Some(io)),
                _ => reactor.deregister(&self.source, None::<&OwnedFd>),
            }
        }
        drop(io); // closes it (and so takes it out of the epoll set if it was ours alone)
    }
}

impl Async<std::net::TcpListener> {
    /// Registers a listening socket (made non-blocking first). Not `EPOLLEXCLUSIVE`: a worker
    /// woken alone that then stops accepting (a drain, a hot upgrade, a kill) would take the
    /// only wake-up with it and leave the connection queued until the next one arrives (seen as
    /// a refused client during an upgrade). Every sleeping worker is woken; the first to accept
    /// takes the connection, the others get EAGAIN.
    pub(crate) fn listener(io: std::net::TcpListener) -> io::Result<Self> {
        rustix::io::ioctl_fionbio(&io, true)?;
        Self::register(io, true, EventFlags::IN | EventFlags::ET)
    }
}

impl Async<TcpStream> {
    /// Connects to `addr` (non-blocking connect, then a wait for the socket to turn writable).
    pub(crate) async fn connect(addr: SocketAddr) -> io::Result<Async<TcpStream>> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INPROGRESS.raw_os_error()) => {}
            Err(e) => return Err(e),
        }
        let stream = Async::new_nonblocking(TcpStream::from(socket))?;
        // The first write edge after the registration says the connect finished, either way.
        stream.writable().await?;
        // A failed connect sets the socket's error, which the reactor reported (`EPOLLERR`)
        // in the same event as the write edge, and recorded before firing it. Only then does
        // `SO_ERROR` need asking (what the error is); a clean edge means connected.
        if stream.error_seen() {
            if let Some(e) = stream.get_ref().take_error()? {
                return Err(e);
            }
        }
        Ok(stream)
    }
}

impl Async<TcpStream> {
    /// Reads into `buf` without taking the bytes off the socket (`MSG_PEEK`).
    pub(crate) async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        futures_lite::future::poll_fn(|cx| self.poll_read_with(cx, |s| s.peek(buf))).await
    }
}

impl Async<UdpSocket> {
    /// A UDP socket bound to `addr`.
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<Async<UdpSocket>> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::DGRAM.nonblocking().cloexec(),
            Some(Protocol::UDP),
        )?;
        socket.bind(&addr.into())?;
        Async::new_nonblocking(UdpSocket::from(socket))
    }

    /// Sends a datagram to the connected peer.
    pub(crate) async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        futures_lite::future::poll_fn(|cx| self.poll_write_with(cx, |s| s.send(buf))).await
    }

    /// Receives a datagram from the connected peer.
    pub(crate) async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        futures_lite::future::poll_fn(|cx| self.poll_read_with(cx, |s| s.recv(buf))).await
    }
}

impl AsyncRead for &Async<TcpStream> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_with(cx, |mut s| s.read(buf))
    }

    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_with(cx, |mut s| s.read_vectored(bufs))
    }
}

impl AsyncRead for Async<TcpStream> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self).poll_read(cx, buf)
    }

    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self).poll_read_vectored(cx, bufs)
    }
}

impl AsyncWrite for &Async<TcpStream> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |mut s| s.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |mut s| s.write_vectored(bufs))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Flushes only, as async-io's does: the write half stays open (`TcpHalfClose` shuts it).
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Async<TcpStream> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self).poll_flush(cx)
    }

    /// Flushes only (see the `&Async` impl).
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self).poll_close(cx)
    }
}

#[cfg(test)]
#[path = "reactor_tests.rs"]
mod tests;
