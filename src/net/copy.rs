//! The byte relay: moves bytes both ways between a client and an upstream stream, passes each
//! side's EOF on as a write shutdown to the other, stops on the idle timeout, and counts bytes.
//!
//! This file owns the relay's vocabulary ([`Progress`], [`RelayEnd`], [`RelayStats`]), the driver
//! that runs both directions inside one future (no task per direction, no split streams, no locks)
//! with a single idle deadline on the coarse clock, and the generic entry point [`relay`] used when TLS is on
//! either side. The per-direction copy loops live in `buffered.rs` (userspace buffers) and
//! `splice.rs` (zero-copy for plain TCP). It must not decide routing. [`relay`] does not close
//! the streams: the caller owns them and closes them after it returns (the plain-TCP
//! `splice::relay_tcp_owned` is the exception: it takes both sockets and closes them itself).

use std::borrow::Borrow;
use std::future::Future;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::rt::Async;
use futures_io::{AsyncRead, AsyncWrite};

use super::buffered::Half;
use crate::rt::timer::Sleep;

/// Live byte counters of one relay, updated as bytes are delivered (Relaxed adds), readable at any time.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Bytes written to the upstream so far.
    pub(crate) client_to_upstream: AtomicU64,
    /// Bytes written to the client so far.
    pub(crate) upstream_to_client: AtomicU64,
    /// The mapping's shared byte counters, which also receive every delivered byte, so
    /// metrics move while a long connection runs (not only when it ends).
    pub(crate) live: Option<std::sync::Arc<crate::metrics::MappingMetrics>>,
}

impl Progress {
    /// Bytes delivered so far, both ways: a relay whose count did not move was idle.
    pub(crate) fn moved(&self) -> u64 {
        self.client_to_upstream.load(Ordering::Relaxed)
            + self.upstream_to_client.load(Ordering::Relaxed)
    }

    /// Records bytes sent to the upstream outside the relay (the replayed ClientHello).
    pub(crate) fn add_client_to_upstream(&self, n: u64) {
        self.client_to_upstream.fetch_add(n, Ordering::Relaxed);
        if let Some(m) = &self.live {
            m.byte_counters().0.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelayEnd {
    /// The client's EOF came first, then the upstream's direction finished too.
    ClientClosed,
    /// The upstream's EOF came first, then the client's direction finished too.
    UpstreamClosed,
    /// No byte moved in either direction for the idle timeout.
    IdleTimeout,
    /// Reading from or writing to the client failed.
    ClientError(io::ErrorKind),
    /// Reading from or writing to the upstream failed.
    UpstreamError(io::ErrorKind),
}

/// The outcome of a relay: bytes delivered each way and how it ended.
// The byte fields are what the relay itself delivered, which the tests check; the
// ConnectionActor reads `Progress` instead (it also counts the ClientHello bytes it forwarded
// before relaying), so the fields exist in test builds only.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RelayStats {
    /// Bytes delivered to the upstream.
    #[cfg(test)]
    pub(crate) client_to_upstream: u64,
    /// Bytes delivered to the client.
    #[cfg(test)]
    pub(crate) upstream_to_client: u64,
    /// Why the relay stopped.
    pub(crate) end: RelayEnd,
}

/// Copies both directions between `client` and `upstream` until both have passed on their EOF,
/// one side fails, or nothing moved for `idle` (None: no idle timeout).
///
/// Works on any futures-io streams (TLS or not). A TLS stream's `poll_close` sends close_notify;
/// wrap a plain socket under TLS in [`TcpHalfClose`] so that the close also shuts the TCP write half.
pub(crate) async fn relay<C, U>(
    client: &mut C,
    upstream: &mut U,
    idle: Option<Duration>,
    progress: &Progress,
) -> RelayStats
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    U: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut driver = Driver::new(idle, progress);
    let mut c2u = Half::default();
    let mut u2c = Half::default();
    futures_lite::future::poll_fn(|cx| {
        driver.poll(cx, |cx, dir, meter| match dir {
            Dir::ClientToUpstream => c2u.poll_pump(cx, &mut *client, &mut *upstream, meter),
            Dir::UpstreamToClient => u2c.poll_pump(cx, &mut *upstream, &mut *client, meter),
        })
    })
    .await
}

/// [`relay`] between a client under TLS and a plain upstream socket that the caller closes
/// right after it returns: when the client's direction is the one that ends last, its EOF is
/// not passed on with `shutdown(2)`, the close sends that FIN (the upstream's direction has
/// read its EOF by then, so it is a FIN, not a reset). One syscall less per TLS-terminated
/// connection whose client closes last (the usual request/answer order).
pub(crate) async fn relay_to_plain_upstream<C>(
    client: &mut C,
    upstream: &Async<TcpStream>,
    idle: Option<Duration>,
    progress: &Progress,
) -> RelayStats
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut driver = Driver::new(idle, progress);
    let mut c2u = Half::default();
    let mut u2c = Half::default();
    futures_lite::future::poll_fn(|cx| {
        driver.poll(cx, |cx, dir, meter| match dir {
            Dir::ClientToUpstream if meter.peer_done => {
                let mut last = super::splice::LastHalf(upstream);
                c2u.poll_pump(cx, &mut *client, &mut last, meter)
            }
            Dir::ClientToUpstream => {
                c2u.poll_pump(cx, &mut *client, &mut TcpHalfClose(upstream), meter)
            }
            Dir::UpstreamToClient => {
                u2c.poll_pump(cx, &mut TcpHalfClose(upstream), &mut *client, meter)
            }
        })
    })
    .await
}

