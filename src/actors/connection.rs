//! ConnectionActor: one task per accepted socket.
//!
//! ```text
//! accept ─▶ limits ─▶ [peek ClientHello] ─▶ choose group ─▶ [terminate TLS] ─▶ choose upstream
//!        ─▶ resolve ─▶ connect ─▶ [originate TLS] ─▶ relay ─▶ one CloseReason, one log line
//! ```
//!
//! It takes no messages: it owns its two sockets and ends by itself. The drain token it
//! holds tells the Supervisor it is still running; the kill signal ends it when the drain
//! timeout passes. Every step that a peer controls is bounded by a deadline.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use async_io::Async;
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::{AsyncWriteExt, FutureExt};
use rustls::pki_types::ServerName;

use super::admission::{Admission, Claim};
use super::{Generation, Shared};
use crate::close::CloseReason;
use crate::metrics::{HandshakeFailure, Side};
use crate::net::copy::{self, Progress, RelayEnd, RelayStats, TcpHalfClose};
use crate::net::peek;
use crate::net::prefixed::Prefixed;
use crate::net::socket;
use crate::route::{Group, Listener, ServiceHost, Termination, Upstream};
use crate::sni::Peek;

// Why the `Box::pin`s below: a task stores its whole future for its lifetime, so the
// future's size is memory per idle connection. The peek, the TLS handshakes, the lookup and
// the connect are large and short-lived; boxing each keeps them out of the task's inline
// state (tested by `size_tests`), and the allocation is paid only on the path that runs them.

/// A TLS alert record: fatal `unrecognized_name` (RFC 6066), sent when no route matches an SNI.
const ALERT_UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];

/// How a connection uses TLS: the access log's `tls` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    /// Plain bytes both ways (also: not routed far enough to know).
    None,
    /// TLS from the client terminated here; cleartext upstream.
    Terminate,
    /// Plain from the client; TLS originated to the upstream.
    Originate,
    /// Terminated from the client and originated to the upstream.
    TerminateOriginate,
}

impl TlsMode {
    fn as_str(self) -> &'static str {
        match self {
            TlsMode::None => "none",
            TlsMode::Terminate => "terminate",
            TlsMode::Originate => "originate",
            TlsMode::TerminateOriginate => "terminate+originate",
        }
    }
}

/// Everything the access log line says about a connection (the byte counts are the
/// admission's [`Progress`]).
struct Record {
    started: Instant,
    listener: SocketAddr,
    client: SocketAddr,
    sni: Option<String>,
    mapping: Option<Arc<crate::route::MappingId>>,
    upstream: Option<SocketAddr>,
    tls: TlsMode,
}

/// Serves one accepted connection to its end; never panics on peer input, never returns an
/// error. The admission is ended here with the connection's one close reason (or, if this
/// future is dropped unfinished, by the admission's own drop).
pub(crate) async fn serve(
    stream: Async<TcpStream>,
    client: SocketAddr,
    listener: SocketAddr,
    generation: Arc<Generation>,
    mut admission: Admission,
) {
    let mut rec = Record {
        started: Instant::now(),
        listener,
        client,
        sni: None,
        mapping: None,
        upstream: None,
        tls: TlsMode::None,
    };
    let shared: &Shared = &admission.shared;
    let stages = run(
        stream,
        &generation,
        shared,
        &mut admission.claim,
        &mut admission.progress,
        &mut rec,
    );
    let outcome = stages
        .or(async {
            shared.kill.tripped().await;
            Err(CloseReason::Shutdown)
        })
        .await;
    let reason = match outcome {
        Ok(stats) => match stats.end {
            RelayEnd::ClientClosed => CloseReason::ClientClosed,
            RelayEnd::UpstreamClosed => CloseReason::UpstreamClosed,
            RelayEnd::IdleTimeout => CloseReason::IdleTimeout,
            RelayEnd::ClientError(_) | RelayEnd::UpstreamError(_) => CloseReason::IoError,
        },
        Err(reason) => reason,
    };
    admission.end(reason);
    log_access(&rec, &admission.progress, reason);
}

