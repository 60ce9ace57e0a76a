//! Postgres (`starttls: postgres`): the client's first message before the ClientHello, and the
//! SSLRequest tcpmap sends the upstream before TLS goes to it.
//!
//! ```text
//! client                      tcpmap                        upstream
//! SSLRequest ───────────────▶ `S` ◀─ answered here
//! ClientHello ──────────────▶ route by SNI (`route`) ─┬ terminate ─▶ startup in clear
//!                                                     ├ terminate+tls ─▶ SSLRequest, `S`, TLS
//!                                                     └ passthrough / host-less ─▶ SSLRequest,
//!                                                       `S` swallowed, ClientHello untouched
//! GSSENCRequest ────────────▶ `N` (the client sends another first message)
//! CancelRequest, startup ───▶ host-less mapping, bytes as sent (or closed)
//! ClientHello (direct TLS) ─▶ route by SNI as after an SSLRequest
//! ```
//!
//! The first message is read with [`crate::postgres::classify`], never past its first 8
//! bytes (what follows an SSLRequest is the ClientHello, read by the ClientHello reader), and
//! within the handshake window that opened at accept.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::{Client, Conn};
use crate::close::{CloseReason, Side};
use crate::metrics::HandshakeFailure;
use crate::postgres::{self, DECISION_BYTES, First, Invalid};
use crate::route::{Group, Listener, Termination};
use crate::rt::Async;

/// How a client on a Postgres listener started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PgStart {
    /// An SSLRequest, answered `S`, then TLS.
    SslRequest,
    /// TLS without asking (PostgreSQL 17 `sslnegotiation=direct`).
    DirectTls,
    /// A CancelRequest in clear.
    Cancel,
    /// A startup message in clear.
    Startup,
}

/// The ALPN protocol of PostgreSQL 17's TLS.
const ALPN: &[u8] = b"postgresql";

/// What reading the first message came to.
enum FirstRead {
    /// The codec decided (never `NeedMore`).
    Decided(Result<First, Invalid>),
    /// The client closed (or the read failed) first.
    Closed,
    /// The handshake window ended first.
    TimedOut,
}

