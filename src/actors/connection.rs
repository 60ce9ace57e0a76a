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

use super::{Generation, Shared};
use crate::close::CloseReason;
use crate::metrics::MappingMetrics;
use crate::net::copy::{self, Progress, RelayEnd, RelayStats, TcpHalfClose};
use crate::net::peek;
use crate::net::prefixed::Prefixed;
use crate::net::socket;
use crate::route::{Group, ServiceHost, Upstream};
use crate::sni::Peek;

/// A TLS alert record: fatal `unrecognized_name` (RFC 6066), sent when no route matches an SNI.
const ALERT_UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];

/// Everything the access log line says about a connection.
struct Record {
    started: Instant,
    listener: SocketAddr,
    client: SocketAddr,
    sni: Option<String>,
    mapping: Option<Arc<crate::route::MappingId>>,
    upstream: Option<SocketAddr>,
    tls: &'static str,
    progress: Progress,
}

/// Serves one accepted connection to its end; never panics on peer input, never returns an error.
pub(crate) async fn serve(
    stream: Async<TcpStream>,
    client: SocketAddr,
    listener: SocketAddr,
    generation: Arc<Generation>,
    shared: &Shared,
) {
    let mut rec = Record {
        started: Instant::now(),
        listener,
        client,
        sni: None,
        mapping: None,
        upstream: None,
        tls: "none",
        progress: Progress::default(),
    };
    let kill = &shared.kill;
    let outcome = run(stream, &generation, shared, &mut rec)
        .or(async {
            kill.tripped().await;
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
    finish(&rec, reason);
}

fn finish(rec: &Record, reason: CloseReason) {
    let up = rec.progress.client_to_upstream.load(Ordering::Relaxed);
    let down = rec.progress.upstream_to_client.load(Ordering::Relaxed);
    if let Some(m) = &rec.progress.live {
        // The bytes were added to the mapping's counters live, as they moved.
        m.ended(reason, 0, 0);
    }
    if reason == CloseReason::Limit {
        // Refusals are logged by the rate-limited warning, not one access line each.
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
        tls = rec.tls,
        bytes_in = up,
        bytes_out = down,
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

async fn run(
    stream: Async<TcpStream>,
    generation: &Generation,
    shared: &Shared,
    rec: &mut Record,
) -> Result<RelayStats, CloseReason> {
    let _ = stream.get_ref().set_nodelay(true);
    let Some(routes) = generation.table.listeners.get(&rec.listener) else {
        return Err(CloseReason::NoRoute);
    };

    // 1. Which group, and is the client side TLS we terminate?
    let (group, client) = if routes.needs_peek() {
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
            (Some(group), _) => {
                let tls = Box::pin(terminate(stream, peeked.bytes, group, shared)).await?;
                (group, Client::Tls(Box::new(tls)))
            }
            (None, Some(plain)) if !peeked.timed_out || peeked.bytes.is_empty() => {
                (plain, Client::Plain(stream, peeked.bytes))
            }
            (None, _) => {
                let is_tls = matches!(peeked.verdict, Peek::Sni(_) | Peek::NoSni);
                if is_tls {
                    let mut s = &stream;
                    let _ = s.write_all(&ALERT_UNRECOGNIZED_NAME).await;
                    shared
                        .metrics
                        .tls_handshake_failure("client", "unrecognized_name");
                    return Err(CloseReason::NoRoute);
                }
                if peeked.timed_out || peeked.eof {
                    shared
                        .metrics
                        .tls_handshake_failure("client", "timeout_or_eof");
                    return Err(CloseReason::HandshakeFailed);
                }
                return Err(CloseReason::NoRoute);
            }
        }
    } else {
        match &routes.plain {
            Some(plain) => (plain, Client::Plain(stream, Vec::new())),
            None => return Err(CloseReason::NoRoute),
        }
    };

    // 2. Which upstream; limits.
    let Some(upstream) = group.choose() else {
        return Err(CloseReason::NoRoute);
    };
    rec.mapping = Some(upstream.mapping.clone());
    #[cfg(feature = "fault-injection")]
    crate::fault::on_routed(&upstream.mapping.name);
    // The mapping's metric handles: the relay adds bytes to them live, `finish` ends them.
    rec.progress.live = generation.metrics.get(&upstream.mapping).cloned();
    let metrics = rec.progress.live.as_deref();
    if let Some(m) = metrics {
        m.accepted();
    }
    let _breaker = match (metrics, upstream.max_connections) {
        (Some(m), Some(max)) => match Breaker::enter(m, max) {
            Some(guard) => Some(guard),
            None => {
                shared.metrics.rejected("mapping");
                if let Some(held_back) = shared.breaker_log.allow(Instant::now()) {
                    tracing::warn!(
                        mapping = %upstream.mapping.name,
                        listener = %rec.listener,
                        client = %rec.client,
                        max_connections = max,
                        suppressed = held_back,
                        "connection refused: circuit breaker open (at most one such line per second; `suppressed` counts the refusals not logged since the last line)"
                    );
                }
                return Err(CloseReason::Limit);
            }
        },
        _ => None,
    };

    // 3. Resolve and connect.
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
    if let Some(m) = metrics {
        shared
            .metrics
            .upstream_connect(m, connected.is_ok(), t0.elapsed());
    }
    let (up, up_addr) = connected.map_err(|e| {
        tracing::debug!(service = %upstream.service(), error = %e, "connect failed");
        CloseReason::ConnectFailed
    })?;
    rec.upstream = Some(up_addr);

    // 4. Originate TLS if asked, then relay.
    let idle = group.idle_timeout;
    match (client, &group.origination) {
        (Client::Plain(c, first), None) => {
            rec.tls = "none";
            Box::pin(forward_first(&up, &first, rec)).await?;
            let zero_copy = shared.limits.zero_copy;
            Ok(crate::net::splice::relay_tcp_owned(c, up, idle, &rec.progress, zero_copy).await)
        }
        (Client::Plain(c, first), Some(orig)) => {
            rec.tls = "originate";
            let mut up =
                Box::new(Box::pin(originate(TcpHalfClose(up), upstream, orig, shared)).await?);
            Box::pin(forward_first(&mut *up, &first, rec)).await?;
            Ok(Box::pin(copy::relay(
                &mut TcpHalfClose(&c),
                &mut *up,
                idle,
                &rec.progress,
            ))
            .await)
        }
        (Client::Tls(mut c), None) => {
            rec.tls = "terminate";
            Ok(Box::pin(copy::relay(
                &mut *c,
                &mut TcpHalfClose(&up),
                idle,
                &rec.progress,
            ))
            .await)
        }
        (Client::Tls(mut c), Some(orig)) => {
            rec.tls = "terminate+originate";
            let mut up =
                Box::new(Box::pin(originate(TcpHalfClose(up), upstream, orig, shared)).await?);
            Ok(Box::pin(copy::relay(&mut *c, &mut *up, idle, &rec.progress)).await)
        }
    }
}

/// Sends the bytes read while routing to the upstream before relaying the rest.
async fn forward_first<W>(mut up: W, first: &[u8], rec: &Record) -> Result<(), CloseReason>
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
    rec.progress.add_client_to_upstream(first.len() as u64);
    Ok(())
}

/// Terminates the client's TLS with the group's certificate, within the handshake deadline.
async fn terminate(
    stream: Async<TcpStream>,
    hello: Vec<u8>,
    group: &Group,
    shared: &Shared,
) -> Result<futures_rustls::server::TlsStream<Prefixed<TcpHalfClose<Async<TcpStream>>>>, CloseReason>
{
    let Some(term) = &group.termination else {
        return Err(CloseReason::Internal);
    };
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
            shared.metrics.tls_handshake_failure("client", "error");
            Err(CloseReason::HandshakeFailed)
        }
        None => {
            shared.metrics.tls_handshake_failure("client", "timeout");
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
            .tls_handshake_failure("upstream", "bad_server_name");
        return Err(CloseReason::UpstreamHandshakeFailed);
    };
    let connector = futures_rustls::TlsConnector::from(orig.config.clone());
    match crate::rt::timeout(shared.limits.handshake_timeout, connector.connect(name, up)).await {
        Some(Ok(tls)) => Ok(tls),
        Some(Err(e)) => {
            tracing::debug!(service = %upstream.service(), error = %e, "upstream TLS handshake failed");
            shared.metrics.tls_handshake_failure("upstream", "error");
            Err(CloseReason::UpstreamHandshakeFailed)
        }
        None => {
            shared.metrics.tls_handshake_failure("upstream", "timeout");
            Err(CloseReason::UpstreamHandshakeFailed)
        }
    }
}

/// A slot under a mapping's `circuit_breakers.max_connections`, released when dropped.
struct Breaker<'a>(&'a MappingMetrics);

