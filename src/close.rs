//! How a connection ended: one reason per connection, logged once and counted.

use std::fmt;

/// The single reason a proxied connection ended.
///
/// New reasons may be added in a minor release (`#[non_exhaustive]`); match with a `_` arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client closed first (both directions then finished).
    ClientClosed,
    /// The upstream closed first (both directions then finished).
    UpstreamClosed,
    /// No byte moved either way for `idle_timeout_ms`.
    IdleTimeout,
    /// The client's TLS handshake failed (rustls' alert, sent or received), timed out, or the
    /// ClientHello did not arrive in time.
    HandshakeFailed,
    /// The ClientHello was malformed; answered with `decode_error` (or `record_overflow`,
    /// `unexpected_message`).
    TlsMalformedHello,
    /// The ClientHello's server name is not a valid DNS name; answered with `illegal_parameter`.
    TlsBadSni,
    /// The server name matched no `host` and the listener has no catch-all or host-less
    /// group; answered with `unrecognized_name`.
    TlsUnknownSni,
    /// The ClientHello had no server name and the listener has no catch-all (`host: "*"`) or
    /// host-less group; answered with `unrecognized_name`.
    TlsNoSni,
    /// The TLS handshake with the upstream failed.
    UpstreamHandshakeFailed,
    /// Nothing on this listener matches the connection (not TLS, and no host-less group).
    NoRoute,
    /// The service name did not resolve.
    ResolveFailed,
    /// Connecting to every upstream address failed or timed out.
    ConnectFailed,
    /// A read or write failed mid-stream (reset by a peer), on this side: the client's
    /// connection or the upstream's. The label stays `io_error` for both; the side is a
    /// separate field (the access line's `side`, `tcpmap_connections_io_errors_total{side}`).
    IoError(Side),
    /// A connection limit (`--max-connections` or `circuit_breakers`) was reached.
    Limit,
    /// The proxy shut down (drain timeout passed).
    Shutdown,
    /// A PROXY protocol header was required but missing, malformed, too long or late.
    ProxyProtocol,
    /// A bug inside tcpmap ended this connection (caught; the process lives on).
    Internal,
    /// The proxy asked the connection to close at a set time (a close order of its config
    /// generation: a gradual drain or a maximum connection age), and it did.
    Retired,
    /// The connection reached its mapping's `max_connection_duration_ms` (less its jitter).
    MaxDuration,
    /// The listener's `connection_rate_limit` had no token for it; closed before any TLS work.
    RateLimit,
}

/// A side of a proxied connection: the client's or the upstream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Side {
    /// The client's connection (terminated here when TLS).
    Client,
    /// The upstream's connection (originated here when TLS).
    Upstream,
}

impl Side {
    /// The `side` label: `client` or `upstream`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
        }
    }
}

impl CloseReason {
    /// Every reason (`IoError` once per side), for metric pre-registration.
    pub const ALL: [CloseReason; 21] = [
        CloseReason::ClientClosed,
        CloseReason::UpstreamClosed,
        CloseReason::IdleTimeout,
        CloseReason::HandshakeFailed,
        CloseReason::TlsMalformedHello,
        CloseReason::TlsBadSni,
        CloseReason::TlsUnknownSni,
        CloseReason::TlsNoSni,
        CloseReason::UpstreamHandshakeFailed,
        CloseReason::NoRoute,
        CloseReason::ResolveFailed,
        CloseReason::ConnectFailed,
        CloseReason::IoError(Side::Client),
        CloseReason::IoError(Side::Upstream),
        CloseReason::Limit,
        CloseReason::Shutdown,
        CloseReason::ProxyProtocol,
        CloseReason::Internal,
        CloseReason::Retired,
        CloseReason::MaxDuration,
        CloseReason::RateLimit,
    ];

    /// The side whose read or write failed, for an I/O error.
    pub fn side(self) -> Option<Side> {
        match self {
            CloseReason::IoError(side) => Some(side),
            _ => None,
        }
    }

    /// The snake_case label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::UpstreamClosed => "upstream_closed",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::HandshakeFailed => "handshake_failed",
            CloseReason::TlsMalformedHello => "tls_malformed_hello",
            CloseReason::TlsBadSni => "tls_bad_sni",
            CloseReason::TlsUnknownSni => "tls_unknown_sni",
            CloseReason::TlsNoSni => "tls_no_sni",
            CloseReason::UpstreamHandshakeFailed => "upstream_handshake_failed",
            CloseReason::NoRoute => "no_route",
            CloseReason::ResolveFailed => "resolve_failed",
            CloseReason::ConnectFailed => "connect_failed",
            CloseReason::IoError(_) => "io_error",
            CloseReason::Limit => "limit",
            CloseReason::Shutdown => "shutdown",
            CloseReason::ProxyProtocol => "proxy_protocol",
            CloseReason::Internal => "internal",
            CloseReason::Retired => "retired",
            CloseReason::MaxDuration => "max_duration",
            CloseReason::RateLimit => "rate_limit",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
