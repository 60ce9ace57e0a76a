//! [`Async`]: a non-blocking socket registered with a reactor ([`super::reactor`]: the registering
//! data-plane thread's, else the process's), its readiness
//! rule, and its futures-io impls.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};
use rustix::event::epoll::EventFlags;

use super::reactor::{ERROR_SEEN, FIN_SEEN, OPEN, Reactor, STREAM, Source, Tick};

/// A non-blocking socket registered with the reactor ([`super::reactor::Reactor`]).
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
    /// Its readiness, and the reactor it is registered with (the registering thread's,
    /// `super::local::reactor`).
    source: Arc<Source>,
    /// Delete the registration explicitly on drop: the descriptor may be open elsewhere (a
    /// listener a worker shares), so closing it would not remove it from the set.
    shared: bool,
}

impl<T: AsFd> Async<T> {
    /// Registers `io`, making it non-blocking first (tests).
    #[cfg(test)]
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
        Self::register_on(io, shared, flags, super::local::reactor()?)
    }

    fn register_on(
        io: T,
        shared: bool,
        flags: EventFlags,
        reactor: &'static Reactor,
    ) -> io::Result<Async<T>> {
        let source = reactor.register(&io, flags)?;
        Ok(Async {
            io: Some(io),
            source,
            shared,
        })
    }

    /// The reactor it is registered with.
    #[cfg(test)]
    pub(super) fn reactor(&self) -> &'static Reactor {
        self.source.reactor
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
        self.source.reactor.deregister(&self.source, Some(&io));
        Ok(io)
    }

    /// The read edge count now; take it before an operation that may return `EAGAIN`.
    pub(crate) fn read_tick(&self) -> Tick {
        self.source.read.tick.load(Ordering::Acquire)
    }

    /// The write edge count now (see [`Async::read_tick`]).
    pub(crate) fn write_tick(&self) -> Tick {
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
    pub(crate) fn read_drained(&self, tick: Tick) {
        self.source.read.seen.store(tick, Ordering::Relaxed);
    }

    /// A write operation started at `tick` came back `EAGAIN`: ready at the next write edge.
    pub(crate) fn write_drained_then_poll(
        &self,
        tick: Tick,
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
        match (&io, self.shared) {
            (Some(io), true) => self.source.reactor.deregister(&self.source, Some(io)),
            _ => self
                .source
                .reactor
                .deregister(&self.source, None::<&OwnedFd>),
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
        Self::listener_on(io, super::local::reactor()?)
    }

    /// [`Async::listener`] on a given reactor (a data-plane thread's, from another thread).
    pub(super) fn listener_on(
        io: std::net::TcpListener,
        reactor: &'static Reactor,
    ) -> io::Result<Self> {
        rustix::io::ioctl_fionbio(&io, true)?;
        Self::register_on(io, true, EventFlags::IN | EventFlags::ET, reactor)
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
