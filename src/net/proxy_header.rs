//! Reading a PROXY protocol header at the very start of a connection, within a deadline.
//!
//! Exactly the header's bytes are consumed and nothing after them, so the next stage (the
//! ClientHello read, or the raw relay) finds the socket as if no header had been sent. How:
//! the bytes are `MSG_PEEK`ed and handed to [`proxy_protocol::decode`]; a whole header is
//! then read for its length only; a beginning of one (`Partial`: all of its bytes belong to
//! the header) is read at once, which drains the socket so the next peek waits for new bytes
//! instead of waking up on the same ones.
//!
//! One case cannot drain: with `optional`, a first segment that is only a strict prefix of a
//! signature (`PRO`, `\r\n`) might be the client's own protocol, so it is left in place and
//! looked at again after a short pause, until the deadline.

use std::fmt;
use std::net::TcpStream;
use std::time::Duration;

use crate::rt::Async;
use futures_lite::AsyncReadExt;

use crate::proxy_protocol::{self, Accept, DecodeError, Decoded, Header};

/// The pause before peeking again at an unconsumed signature prefix (`optional` only).
const PREFIX_RECHECK: Duration = Duration::from_millis(5);

/// Why a listener that requires (or saw the start of) a header closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// The first bytes are not a PROXY header, and one is required.
    Missing,
    /// They start like one but break the format or its bounds.
    Invalid(DecodeError),
    /// The header did not arrive within the deadline.
    Timeout,
    /// The client closed (or reset) before a whole header arrived.
    Closed,
}

impl HeaderError {
    /// The `reason` label of `tcpmap_proxy_protocol_rejected_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            HeaderError::Missing => "missing",
            HeaderError::Invalid(e) => e.kind(),
            HeaderError::Timeout => "timeout",
            HeaderError::Closed => "closed",
        }
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Missing => f.write_str("no PROXY protocol header, and one is required"),
            HeaderError::Invalid(e) => e.fmt(f),
            HeaderError::Timeout => f.write_str("PROXY protocol header not received in time"),
            HeaderError::Closed => f.write_str("closed before the PROXY protocol header ended"),
        }
    }
}

/// Reads the header the listener's `accept` asks for: `Ok(Some)` with a header, `Ok(None)`
/// when `optional` and the client sent none (nothing consumed), or why the connection must
/// close. `Off` reads nothing.
pub(crate) async fn read_header(
    stream: &Async<TcpStream>,
    accept: Accept,
    deadline: Duration,
) -> Result<Option<Header>, HeaderError> {
    if accept == Accept::Off {
        return Ok(None);
    }
    // Bytes consumed so far: all of them belong to the header.
    let mut consumed = 0usize;
    let work = read_loop(stream, accept, &mut consumed);
    match crate::rt::timeout(deadline, work).await {
        Some(result) => result,
        // A client that sent nothing may speak only after the server (optional only).
        None if accept == Accept::Optional && consumed == 0 => Ok(None),
        None => Err(HeaderError::Timeout),
    }
}

async fn read_loop(
    stream: &Async<TcpStream>,
    accept: Accept,
    consumed: &mut usize,
) -> Result<Option<Header>, HeaderError> {
    // The header bytes consumed so far, then what the last peek saw after them.
    let mut window: Vec<u8> = Vec::with_capacity(proxy_protocol::V1_MAX);
    let mut more = proxy_protocol::V1_MAX;
    loop {
        let start = *consumed;
        window.truncate(start);
        window.resize(start + more, 0);
        let Some(room) = window.get_mut(start..) else {
            return Err(HeaderError::Closed);
        };
        let n = match stream.peek(room).await {
            Ok(0) | Err(_) if start == 0 && accept == Accept::Optional => return Ok(None),
            Ok(0) | Err(_) => return Err(HeaderError::Closed),
            Ok(n) => n.min(more),
        };
        window.truncate(start + n);
        match proxy_protocol::decode(&window) {
            Ok(Decoded::Complete { header, len }) => {
                consume(stream, &mut window, start, len.saturating_sub(start)).await?;
                *consumed = len;
                return Ok(Some(header));
            }
            Ok(Decoded::NotProxy) if start == 0 && accept == Accept::Optional => return Ok(None),
            Ok(Decoded::NotProxy) => return Err(HeaderError::Missing),
            Ok(Decoded::Partial { committed, more: m }) => {
                if committed || accept == Accept::Required {
                    consume(stream, &mut window, start, n).await?;
                    *consumed = start + n;
                } else {
                    crate::rt::sleep(PREFIX_RECHECK).await;
                }
                more = m.max(1);
            }
            Err(e) => return Err(HeaderError::Invalid(e)),
        }
    }
}

