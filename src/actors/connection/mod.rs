//! ConnectionActor: one task per accepted socket, a [`Conn`] driven through its stages.
//!
//! ```text
//! accept ─▶ preamble ─▶ route ─▶ connect ─▶ relay ─▶ end
//!  │          │           │         │          │        └ log.rs: one CloseReason, one access line
//!  │          │           │         │          └ relay.rs: [originate TLS], copy or splice
//!  │          │           │         └ upstream.rs: admit (breaker, per-client slot), resolve,
//!  │          │           │           connect with failover, [send PROXY header]
//!  │          │           └ route.rs: host group by SNI/ALPN, [terminate TLS] (within the
//!  │          │             handshake window from accept)
//!  │          └ preamble.rs: [PROXY header], [ClientHello peek], or the refusal's alert;
//!  │            postgres.rs: on a `starttls: postgres` listener the first message first
//!  │            (SSLRequest answered `S`, GSSENCRequest `N`), and the SSLRequest upstream
//!  └ Conn::accept: the admission (global slot), the generation, the access record
//! ```
//!
//! It takes no messages: it owns its two sockets and ends by itself, unless told to close
//! from outside: by the close orders (`close.rs`: a gradual drain ends it as `retired` at its
//! ordered time), its mapping's maximum age (`max_duration`, in the relay) or by the kill
//! signal when the drain timeout passes (`shutdown`). The drain token it holds tells the Supervisor it is still running.
//! Every step that a peer controls is bounded by a deadline.

pub(crate) mod close;
mod handshake;
mod log;
mod postgres;
mod preamble;
pub(crate) mod rate;
mod relay;
mod route;
#[cfg(test)]
mod tests;
#[cfg(feature = "testkit")]
pub(crate) mod tls_fuzz;
mod until;
mod upstream;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use crate::rt::{Async, Tripwire};

use super::Admission;
use super::Generation;
use crate::close::{CloseReason, Side};
use crate::net::copy::{RelayEnd, RelayStats, TcpHalfClose};
use crate::net::prefixed::Prefixed;
use crate::net::tls_stream::{Negotiated, RecordStream};
use crate::proxy_protocol::Accept;
use crate::route::{HostGroup, MappingId, StartTls, TlsMode};

// Why the `Box::pin`s in the stages: a task stores its whole future for its lifetime, so the
// future's size is memory per idle connection. The peek, the TLS handshakes, the lookup and
// the connect are large and short-lived; boxing each keeps them out of the task's inline
// state (tested by `size_tests`), and the allocation is paid only on the path that runs them.

/// One connection: what it holds (its admission, its generation) and what its access line
/// will say, moved through the stages by [`Conn::serve`].
pub(crate) struct Conn {
    /// The connection's slots and byte counters, ended once with its close reason.
    admission: Admission,
    /// The config generation it was accepted under (routes, metrics, endpoints, close orders).
    generation: Arc<Generation>,
    /// The access line in the making.
    rec: Record,
}

/// Everything the access log line says about a connection (the byte counts are the
/// admission's progress).
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
    mapping: Option<Arc<MappingId>>,
    /// The host group the SNI matched, whose mappings the access line names while no upstream
    /// is chosen yet (so a failed handshake still says which mapping it was for).
    matched: Option<Arc<HostGroup>>,
    upstream: Option<SocketAddr>,
    tls: TlsMode,
    /// Upstream connect attempts made (0: none).
    attempts: usize,
    /// Why the connection failed before relaying (alert sent or received, timeout), or how
    /// its client closed when that is worth saying (without close_notify), if it did.
    detail: Option<String>,
    /// How the client started, on a `starttls: postgres` listener (`None` elsewhere).
    postgres: Option<postgres::PgStart>,
}

/// The client side after routing: plain (with bytes already read to forward), or TLS we
/// terminate: TLS 1.3 with records in our own buffers (`handshake.rs`), or rustls's buffered
/// stream for the rest.
enum Client {
    Plain(Async<TcpStream>, Vec<u8>),
    Tls(Box<futures_rustls::server::TlsStream<Prefixed<TcpHalfClose<Async<TcpStream>>>>>),
    Records(Box<RecordStream>),
}

impl Client {
    /// The client's socket, under any TLS.
    fn socket(&self) -> &Async<TcpStream> {
        match self {
            Client::Plain(s, _) => s,
            Client::Tls(tls) => &tls.get_ref().0.get_ref().0,
            Client::Records(tls) => tls.socket(),
        }
    }

    /// What the client's TLS negotiated, when we terminate it.
    fn negotiated(&self) -> Option<Negotiated> {
        match self {
            Client::Plain(..) => None,
            Client::Tls(tls) => {
                let conn = &tls.get_ref().1;
                Some(Negotiated {
                    alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
                    version: conn.protocol_version(),
                    peer_certificates: conn.peer_certificates().is_some(),
                })
            }
            Client::Records(tls) => Some(tls.negotiated().clone()),
        }
    }
}

/// Completes with `shutdown` when the kill signal trips (the drain timeout passed). Close
/// orders and the maximum age end a connection in its relay (`relay.rs`, with a TLS
/// close_notify first); before it, the stages are bounded by their own deadlines.
async fn told_to_close(kill: &Tripwire) -> Result<RelayStats, CloseReason> {
    kill.tripped().await;
    Err(CloseReason::Shutdown)
}

