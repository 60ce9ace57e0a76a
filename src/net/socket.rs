//! Binding listeners and connecting to upstreams; no routing policy in here.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use async_io::Async;
use socket2::{Domain, Protocol, Socket, Type};

/// Binds a listening socket: `SO_REUSEADDR` (fast rebinding after a restart), `IPV6_V6ONLY` on
/// IPv6 addresses (so `0.0.0.0:p` and `[::]:p` can be separate listeners), a deep backlog.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<Async<TcpListener>> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuseport() {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Async::new(TcpListener::from(socket))
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
