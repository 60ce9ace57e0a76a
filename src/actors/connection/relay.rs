//! Relay: originate TLS if the group asks, forward what routing read, then copy both ways
//! until one side ends. A TLS client that closes TCP without close_notify has closed: its
//! read side ends as at an EOF (so the relay ends as `client_closed` or `upstream_closed`,
//! whichever side finished first, not as an I/O error), and the access line says so.

use std::io;
use std::net::TcpStream;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::AsyncWriteExt;

use super::until::until;
use super::{Client, Conn};
use crate::close::{CloseReason, Side};
use crate::net::copy::{self, Progress, RelayStats, TcpHalfClose};
use crate::net::tls_stream::RecordStream;
use crate::route::{Group, TlsMode, Upstream};
use crate::rt::Async;

/// The access line's `detail` for a TLS client that closed TCP without close_notify.
pub(super) const NO_CLOSE_NOTIFY: &str = "client closed without close_notify";

impl Conn {
    /// Relay: originate TLS if the group asks, forward what routing read, then copy both ways
    /// until one side ends.
    pub(super) async fn relay(
        &mut self,
        client: Client,
        up: Async<TcpStream>,
        upstream: &Upstream,
        group: &Group,
    ) -> Result<RelayStats, CloseReason> {
        let idle = group.idle_timeout;
        let progress = &self.admission.progress;
        match (client, &group.origination) {
            (Client::Plain(c, first), None) => {
                // A passthrough group's client side is TLS we do not touch: still raw bytes
                // here; so is a Postgres client's TLS that no host group terminates.
                if self.postgres_tls_client() {
                    self.rec.tls = TlsMode::Passthrough;
                } else if self.rec.tls != TlsMode::Passthrough {
                    self.rec.tls = TlsMode::None;
                }
                Box::pin(forward_first(&up, &first, progress)).await?;
                let zero_copy = self.admission.shared.limits.zero_copy;
                // Boxed here: inline it would add its state to every plain connection's future.
                let mut stop = self.stop_boxed(upstream);
                let relay = crate::net::splice::relay_tcp_owned(c, up, idle, progress, zero_copy);
                until(pin!(relay), stop.as_mut()).await
            }
            (Client::Plain(c, first), Some(orig)) => {
                self.rec.tls = TlsMode::Originate;
                let mut up =
                    Box::new(Box::pin(self.originate(TcpHalfClose(up), upstream, orig)).await?);
                let progress = &self.admission.progress;
                Box::pin(forward_first(&mut *up, &first, progress)).await?;
                let stop = self.stop(upstream);
                let mut c = TcpHalfClose(&c);
                let relay = copy::relay(&mut c, &mut *up, idle, progress);
                Box::pin(async { until(pin!(relay), pin!(stop)).await }).await
            }
            (Client::Tls(mut c), None) => {
                self.rec.tls = TlsMode::Terminate;
                let c = CloseNotifyOptional::batching(&mut *c);
                self.terminated(c, up, upstream, idle).await
            }
            (Client::Records(mut c), None) => {
                self.rec.tls = TlsMode::Terminate;
                let c = CloseNotifyOptional::new(&mut c);
                self.terminated(c, up, upstream, idle).await
            }
            (Client::Tls(mut c), Some(orig)) => {
                self.rec.tls = TlsMode::TerminateOriginate;
                let up =
                    Box::new(Box::pin(self.originate(TcpHalfClose(up), upstream, orig)).await?);
                let c = CloseNotifyOptional::batching(&mut *c);
                self.terminated_originated(c, up, upstream, idle).await
            }
            (Client::Records(mut c), Some(orig)) => {
                self.rec.tls = TlsMode::TerminateOriginate;
                let up =
                    Box::new(Box::pin(self.originate(TcpHalfClose(up), upstream, orig)).await?);
                let c = CloseNotifyOptional::new(&mut c);
                self.terminated_originated(c, up, upstream, idle).await
            }
        }
    }

