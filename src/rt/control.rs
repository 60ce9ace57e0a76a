//! Sockets of the control plane: the admin endpoint's listener and its connections.
//!
//! They live on the runtime's own reactor (async-io's, which async-std drives), not on
//! tcpmap's data-plane reactor ([`super::reactor`]): the admin endpoint is not per connection,
//! and keeping it off the data plane keeps the data plane's reactors free to be one per
//! thread. Only what the admin server needs is here, so swapping the runtime rewrites this
//! file, not `admin.rs`.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};

/// A listening socket of the control plane.
#[derive(Debug)]
pub(crate) struct ControlListener(async_io::Async<TcpListener>);

impl ControlListener {
    /// Binds `addr` (address reuse as std sets it on Unix).
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<ControlListener> {
        async_io::Async::<TcpListener>::bind(addr).map(ControlListener)
    }

    /// Takes over a listening socket bound elsewhere (one handed over by a hot upgrade); it is
    /// made non-blocking.
    pub(crate) fn from_std(listener: TcpListener) -> io::Result<ControlListener> {
        async_io::Async::new(listener).map(ControlListener)
    }

    /// The socket.
    pub(crate) fn get_ref(&self) -> &TcpListener {
        self.0.get_ref()
    }

    /// Waits for a connection and accepts it.
    pub(crate) async fn accept(&self) -> io::Result<(ControlStream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        Ok((ControlStream(stream), peer))
    }
}

/// A connection of the control plane (read and written through `futures-io`).
#[derive(Debug)]
pub(crate) struct ControlStream(async_io::Async<TcpStream>);

impl ControlStream {
    /// Connects to `addr` (the admin tests' client).
    #[cfg(test)]
    pub(crate) async fn connect(addr: SocketAddr) -> io::Result<ControlStream> {
        async_io::Async::<TcpStream>::connect(addr)
            .await
            .map(ControlStream)
    }
}

impl AsyncRead for ControlStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ControlStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_close(cx)
    }
}
