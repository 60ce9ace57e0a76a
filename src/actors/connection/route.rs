//! Route: which group serves the connection, and, for a host group that terminates, the
//! client's TLS handshake with the group's certificate.

use std::net::TcpStream;
use std::time::Instant;

use super::{Client, Conn};
use crate::close::CloseReason;
use crate::metrics::{HandshakeFailure, Side};
use crate::net::copy::TcpHalfClose;
use crate::net::prefixed::Prefixed;
use crate::route::{Group, HostTls, Listener, Termination};
use crate::rt::Async;
use crate::sni::Peek;

impl Conn {
    /// Route: which group serves the connection, and is the client side TLS we terminate?
    ///
    /// On a listener with `host` groups the ClientHello is read first. A well-formed hello goes
    /// to the host group its server name and ALPN offer match (exact, wildcard, then the
    /// catch-all `*`, which also takes hellos without a name; inside a host a `match_alpn`
    /// group listing an offered protocol first), which terminates it or passes it through
    /// untouched; anything else goes to the host-less group, raw, when there is one. Without
    /// one, a rejected hello gets the alert a TLS server sends, and a non-TLS client is closed.
    ///
    /// `already` holds the connection's first bytes when an earlier step read them (a
    /// Postgres listener's first message that turned out to be a ClientHello): they come first.
    pub(super) async fn route<'r>(
        &mut self,
        stream: Async<TcpStream>,
        routes: &'r Listener,
        already: &[u8],
    ) -> Result<(&'r Group, Client), CloseReason> {
        if !routes.needs_peek() {
            return match &routes.plain {
                Some(plain) => Ok((&**plain, Client::Plain(stream, already.to_vec()))),
                None => Err(CloseReason::NoRoute),
            };
        }
        let peeked = self.read_hello(&stream, already).await;
        let mut offers_postgresql = false;
        let mut offers_tls13 = false;
        let matched = match &peeked.verdict {
            Peek::Hello(hello) => {
                self.rec.sni.clone_from(&hello.sni);
                offers_tls13 = hello.offers_tls13();
                offers_postgresql =
                    self.rec.postgres.is_some() && super::postgres::offers_alpn(hello.alpn());
                routes.by_hello(hello.sni.as_deref(), hello.alpn())
            }
            Peek::Reject(r) if r.cause.is_bad_name() => {
                self.rec.sni.clone_from(&r.name);
                None
            }
            _ => None,
        };
        if let Some(host) = matched {
            self.rec.tls = host.client_tls();
            self.rec.matched = Some(host.clone());
            self.generation.tls_routed(host);
            let term = match &host.tls {
                // The kept bytes (the ClientHello, verbatim) go first to the upstream, then the
                // rest of the stream, raw: the upstream terminates TLS itself.
                HostTls::Passthrough => {
                    return Ok((&host.group, Client::Plain(stream, peeked.bytes)));
                }
                HostTls::Terminate(term) => term,
            };
            let hello = peeked.bytes;
            let tls =
                Box::pin(self.terminate(stream, hello, term, offers_postgresql, offers_tls13));
            return Ok((&host.group, tls.await?));
        }
        if let Some(plain) = &routes.plain {
            if !peeked.timed_out || peeked.bytes.is_empty() {
                return Ok((&**plain, Client::Plain(stream, peeked.bytes)));
            }
        }
        Err(self.refuse(&stream, &peeked).await)
    }

    /// Terminates the client's TLS with the host group's certificate, within what is left of
    /// the handshake window that opened at accept (the ClientHello's wait used part of it: a
    /// client that sends its hello late and then stalls is closed when the window ends, not a
    /// full window after the hello). A failure is explained in the access line: the alert
    /// rustls sent or received, a timeout.
    async fn terminate(
        &mut self,
        stream: Async<TcpStream>,
        hello: Vec<u8>,
        term: &Termination,
        offers_postgresql: bool,
        offers_tls13: bool,
    ) -> Result<Client, CloseReason> {
        // The group, so its config, is already chosen from our own read of the ClientHello:
        // rustls starts with it (one parse of the hello in rustls, not a `LazyConfigAcceptor`'s
        // parse, copy and hand-over; fewer allocations per handshake, see docs/benchmarks.md).
        let config = if offers_postgresql {
            super::postgres::with_postgresql_alpn(term)
        } else {
            term.config.clone()
        };
        let left = self
            .handshake_deadline()
            .saturating_duration_since(Instant::now());
        // TLS 1.3 (the config allows it when it allows extracting its keys): records in our
        // own buffers (`handshake.rs`); anything else on rustls's buffered stream.
        let done = if offers_tls13 && config.enable_secret_extraction {
            let handshake = super::handshake::accept(stream, hello, config);
            crate::rt::timeout(left, handshake).await.map(|r| match r {
                Ok(tls) => Ok(Client::Records(Box::new(tls))),
                Err(e) => Err(e.describe()),
            })
        } else {
            let handshake = futures_rustls::TlsAcceptor::from(config)
                .accept(Prefixed::new(hello, TcpHalfClose(stream)));
            crate::rt::timeout(left, handshake).await.map(|r| match r {
                Ok(tls) => Ok(Client::Tls(Box::new(tls))),
                Err(e) => Err(handshake_error(&e)),
            })
        };
        let shared = &self.admission.shared;
        match done {
            Some(Ok(client)) => Ok(client),
            Some(Err(why)) => {
                tracing::debug!("client TLS handshake failed: {why}");
                self.rec.detail = Some(why);
                shared
                    .metrics
                    .tls_handshake_failure(Side::Client, HandshakeFailure::Error);
                Err(CloseReason::HandshakeFailed)
            }
            None => {
                self.rec.detail = Some(format!(
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
}

/// A failed server handshake in words: the client's alert, the alert rustls answered an error
/// with (it sends one for each error it finds in the client's messages), or the I/O failure.
fn handshake_error(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(alert)) => {
            format!("received alert {}", super::log::alert_name(*alert))
        }
        Some(err) => format!("sent alert: {err}"),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "client closed during the handshake".into()
        }
        None => format!("i/o error during the handshake: {e}"),
    }
}
