//! ConnectionActor: one task per accepted socket.
//!
//! ```text
//! accept ─▶ limits ─▶ [PROXY header] ─▶ [peek ClientHello] ─▶ choose group ─▶ [terminate TLS]
//!        ─▶ choose upstream ─▶ resolve ─▶ connect ─▶ [send PROXY header] ─▶ [originate TLS]
//!        ─▶ relay ─▶ one CloseReason, one log line
//! ```
//!
//! It takes no messages: it owns its two sockets and ends by itself. The drain token it
//! holds tells the Supervisor it is still running; the kill signal ends it when the drain
//! timeout passes. Every step that a peer controls is bounded by a deadline.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::rt::Async;
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::{AsyncWriteExt, FutureExt};
use rustls::pki_types::ServerName;

use super::admission::{Admission, Claim};
use super::endpoints::UpstreamState;
use super::{Generation, Shared};
use crate::close::CloseReason;
use crate::metrics::{HandshakeFailure, Side};
use crate::net::copy::{self, Progress, RelayEnd, RelayStats, TcpHalfClose};
use crate::net::peek;
use crate::net::prefixed::Prefixed;
use crate::net::proxy_header::{self, HeaderError};
use crate::net::socket;
use crate::proxy_protocol::{self, Accept, Header, Ssl, Tlv, Version};
use crate::route::{Group, HostGroup, HostTls, Listener, ServiceHost, Termination, Upstream};
use crate::sni::{Alert, Peek};

// Why the `Box::pin`s below: a task stores its whole future for its lifetime, so the
// future's size is memory per idle connection. The peek, the TLS handshakes, the lookup and
// the connect are large and short-lived; boxing each keeps them out of the task's inline
// state (tested by `size_tests`), and the allocation is paid only on the path that runs them.

/// How a connection uses TLS: the access log's `tls` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TlsMode {
    /// Plain bytes both ways (also: not routed far enough to know).
    None,
    /// TLS from the client terminated here; cleartext upstream.
    Terminate,
    /// Plain from the client; TLS originated to the upstream.
    Originate,
    /// Terminated from the client and originated to the upstream.
    TerminateOriginate,
    /// The client's TLS relayed untouched, ClientHello included (`tls_passthrough`).
    Passthrough,
}

impl TlsMode {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            TlsMode::None => "none",
            TlsMode::Terminate => "terminate",
            TlsMode::Originate => "originate",
            TlsMode::TerminateOriginate => "terminate+originate",
            TlsMode::Passthrough => "passthrough",
        }
    }
}

/// Everything the access log line says about a connection (the byte counts are the
/// admission's [`Progress`]).
struct Record {
    started: Instant,
    listener: SocketAddr,
    /// The client: the source of an accepted PROXY protocol header, else the socket's peer.
    /// The one place that holds it: the access log, per-client limits, `source_ip` hashing
    /// and the header sent upstream all read it here.
    client: SocketAddr,
    /// The socket's peer (a load balancer when a PROXY protocol header was accepted).
    peer: SocketAddr,
    /// The address the client connected to, when an accepted header named it.
    destination: Option<SocketAddr>,
    sni: Option<String>,
    mapping: Option<Arc<crate::route::MappingId>>,
    /// The host group the SNI matched, whose mappings the access line names while no upstream
    /// is chosen yet (so a failed handshake still says which mapping it was for).
    matched: Option<Arc<HostGroup>>,
    upstream: Option<SocketAddr>,
    tls: TlsMode,
    /// Upstream connect attempts made (0: none).
    attempts: usize,
    /// Why the connection failed before relaying (alert sent or received, timeout), if it did.
    detail: Option<String>,
}