/// A plain TCP stream (owned or borrowed) whose `poll_close` shuts down the write half.
///
/// `rt::Async<TcpStream>`'s own `poll_close` only flushes, so a TLS stream layered on it
/// would send close_notify but never a FIN; layer TLS on this wrapper instead.
#[derive(Debug)]
pub(crate) struct TcpHalfClose<S>(pub(crate) S);

impl<S: Borrow<Async<TcpStream>> + Unpin> AsyncRead for TcpHalfClose<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut stream: &Async<TcpStream> = self.get_mut().0.borrow();
        Pin::new(&mut stream).poll_read(cx, buf)
    }
}

impl<S: Borrow<Async<TcpStream>> + Unpin> AsyncWrite for TcpHalfClose<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut stream: &Async<TcpStream> = self.get_mut().0.borrow();
        Pin::new(&mut stream).poll_write(cx, buf)
    }

    /// One `writev` for many buffers: rustls hands over every queued TLS record at once.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut stream: &Async<TcpStream> = self.get_mut().0.borrow();
        Pin::new(&mut stream).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(shutdown_write(self.get_mut().0.borrow()))
    }
}

/// Shuts the write half of a TCP socket (sends FIN). A socket that is no longer connected (the peer
/// reset it) has nothing left to shut: that is not an error here, the reset shows up on the read side.
pub(super) fn shutdown_write(stream: &Async<TcpStream>) -> io::Result<()> {
    match stream.get_ref().shutdown(Shutdown::Write) {
        Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
        _ => Ok(()),
    }
}

/// One of the two copy directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    /// Reads the client, writes the upstream.
    ClientToUpstream,
    /// Reads the upstream, writes the client.
    UpstreamToClient,
}

/// A direction's failure: whether the read side or the write side failed.
#[derive(Debug)]
pub(super) enum PumpError {
    /// Reading the source failed.
    Read(io::Error),
    /// Writing (or shutting) the destination failed.
    Write(io::Error),
}

/// Per-direction bookkeeping shared by the buffered and splice pumps.
#[derive(Debug)]
pub(super) struct Meter<'a> {
    total: &'a AtomicU64,
    live: Option<&'a AtomicU64>,
    bytes: u64,
    /// Some byte moved since the driver last looked (feeds the idle clock).
    pub(super) moved: bool,
    /// The source reached EOF.
    pub(super) eof: bool,
    /// The other direction has finished: when this one ends too, the relay is over and the
    /// caller closes both sockets, so a plain TCP pump need not shut down its write half first.
    pub(super) peer_done: bool,
    done: bool,
}

impl<'a> Meter<'a> {
    #[cfg(test)]
    pub(super) fn new(total: &'a AtomicU64) -> Self {
        Self::with_live(total, None)
    }

    /// A meter that also adds to a shared counter.
    pub(super) fn with_live(total: &'a AtomicU64, live: Option<&'a AtomicU64>) -> Self {
        Meter {
            total,
            live,
            bytes: 0,
            moved: false,
            eof: false,
            peer_done: false,
            done: false,
        }
    }

    /// Bytes delivered by this direction so far.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records `n` bytes delivered to the destination.
    pub(super) fn delivered(&mut self, n: usize) {
        let n = n as u64;
        self.bytes += n;
        self.total.fetch_add(n, Ordering::Relaxed);
        if let Some(live) = self.live {
            live.fetch_add(n, Ordering::Relaxed);
        }
        self.moved = true;
    }
}

