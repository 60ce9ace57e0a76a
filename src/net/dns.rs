//! DNS queries on sockets: one A/AAAA question to the configured nameservers, and the
//! lookup of one name (search candidates × family policy) on top of it.
//!
//! Every nameserver is asked at once, each on its own connected UDP socket (so an ICMP
//! "port unreachable" fails that server at once instead of waiting), and the first usable
//! answer wins; a dead server therefore never delays a live one. A try that gets no answer
//! within `min(options timeout, time left / attempts)` is sent again, up to `attempts` times,
//! and the whole lookup is bounded by its deadline. A truncated UDP reply is asked again over
//! TCP. No policy about caching or the hosts file lives here: that is the resolver actor's.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::rt::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use crate::dns::conf::ResolvConf;
use crate::dns::wire::{self, RecordType, Reply};
use crate::dns::{ResolveError, Resolved, TypeOutcome, combine, search};
use crate::route::Families;
use crate::rt;

/// Largest reply read over UDP (we send no EDNS, so servers stay within 512 bytes).
const UDP_BUFFER: usize = 4096;
/// A try never waits less than this, however little time is left.
const MIN_TRY: Duration = Duration::from_millis(10);

/// Resolves `name` under `families` by DNS alone, finishing by `deadline`.
///
/// Search candidates are tried in order; NXDOMAIN, "no data" or a server error moves on to
/// the next candidate, a timeout ends the lookup. With both families, AAAA and A are asked
/// at the same time and IPv6 addresses come first. Errors name `name` as given.
/// `queries` counts the questions sent (one per record type and candidate).
pub(crate) async fn lookup(
    name: &str,
    families: Families,
    conf: &ResolvConf,
    deadline: Instant,
    queries: &AtomicU64,
) -> Result<Resolved, ResolveError> {
    let mut nodata = false;
    let mut failure = None;
    for candidate in search::candidates(name, &conf.search, conf.ndots) {
        let ask = |wanted: bool, rtype: RecordType| {
            let candidate = candidate.as_str();
            async move {
                if wanted {
                    ask_type(name, candidate, rtype, conf, deadline, queries).await
                } else {
                    TypeOutcome::NotAsked
                }
            }
        };
        let (aaaa, a) = futures_lite::future::zip(
            ask(families.ipv6(), RecordType::Aaaa),
            ask(families.ipv4(), RecordType::A),
        )
        .await;
        match combine(name, aaaa, a) {
            Ok(resolved) => return Ok(resolved),
            Err(ResolveError::NotFound(_)) => {}
            Err(ResolveError::NoData(_)) => nodata = true,
            Err(err @ ResolveError::Io(..)) => failure = failure.or(Some(err)),
            Err(err) => return Err(err),
        }
    }
    match failure {
        _ if nodata => Err(ResolveError::NoData(name.to_owned())),
        Some(err) => Err(err),
        None => Err(ResolveError::NotFound(name.to_owned())),
    }
}

/// One pending question to one nameserver (boxed so any number can be polled together).
type Pending<'a, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>;

/// Why one nameserver gave no usable answer.
#[derive(Debug)]
enum ServerFail {
    Timeout,
    Rcode(u8),
    Io(String),
}

/// Asks every nameserver for `candidate`/`rtype` and returns the first usable answer.
async fn ask_type(
    asked: &str,
    candidate: &str,
    rtype: RecordType,
    conf: &ResolvConf,
    deadline: Instant,
    queries: &AtomicU64,
) -> TypeOutcome {
    let id = fastrand::u16(..);
    let query = match wire::encode_query(id, candidate, rtype) {
        Ok(query) => query,
        Err(err) => {
            return TypeOutcome::Failed(ResolveError::Io(asked.to_owned(), err.to_string()));
        }
    };
    queries.fetch_add(1, Ordering::Relaxed);
    let left = deadline.saturating_duration_since(Instant::now());
    let per_try = conf
        .timeout
        .min(left / u32::from(conf.attempts.max(1)))
        .max(MIN_TRY);
    let servers: Vec<Pending<'_, Reply, ServerFail>> = conf
        .nameservers
        .iter()
        .map(|server| {
            let fut = ask_server(
                *server,
                &query,
                id,
                candidate,
                rtype,
                per_try,
                conf.attempts.max(1),
            );
            Box::pin(fut) as Pending<'_, _, _>
        })
        .collect();
    match rt::timeout(left, first_answer(servers)).await {
        None => TypeOutcome::Failed(ResolveError::Timeout(asked.to_owned())),
        Some(Ok(Reply::Records(addrs, ttl))) => TypeOutcome::Found(addrs, ttl),
        Some(Ok(Reply::NxDomain)) => TypeOutcome::NxDomain,
        Some(Ok(Reply::NoData | Reply::Truncated | Reply::ServerError(_))) => TypeOutcome::NoData,
        Some(Err(fails)) => TypeOutcome::Failed(summarize(asked, &fails)),
    }
}