    /// A terminated client and a plain upstream: relays, sends close_notify if told to close.
    async fn terminated<S>(
        &mut self,
        mut c: CloseNotifyOptional<S>,
        up: Async<TcpStream>,
        upstream: &Upstream,
        idle: Option<Duration>,
    ) -> Result<RelayStats, CloseReason>
    where
        CloseNotifyOptional<S>: AsyncRead + AsyncWrite + Unpin,
    {
        let progress = &self.admission.progress;
        let stop = self.stop(upstream);
        let stats = Box::pin(async {
            let mut stop = pin!(stop);
            // `up` is closed when this returns: the last EOF needs no shutdown(2).
            let relay = copy::relay_to_plain_upstream(&mut c, &up, idle, progress);
            let stats = until(pin!(relay), stop.as_mut()).await;
            close_notify_if_told(&mut c, &stats).await;
            stats
        })
        .await;
        self.note_unclean_close(&c);
        stats
    }

    /// A terminated client and an upstream we originate TLS to.
    async fn terminated_originated<S, U>(
        &mut self,
        mut c: CloseNotifyOptional<S>,
        mut up: Box<U>,
        upstream: &Upstream,
        idle: Option<Duration>,
    ) -> Result<RelayStats, CloseReason>
    where
        CloseNotifyOptional<S>: AsyncRead + AsyncWrite + Unpin,
        U: AsyncRead + AsyncWrite + Unpin,
    {
        let progress = &self.admission.progress;
        let stop = self.stop(upstream);
        let stats = Box::pin(async {
            let mut stop = pin!(stop);
            let relay = copy::relay(&mut c, &mut *up, idle, progress);
            let stats = until(pin!(relay), stop.as_mut()).await;
            close_notify_if_told(&mut c, &stats).await;
            stats
        })
        .await;
        self.note_unclean_close(&c);
        stats
    }

    /// [`Conn::stop`] on the heap, for the plain path (whose future is otherwise small): without
    /// a maximum age, the common case, only the close-order wait (136 bytes rather than the 344
    /// that reserve room for the age's timer too; idle connections each hold one).
    fn stop_boxed(
        &self,
        upstream: &Upstream,
    ) -> Pin<Box<dyn Future<Output = CloseReason> + Send + '_>> {
        if upstream.endpoints.max_duration.is_some() {
            return Box::pin(self.stop(upstream));
        }
        let a = &self.admission;
        Box::pin(retired(&a.shared, &a.progress, self.rec.started))
    }

    /// What ends a relaying connection from outside: [`stop`] for this connection and its
    /// upstream's mapping.
    fn stop(&self, upstream: &Upstream) -> impl Future<Output = CloseReason> + Send + '_ {
        let a = &self.admission;
        stop(
            &a.shared,
            &a.progress,
            self.rec.started,
            upstream.endpoints.max_duration,
        )
    }

    /// Says in the access line that the client closed without close_notify, if it did.
    fn note_unclean_close<S>(&mut self, client: &CloseNotifyOptional<S>) {
        if client.closed_without_notify && self.rec.detail.is_none() {
            self.rec.detail = Some(NO_CLOSE_NOTIFY.into());
        }
    }
}

/// A terminated client told to close (`stats` is the reason) gets a close_notify first,
/// within [`CLOSE_NOTIFY_WAIT`].
async fn close_notify_if_told<S, T>(c: &mut CloseNotifyOptional<S>, stats: &Result<T, CloseReason>)
where
    CloseNotifyOptional<S>: AsyncWrite + Unpin,
{
    if stats.is_err() {
        let _ = crate::rt::timeout(CLOSE_NOTIFY_WAIT, c.close()).await;
    }
}

/// How long a client told to close has to take its close_notify.
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_secs(1);

/// Completes when a relaying connection accepted at `accepted` is to close: at its maximum
/// age `max_age` less its jitter (`max_duration`) or when a close order's time for it comes
/// (`retired`; idle if `progress` did not move).
async fn stop(
    shared: &crate::actors::Shared,
    progress: &Progress,
    accepted: Instant,
    max_age: Option<Duration>,
) -> CloseReason {
    let max_age = max_age.map(|d| accepted + crate::route::fleet::jittered(d, fastrand::f64()));
    futures_lite::future::or(
        async {
            match max_age {
                Some(at) => crate::rt::timer::Sleep::until(at).await,
                None => std::future::pending().await,
            }
            CloseReason::MaxDuration
        },
        shared.close.closed(accepted, Some(progress)),
    )
    .await
}