/// Reads the `n` bytes just peeked at `window[start..]` (the same bytes land there again).
async fn consume(
    stream: &Async<TcpStream>,
    window: &mut [u8],
    start: usize,
    n: usize,
) -> Result<(), HeaderError> {
    let Some(dst) = window.get_mut(start..start + n) else {
        return Err(HeaderError::Closed);
    };
    let mut reader = stream;
    reader
        .read_exact(dst)
        .await
        .map_err(|_| HeaderError::Closed)
}

#[cfg(test)]
mod tests {
    //! Real loopback sockets: the header is consumed and the bytes after it are not.

    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    use super::*;

    fn pair() -> (TcpStream, Async<TcpStream>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, Async::new(s).unwrap())
    }

    fn rest(s: Async<TcpStream>, n: usize) -> Vec<u8> {
        let mut s = s.into_inner().unwrap();
        s.set_nonblocking(false).unwrap();
        let mut out = vec![0; n];
        s.read_exact(&mut out).unwrap();
        out
    }

    const SHORT: Duration = Duration::from_millis(300);

    #[test]
    fn v1_then_payload_in_one_segment() {
        let (mut c, s) = pair();
        c.write_all(b"PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\r\nhello")
            .unwrap();
        let h = futures_lite::future::block_on(read_header(&s, Accept::Required, SHORT))
            .unwrap()
            .unwrap();
        assert_eq!(h.client(), Some("192.0.2.1:51000".parse().unwrap()));
        assert_eq!(rest(s, 5), b"hello");
    }

    #[test]
    fn a_header_trickling_in_byte_by_byte_is_assembled() {
        let (mut c, s) = pair();
        let mut h = proxy_protocol::Header::proxy(
            proxy_protocol::Version::V2,
            "[2001:db8::1]:7".parse().unwrap(),
            "[2001:db8::2]:8".parse().unwrap(),
        );
        h.tlvs.push(proxy_protocol::Tlv {
            kind: proxy_protocol::tlv::AUTHORITY,
            value: b"x".to_vec(),
        });
        let mut wire = h.encode();
        wire.extend_from_slice(b"after");
        let writer = std::thread::spawn(move || {
            for b in wire {
                c.write_all(&[b]).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            c
        });
        let got = futures_lite::future::block_on(read_header(
            &s,
            Accept::Required,
            Duration::from_secs(5),
        ))
        .unwrap();
        assert_eq!(got, Some(h));
        let _c = writer.join().unwrap();
        assert_eq!(rest(s, 5), b"after");
    }

    #[test]
    fn optional_without_a_header_consumes_nothing() {
        let (mut c, s) = pair();
        c.write_all(b"\x16\x03\x01hello").unwrap();
        let got = futures_lite::future::block_on(read_header(&s, Accept::Optional, SHORT));
        assert_eq!(got, Ok(None));
        assert_eq!(rest(s, 8), b"\x16\x03\x01hello");
    }

    #[test]
    fn optional_with_a_silent_client_goes_on_at_the_deadline() {
        let (_c, s) = pair();
        let got = futures_lite::future::block_on(read_header(&s, Accept::Optional, SHORT));
        assert_eq!(got, Ok(None));
    }

    #[test]
    fn required_failures() {
        let mut too_long = b"PROXY ".to_vec();
        too_long.resize(200, b'x');
        let cases: [(&[u8], HeaderError); 3] = [
            (b"SSH-2.0-client\r\n", HeaderError::Missing),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
                HeaderError::Invalid(DecodeError::V1Malformed("line not ended by CRLF")),
            ),
            (&too_long, HeaderError::Invalid(DecodeError::V1TooLong)),
        ];
        for (bytes, want) in cases {
            let (mut c, s) = pair();
            c.write_all(bytes).unwrap();
            let got = futures_lite::future::block_on(read_header(&s, Accept::Required, SHORT));
            assert_eq!(got, Err(want), "{:?}", String::from_utf8_lossy(bytes));
        }
        // A beginning that never ends: the deadline.
        let (mut c, s) = pair();
        c.write_all(b"PROXY TCP4 1.2.3.4").unwrap();
        let got = futures_lite::future::block_on(read_header(&s, Accept::Required, SHORT));
        assert_eq!(got, Err(HeaderError::Timeout));
        // Closed halfway.
        let (mut c, s) = pair();
        c.write_all(b"PROXY TCP4 1.2.3.4").unwrap();
        drop(c);
        let got = futures_lite::future::block_on(read_header(&s, Accept::Required, SHORT));
        assert_eq!(got, Err(HeaderError::Closed));
    }
}