/// The connection's one access line (none for refusals, which have a rate-limited warning).
fn log_access(rec: &Record, progress: &Progress, reason: CloseReason) {
    if reason == CloseReason::Limit {
        return;
    }
    let mapping = rec.mapping.as_ref().map(|m| m.name.as_str()).unwrap_or("-");
    tracing::info!(
        target: "tcpmap::access",
        mapping,
        listener = %rec.listener,
        client = %rec.client,
        sni = rec.sni.as_deref().unwrap_or("-"),
        upstream = %OrDash(rec.upstream),
        tls = rec.tls.as_str(),
        bytes_in = progress.client_to_upstream.load(Ordering::Relaxed),
        bytes_out = progress.upstream_to_client.load(Ordering::Relaxed),
        duration_ms = rec.started.elapsed().as_millis() as u64,
        end = reason.as_str(),
        "connection closed"
    );
}

/// Displays an optional address as itself or `-`, formatted only when the log line is enabled.
struct OrDash(Option<SocketAddr>);

impl std::fmt::Display for OrDash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// The client side after routing: plain (with bytes already read to forward), or TLS.
enum Client {
    Plain(Async<TcpStream>, Vec<u8>),
    Tls(Box<futures_rustls::server::TlsStream<Prefixed<TcpHalfClose<Async<TcpStream>>>>>),
}

/// The stages in order: route (peek, terminate) → admit (upstream, mapping slot) → connect
/// (resolve, connect) → relay (originate, copy).
async fn run(
    stream: Async<TcpStream>,
    generation: &Generation,
    shared: &Shared,
    claim: &mut Claim,
    progress: &mut Progress,
    rec: &mut Record,
) -> Result<RelayStats, CloseReason> {
    // TCP_NODELAY is already on: accepted sockets inherit it from the listener (net::socket).
    let Some(routes) = generation.table.listeners.get(&rec.listener) else {
        return Err(CloseReason::NoRoute);
    };
    let (group, client) = route(stream, routes, shared, rec).await?;
    let upstream = admit(group, generation, shared, claim, progress, rec)?;
    let (up, up_addr) = connect(upstream, group, shared, progress).await?;
    rec.upstream = Some(up_addr);
    relay(client, up, upstream, group, shared, progress, rec).await
}

/// Route: which group serves the connection, and is the client side TLS we terminate?
async fn route<'r>(
    stream: Async<TcpStream>,
    routes: &'r Listener,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(&'r Group, Client), CloseReason> {
    if !routes.needs_peek() {
        return match &routes.plain {
            Some(plain) => Ok((&**plain, Client::Plain(stream, Vec::new()))),
            None => Err(CloseReason::NoRoute),
        };
    }
    let peeked = Box::pin(peek::read_client_hello(
        &stream,
        shared.limits.handshake_timeout,
    ))
    .await;
    let matched = match &peeked.verdict {
        Peek::Sni(name) => {
            rec.sni = Some(name.clone());
            routes.by_sni(name)
        }
        _ => None,
    };
    match (matched, &routes.plain) {
        (Some(host), _) => {
            let tls = Box::pin(terminate(stream, peeked.bytes, &host.termination, shared)).await?;
            Ok((&host.group, Client::Tls(Box::new(tls))))
        }
        (None, Some(plain)) if !peeked.timed_out || peeked.bytes.is_empty() => {
            Ok((&**plain, Client::Plain(stream, peeked.bytes)))
        }
        (None, _) => {
            let is_tls = matches!(peeked.verdict, Peek::Sni(_) | Peek::NoSni);
            if is_tls {
                let mut s = &stream;
                let _ = s.write_all(&ALERT_UNRECOGNIZED_NAME).await;
                shared
                    .metrics
                    .tls_handshake_failure(Side::Client, HandshakeFailure::UnrecognizedName);
                return Err(CloseReason::NoRoute);
            }
            if peeked.timed_out || peeked.eof {
                shared
                    .metrics
                    .tls_handshake_failure(Side::Client, HandshakeFailure::TimeoutOrEof);
                return Err(CloseReason::HandshakeFailed);
            }
            Err(CloseReason::NoRoute)
        }
    }
}