/// Completes when a close order's time comes for a connection accepted at `accepted`: [`stop`]
/// without a maximum age, and nothing else (no wrapper future holding copies of its arguments).
pub(super) fn retired<'a>(
    shared: &'a crate::actors::Shared,
    progress: &'a Progress,
    accepted: Instant,
) -> impl Future<Output = CloseReason> + Send + 'a {
    shared.close.closed(accepted, Some(progress))
}

/// Sends the bytes read while routing to the upstream before relaying the rest.
async fn forward_first<W>(mut up: W, first: &[u8], progress: &Progress) -> Result<(), CloseReason>
where
    W: AsyncWrite + Unpin,
{
    if first.is_empty() {
        return Ok(());
    }
    let failed = |_| CloseReason::IoError(Side::Upstream);
    up.write_all(first).await.map_err(failed)?;
    up.flush().await.map_err(failed)?;
    progress.add_client_to_upstream(first.len() as u64);
    Ok(())
}

/// A terminated client stream whose TCP close without close_notify reads as an EOF.
///
/// rustls reports a peer that closed TCP without close_notify as `UnexpectedEof`. For a
/// server that matters only when the length of what it read is the message (a truncation
/// attack); tcpmap forwards bytes and the EOF, so the upstream sees what a TLS-unaware client
/// would send it. Most clients (Python's `ssl`, many HTTP clients) close this way after
/// reading their answer, so counting it as an I/O error would fill error dashboards.
/// Resets and every other error stay errors.
struct CloseNotifyOptional<S> {
    inner: S,
    /// The client closed TCP without sending close_notify.
    closed_without_notify: bool,
    /// Plaintext bytes queued in rustls since the last flush.
    queued: usize,
}

/// Plaintext left queued in rustls after a write: a write that brings the queue to this goes
/// out at once, as futures-rustls would send it. Only small writes wait for the relay's flush
/// or close (with rustls's 64 KiB limit a relay write, at most 32 KiB, is never cut short). A
/// download is not batched: batching it into 64 KiB writes halved its writev calls but read
/// the upstream into EAGAIN more often and cost more CPU per GB in alternated runs.
const BATCH: usize = 16 * 1024;

impl<'a, IO> CloseNotifyOptional<&'a mut futures_rustls::server::TlsStream<IO>> {
    fn batching(tls: &'a mut futures_rustls::server::TlsStream<IO>) -> Self {
        CloseNotifyOptional {
            inner: tls,
            closed_without_notify: false,
            queued: 0,
        }
    }
}

impl<'a> CloseNotifyOptional<&'a mut RecordStream> {
    /// The record stream batches small writes itself, as [`CloseNotifyOptional::batching`] does.
    fn new(tls: &'a mut RecordStream) -> Self {
        CloseNotifyOptional {
            inner: tls,
            closed_without_notify: false,
            queued: 0,
        }
    }
}

impl AsyncWrite for CloseNotifyOptional<&mut RecordStream> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_close(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CloseNotifyOptional<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                this.closed_without_notify = true;
                Poll::Ready(Ok(0))
            }
            other => other,
        }
    }
}

/// Small writes queue their TLS records in rustls and go out at the next flush or close, so an
/// upstream's short answer and the close_notify right after it (an upstream that answers and
/// closes) leave in one `writev`; a write that brings the queue to [`BATCH`] goes out at once.
/// The relay flushes before it waits for its source (`buffered::Half`), so nothing stays
/// queued while it waits.
impl<IO> AsyncWrite for CloseNotifyOptional<&mut futures_rustls::server::TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = match std::io::Write::write(&mut this.inner.get_mut().1.writer(), buf) {
            // rustls's buffer is full (the socket is): futures-rustls writes and waits.
            Ok(0) => return Pin::new(&mut *this.inner).poll_write(cx, buf),
            Ok(n) => n,
            Err(e) => return Poll::Ready(Err(e)),
        };
        this.queued += n;
        if this.queued >= BATCH {
            // Out at once; while the socket is full the records stay queued in rustls (as
            // with futures-rustls's own write) and the relay's flush waits for it.
            match Pin::new(&mut *this.inner).poll_flush(cx) {
                Poll::Ready(Ok(())) => this.queued = 0,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let done = Pin::new(&mut *this.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = done {
            this.queued = 0;
        }
        done
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_close(cx)
    }
}