/// Serves one accepted connection to its end; never panics on peer input, never returns an
/// error. The admission is ended here with the connection's one close reason (or, if this
/// future is dropped unfinished, by the admission's own drop).
pub(crate) fn serve(
    stream: Async<TcpStream>,
    peer: SocketAddr,
    listener: SocketAddr,
    generation: Arc<Generation>,
    admission: Admission,
) -> impl Future<Output = ()> {
    // Not an `async fn`: its state would hold the arguments beside the Conn they move into.
    Conn::accept(peer, listener, generation, admission).serve(stream)
}

impl Conn {
    /// Accept: a connection admitted on `listener` from `peer` under `generation`.
    fn accept(
        peer: SocketAddr,
        listener: SocketAddr,
        generation: Arc<Generation>,
        admission: Admission,
    ) -> Self {
        let rec = Record {
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
            postgres: None,
        };
        Conn {
            admission,
            generation,
            rec,
        }
    }

    /// Runs the stages to the end, or until the connection is told to close from outside.
    // Not an `async fn`: its state would hold `self` twice, as argument and as local (24
    // bytes over the size test's bound with `run` below).
    #[allow(clippy::manual_async_fn)]
    fn serve(mut self, stream: Async<TcpStream>) -> impl Future<Output = ()> {
        async move {
            let kill = self.admission.shared.kill.clone();
            let outcome = futures_lite::future::or(self.run(stream), told_to_close(&kill)).await;
            self.end(outcome);
        }
    }

    /// The stages in order: preamble (PROXY header, ClientHello) → route (group, terminate)
    /// → admit and connect → relay.
    // Not an `async fn`, like `serve`: the arguments would be stored twice.
    #[allow(clippy::manual_async_fn)]
    fn run(
        &mut self,
        stream: Async<TcpStream>,
    ) -> impl Future<Output = Result<RelayStats, CloseReason>> + '_ {
        async move {
            // The stages borrow the routes from the generation while they write to the record.
            let generation = Arc::clone(&self.generation);
            // TCP_NODELAY is already on: accepted sockets inherit it from the listener (net::socket).
            let Some(routes) = generation.table.listeners().get(&self.rec.listener) else {
                return Err(CloseReason::NoRoute);
            };
            if routes.proxy_protocol != Accept::Off {
                Box::pin(self.accept_proxy_header(&stream, routes.proxy_protocol)).await?;
            }
            // The client is known: its rate limit, before the ClientHello and any TLS work
            // (without the PROXY protocol the listener checked it at accept).
            if let Some(limit) = rate::of(routes).filter(|_| rate::checked_by_task(routes)) {
                self.check_rate(&limit)?;
            }
            let starttls = generation.table.starttls(&self.rec.listener);
            let (group, client) = match starttls {
                Some(StartTls::Postgres) => Box::pin(self.route_postgres(stream, routes)).await?,
                None => self.route(stream, routes, &[]).await?,
            };
            let (upstream, endpoints) = self.admit(group)?;
            let up = self.connect(upstream, endpoints).await?;
            if let Some(version) = upstream.send_proxy {
                Box::pin(self.send_proxy_header(&up, version, &client)).await?;
            }
            if self.postgres_upstream_tls(&client, group) {
                Box::pin(self.send_ssl_request(&up)).await?;
            }
            self.relay(client, up, upstream, group).await
        }
    }

    /// End: the one close reason, counted by the admission and written in the access line.
    fn end(mut self, outcome: Result<RelayStats, CloseReason>) {
        let reason = match outcome {
            Ok(stats) => match stats.end {
                RelayEnd::ClientClosed => CloseReason::ClientClosed,
                RelayEnd::UpstreamClosed => CloseReason::UpstreamClosed,
                RelayEnd::IdleTimeout => CloseReason::IdleTimeout,
                RelayEnd::ClientError(_) => CloseReason::IoError(Side::Client),
                RelayEnd::UpstreamError(_) => CloseReason::IoError(Side::Upstream),
            },
            Err(reason) => reason,
        };
        self.admission.end(reason);
        self.log_access(reason);
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
        let shared = super::super::Shared::for_tests(None);
        let generation = std::sync::Arc::new(super::Generation::new(
            table,
            &shared.metrics,
            &shared.endpoints,
        ));
        let addr = l.local_addr().unwrap();
        let admission = crate::actors::Admission::enter(shared).unwrap();
        let fut = super::serve(stream, addr, addr, generation, admission);
        let size = std::mem::size_of_val(&fut);
        eprintln!("serve future: {size} bytes");
        assert!(size <= 1536, "the connection future grew to {size} bytes");
    }

    /// A relayed plain connection also holds its close-order wait on the heap (`relay.rs`):
    /// 136 bytes keep it in a 144-byte malloc chunk (the wait and the maximum-age timer
    /// together took 344, a 352-byte chunk per idle connection).
    #[test]
    fn close_order_wait_stays_small() {
        let shared = super::super::Shared::for_tests(None);
        let progress = crate::net::copy::Progress::default();
        let fut = super::relay::retired(&shared, &progress, std::time::Instant::now());
        let size = std::mem::size_of_val(&fut);
        eprintln!("close-order wait: {size} bytes");
        assert!(size <= 136, "the close-order wait grew to {size} bytes");
    }
}
