//! Reading a connection's first bytes until the ClientHello reader decides, within a deadline.
//!
//! The bytes are read (not `MSG_PEEK`ed: peeking the same bytes again would wake the reactor
//! in a busy loop while a client trickles its ClientHello) and fed to a
//! [`HelloReader`](crate::sni::HelloReader), which keeps them, so they can be replayed into the
//! TLS acceptor ([`Prefixed`](super::prefixed::Prefixed)) or forwarded to a raw upstream
//! first. The result is the same as a peek: nothing is lost. What the reader holds is bounded
//! ([`sni::MAX_BUFFERED`]) and counted in `tcpmap_client_hello_bytes_buffered` while it reads.

use std::net::TcpStream;
use std::time::Duration;

use crate::rt::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use crate::metrics::Metrics;
use crate::sni::{self, HelloReader, Peek};

/// One read's worth: at most this many bytes are fed at once (well under [`sni::MAX_KEPT`]).
const CHUNK: usize = 4096;

/// What the first bytes of a connection turned out to be.
#[derive(Debug)]
pub(crate) struct Peeked {
    /// The reader's verdict (`NeedMore` when the deadline passed or the client closed first).
    pub(crate) verdict: Peek,
    /// Every byte read so far, to be replayed.
    pub(crate) bytes: Vec<u8>,
    /// True when the deadline passed before a verdict.
    pub(crate) timed_out: bool,
    /// True when the client closed (or the read failed) before a verdict.
    pub(crate) eof: bool,
}

/// Reads until the ClientHello reader decides, the client closes, or `deadline` passes;
/// `already` holds the connection's first bytes when an earlier step read them (the first
/// message of a Postgres listener that turned out to be TLS), fed to the reader first.
pub(crate) async fn read_client_hello(
    stream: &Async<TcpStream>,
    already: &[u8],
    deadline: Duration,
    metrics: &Metrics,
) -> Peeked {
    let mut reader = HelloReader::new();
    let mut counted = metrics.hello_buffer();
    let mut chunk = [0u8; CHUNK];
    let decided_already = !already.is_empty() && reader.feed(already);
    counted.set(reader.buffered());
    let work = async {
        if decided_already {
            return false;
        }
        loop {
            let mut s = stream;
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => {
                    let decided = reader.feed(chunk.get(..n).unwrap_or_default());
                    counted.set(reader.buffered());
                    if decided {
                        return false;
                    }
                }
            }
        }
    };
    let outcome = crate::rt::timeout(deadline, work).await;
    let (verdict, bytes) = match outcome {
        Some(true) => reader.finish_at_eof(),
        _ => reader.finish(),
    };
    Peeked {
        verdict,
        bytes,
        timed_out: outcome.is_none(),
        eof: outcome.unwrap_or(false),
    }
}

/// How long a rejected client gets to read the alert before the socket closes.
const LINGER: Duration = Duration::from_millis(500);
/// The most a rejected client's further bytes are read (and dropped) while it lingers.
const LINGER_BYTES: usize = 64 * 1024;

/// Sends a fatal alert record and closes the way a TLS server does: the alert, then FIN, then
/// whatever the client still sends is read and dropped for a moment (until its FIN, at most
/// [`LINGER`] and [`LINGER_BYTES`]), so the close does not become a reset that could destroy
/// the alert before the client reads it.
pub(crate) async fn send_alert(stream: &Async<TcpStream>, alert: sni::Alert) {
    let mut s = stream;
    if s.write_all(&alert.record()).await.is_err() {
        return;
    }
    let _ = s.flush().await;
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Write);
    let drain = async {
        let mut sink = [0u8; 2048];
        let mut read = 0;
        while read < LINGER_BYTES {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    };
    let _ = crate::rt::timeout(LINGER, drain).await;
}