impl Conn {
    /// Route on a Postgres listener: the first message decides. An SSLRequest is answered `S`
    /// and a direct ClientHello read on; either hello is routed by SNI as on any TLS listener.
    /// A GSSENCRequest is answered `N` once (the client goes on with another first message).
    /// A cancel or a startup message in clear goes to the host-less group; without one, and
    /// for anything else, the connection closes with the access line's `detail` saying why.
    pub(super) async fn route_postgres<'r>(
        &mut self,
        stream: Async<TcpStream>,
        routes: &'r Listener,
    ) -> Result<(&'r Group, Client), CloseReason> {
        let mut gssenc_answered = false;
        loop {
            let (read, bytes) = self.read_first(&stream).await;
            let first = match read {
                FirstRead::Decided(Ok(first)) => first,
                FirstRead::Decided(Err(invalid)) => {
                    self.rec.detail = Some(invalid.as_str().into());
                    return Err(CloseReason::NoRoute);
                }
                FirstRead::Closed => {
                    self.rec.detail =
                        Some("client closed before its first Postgres message was complete".into());
                    return Err(CloseReason::HandshakeFailed);
                }
                FirstRead::TimedOut => {
                    self.rec.detail =
                        Some("timed out waiting for the first Postgres message".into());
                    return Err(CloseReason::HandshakeFailed);
                }
            };
            match first {
                First::GssEncRequest if !gssenc_answered => {
                    gssenc_answered = true;
                    answer(&stream, postgres::ANSWER_NO).await?;
                }
                First::GssEncRequest => {
                    self.rec.detail = Some("a second GSSENCRequest after `N`".into());
                    return Err(CloseReason::NoRoute);
                }
                First::SslRequest => {
                    self.rec.postgres = Some(PgStart::SslRequest);
                    answer(&stream, postgres::ANSWER_TLS).await?;
                    let routed = self.route(stream, routes, &[]).await?;
                    return self.no_tls_in_tls(routed);
                }
                First::DirectTls => {
                    self.rec.postgres = Some(PgStart::DirectTls);
                    let routed = self.route(stream, routes, &bytes).await?;
                    return self.no_tls_in_tls(routed);
                }
                First::Cancel { .. } => {
                    self.rec.postgres = Some(PgStart::Cancel);
                    return self.route_clear(stream, routes, bytes, "a CancelRequest in clear");
                }
                First::Startup { .. } => {
                    self.rec.postgres = Some(PgStart::Startup);
                    return self.route_clear(stream, routes, bytes, "a startup message in clear");
                }
                First::NeedMore(_) => return Err(CloseReason::Internal),
            }
        }
    }

    /// A TLS client that no host group terminates goes to the host-less group with its TLS
    /// untouched; when that group originates TLS (`tls`), that cannot be: the client's TLS is
    /// not wrapped in another, the connection is closed and the access line says why.
    fn no_tls_in_tls<'r>(
        &mut self,
        (group, client): (&'r Group, Client),
    ) -> Result<(&'r Group, Client), CloseReason> {
        if !self.relays_client_tls(&client) || group.origination.is_none() {
            return Ok((group, client));
        }
        let name = group
            .upstreams
            .first()
            .map_or("-", |u| u.mapping.name.as_str());
        self.rec.detail = Some(format!(
            "postgres: a TLS client that no host group takes would go to the host-less mapping {name}, \
             which originates TLS (`tls`): the client's own TLS is not wrapped in another"
        ));
        Err(CloseReason::NoRoute)
    }

    /// A client in clear (a cancel, a startup message) goes to the host-less group with the
    /// bytes read, or is closed when the listener has none.
    fn route_clear<'r>(
        &mut self,
        stream: Async<TcpStream>,
        routes: &'r Listener,
        bytes: Vec<u8>,
        what: &str,
    ) -> Result<(&'r Group, Client), CloseReason> {
        match &routes.plain {
            Some(plain) => {
                if self.rec.postgres == Some(PgStart::Cancel) {
                    self.rec.detail = Some("postgres CancelRequest in clear".into());
                }
                Ok((&**plain, Client::Plain(stream, bytes)))
            }
            None => {
                self.rec.detail = Some(format!(
                    "postgres: {what} and no host-less mapping on this listener to take it"
                ));
                Err(CloseReason::NoRoute)
            }
        }
    }

    /// Reads the first message until the codec decides (at most 8 bytes), within what is
    /// left of the handshake window; returns the bytes read.
    async fn read_first(&self, stream: &Async<TcpStream>) -> (FirstRead, Vec<u8>) {
        let left = self
            .handshake_deadline()
            .saturating_duration_since(Instant::now());
        let mut buf = [0u8; DECISION_BYTES];
        let mut got = 0;
        let work = async {
            loop {
                let seen = buf.get(..got).unwrap_or_default();
                match postgres::classify(seen) {
                    Ok(First::NeedMore(_)) => {}
                    decided => return FirstRead::Decided(decided),
                }
                // Never past 8 bytes: every first message is at least that long, and what
                // follows an SSLRequest is the ClientHello, for the ClientHello reader.
                let Some(room) = buf.get_mut(got..) else {
                    return FirstRead::Closed;
                };
                let mut s = stream;
                match s.read(room).await {
                    Ok(0) | Err(_) => return FirstRead::Closed,
                    Ok(n) => got += n,
                }
            }
        };
        let read = crate::rt::timeout(left, work)
            .await
            .unwrap_or(FirstRead::TimedOut);
        (read, buf.get(..got).unwrap_or_default().to_vec())
    }

    /// True when the upstream connection carries TLS on a Postgres listener, so it must be
    /// asked for with an SSLRequest first: the client's own TLS relayed (passthrough, or a
    /// TLS client the host-less group takes), or TLS originated here (never both:
    /// `no_tls_in_tls`).
    pub(super) fn postgres_upstream_tls(&self, client: &Client, group: &Group) -> bool {
        self.rec.postgres.is_some()
            && (self.relays_client_tls(client) || group.origination.is_some())
    }

    /// True when the client's TLS goes to the upstream untouched on a Postgres listener:
    /// not terminated here, after an SSLRequest or directly.
    pub(super) fn relays_client_tls(&self, client: &Client) -> bool {
        matches!(client, Client::Plain(..)) && self.postgres_tls_client()
    }

    /// True when the client started TLS on a Postgres listener (after an SSLRequest or
    /// directly).
    pub(super) fn postgres_tls_client(&self) -> bool {
        matches!(
            self.rec.postgres,
            Some(PgStart::SslRequest | PgStart::DirectTls)
        )
    }

    /// Sends the SSLRequest to the upstream and requires its `S` (read and dropped), within
    /// the handshake timeout. Anything else closes the client, with the access line's
    /// `detail` saying what the upstream answered.
    pub(super) async fn send_ssl_request(
        &mut self,
        up: &Async<TcpStream>,
    ) -> Result<(), CloseReason> {
        let shared = &self.admission.shared;
        let timeout = shared.limits.handshake_timeout;
        let exchange = async {
            let mut s = up;
            s.write_all(&postgres::SSL_REQUEST).await?;
            s.flush().await?;
            let mut answer = [0u8; 1];
            s.read_exact(&mut answer).await?;
            Ok::<u8, std::io::Error>(answer[0])
        };
        let why = match crate::rt::timeout(timeout, exchange).await {
            Some(Ok(postgres::ANSWER_TLS)) => return Ok(()),
            Some(Ok(postgres::ANSWER_NO)) => {
                "the upstream answered the SSLRequest with N: it does not accept TLS (ssl = off?)"
                    .to_string()
            }
            Some(Ok(other)) => format!(
                "the upstream answered the SSLRequest with {} instead of S: not a Postgres server that accepts TLS",
                byte_text(other)
            ),
            Some(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                "the upstream closed after the SSLRequest without answering".to_string()
            }
            Some(Err(e)) => format!("i/o error on the SSLRequest to the upstream: {e}"),
            None => format!(
                "the upstream did not answer the SSLRequest within {} ms",
                timeout.as_millis()
            ),
        };
        shared
            .metrics
            .tls_handshake_failure(Side::Upstream, HandshakeFailure::Error);
        self.rec.detail = Some(why);
        Err(CloseReason::UpstreamHandshakeFailed)
    }
}

