//! tcpmap's reactor: one epoll set per data-plane thread (and one for the process's other
//! threads), every socket registered once, edge-triggered.
//!
//! Why not async-io's: it registers every socket in `EPOLLONESHOT` mode, so each wait for
//! readiness costs an `epoll_ctl(MOD)` to re-arm (plus ADD and DEL per socket), and each of its
//! reactor turns costs five syscalls (a timerfd set and re-armed, the wait, an eventfd read and
//! re-arm) — about 25 of the 46 syscalls a short connection cost (docs/benchmarks.md). Here a
//! socket is added once with `EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET`, never modified;
//! closing it removes it from the set (sockets a worker took from elsewhere, which may be open
//! in another process, are deleted explicitly). Readiness is a counter per direction that the
//! reactor bumps on every edge, so a waiter knows whether an edge came after its last
//! `EAGAIN` (see `rt::Async`'s rule, in `socket.rs`).
//!
//! Who drives it: a data-plane thread's, its own loop (`super::local`), with its coarse
//! clock's next tick as the `epoll_wait` timeout and an eventfd only to wake it from another
//! thread. The process's ([`get`]): the installed local runtime's thread in a worker process
//! and `tcpmap run --workers 1`; elsewhere (the library's control plane, the Supervisor of
//! workers) a thread of its own, `tcpmap-reactor`, that waits and wakes tasks on the
//! async-std executor.
//!
//! Events name sources by a key (slot index + generation), never by address: an event that was
//! already collected for a socket closed meanwhile finds its slot reused or empty and is
//! dropped.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rustix::event::epoll::{self, EventData, EventFlags};

/// The event key of the wake-up eventfd.
const NOTIFY_KEY: u64 = u64::MAX;

/// What a stream socket is registered for (once, never modified). `PRI`: TCP urgent data
/// (see `Async::urgent_seen`).
pub(super) const STREAM: EventFlags = EventFlags::IN
    .union(EventFlags::OUT)
    .union(EventFlags::RDHUP)
    .union(EventFlags::PRI)
    .union(EventFlags::ET);

/// Events taken per `epoll_wait`.
const EVENT_BATCH: usize = 256;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a few field updates: a panic cannot leave them torn.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An edge count. Ticks are only ever compared for equality (did an edge come after the one I
/// saw?), so 32 bits wrap harmlessly: a false "nothing new" would need exactly 2^32 edges between
/// one operation's snapshot and its check. 32 rather than 64 bits keep a [`Source`] at 104 bytes,
/// so its `Arc` fits a 128-byte malloc chunk (with 64-bit ticks it took 144: +32 bytes per idle
/// connection).
pub(crate) type Tick = u32;

/// One direction's readiness: a count of edges and the wakers of the tasks waiting for the
/// next.
#[derive(Debug, Default)]
pub(super) struct Interest {
    /// Edges seen by the reactor (bumped under `waiters`' lock).
    pub(super) tick: AtomicU32,
    /// The tick the user last found drained (`EAGAIN`) or consumed.
    pub(super) seen: AtomicU32,
    waiters: Mutex<Waiters>,
}

/// The tasks waiting for a direction's next edge: usually one (no allocation); any number may
/// (two tasks reading one socket through `&Async`), and an edge wakes them all. The rare extra
/// waiters are boxed so that a `Source` stays small: two per connection, every idle connection
/// holds them (an inline `Vec` here cost 96 bytes of heap per connection).
// `Box<Vec>` on purpose: one pointer inline (`Vec` is three), the list allocated only when a
// second task waits.
#[allow(clippy::box_collection)]
#[derive(Debug, Default)]
struct Waiters {
    first: Option<Waker>,
    more: Option<Box<Vec<Waker>>>,
}

impl Waiters {
    fn add(&mut self, waker: &Waker) {
        match &self.first {
            None => self.first = Some(waker.clone()),
            Some(w) if w.will_wake(waker) => {}
            Some(_) => {
                // A waker of a task that stopped waiting stays until the next edge, which
                // wakes it for nothing: harmless, and every edge empties the list.
                let more = self.more.get_or_insert_with(Box::default);
                if !more.iter().any(|w| w.will_wake(waker)) {
                    more.push(waker.clone());
                }
            }
        }
    }

    #[allow(clippy::box_collection)] // see `Waiters`
    fn take(&mut self) -> (Option<Waker>, Option<Box<Vec<Waker>>>) {
        (self.first.take(), self.more.take())
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
        for w in more.into_iter().flat_map(|more| *more) {
            w.wake();
        }
    }

    /// Ready when an edge came after `since`; that consumes every edge so far.
    pub(super) fn poll_since(&self, cx: &mut Context<'_>, since: Tick) -> Poll<()> {
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
pub(super) struct Source {
    key: u64,
    /// The reactor it is registered with (events for it come from there alone).
    pub(super) reactor: &'static Reactor,
    pub(super) read: Interest,
    pub(super) write: Interest,
    /// [`OPEN`], [`FIN_SEEN`] (the peer's FIN has been reported) or [`ERROR_SEEN`] (an
    /// error has): set before the read edge that reports it is counted, and never lowered.
    pub(super) read_closed: AtomicU8,
    /// TCP urgent data was reported (`EPOLLPRI`): set before the read edge that reports it is
    /// counted (and before a later FIN is recorded), never lowered.
    pub(super) urgent: AtomicBool,
}

/// No FIN and no error reported yet.
pub(super) const OPEN: u8 = 0;
/// The peer's FIN was reported (`EPOLLRDHUP`, or `EPOLLHUP` once both halves are shut),
/// no error.
pub(super) const FIN_SEEN: u8 = 1;
/// An error was reported (`EPOLLERR`: a reset, a failed connect).
pub(super) const ERROR_SEEN: u8 = 2;

#[derive(Default)]
struct Slab {
    /// Slot `i` holds its generation and the source registered under it, if any.
    slots: Vec<(u32, Option<Arc<Source>>)>,
    free: Vec<u32>,
}

impl Slab {
    fn insert(&mut self, reactor: &'static Reactor) -> Arc<Source> {
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
            reactor,
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

/// An epoll set: a data-plane thread's, or the process's ([`get`]).
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

    pub(super) fn register(
        &'static self,
        fd: impl AsFd,
        flags: EventFlags,
    ) -> io::Result<Arc<Source>> {
        let source = lock(&self.slab).insert(self);
        if let Err(e) = epoll::add(&self.epoll, fd, EventData::new_u64(source.key), flags) {
            lock(&self.slab).remove(source.key);
            return Err(e.into());
        }
        Ok(source)
    }

    pub(super) fn deregister(&self, source: &Source, fd: Option<impl AsFd>) {
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

#[cfg(test)]
#[path = "reactor_tests.rs"]
mod tests;