/// Turns every server's failure into one error: any timeout makes it a timeout.
fn summarize(asked: &str, fails: &[ServerFail]) -> ResolveError {
    if fails.is_empty() || fails.iter().any(|f| matches!(f, ServerFail::Timeout)) {
        return ResolveError::Timeout(asked.to_owned());
    }
    let why: Vec<String> = fails
        .iter()
        .map(|f| match f {
            ServerFail::Rcode(2) => "SERVFAIL".to_owned(),
            ServerFail::Rcode(5) => "REFUSED".to_owned(),
            ServerFail::Rcode(code) => format!("rcode {code}"),
            ServerFail::Io(msg) => msg.clone(),
            ServerFail::Timeout => "timeout".to_owned(),
        })
        .collect();
    ResolveError::Io(
        asked.to_owned(),
        format!("no nameserver answered: {}", why.join(", ")),
    )
}

/// Polls all futures together; the first `Ok` wins, or every `Err` is returned.
async fn first_answer<T, E>(mut futures: Vec<Pending<'_, T, E>>) -> Result<T, Vec<E>> {
    let mut errors = Vec::new();
    std::future::poll_fn(move |cx| {
        let mut i = 0;
        while let Some(fut) = futures.get_mut(i) {
            match fut.as_mut().poll(cx) {
                Poll::Ready(Ok(value)) => return Poll::Ready(Ok(value)),
                Poll::Ready(Err(err)) => {
                    errors.push(err);
                    drop(futures.swap_remove(i));
                }
                Poll::Pending => i += 1,
            }
        }
        if futures.is_empty() {
            Poll::Ready(Err(std::mem::take(&mut errors)))
        } else {
            Poll::Pending
        }
    })
    .await
}

fn io_fail(err: io::Error) -> ServerFail {
    ServerFail::Io(err.to_string())
}

/// One nameserver over UDP (retried `attempts` times), then TCP if the reply was truncated.
async fn ask_server(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    name: &str,
    rtype: RecordType,
    per_try: Duration,
    attempts: u8,
) -> Result<Reply, ServerFail> {
    let local = match server {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    let socket = Async::<UdpSocket>::bind(local).map_err(io_fail)?;
    socket.get_ref().connect(server).map_err(io_fail)?;
    let mut buf = vec![0u8; UDP_BUFFER];
    for _ in 0..attempts {
        socket.send(query).await.map_err(io_fail)?;
        let try_ends = Instant::now() + per_try;
        loop {
            let left = try_ends.saturating_duration_since(Instant::now());
            let Some(received) = rt::timeout(left, socket.recv(&mut buf)).await else {
                break;
            };
            let datagram = buf.get(..received.map_err(io_fail)?).unwrap_or_default();
            match wire::decode_reply(datagram, id, name, rtype) {
                Ok(Reply::Truncated) => {
                    return ask_server_tcp(server, query, id, name, rtype).await;
                }
                Ok(Reply::ServerError(code)) => return Err(ServerFail::Rcode(code)),
                Ok(reply) => return Ok(reply),
                // A stray or spoofed datagram: keep waiting for the real answer.
                Err(err) => tracing::debug!(%server, %name, %err, "ignored DNS datagram"),
            }
        }
    }
    Err(ServerFail::Timeout)
}

/// The same question over TCP (two-byte length prefix each way).
async fn ask_server_tcp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    name: &str,
    rtype: RecordType,
) -> Result<Reply, ServerFail> {
    let len =
        u16::try_from(query.len()).map_err(|_| ServerFail::Io("query too long for TCP".into()))?;
    let mut stream = Async::<TcpStream>::connect(server).await.map_err(io_fail)?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(io_fail)?;
    let mut len_bytes = [0u8; 2];
    stream.read_exact(&mut len_bytes).await.map_err(io_fail)?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len_bytes))];
    stream.read_exact(&mut reply).await.map_err(io_fail)?;
    match wire::decode_reply(&reply, id, name, rtype) {
        Ok(Reply::ServerError(code)) => Err(ServerFail::Rcode(code)),
        Ok(Reply::Truncated) => Err(ServerFail::Io("truncated reply over TCP".into())),
        Ok(reply) => Ok(reply),
        Err(err) => Err(ServerFail::Io(err.to_string())),
    }
}