impl<'a> Breaker<'a> {
    /// Takes a slot when fewer than `max` are taken.
    fn enter(mapping: &'a MappingMetrics, max: u32) -> Option<Self> {
        // `then`, not `then_some`: a Breaker built for nothing would release a slot on drop.
        mapping.try_acquire(Some(max)).then(|| Breaker(mapping))
    }
}

impl Drop for Breaker<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Releases the connection's slot under `--max-connections` when dropped.
pub(crate) struct ActiveGuard(pub(crate) Arc<Shared>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
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
        let metrics = crate::metrics::Metrics::new();
        let generation = std::sync::Arc::new(super::Generation::new(table, &metrics));
        let (_kill, tripwire) = crate::rt::tripwire();
        let shared = std::sync::Arc::new(super::Shared {
            resolver: crate::actors::resolver::ResolverHandle::spawn(Default::default()),
            metrics,
            limits: super::super::Limits {
                max_connections: None,
                handshake_timeout: std::time::Duration::from_secs(1),
                zero_copy: true,
            },
            active: Default::default(),
            kill: tripwire,
            breaker_log: crate::actors::ratelog::RateLimitedLog::new(
                std::time::Duration::from_secs(1),
            ),
        });
        let addr = l.local_addr().unwrap();
        let fut = super::serve(stream, addr, addr, generation, &shared);
        let size = std::mem::size_of_val(&fut);
        eprintln!("serve future: {size} bytes");
        assert!(size <= 1536, "the connection future grew to {size} bytes");
    }
}
