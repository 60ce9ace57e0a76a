//! Reading a connection's first bytes until the SNI parser decides, within a deadline.
//!
//! The bytes are read (not `MSG_PEEK`ed: peeking the same bytes again would wake the reactor
//! in a busy loop while a client trickles its ClientHello) and kept, so they can be replayed
//! into the TLS acceptor ([`Prefixed`](super::prefixed::Prefixed)) or forwarded to a raw
//! upstream first. The result is the same as a peek: nothing is lost.

use std::net::TcpStream;
use std::time::Duration;

use async_io::Async;
use futures_lite::AsyncReadExt;

use crate::sni::{self, Peek};

/// What the first bytes of a connection turned out to be.
#[derive(Debug)]
pub(crate) struct Peeked {
    /// The parser's verdict (`NeedMore` when the deadline or the size bound hit first).
    pub(crate) verdict: Peek,
    /// Every byte read so far, to be replayed.
    pub(crate) bytes: Vec<u8>,
    /// True when the deadline passed before a verdict.
    pub(crate) timed_out: bool,
    /// True when the client closed before a verdict.
    pub(crate) eof: bool,
}

/// Reads until [`sni::parse_client_hello`] returns something other than `NeedMore`, the
/// client closes, [`sni::MAX_CLIENT_HELLO`] bytes are held, or `deadline` passes.
pub(crate) async fn read_client_hello(stream: &Async<TcpStream>, deadline: Duration) -> Peeked {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 2048];
    let work = async {
        loop {
            let mut reader = stream;
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return (Peek::NeedMore, true),
                Ok(n) => {
                    bytes.extend_from_slice(chunk.get(..n).unwrap_or_default());
                    match sni::parse_client_hello(&bytes) {
                        Peek::NeedMore if bytes.len() < sni::MAX_CLIENT_HELLO => continue,
                        verdict => return (verdict, false),
                    }
                }
            }
        }
    };
    match crate::rt::timeout(deadline, work).await {
        Some((verdict, eof)) => Peeked {
            verdict,
            bytes,
            timed_out: false,
            eof,
        },
        None => Peeked {
            verdict: Peek::NeedMore,
            bytes,
            timed_out: true,
            eof: false,
        },
    }
}
