//! Preamble: what a client sends before routing can decide. The PROXY protocol header a
//! listener asks for (read first, within the handshake window), then on a listener with
//! `host` groups the ClientHello (peeked, bounded); and the answer to a hello no group takes.

use std::net::TcpStream;
use std::time::Instant;

use super::{Conn, Record};
use crate::close::CloseReason;
use crate::metrics::{HandshakeFailure, Side};
use crate::net::peek;
use crate::net::proxy_header;
use crate::proxy_protocol::Accept;
use crate::rt::Async;
use crate::sni::{Alert, Peek};

impl Conn {
    /// The PROXY protocol header the listener asks for, read before anything else within the
    /// handshake deadline: its source becomes the connection's client. A missing or bad one
    /// closes the connection (counted, and one warning per second with the peer).
    pub(super) async fn accept_proxy_header(
        &mut self,
        stream: &Async<TcpStream>,
        accept: Accept,
    ) -> Result<(), CloseReason> {
        let shared = &self.admission.shared;
        match proxy_header::read_header(stream, accept, shared.limits.handshake_timeout).await {
            Ok(Some(header)) => {
                shared.metrics.proxy_header(header.version.as_str());
                // LOCAL (a balancer's own health check) and UNKNOWN keep the peer as the client.
                if let Some(client) = header.client() {
                    self.rec.client = client;
                    self.rec.destination = header.destination();
                }
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                shared.metrics.proxy_rejected(e.label());
                self.log_proxy_rejected(e);
                Err(CloseReason::ProxyProtocol)
            }
        }
    }

    /// The end of the handshake window that opened at accept: the ClientHello read and the
    /// TLS handshake after it share it (a PROXY header read first used part of it too).
    pub(super) fn handshake_deadline(&self) -> Instant {
        let window = self.admission.shared.limits.handshake_timeout;
        self.rec
            .started
            .checked_add(window)
            .unwrap_or_else(Instant::now)
    }

    /// Reads the ClientHello (without consuming it) for what is left of the handshake window,
    /// after the bytes `already` read from the connection.
    pub(super) async fn read_hello(
        &self,
        stream: &Async<TcpStream>,
        already: &[u8],
    ) -> peek::Peeked {
        let left = self
            .handshake_deadline()
            .saturating_duration_since(Instant::now());
        let metrics = &self.admission.shared.metrics;
        Box::pin(peek::read_client_hello(stream, already, left, metrics)).await
    }

    /// Answers a ClientHello read that no group takes: the alert a TLS server sends, or just
    /// the close; counted, and explained in the access line's `detail`.
    pub(super) async fn refuse(
        &mut self,
        stream: &Async<TcpStream>,
        peeked: &peek::Peeked,
    ) -> CloseReason {
        let metrics = &self.admission.shared.metrics;
        match refusal(peeked, &mut self.rec) {
            Refusal::Alert(alert, failure, reason) => {
                // Counted before the alert goes out, so a client that reads the alert and then
                // the metrics sees it counted.
                metrics.tls_handshake_failure(Side::Client, failure);
                Box::pin(peek::send_alert(stream, alert)).await;
                reason
            }
            Refusal::Close(failure, reason) => {
                if let Some(failure) = failure {
                    metrics.tls_handshake_failure(Side::Client, failure);
                }
                reason
            }
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

/// The access line's `detail` for a client that closed without sending a byte.
pub(super) const NO_BYTE: &str = "client closed without sending a byte";

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
            rec.detail = Some(if peeked.eof && peeked.bytes.is_empty() {
                NO_BYTE.into()
            } else if peeked.eof {
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