/// Admit: the group's upstream for this connection, and the mapping's claim on it (counted
/// as accepted, a circuit-breaker slot taken or the connection refused).
fn admit<'g>(
    group: &'g Group,
    generation: &Generation,
    shared: &Shared,
    claim: &mut Claim,
    progress: &mut Progress,
    rec: &mut Record,
) -> Result<&'g Upstream, CloseReason> {
    let Some(upstream) = group.choose() else {
        return Err(CloseReason::NoRoute);
    };
    rec.mapping = Some(upstream.mapping.clone());
    if let Some(m) = generation.metrics.get(&upstream.mapping) {
        if !claim.take(progress, m.clone(), upstream.max_connections, shared) {
            log_breaker_open(upstream, rec, shared);
            return Err(CloseReason::Limit);
        }
    }
    #[cfg(feature = "fault-injection")]
    crate::fault::on_routed(&upstream.mapping.name);
    Ok(upstream)
}

/// The rate-limited warning about connections a mapping's circuit breaker refused.
fn log_breaker_open(upstream: &Upstream, rec: &Record, shared: &Shared) {
    if let Some(held_back) = shared.breaker_log.allow(Instant::now()) {
        tracing::warn!(
            mapping = %upstream.mapping.name,
            listener = %rec.listener,
            client = %rec.client,
            max_connections = upstream.max_connections.unwrap_or(0),
            suppressed = held_back,
            "connection refused: circuit breaker open (at most one such line per second; `suppressed` counts the refusals not logged since the last line)"
        );
    }
}

/// Connect: resolve the service in the group's families and connect to the first address
/// that answers within the connect timeout.
async fn connect(
    upstream: &Upstream,
    group: &Group,
    shared: &Shared,
    progress: &Progress,
) -> Result<(Async<TcpStream>, SocketAddr), CloseReason> {
    let addrs = Box::pin(
        shared
            .resolver
            .resolve(&upstream.host, upstream.port, group.families),
    )
    .await;
    shared.metrics.dns_lookup(addrs.is_ok());
    let addrs = addrs.map_err(|e| {
        tracing::debug!(service = %upstream.service(), error = %e, "resolve failed");
        CloseReason::ResolveFailed
    })?;
    let t0 = Instant::now();
    let connected = Box::pin(socket::connect_any(&addrs, upstream.connect_timeout)).await;
    if let Some(m) = &progress.live {
        shared
            .metrics
            .upstream_connect(m, connected.is_ok(), t0.elapsed());
    }
    connected.map_err(|e| {
        tracing::debug!(service = %upstream.service(), error = %e, "connect failed");
        CloseReason::ConnectFailed
    })
}

/// Relay: originate TLS if the group asks, forward what routing read, then copy both ways
/// until one side ends.
async fn relay(
    client: Client,
    up: Async<TcpStream>,
    upstream: &Upstream,
    group: &Group,
    shared: &Shared,
    progress: &Progress,
    rec: &mut Record,
) -> Result<RelayStats, CloseReason> {
    let idle = group.idle_timeout;
    match (client, &group.origination) {
        (Client::Plain(c, first), None) => {
            rec.tls = TlsMode::None;
            Box::pin(forward_first(&up, &first, progress)).await?;
            let zero_copy = shared.limits.zero_copy;
            Ok(crate::net::splice::relay_tcp_owned(c, up, idle, progress, zero_copy).await)
        }
        (Client::Plain(c, first), Some(orig)) => {
            rec.tls = TlsMode::Originate;
            let mut up =
                Box::new(Box::pin(originate(TcpHalfClose(up), upstream, orig, shared)).await?);
            Box::pin(forward_first(&mut *up, &first, progress)).await?;
            Ok(Box::pin(copy::relay(&mut TcpHalfClose(&c), &mut *up, idle, progress)).await)
        }
        (Client::Tls(mut c), None) => {
            rec.tls = TlsMode::Terminate;
            Ok(Box::pin(copy::relay(&mut *c, &mut TcpHalfClose(&up), idle, progress)).await)
        }
        (Client::Tls(mut c), Some(orig)) => {
            rec.tls = TlsMode::TerminateOriginate;
            let mut up =
                Box::new(Box::pin(originate(TcpHalfClose(up), upstream, orig, shared)).await?);
            Ok(Box::pin(copy::relay(&mut *c, &mut *up, idle, progress)).await)
        }
    }
}

