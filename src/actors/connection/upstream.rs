//! The upstream side: admit (the group's upstream, the mapping's claim on it), connect (resolve,
//! then attempts with failover), the PROXY protocol header sent first, and TLS originated.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::AsyncWriteExt;
use rustls::pki_types::ServerName;

use super::{Client, Conn};
use crate::close::{CloseReason, Side};
use crate::metrics::HandshakeFailure;
use crate::net::socket;
use crate::proxy_protocol::{self, Header, Ssl, Tlv, Version};
use crate::route::{Group, Origination, ServiceHost, Upstream};
use crate::rt::Async;
use crate::state::endpoints::UpstreamState;

/// Most connect attempts per connection (`max_connect_attempts` is validated to this).
const MAX_ATTEMPTS: usize = 10;

impl Conn {
    /// Admit: the group's upstream for this connection, and the mapping's claim on it (counted
    /// as accepted, a circuit-breaker slot and a per-client slot taken, or the connection
    /// refused). Returns the upstream and its endpoint set.
    pub(super) fn admit<'g>(
        &mut self,
        group: &'g Group,
    ) -> Result<(&'g Upstream, Arc<UpstreamState>), CloseReason> {
        let Some((id, upstream)) = group.choose_id() else {
            return Err(CloseReason::NoRoute);
        };
        self.rec.mapping = Some(upstream.mapping.clone());
        // A Gateway API backendRef that cannot be used: its share is refused, as the Gateway
        // API asks, with an access line that says why.
        if let Some(reason) = upstream.refused {
            self.rec.detail = Some(format!("backendRef refused: {reason}"));
            return Err(CloseReason::NoRoute);
        }
        let a = &mut self.admission;
        if let Some(m) = self.generation.metrics.get(&upstream.mapping) {
            if !a.claim.take(
                &mut a.progress,
                m.clone(),
                upstream.max_connections,
                &*a.shared,
            ) {
                self.log_breaker_open(upstream);
                return Err(CloseReason::Limit);
            }
        }
        // Every upstream of a generation has its endpoint set (Generation::new).
        let Some(endpoints) = self.generation.endpoints_of(id) else {
            return Err(CloseReason::Internal);
        };
        let per_ip = upstream.endpoints.max_connections_per_ip;
        if !a
            .claim
            .take_client_slot(endpoints, self.rec.client.ip(), per_ip)
        {
            self.log_per_ip_refused(upstream);
            return Err(CloseReason::Limit);
        }
        #[cfg(feature = "fault-injection")]
        crate::fault::on_routed(&upstream.mapping.name);
        Ok((upstream, endpoints.clone()))
    }

    /// Connect: the service's endpoints (resolved again when their TTL ran out), then up to
    /// `max_connect_attempts` connects, each to another endpoint the policy picks, all within
    /// `connect_timeout_ms` (each attempt gets an equal share of what is left). Failures feed
    /// the endpoint's passive health; the connected endpoint's load is held by the claim.
    pub(super) async fn connect(
        &mut self,
        upstream: &Upstream,
        endpoints: Arc<UpstreamState>,
    ) -> Result<Async<TcpStream>, CloseReason> {
        let shared = &self.admission.shared;
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
            let Some(i) = endpoints.pick(&list, policy, self.rec.client.ip(), before) else {
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
            self.rec.attempts = n + 1;
            let started = Instant::now();
            let keepalive = upstream.endpoints.keepalive;
            let connected = Box::pin(socket::connect_upstream(addr, budget, keepalive)).await;
            if let Some(m) = &self.admission.progress.live {
                shared
                    .metrics
                    .upstream_connect(m, connected.is_ok(), started.elapsed());
            }
            match connected {
                Ok(stream) => {
                    endpoints.record(&list, i, true);
                    self.admission.claim.hold_endpoint(load);
                    self.rec.upstream = Some(addr);
                    return Ok(stream);
                }
                // Out of descriptors or memory here: the endpoint is not to blame (no ejection)
                // and every other endpoint would fail the same way.
                Err(e) if e.is_local_exhaustion() => {
                    self.log_local_exhaustion(upstream, &e);
                    shared.metrics.internal_error("connect");
                    self.rec.detail = Some(format!("no upstream socket: {e}"));
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

    /// Writes the PROXY protocol header first on the upstream connection (before any TLS
    /// origination): the client, the address it connected to, and in v2 the SNI, the
    /// negotiated ALPN and the TLS version of a terminated client side.
    pub(super) async fn send_proxy_header(
        &self,
        up: &Async<TcpStream>,
        version: Version,
        client: &Client,
    ) -> Result<(), CloseReason> {
        let destination: SocketAddr = match self.rec.destination {
            Some(d) => d,
            None => client
                .socket()
                .get_ref()
                .local_addr()
                .map_err(|_| CloseReason::IoError(Side::Client))?,
        };
        let mut header = Header::proxy(version, self.rec.client, destination);
        if version == Version::V2 {
            if let Some(sni) = &self.rec.sni {
                header.tlvs.push(Tlv {
                    kind: proxy_protocol::tlv::AUTHORITY,
                    value: sni.as_bytes().to_vec(),
                });
            }
            if let Some(tls) = client.negotiated() {
                if let Some(alpn) = tls.alpn {
                    header.tlvs.push(Tlv {
                        kind: proxy_protocol::tlv::ALPN,
                        value: alpn,
                    });
                }
                let name = match tls.version {
                    Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                    Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                    _ => "TLS",
                };
                header.tlvs.push(Ssl::tlv(name, tls.peer_certificates));
            }
        }
        let mut w = up;
        w.write_all(&header.encode())
            .await
            .map_err(|_| CloseReason::IoError(Side::Upstream))
    }

    /// Originates TLS towards the upstream: SNI from the context, else the service's DNS name.
    pub(super) async fn originate<S>(
        &self,
        up: S,
        upstream: &Upstream,
        orig: &Origination,
    ) -> Result<futures_rustls::client::TlsStream<S>, CloseReason>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let metrics = &self.admission.shared.metrics;
        let name = match (&orig.sni, &upstream.host) {
            (Some(sni), _) => ServerName::try_from(sni.clone()).ok(),
            (None, ServiceHost::Dns(host)) => ServerName::try_from(host.clone()).ok(),
            (None, ServiceHost::Ip(ip)) => Some(ServerName::IpAddress((*ip).into())),
        };
        let Some(name) = name else {
            metrics.tls_handshake_failure(Side::Upstream, HandshakeFailure::BadServerName);
            return Err(CloseReason::UpstreamHandshakeFailed);
        };
        let connector = futures_rustls::TlsConnector::from(orig.config.clone());
        let timeout = self.admission.shared.limits.handshake_timeout;
        match crate::rt::timeout(timeout, connector.connect(name, up)).await {
            Some(Ok(tls)) => Ok(tls),
            Some(Err(e)) => {
                tracing::debug!(service = %upstream.service(), error = %e, "upstream TLS handshake failed");
                metrics.tls_handshake_failure(Side::Upstream, HandshakeFailure::Error);
                Err(CloseReason::UpstreamHandshakeFailed)
            }
            None => {
                metrics.tls_handshake_failure(Side::Upstream, HandshakeFailure::Timeout);
                Err(CloseReason::UpstreamHandshakeFailed)
            }
        }
    }
}