/// The idle clock: one deadline on the coarse clock (`crate::rt::timer`), moved only when it
/// fires and activity has pushed it back; so the timeout holds to within the clock's
/// granularity (fires 0–10 ms late, never early) and activity costs no syscall.
struct IdleClock {
    limit: Duration,
    last: Instant,
    deadline: Sleep,
}

impl IdleClock {
    fn new(limit: Duration) -> Self {
        let now = Instant::now();
        IdleClock {
            limit,
            last: now,
            deadline: sleep_until(now.checked_add(limit)),
        }
    }

    /// True once `limit` passed since the last activity.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        while Pin::new(&mut self.deadline).poll(cx).is_ready() {
            match self.last.checked_add(self.limit) {
                Some(deadline) if Instant::now() < deadline => self.deadline.reset(Some(deadline)),
                Some(_) => return true,
                None => self.deadline.reset(None),
            }
        }
        false
    }
}

fn sleep_until(deadline: Option<Instant>) -> Sleep {
    deadline.map_or_else(Sleep::never, Sleep::until)
}

/// Runs the two directions side by side and decides how the relay ends.
pub(super) struct Driver<'a> {
    c2u: Meter<'a>,
    u2c: Meter<'a>,
    first_eof: Option<Dir>,
    idle: Option<IdleClock>,
}

impl<'a> Driver<'a> {
    /// A driver counting into `progress`, with an optional idle timeout.
    pub(super) fn new(idle: Option<Duration>, progress: &'a Progress) -> Self {
        Driver {
            c2u: Meter::with_live(
                &progress.client_to_upstream,
                progress.live.as_deref().map(|m| m.byte_counters().0),
            ),
            u2c: Meter::with_live(
                &progress.upstream_to_client,
                progress.live.as_deref().map(|m| m.byte_counters().1),
            ),
            first_eof: None,
            idle: idle.map(IdleClock::new),
        }
    }

    fn stats(&self, end: RelayEnd) -> RelayStats {
        RelayStats {
            #[cfg(test)]
            client_to_upstream: self.c2u.bytes,
            #[cfg(test)]
            upstream_to_client: self.u2c.bytes,
            end,
        }
    }

    /// Polls every unfinished direction through `pump`, then the idle clock.
    pub(super) fn poll<F>(&mut self, cx: &mut Context<'_>, mut pump: F) -> Poll<RelayStats>
    where
        F: FnMut(&mut Context<'_>, Dir, &mut Meter<'a>) -> Poll<Result<(), PumpError>>,
    {
        for dir in [Dir::ClientToUpstream, Dir::UpstreamToClient] {
            let (meter, peer_done) = match dir {
                Dir::ClientToUpstream => (&mut self.c2u, self.u2c.done),
                Dir::UpstreamToClient => (&mut self.u2c, self.c2u.done),
            };
            if meter.done {
                continue;
            }
            meter.peer_done = peer_done;
            let outcome = pump(cx, dir, meter);
            if meter.eof && self.first_eof.is_none() {
                self.first_eof = Some(dir);
            }
            match outcome {
                Poll::Ready(Ok(())) => meter.done = true,
                Poll::Ready(Err(err)) => return Poll::Ready(self.stats(fault_end(dir, err))),
                Poll::Pending => {}
            }
        }
        if self.c2u.done && self.u2c.done {
            let end = match self.first_eof {
                Some(Dir::UpstreamToClient) => RelayEnd::UpstreamClosed,
                _ => RelayEnd::ClientClosed,
            };
            return Poll::Ready(self.stats(end));
        }
        if let Some(clock) = &mut self.idle {
            if self.c2u.moved || self.u2c.moved {
                self.c2u.moved = false;
                self.u2c.moved = false;
                clock.last = Instant::now();
            }
            if clock.poll_expired(cx) {
                return Poll::Ready(self.stats(RelayEnd::IdleTimeout));
            }
        }
        Poll::Pending
    }
}

/// Which side a direction's failure belongs to: the source for reads, the destination for writes.
fn fault_end(dir: Dir, err: PumpError) -> RelayEnd {
    match (dir, err) {
        (Dir::ClientToUpstream, PumpError::Read(e))
        | (Dir::UpstreamToClient, PumpError::Write(e)) => RelayEnd::ClientError(e.kind()),
        (Dir::ClientToUpstream, PumpError::Write(e))
        | (Dir::UpstreamToClient, PumpError::Read(e)) => RelayEnd::UpstreamError(e.kind()),
    }
}