/// Sends the bytes read while routing to the upstream before relaying the rest.
async fn forward_first<W>(mut up: W, first: &[u8], progress: &Progress) -> Result<(), CloseReason>
where
    W: AsyncWrite + Unpin,
{
    if first.is_empty() {
        return Ok(());
    }
    up.write_all(first)
        .await
        .map_err(|_| CloseReason::IoError)?;
    up.flush().await.map_err(|_| CloseReason::IoError)?;
    progress.add_client_to_upstream(first.len() as u64);
    Ok(())
}

/// Terminates the client's TLS with the host group's certificate, within the handshake deadline.
async fn terminate(
    stream: Async<TcpStream>,
    hello: Vec<u8>,
    term: &Termination,
    shared: &Shared,
) -> Result<futures_rustls::server::TlsStream<Prefixed<TcpHalfClose<Async<TcpStream>>>>, CloseReason>
{
    let acceptor = futures_rustls::LazyConfigAcceptor::new(
        rustls::server::Acceptor::default(),
        Prefixed::new(hello, TcpHalfClose(stream)),
    );
    let handshake = async {
        let start = acceptor.await?;
        start.into_stream(term.config.clone()).await
    };
    match crate::rt::timeout(shared.limits.handshake_timeout, handshake).await {
        Some(Ok(tls)) => Ok(tls),
        Some(Err(e)) => {
            tracing::debug!(error = %e, "client TLS handshake failed");
            shared
                .metrics
                .tls_handshake_failure(Side::Client, HandshakeFailure::Error);
            Err(CloseReason::HandshakeFailed)
        }
        None => {
            shared
                .metrics
                .tls_handshake_failure(Side::Client, HandshakeFailure::Timeout);
            Err(CloseReason::HandshakeFailed)
        }
    }
}

/// Originates TLS towards the upstream: SNI from the context, else the service's DNS name.
async fn originate<S>(
    up: S,
    upstream: &Upstream,
    orig: &crate::route::Origination,
    shared: &Shared,
) -> Result<futures_rustls::client::TlsStream<S>, CloseReason>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = match (&orig.sni, &upstream.host) {
        (Some(sni), _) => ServerName::try_from(sni.clone()).ok(),
        (None, ServiceHost::Dns(host)) => ServerName::try_from(host.clone()).ok(),
        (None, ServiceHost::Ip(ip)) => Some(ServerName::IpAddress((*ip).into())),
    };
    let Some(name) = name else {
        shared
            .metrics
            .tls_handshake_failure(Side::Upstream, HandshakeFailure::BadServerName);
        return Err(CloseReason::UpstreamHandshakeFailed);
    };
    let connector = futures_rustls::TlsConnector::from(orig.config.clone());
    match crate::rt::timeout(shared.limits.handshake_timeout, connector.connect(name, up)).await {
        Some(Ok(tls)) => Ok(tls),
        Some(Err(e)) => {
            tracing::debug!(service = %upstream.service(), error = %e, "upstream TLS handshake failed");
            shared
                .metrics
                .tls_handshake_failure(Side::Upstream, HandshakeFailure::Error);
            Err(CloseReason::UpstreamHandshakeFailed)
        }
        None => {
            shared
                .metrics
                .tls_handshake_failure(Side::Upstream, HandshakeFailure::Timeout);
            Err(CloseReason::UpstreamHandshakeFailed)
        }
    }
}

#[cfg(test)]
mod size_tests {
    /// Every connection task holds its whole future for its lifetime, so its size is memory
    /// per idle connection: the TLS and lookup steps are boxed to keep the plain path small.
    #[test]
    fn serve_future_stays_small() {
        use std::net::{TcpListener, TcpStream};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let stream = async_io::Async::new(s).unwrap();
        let table = std::sync::Arc::new(crate::route::RouteTable::default());
        let shared = super::Shared::for_tests(None);
        let generation = std::sync::Arc::new(super::Generation::new(table, &shared.metrics));
        let addr = l.local_addr().unwrap();
        let admission = crate::actors::admission::Admission::enter(shared).unwrap();
        let fut = super::serve(stream, addr, addr, generation, admission);
        let size = std::mem::size_of_val(&fut);
        eprintln!("serve future: {size} bytes");
        assert!(size <= 1536, "the connection future grew to {size} bytes");
    }
}
