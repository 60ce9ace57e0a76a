//! The plain-TCP relay: zero-copy splice(2) through a pipe per direction, driven by
//! `rt::Async` readiness, with the buffered path as fallback.
//!
//! A direction alternates: fill its pipe from the source socket (`splice` socket → pipe), then drain
//! the pipe completely into the destination (`splice` pipe → socket); only then is EOF passed on, as
//! a write shutdown. Pipes come from a small global pool when a direction has something to move and
//! go back, empty, as soon as the source has nothing to read, so an idle connection holds no pipe
//! (nor its two file descriptors). When a pipe cannot be made (EMFILE) or the kernel refuses to
//! splice these sockets (EINVAL), the direction switches to the buffered copy before any byte moved
//! through the pipe. This file must not know about TLS or routing. [`relay_tcp`] borrows the
//! sockets and leaves them open; [`relay_tcp_owned`] (what connections use) takes them and closes
//! them when it returns, which lets the EOF that ends the relay go out as the close's FIN.

use std::net::TcpStream;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::rt::Async;

use super::buffered::Half;
use super::copy::{Dir, Driver, Meter, Progress, PumpError, RelayStats, TcpHalfClose};

/// True when `TCPMAP_NO_SPLICE=1` is in the environment: it turns zero-copy off for every
/// proxy in the process, whatever `ProxyBuilder::zero_copy` says (read once, when a proxy
/// starts; the relay itself only sees the per-proxy `Limits::zero_copy`).
pub(crate) fn splice_disabled_by_env() -> bool {
    static ENV_OFF: OnceLock<bool> = OnceLock::new();
    *ENV_OFF.get_or_init(|| std::env::var_os("TCPMAP_NO_SPLICE").is_some_and(|v| v == "1"))
}

/// Relays two plain TCP sockets: with `zero_copy`, splice(2) after a short
/// userspace warm-up, else the buffered copy. Same semantics as [`super::copy::relay`]; EOF is
/// passed on with `shutdown(Write)`. The relay tests' entry (the data plane closes its sockets
/// after the relay: `relay_tcp_owned`).
#[cfg(test)]
pub(crate) async fn relay_tcp(
    client: &Async<TcpStream>,
    upstream: &Async<TcpStream>,
    idle: Option<Duration>,
    progress: &Progress,
    zero_copy: bool,
) -> RelayStats {
    relay_tcp_mode(client, upstream, idle, progress, Mode::of(zero_copy), false)
        .await
        .0
}

/// Relays two plain TCP sockets as `relay_tcp` does (splice(2) with `zero_copy`), owning
/// both and closing them when it returns. The EOF that ends the
/// relay is then not passed on with `shutdown(2)`: the close right after sends that FIN (both
/// receive queues are drained to EOF by then, so it is a FIN, not a reset). One syscall less
/// per connection. `zero_copy` is the proxy's setting (`Limits::zero_copy`).
pub(crate) async fn relay_tcp_owned(
    client: Async<TcpStream>,
    upstream: Async<TcpStream>,
    idle: Option<Duration>,
    progress: &Progress,
    zero_copy: bool,
) -> RelayStats {
    let (stats, _spliced) = relay_tcp_mode(
        &client,
        &upstream,
        idle,
        progress,
        Mode::of(zero_copy),
        true,
    )
    .await;
    #[cfg(test)]
    test_hook::record(&client, _spliced);
    stats
}

/// Bytes a direction copies through userspace before it switches to splice(2). Short
/// connections (a request and a reply) never reach it: for small transfers a plain read/write
/// costs less kernel time than two splices through a pipe, and takes no pipe from the pool.
const SPLICE_AFTER: u64 = 64 * 1024;

/// How [`relay_tcp_mode`] moves bytes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Mode {
    /// Userspace buffers only.
    Buffered,
    /// splice(2) from the first byte (the relay tests' zero-copy path).
    #[cfg(test)]
    Splice,
    /// Userspace buffers until a direction has moved this many bytes, then splice(2).
    Warm(u64),
}

impl Mode {
    /// The mode for a proxy's zero-copy setting: warm-up then splice, or buffers only.
    fn of(zero_copy: bool) -> Mode {
        if zero_copy {
            Mode::Warm(SPLICE_AFTER)
        } else {
            Mode::Buffered
        }
    }
}

#[cfg(test)]
pub(super) mod test_hook {
    //! Test-only record of what each owned relay spliced, keyed by the proxy-side address of the
    //! client socket (the listener's address), so a test can tell which proxy spliced.