/// Writes the one-byte answer to an SSLRequest or a GSSENCRequest.
async fn answer(stream: &Async<TcpStream>, byte: u8) -> Result<(), CloseReason> {
    let mut s = stream;
    s.write_all(&[byte])
        .await
        .map_err(|_| CloseReason::IoError(Side::Client))
}

/// A byte for the access line: the character when printable, else its hex value.
fn byte_text(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", char::from(b))
    } else {
        format!("0x{b:02x}")
    }
}

/// Whether a ClientHello's ALPN offer (our own read of it) names `postgresql`.
pub(super) fn offers_alpn<'a>(mut offer: impl Iterator<Item = &'a [u8]>) -> bool {
    offer.any(|p| p == ALPN)
}

/// The server config for a terminated Postgres client that offers ALPN `postgresql`
/// ([`offers_alpn`]): the group's own, with `postgresql` added to its ALPN protocols when they
/// lack it (libpq 17 refuses a server that selects no protocol), made once per generation and
/// termination ([`Termination::postgres`]), not per connection. Clients that do not offer it get
/// the group's config as it is.
pub(super) fn with_postgresql_alpn(term: &Termination) -> Arc<rustls::ServerConfig> {
    let made = term.postgres.get_or_init(|| {
        let config = &term.config;
        if config.alpn_protocols.iter().any(|p| p == ALPN) {
            return config.clone();
        }
        // Shares the session store and the ticketer (`Arc`s): tickets resume across both.
        let mut with = (**config).clone();
        with.alpn_protocols.push(ALPN.to_vec());
        Arc::new(with)
    });
    made.clone()
}
