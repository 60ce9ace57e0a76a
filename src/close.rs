//! How a connection ended: one reason per connection, logged once and counted.

use std::fmt;

/// The single reason a proxied connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CloseReason {
    /// The client closed first (both directions then finished).
    ClientClosed,
    /// The upstream closed first (both directions then finished).
    UpstreamClosed,
    /// No byte moved either way for `idle_timeout_ms`.
    IdleTimeout,
    /// The client's TLS handshake (or the SNI peek) failed or timed out.
    HandshakeFailed,
    /// The TLS handshake with the upstream failed.
    UpstreamHandshakeFailed,
    /// Nothing on this listener matches the connection (unknown SNI, no host-less group).
    NoRoute,
    /// The service name did not resolve.
    ResolveFailed,
    /// Connecting to every upstream address failed or timed out.
    ConnectFailed,
    /// A read or write failed mid-stream (reset by a peer).
    IoError,
    /// A connection limit (`--max-connections` or `circuit_breakers`) was reached.
    Limit,
    /// The proxy shut down (drain timeout passed).
    Shutdown,
    /// A PROXY protocol header was required but missing, malformed, too long or late.
    ProxyProtocol,
    /// A bug inside tcpmap ended this connection (caught; the process lives on).
    Internal,
}

impl CloseReason {
    /// Every reason, for metric pre-registration.
    pub const ALL: [CloseReason; 13] = [
        CloseReason::ClientClosed,
        CloseReason::UpstreamClosed,
        CloseReason::IdleTimeout,
        CloseReason::HandshakeFailed,
        CloseReason::UpstreamHandshakeFailed,
        CloseReason::NoRoute,
        CloseReason::ResolveFailed,
        CloseReason::ConnectFailed,
        CloseReason::IoError,
        CloseReason::Limit,
        CloseReason::Shutdown,
        CloseReason::ProxyProtocol,
        CloseReason::Internal,
    ];

    /// The snake_case label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::UpstreamClosed => "upstream_closed",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::HandshakeFailed => "handshake_failed",
            CloseReason::UpstreamHandshakeFailed => "upstream_handshake_failed",
            CloseReason::NoRoute => "no_route",
            CloseReason::ResolveFailed => "resolve_failed",
            CloseReason::ConnectFailed => "connect_failed",
            CloseReason::IoError => "io_error",
            CloseReason::Limit => "limit",
            CloseReason::Shutdown => "shutdown",
            CloseReason::ProxyProtocol => "proxy_protocol",
            CloseReason::Internal => "internal",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
