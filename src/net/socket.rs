//! Binding listeners and connecting to upstreams; no routing policy in here.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::rt::Async;
use socket2::{Domain, Protocol, Socket, Type};

/// Binds a listening socket: `SO_REUSEADDR` (fast rebinding after a restart), `IPV6_V6ONLY` on
/// IPv6 addresses (so `0.0.0.0:p` and `[::]:p` can be separate listeners), `TCP_NODELAY` (every
/// accepted socket inherits it: no setsockopt per connection), a deep backlog.
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
/// none is queued. The socket comes back non-blocking, not yet registered with the reactor
/// (a connection refused at once never is), with `TCP_NODELAY` on. This is one syscall:
/// `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)` (no `FIONBIO` ioctl afterwards) and the listener's
/// `TCP_NODELAY` is inherited (no setsockopt); registering it (`Async::new_nonblocking`) is
/// the one `epoll_ctl(ADD)` every served socket needs.
pub(crate) fn accept(listener: &Async<TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
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
    Ok((stream, peer))
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

/// [`connect_one`] to an upstream, with TCP keepalive set as the mapping's policy says
/// (Emissary's Module `keepalive`); a keepalive the kernel refuses is logged, not fatal.
pub(crate) async fn connect_upstream(
    addr: SocketAddr,
    timeout: Duration,
    keepalive: Option<crate::route::balance::Keepalive>,
) -> Result<Async<TcpStream>, ConnectError> {
    let stream = connect_one(addr, timeout).await?;
    if let Some(k) = keepalive {
        if let Err(e) = set_keepalive(stream.get_ref(), &k) {
            tracing::debug!(endpoint = %addr, error = %e, "cannot set TCP keepalive");
        }
    }
    Ok(stream)
}

/// Turns TCP keepalive on with `k`'s time, interval and probe count (unset: the kernel's).
pub(crate) fn set_keepalive(
    stream: &TcpStream,
    k: &crate::route::balance::Keepalive,
) -> io::Result<()> {
    let mut ka = socket2::TcpKeepalive::new();
    if let Some(t) = k.time {
        ka = ka.with_time(t);
    }
    if let Some(i) = k.interval {
        ka = ka.with_interval(i);
    }
    if let Some(n) = k.probes {
        ka = ka.with_retries(n);
    }
    socket2::SockRef::from(stream).set_tcp_keepalive(&ka)
}

#[cfg(test)]
mod keepalive_tests {
    use super::*;

    #[test]
    fn upstream_sockets_get_the_modules_keepalive() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let k = crate::route::balance::Keepalive {
            time: Some(Duration::from_secs(60)),
            interval: Some(Duration::from_secs(10)),
            probes: Some(4),
        };
        let stream =
            crate::rt::block_on(connect_upstream(addr, Duration::from_secs(3), Some(k))).unwrap();
        let s = socket2::SockRef::from(stream.get_ref());
        assert!(s.keepalive().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap(), Duration::from_secs(60));
        assert_eq!(s.tcp_keepalive_interval().unwrap(), Duration::from_secs(10));
        assert_eq!(s.tcp_keepalive_retries().unwrap(), 4);
        let plain =
            crate::rt::block_on(connect_upstream(addr, Duration::from_secs(3), None)).unwrap();
        assert!(!socket2::SockRef::from(plain.get_ref()).keepalive().unwrap());
    }
}