    use std::collections::HashMap;
    use std::net::{SocketAddr, TcpStream};
    use std::sync::Mutex;

    use crate::rt::Async;

    static SPLICED: Mutex<Option<HashMap<SocketAddr, [u64; 2]>>> = Mutex::new(None);

    pub(in super::super) fn record(client: &Async<TcpStream>, spliced: [u64; 2]) {
        let Ok(addr) = client.get_ref().local_addr() else {
            return;
        };
        let mut map = SPLICED.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map
            .get_or_insert_with(HashMap::new)
            .entry(addr)
            .or_default();
        entry[0] += spliced[0];
        entry[1] += spliced[1];
    }

    /// Bytes spliced (client→upstream, upstream→client) by the owned relays of a listener.
    pub(in super::super) fn spliced(listener: SocketAddr) -> [u64; 2] {
        let map = SPLICED.lock().unwrap_or_else(|p| p.into_inner());
        map.as_ref()
            .and_then(|m| m.get(&listener).copied())
            .unwrap_or_default()
    }
}

/// [`relay_tcp`] with the path chosen by the caller; also says how many bytes went through pipes
/// (client→upstream, upstream→client), so tests can tell the zero-copy path really ran.
#[cfg(test)]
pub(super) async fn relay_tcp_with(
    client: &Async<TcpStream>,
    upstream: &Async<TcpStream>,
    idle: Option<Duration>,
    progress: &Progress,
    splice: bool,
) -> (RelayStats, [u64; 2]) {
    let mode = if splice { Mode::Splice } else { Mode::Buffered };
    relay_tcp_mode(client, upstream, idle, progress, mode, false).await
}

/// [`relay_tcp_with`] with the full choice of [`Mode`]; with `closing`, the caller closes both
/// sockets right after, so the last EOF is not passed on with `shutdown(2)`.
pub(super) async fn relay_tcp_mode(
    client: &Async<TcpStream>,
    upstream: &Async<TcpStream>,
    idle: Option<Duration>,
    progress: &Progress,
    mode: Mode,
    closing: bool,
) -> (RelayStats, [u64; 2]) {
    let mut driver = Driver::new(idle, progress);
    // The client has usually sent something by the time the upstream is connected: read it
    // at once. The upstream has not seen a byte yet: wait until it says it has data.
    let mut c2u = TcpPump::new(mode, false);
    let mut u2c = TcpPump::new(mode, true);
    let stats = futures_lite::future::poll_fn(|cx| {
        driver.poll(cx, |cx, dir, meter| {
            meter.peer_done &= closing;
            match dir {
                Dir::ClientToUpstream => c2u.poll_pump(cx, client, upstream, meter),
                Dir::UpstreamToClient => u2c.poll_pump(cx, upstream, client, meter),
            }
        })
    })
    .await;
    (stats, [c2u.spliced(), u2c.spliced()])
}

/// One direction between plain sockets: buffered while warming up, then zero-copy while it can,
/// buffered again after a fallback.
///
/// Reads wait for readiness first whenever the last read found the socket drained (EAGAIN),
/// and a fresh upstream is not read before it reports data:
/// a read that would come back EAGAIN costs a syscall, and the wait costs none more than the
/// `epoll_ctl` re-arm it needs anyway (re-arming reports a socket that has data ready at once,
/// so nothing is missed). That also keeps a poll of the task for the other direction from
/// probing this socket again.
enum TcpPump {
    Splice(linux::SpliceHalf),
    /// Buffered until `left` more bytes have moved (then splice), or for good (`u64::MAX`);
    /// `spliced` counts what went through a pipe before a fallback; `wait`: wait for
    /// readiness before the next read.
    Buffered {
        half: Half,
        left: u64,
        spliced: u64,
        wait: bool,
        /// The last read took everything before the peer's FIN: the next one is EOF.
        eof_next: bool,
    },
}

impl TcpPump {
    /// A pump in `mode`; `wait`: the source is not expected to have data yet.
    fn new(mode: Mode, wait: bool) -> Self {
        match mode {
            #[cfg(test)]
            Mode::Splice => TcpPump::Splice(linux::SpliceHalf::new(wait)),
            Mode::Warm(after) => TcpPump::buffered(after, 0, wait),
            Mode::Buffered => TcpPump::buffered(u64::MAX, 0, wait),
        }
    }