/// Serves one accepted connection to its end; never panics on peer input, never returns an
/// error. The admission is ended here with the connection's one close reason (or, if this
/// future is dropped unfinished, by the admission's own drop).
pub(crate) async fn serve(
    stream: Async<TcpStream>,
    peer: SocketAddr,
    listener: SocketAddr,
    generation: Arc<Generation>,
    mut admission: Admission,
) {
    let mut rec = Record {
        started: Instant::now(),
        listener,
        client: peer,
        peer,
        destination: None,
        sni: None,
        mapping: None,
        matched: None,
        upstream: None,
        tls: TlsMode::None,
        attempts: 0,
        detail: None,
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
    let matched;
    let mapping = match (&rec.mapping, &rec.matched) {
        (Some(m), _) => m.name.as_str(),
        (None, Some(host)) => {
            matched = mapping_names(host);
            matched.as_str()
        }
        (None, None) => "-",
    };
    tracing::info!(
        target: "tcpmap::access",
        mapping,
        listener = %rec.listener,
        client = %rec.client,
        peer = %rec.peer,
        sni = rec.sni.as_deref().unwrap_or("-"),
        upstream = %OrDash(rec.upstream),
        tls = rec.tls.as_str(),
        attempts = rec.attempts,
        bytes_in = progress.client_to_upstream.load(Ordering::Relaxed),
        bytes_out = progress.upstream_to_client.load(Ordering::Relaxed),
        duration_ms = rec.started.elapsed().as_millis() as u64,
        end = reason.as_str(),
        detail = rec.detail.as_deref().unwrap_or("-"),
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

impl Client {
    /// The client's socket, under any TLS.
    fn socket(&self) -> &Async<TcpStream> {
        match self {
            Client::Plain(s, _) => s,
            Client::Tls(tls) => &tls.get_ref().0.get_ref().0,
        }
    }
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
    if routes.proxy_protocol != Accept::Off {
        Box::pin(accept_proxy_header(
            &stream,
            routes.proxy_protocol,
            shared,
            rec,
        ))
        .await?;
    }
    let (group, client) = route(stream, routes, generation, shared, rec).await?;
    let (upstream, endpoints) = admit(group, generation, shared, claim, progress, rec)?;
    let (up, up_addr) = connect(upstream, endpoints, shared, claim, progress, rec).await?;
    rec.upstream = Some(up_addr);
    if let Some(version) = upstream.send_proxy {
        Box::pin(send_proxy_header(&up, version, &client, rec)).await?;
    }
    relay(client, up, upstream, group, shared, progress, rec).await
}

/// The PROXY protocol header the listener asks for, read before anything else within the
/// handshake deadline: its source becomes the connection's client. A missing or bad one
/// closes the connection (counted, and one warning per second with the peer).
async fn accept_proxy_header(
    stream: &Async<TcpStream>,
    accept: Accept,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(), CloseReason> {
    match proxy_header::read_header(stream, accept, shared.limits.handshake_timeout).await {
        Ok(Some(header)) => {
            shared.metrics.proxy_header(header.version.as_str());
            // LOCAL (a balancer's own health check) and UNKNOWN keep the peer as the client.
            if let Some(client) = header.client() {
                rec.client = client;
                rec.destination = header.destination();
            }
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => {
            shared.metrics.proxy_rejected(e.label());
            log_proxy_rejected(e, rec, shared);
            Err(CloseReason::ProxyProtocol)
        }
    }
}

/// The rate-limited warning about connections closed for their PROXY protocol header.
fn log_proxy_rejected(e: HeaderError, rec: &Record, shared: &Shared) {
    if let Some(held_back) = shared.proxy_log.allow(Instant::now()) {
        tracing::warn!(
            listener = %rec.listener,
            peer = %rec.peer,
            error = %e,
            suppressed = held_back,
            end = CloseReason::ProxyProtocol.as_str(),
            "connection closed: bad PROXY protocol header (at most one such line per second; `suppressed` counts the connections not logged since the last line)"
        );
    }
}

/// Writes the PROXY protocol header first on the upstream connection (before any TLS
/// origination): the client, the address it connected to, and in v2 the SNI, the
/// negotiated ALPN and the TLS version of a terminated client side.
async fn send_proxy_header(
    up: &Async<TcpStream>,
    version: Version,
    client: &Client,
    rec: &Record,
) -> Result<(), CloseReason> {
    let destination = match rec.destination {
        Some(d) => d,
        None => client
            .socket()
            .get_ref()
            .local_addr()
            .map_err(|_| CloseReason::IoError)?,
    };
    let mut header = Header::proxy(version, rec.client, destination);
    if version == Version::V2 {
        if let Some(sni) = &rec.sni {
            header.tlvs.push(Tlv {
                kind: proxy_protocol::tlv::AUTHORITY,
                value: sni.as_bytes().to_vec(),
            });
        }
        if let Client::Tls(tls) = client {
            let conn = &tls.get_ref().1;
            if let Some(alpn) = conn.alpn_protocol() {
                header.tlvs.push(Tlv {
                    kind: proxy_protocol::tlv::ALPN,
                    value: alpn.to_vec(),
                });
            }
            let name = match conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                _ => "TLS",
            };
            header
                .tlvs
                .push(Ssl::tlv(name, conn.peer_certificates().is_some()));
        }
    }
    let mut w = up;
    w.write_all(&header.encode())
        .await
        .map_err(|_| CloseReason::IoError)
}

/// Route: which group serves the connection, and is the client side TLS we terminate?
///
/// On a listener with `host` groups the ClientHello is read first. A well-formed hello goes to
/// the host group its server name and ALPN offer match (exact, wildcard, then the catch-all
/// `*`, which also takes hellos without a name; inside a host a `match_alpn` group listing an
/// offered protocol first), which terminates it or passes it through untouched; anything else
/// goes to the host-less group, raw, when there is one. Without one, a rejected hello gets the
/// alert a TLS server sends, and a non-TLS client is closed.
async fn route<'r>(
    stream: Async<TcpStream>,
    routes: &'r Listener,
    generation: &Generation,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(&'r Group, Client), CloseReason> {
    if !routes.needs_peek() {
        return match &routes.plain {
            Some(plain) => Ok((&**plain, Client::Plain(stream, Vec::new()))),
            None => Err(CloseReason::NoRoute),
        };
    }
    // One handshake window from accept: a PROXY protocol header read first used part of it.
    let window = shared
        .limits
        .handshake_timeout
        .saturating_sub(rec.started.elapsed());
    let peeked = Box::pin(peek::read_client_hello(&stream, window, &shared.metrics)).await;
    let matched = match &peeked.verdict {
        Peek::Hello(hello) => {
            rec.sni.clone_from(&hello.sni);
            routes.by_hello(hello.sni.as_deref(), hello.alpn())
        }
        Peek::Reject(r) if r.cause.is_bad_name() => {
            rec.sni.clone_from(&r.name);
            None
        }
        _ => None,
    };
    if let Some(host) = matched {
        rec.tls = host_tls_mode(host);
        rec.matched = Some(host.clone());
        generation.tls_routed(host);
        let term = match &host.tls {
            // The kept bytes (the ClientHello, verbatim) go first to the upstream, then the
            // rest of the stream, raw: the upstream terminates TLS itself.
            HostTls::Passthrough => {
                return Ok((&host.group, Client::Plain(stream, peeked.bytes)));
            }
            HostTls::Terminate(term) => term,
        };
        let tls = Box::pin(terminate(stream, peeked.bytes, term, shared, rec)).await?;
        return Ok((&host.group, Client::Tls(Box::new(tls))));
    }
    if let Some(plain) = &routes.plain {
        if !peeked.timed_out || peeked.bytes.is_empty() {
            return Ok((&**plain, Client::Plain(stream, peeked.bytes)));
        }
    }
    match refusal(&peeked, rec) {
        Refusal::Alert(alert, failure, reason) => {
            Box::pin(peek::send_alert(&stream, alert)).await;
            shared.metrics.tls_handshake_failure(Side::Client, failure);
            Err(reason)
        }
        Refusal::Close(failure, reason) => {
            if let Some(failure) = failure {
                shared.metrics.tls_handshake_failure(Side::Client, failure);
            }
            Err(reason)
        }
    }
}

/// How a connection that no group takes is answered.
enum Refusal {
    /// A fatal alert, then the close; counted as this handshake failure.
    Alert(Alert, HandshakeFailure, CloseReason),
    /// Just the close (not TLS, or no complete ClientHello).
    Close(Option<HandshakeFailure>, CloseReason),
}

/// The answer to a ClientHello read that no group takes, with the access line's `detail`.
fn refusal(peeked: &peek::Peeked, rec: &mut Record) -> Refusal {
    let (alert, failure, reason) = match &peeked.verdict {
        Peek::Hello(hello) if hello.sni.is_some() => (
            Alert::UnrecognizedName,
            HandshakeFailure::UnknownSni,
            CloseReason::TlsUnknownSni,
        ),
        Peek::Hello(_) => (
            Alert::UnrecognizedName,
            HandshakeFailure::NoSni,
            CloseReason::TlsNoSni,
        ),
        Peek::Reject(r) => {
            rec.detail = Some(format!(
                "sent alert {}: {}",
                r.alert().as_str(),
                r.cause.as_str()
            ));
            let (failure, reason) = if r.cause.is_bad_name() {
                (HandshakeFailure::BadSni, CloseReason::TlsBadSni)
            } else {
                (
                    HandshakeFailure::MalformedHello,
                    CloseReason::TlsMalformedHello,
                )
            };
            (r.alert(), failure, reason)
        }
        Peek::NotTls => return Refusal::Close(None, CloseReason::NoRoute),
        Peek::NeedMore => {
            rec.detail = Some(if peeked.eof {
                "client closed before the ClientHello was complete".into()
            } else {
                "timed out waiting for the ClientHello".into()
            });
            return Refusal::Close(
                Some(HandshakeFailure::TimeoutOrEof),
                CloseReason::HandshakeFailed,
            );
        }
    };
    if rec.detail.is_none() {
        rec.detail = Some(format!("sent alert {}", alert.as_str()));
    }
    Refusal::Alert(alert, failure, reason)
}

/// The distinct mapping names of a host group, comma-separated (the access line of a
/// connection that failed before an upstream was chosen).
fn mapping_names(host: &HostGroup) -> String {
    let mut names: Vec<&str> = Vec::new();
    for u in &host.group.upstreams {
        if !names.contains(&u.mapping.name.as_str()) {
            names.push(&u.mapping.name);
        }
    }
    names.join(",")
}

/// What a host group does with the client's TLS.
pub(super) fn host_tls_mode(host: &HostGroup) -> TlsMode {
    match (&host.tls, &host.group.origination) {
        (HostTls::Passthrough, _) => TlsMode::Passthrough,
        (HostTls::Terminate(_), Some(_)) => TlsMode::TerminateOriginate,
        (HostTls::Terminate(_), None) => TlsMode::Terminate,
    }
}

/// Admit: the group's upstream for this connection, and the mapping's claim on it (counted
/// as accepted, a circuit-breaker slot and a per-client slot taken, or the connection
/// refused). Returns the upstream and its endpoint set.
fn admit<'g>(
    group: &'g Group,
    generation: &'g Generation,
    shared: &Shared,
    claim: &mut Claim,
    progress: &mut Progress,
    rec: &mut Record,
) -> Result<(&'g Upstream, &'g Arc<UpstreamState>), CloseReason> {
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
    // Every upstream of a generation has its endpoint set (Generation::new).
    let Some(endpoints) = generation.endpoints_of(upstream) else {
        return Err(CloseReason::Internal);
    };
    let per_ip = upstream.endpoints.max_connections_per_ip;
    if !claim.take_client_slot(endpoints, rec.client.ip(), per_ip) {
        log_per_ip_refused(upstream, rec, shared);
        return Err(CloseReason::Limit);
    }
    #[cfg(feature = "fault-injection")]
    crate::fault::on_routed(&upstream.mapping.name);
    Ok((upstream, endpoints))
}

/// The rate-limited warning about connections `max_connections_per_ip` refused (it shares
/// the circuit breaker's one-line-per-second budget).
fn log_per_ip_refused(upstream: &Upstream, rec: &Record, shared: &Shared) {
    if let Some(held_back) = shared.breaker_log.allow(Instant::now()) {
        tracing::warn!(
            mapping = %upstream.mapping.name,
            listener = %rec.listener,
            client = %rec.client,
            max_connections_per_ip = upstream.endpoints.max_connections_per_ip.unwrap_or(0),
            suppressed = held_back,
            "connection refused: max_connections_per_ip reached for this client address (at most one such line per second; `suppressed` counts the refusals not logged since the last line)"
        );
    }
}

/// The rate-limited warning about a connect that could not even create its socket.
fn log_local_exhaustion(
    upstream: &Upstream,
    rec: &Record,
    shared: &Shared,
    error: &socket::ConnectError,
) {
    if let Some(held_back) = shared.breaker_log.allow(Instant::now()) {
        tracing::warn!(
            mapping = %upstream.mapping.name,
            listener = %rec.listener,
            client = %rec.client,
            error = %error,
            suppressed = held_back,
            "connection closed: no socket for the upstream connect (out of file descriptors or memory; the endpoint is not ejected; at most one such line per second)"
        );
    }
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

/// Most connect attempts per connection (`max_connect_attempts` is validated to this).
const MAX_ATTEMPTS: usize = 10;

/// Connect: the service's endpoints (resolved again when their TTL ran out), then up to
/// `max_connect_attempts` connects, each to another endpoint the policy picks, all within
/// `connect_timeout_ms` (each attempt gets an equal share of what is left). Failures feed
/// the endpoint's passive health; the connected endpoint's load is held by the claim.
async fn connect(
    upstream: &Upstream,
    endpoints: &UpstreamState,
    shared: &Shared,
    claim: &mut Claim,
    progress: &Progress,
    rec: &mut Record,
) -> Result<(Async<TcpStream>, SocketAddr), CloseReason> {
    let t0 = Instant::now();
    let mut list = endpoints.list();
    if list.stale(t0) {
        let (host, port, families) = endpoints.service();
        let resolved = Box::pin(shared.resolver.resolve_endpoints(host, port, families)).await;
        shared.metrics.dns_lookup(resolved.is_ok());
        let resolved = resolved.map_err(|e| {
            tracing::debug!(service = %upstream.service(), error = %e, "resolve failed");
            CloseReason::ResolveFailed
        })?;
        list = endpoints.refresh(&resolved.addrs, resolved.expires);
    }
    let deadline = t0 + upstream.connect_timeout;
    let attempts = usize::from(upstream.endpoints.max_connect_attempts)
        .min(list.endpoints.len())
        .clamp(1, MAX_ATTEMPTS);
    let mut tried = [usize::MAX; MAX_ATTEMPTS];
    for n in 0..attempts {
        let before = tried.get(..n).unwrap_or_default();
        let policy = upstream.endpoints.load_balancer.policy;
        let Some(i) = endpoints.pick(&list, policy, rec.client.ip(), before) else {
            break;
        };
        if let Some(slot) = tried.get_mut(n) {
            *slot = i;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Some(addr) = list.endpoints.get(i).map(|e| e.addr) else {
            break;
        };
        let budget = left / (attempts - n) as u32;
        let load = endpoints.hold(&list, i);
        endpoints.metrics.attempt(n > 0);
        rec.attempts = n + 1;
        let started = Instant::now();
        let keepalive = upstream.endpoints.keepalive;
        let connected = Box::pin(socket::connect_upstream(addr, budget, keepalive)).await;
        if let Some(m) = &progress.live {
            shared
                .metrics
                .upstream_connect(m, connected.is_ok(), started.elapsed());
        }
        match connected {
            Ok(stream) => {
                endpoints.record(&list, i, true);
                claim.hold_endpoint(load);
                return Ok((stream, addr));
            }
            // Out of descriptors or memory here: the endpoint is not to blame (no ejection)
            // and every other endpoint would fail the same way.
            Err(e) if e.is_local_exhaustion() => {
                log_local_exhaustion(upstream, rec, shared, &e);
                shared.metrics.internal_error("connect");
                rec.detail = Some(format!("no upstream socket: {e}"));
                break;
            }
            Err(e) => {
                endpoints.record(&list, i, false);
                tracing::debug!(service = %upstream.service(), endpoint = %addr, attempt = n + 1, error = %e, "connect failed");
            }
        }
    }
    Err(CloseReason::ConnectFailed)
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
            // A passthrough group's client side is TLS we do not touch: still raw bytes here.
            if rec.tls != TlsMode::Passthrough {
                rec.tls = TlsMode::None;
            }
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
/// A failure is explained in the access line: the alert rustls sent or received, a timeout.
async fn terminate(
    stream: Async<TcpStream>,
    hello: Vec<u8>,
    term: &Termination,
    shared: &Shared,
    rec: &mut Record,
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
            let why = handshake_error(&e);
            tracing::debug!(error = %e, "client TLS handshake failed: {why}");
            rec.detail = Some(why);
            shared
                .metrics
                .tls_handshake_failure(Side::Client, HandshakeFailure::Error);
            Err(CloseReason::HandshakeFailed)
        }
        None => {
            rec.detail = Some(format!(
                "handshake timed out after {} ms",
                shared.limits.handshake_timeout.as_millis()
            ));
            shared
                .metrics
                .tls_handshake_failure(Side::Client, HandshakeFailure::Timeout);
            Err(CloseReason::HandshakeFailed)
        }
    }
}

/// A failed server handshake in words: the client's alert, the alert rustls answered an error
/// with (it sends one for each error it finds in the client's messages), or the I/O failure.
fn handshake_error(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(alert)) => {
            format!("received alert {}", alert_name(*alert))
        }
        Some(err) => format!("sent alert: {err}"),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "client closed during the handshake".into()
        }
        None => format!("i/o error during the handshake: {e}"),
    }
}

/// An alert's name as the RFCs write it (`bad_certificate`).
fn alert_name(alert: rustls::AlertDescription) -> String {
    let code = u8::from(alert);
    let name = match code {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        22 => "record_overflow",
        40 => "handshake_failure",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        121 => "ech_required",
        _ => return format!("alert {code}"),
    };
    name.to_string()
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
        let stream = crate::rt::Async::new(s).unwrap();
        let table = std::sync::Arc::new(crate::route::RouteTable::default());
        let shared = super::Shared::for_tests(None);
        let generation = std::sync::Arc::new(super::Generation::new(
            table,
            &shared.metrics,
            &shared.endpoints,
        ));
        let addr = l.local_addr().unwrap();
        let admission = crate::actors::admission::Admission::enter(shared).unwrap();
        let fut = super::serve(stream, addr, addr, generation, admission);
        let size = std::mem::size_of_val(&fut);
        eprintln!("serve future: {size} bytes");
        assert!(size <= 1536, "the connection future grew to {size} bytes");
    }
}
