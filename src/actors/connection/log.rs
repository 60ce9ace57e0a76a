//! What a connection says: its one access line at the end, and the rate-limited warnings
//! about refusals (which have no access line).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Conn;
use crate::close::CloseReason;
use crate::net::proxy_header::HeaderError;
use crate::net::socket;
use crate::route::{HostGroup, Upstream};

impl Conn {
    /// The connection's one access line (none for refusals, which have a rate-limited warning).
    pub(super) fn log_access(&self, reason: CloseReason) {
        if matches!(reason, CloseReason::Limit | CloseReason::RateLimit) {
            return;
        }
        if self.admission.shared.limits.dont_log_null && self.null(reason) {
            return;
        }
        let rec = &self.rec;
        let progress = &self.admission.progress;
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
            side = reason.side().map_or("-", |s| s.as_str()),
            "connection closed"
        );
    }

    /// The rate-limited warning about connections closed for their PROXY protocol header.
    pub(super) fn log_proxy_rejected(&self, e: HeaderError) {
        if let Some(held_back) = self.admission.shared.proxy_log.allow(Instant::now()) {
            tracing::warn!(
                listener = %self.rec.listener,
                peer = %self.rec.peer,
                error = %e,
                suppressed = held_back,
                end = CloseReason::ProxyProtocol.as_str(),
                "connection closed: bad PROXY protocol header (at most one such line per second; `suppressed` counts the connections not logged since the last line)"
            );
        }
    }

    /// The rate-limited warning about connections `max_connections_per_ip` refused (it shares
    /// the circuit breaker's one-line-per-second budget).
    pub(super) fn log_per_ip_refused(&self, upstream: &Upstream) {
        if let Some(held_back) = self.admission.shared.breaker_log.allow(Instant::now()) {
            tracing::warn!(
                mapping = %upstream.mapping.name,
                listener = %self.rec.listener,
                client = %self.rec.client,
                max_connections_per_ip = upstream.endpoints.max_connections_per_ip.unwrap_or(0),
                suppressed = held_back,
                "connection refused: max_connections_per_ip reached for this client address (at most one such line per second; `suppressed` counts the refusals not logged since the last line)"
            );
        }
    }

    /// A null connection (`--dont-log-null`): its client sent no byte (it closed before its
    /// ClientHello's first byte, or, with no TLS read here, nothing was forwarded from it) and
    /// nothing failed on tcpmap's or the upstream's side (those keep their line).
    fn null(&self, reason: CloseReason) -> bool {
        let rec = &self.rec;
        if rec.detail.as_deref() == Some(super::preamble::NO_BYTE) {
            return true;
        }
        matches!(
            reason,
            CloseReason::ClientClosed | CloseReason::UpstreamClosed | CloseReason::IdleTimeout
        ) && rec.tls == crate::route::TlsMode::None
            && rec.sni.is_none()
            && self
                .admission
                .progress
                .client_to_upstream
                .load(Ordering::Relaxed)
                == 0
    }

    /// The rate-limited warning about a connect that could not even create its socket.
    pub(super) fn log_local_exhaustion(&self, upstream: &Upstream, error: &socket::ConnectError) {
        if let Some(held_back) = self.admission.shared.breaker_log.allow(Instant::now()) {
            tracing::warn!(
                mapping = %upstream.mapping.name,
                listener = %self.rec.listener,
                client = %self.rec.client,
                error = %error,
                suppressed = held_back,
                "connection closed: no socket for the upstream connect (out of file descriptors or memory; the endpoint is not ejected; at most one such line per second)"
            );
        }
    }

    /// The rate-limited warning about connections a mapping's circuit breaker refused.
    pub(super) fn log_breaker_open(&self, upstream: &Upstream) {
        if let Some(held_back) = self.admission.shared.breaker_log.allow(Instant::now()) {
            tracing::warn!(
                mapping = %upstream.mapping.name,
                listener = %self.rec.listener,
                client = %self.rec.client,
                max_connections = upstream.max_connections.unwrap_or(0),
                suppressed = held_back,
                "connection refused: circuit breaker open (at most one such line per second; `suppressed` counts the refusals not logged since the last line)"
            );
        }
    }
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

/// An alert's name as the RFCs write it (`bad_certificate`; `alert 200` for a code no RFC
/// names), from [`crate::sni::alert_name`].
pub(super) fn alert_name(alert: rustls::AlertDescription) -> String {
    let code = u8::from(alert);
    match crate::sni::alert_name(code) {
        Some(name) => name.to_string(),
        None => format!("alert {code}"),
    }
}