    fn buffered(left: u64, spliced: u64, wait: bool) -> Self {
        TcpPump::Buffered {
            half: Half::default(),
            left,
            spliced,
            wait,
            eof_next: false,
        }
    }

    fn spliced(&self) -> u64 {
        match self {
            TcpPump::Splice(half) => half.spliced,
            TcpPump::Buffered { spliced, .. } => *spliced,
        }
    }

    fn poll_pump(
        &mut self,
        cx: &mut Context<'_>,
        src: &Async<TcpStream>,
        dst: &Async<TcpStream>,
        meter: &mut Meter<'_>,
    ) -> Poll<Result<(), PumpError>> {
        if let TcpPump::Splice(half) = self {
            match half.poll_pump(cx, src, dst, meter) {
                linux::Step::Poll(poll) => return poll,
                linux::Step::Fallback => {
                    tracing::debug!(
                        "splice unavailable (or urgent data), relaying through userspace buffers"
                    );
                    *self = TcpPump::buffered(u64::MAX, half.spliced, false);
                }
            }
        }
        match self {
            TcpPump::Buffered {
                half,
                left,
                wait,
                eof_next,
                ..
            } => {
                let before = meter.bytes();
                let mut from = WaitFirst {
                    src,
                    wait,
                    eof_next,
                };
                let poll = if meter.peer_done {
                    half.poll_pump(cx, &mut from, &mut LastHalf(dst), meter)
                } else {
                    half.poll_pump(cx, &mut from, &mut TcpHalfClose(dst), meter)
                };
                if *left != u64::MAX {
                    *left = left.saturating_sub(meter.bytes() - before);
                    // Switch only between reads, with nothing parked in userspace (a plain
                    // socket's flush is a no-op, so no flush can be owed).
                    if *left == 0 && poll.is_pending() && !half.holds_data() {
                        *self = TcpPump::Splice(linux::SpliceHalf::new(*wait));
                    }
                }
                poll
            }
            TcpPump::Splice(_) => Poll::Pending,
        }
    }
}

/// A plain socket as a read source that waits for readiness before reading whenever `wait`
/// is set, and sets it when a read finds the socket drained (EAGAIN; see [`TcpPump`]).
/// After a short read that followed the peer's FIN it answers end of stream without reading.
struct WaitFirst<'a> {
    src: &'a Async<TcpStream>,
    wait: &'a mut bool,
    eof_next: &'a mut bool,
}

impl futures_io::AsyncRead for WaitFirst<'_> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        use std::io::Read;
        let this = self.get_mut();
        if *this.eof_next {
            return Poll::Ready(Ok(0));
        }
        loop {
            if *this.wait {
                match this.src.poll_readable(cx) {
                    Poll::Ready(Ok(())) => *this.wait = false,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            let tick = this.src.read_tick();
            // Taken before the read: a FIN reported by then was queued behind every byte
            // this read can return.
            let fin_before = this.src.fin_seen_without_error();
            match this.src.get_ref().read(buf) {
                // A short read drained the socket (TCP returns what is queued, up to the
                // buffer). If the peer's FIN has not been reported yet, anything after these
                // bytes, the FIN included, comes as a new edge: wait for it next time instead
                // of probing into an EAGAIN. If it has (and no error), these bytes were all
                // that came before the FIN: the next read is the EOF, answered without a
                // syscall. After an error, read again: it is reported there. Not on a socket
                // that has had urgent data: a read stops at the urgent mark, with bytes after
                // it possibly queued already (no edge would come for them, and taking the
                // FIN as next would drop them); there a short read is followed by a read.
                Ok(n) if n > 0 && n < buf.len() && !this.src.urgent_seen() => {
                    if !this.src.read_closed_seen() {
                        this.src.read_drained(tick);
                        *this.wait = true;
                    } else if fin_before {
                        *this.eof_next = true;
                    }
                    return Poll::Ready(Ok(n));
                }
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    this.src.read_drained(tick);
                    *this.wait = true;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// The destination of the direction that ends the relay: writes like [`TcpHalfClose`], but its
/// close does nothing, because the caller closes the socket right after the relay (both of its
/// receive queues are drained to EOF by then, so close sends a FIN, not a reset): one
/// `shutdown(2)` less per connection.
pub(super) struct LastHalf<'a>(pub(super) &'a Async<TcpStream>);

impl futures_io::AsyncWrite for LastHalf<'_> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut stream = self.0;
        std::pin::Pin::new(&mut stream).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

pub(super) mod linux;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod warm_tests;
