//! Binding listeners and connecting to upstreams; no routing policy in here.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::rt::Async;
use socket2::{Domain, Protocol, Socket, Type};

/// Binds a listening socket: `SO_REUSEADDR` (fast rebinding after a restart), `IPV6_V6ONLY` on
/// IPv6 addresses (so `0.0.0.0:p` and `[::]:p` can be separate listeners), `TCP_NODELAY` (on
/// Linux every accepted socket inherits it: no setsockopt per connection), a deep backlog.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<Async<TcpListener>> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuseport() {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Async::listener(TcpListener::from(socket))
}

/// Takes one pending connection off a listening socket, without waiting: `WouldBlock` when
/// none is queued. The socket comes back non-blocking and registered with the reactor, with
/// `TCP_NODELAY` on. On Linux this is one syscall: `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)`
/// (no `FIONBIO` ioctl afterwards) and the listener's `TCP_NODELAY` is inherited (no
/// setsockopt); the reactor registration is the one `epoll_ctl(ADD)` every socket needs.
pub(crate) fn accept(listener: &Async<TcpListener>) -> io::Result<(Async<TcpStream>, SocketAddr)> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::net::SocketFlags;
        let (fd, peer) = rustix::net::acceptfrom_with(
            listener.get_ref(),
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        )?;
        let stream = TcpStream::from(fd);
        let peer = match peer.and_then(|p| SocketAddr::try_from(p).ok()) {
            Some(peer) => peer,
            None => stream.peer_addr()?,
        };
        Ok((Async::new_nonblocking(stream)?, peer))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let (stream, peer) = listener.get_ref().accept()?;
        let _ = stream.set_nodelay(true);
        Ok((Async::new(stream)?, peer))
    }
}

/// `TCPMAP_REUSEPORT=1`: listeners are bound with `SO_REUSEPORT` and each worker process
/// gets its own socket per address (the measurement of docs/architecture.md, "Balance").
pub(crate) fn reuseport() -> bool {
    std::env::var_os("TCPMAP_REUSEPORT").is_some_and(|v| v == "1")
}

/// Why connecting to an upstream failed.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The attempt's connect timeout passed.
    Timeout,
    /// The connect failed with this error (refused, unreachable, …).
    Io(io::Error),
}

impl ConnectError {
    /// True when the attempt failed for want of a local resource (file descriptors, kernel
    /// memory) before anything reached the endpoint: not the endpoint's fault, and another
    /// endpoint would fail the same way.
    pub(crate) fn is_local_exhaustion(&self) -> bool {
        match self {
            ConnectError::Timeout => false,
            // EMFILE, ENFILE, ENOBUFS, ENOMEM: this process or the kernel ran out of
            // descriptors or memory.
            ConnectError::Io(e) => matches!(
                e.raw_os_error(),
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
            ),
        }
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Connects to `addr` within `timeout` (one attempt of the connect stage, or a health probe).
pub(crate) async fn connect_one(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Async<TcpStream>, ConnectError> {
    match crate::rt::timeout(timeout, Async::<TcpStream>::connect(addr)).await {
        Some(Ok(stream)) => {
            let _ = stream.get_ref().set_nodelay(true);
            Ok(stream)
        }
        Some(Err(e)) => Err(ConnectError::Io(e)),
        None => Err(ConnectError::Timeout),
    }
}
