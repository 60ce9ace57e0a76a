//! The first message of a Postgres connection: a pure, bounded codec for its first 8 bytes.
//!
//! ```text
//! SSLRequest      00 00 00 08 | 04 d2 16 2f        length 8, code 80877103
//! GSSENCRequest   00 00 00 08 | 04 d2 16 30        length 8, code 80877104
//! CancelRequest   00 00 00 10 | 04 d2 16 2e | pid | key     (protocol 3.2: longer keys)
//! StartupMessage  len (BE u32) | 00 03 | minor | name\0value\0 ... \0
//! direct TLS      16 03 0x ...                     a TLS record (PostgreSQL 17 `sslnegotiation=direct`)
//! ```
//!
//! A Postgres client's first message has no type byte: a big-endian length (itself included)
//! then a 32-bit code, which is a protocol version (major 3) for a startup message or one of
//! the special request codes (major 1234). [`classify`] looks at up to [`DECISION_BYTES`] of
//! them and answers what the connection is, that it needs more bytes, or why it is no Postgres
//! client. Its promises, relied on by the connection's preamble stage and checked by the fuzz
//! target: a decision never needs more than [`DECISION_BYTES`]; a decision taken on a prefix
//! is the decision on any longer input; a client that starts with a TLS record (`0x16`) is
//! decided on its first byte.
//!
//! Owns: the wire format of the first message and its bounds. Must not: touch sockets or
//! clocks, allocate, or panic.

use std::fmt;

/// The SSLRequest, whole: the answer is one byte, `S` (go on with TLS) or `N`.
pub const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// The GSSENCRequest, whole: the answer is `G` (go on with GSSAPI) or `N`.
pub const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
/// The SSLRequest's code: 1234 << 16 | 5679.
pub const SSL_CODE: u32 = 80_877_103;
/// The GSSENCRequest's code: 1234 << 16 | 5680.
pub const GSSENC_CODE: u32 = 80_877_104;
/// The CancelRequest's code: 1234 << 16 | 5678.
pub const CANCEL_CODE: u32 = 80_877_102;
/// The server's answer that TLS follows.
pub const ANSWER_TLS: u8 = b'S';
/// The answer that the request is declined (the client falls back).
pub const ANSWER_NO: u8 = b'N';
/// The first byte of a TLS handshake record: a client that starts with TLS directly.
pub const TLS_HANDSHAKE: u8 = 0x16;
/// The most bytes [`classify`] looks at.
pub const DECISION_BYTES: usize = 8;
/// The longest startup message a PostgreSQL server accepts (its `MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_LEN: u32 = 10_000;
/// The shortest message with a code: the length word and the code.
pub const MIN_LEN: u32 = 8;
/// A CancelRequest of protocol 3.0 (a 4-byte key): length, code, process id, key.
pub const CANCEL_LEN: u32 = 16;
/// The longest CancelRequest: protocol 3.2 allows keys of up to 256 bytes.
pub const MAX_CANCEL_LEN: u32 = 12 + 256;

/// What a connection's first bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum First {
    /// Not decided yet: at least this many bytes in all are needed.
    NeedMore(usize),
    /// A TLS record: the client starts TLS without asking (`sslnegotiation=direct`).
    DirectTls,
    /// An SSLRequest: answer `S` and a ClientHello follows, or `N`.
    SslRequest,
    /// A GSSENCRequest: answer `N` and the client sends another first message.
    GssEncRequest,
    /// A CancelRequest of `len` bytes (the process id and key follow the code).
    Cancel {
        /// The message's length, its length word included.
        len: u32,
    },
    /// A startup message of protocol 3.`minor`, `len` bytes long.
    Startup {
        /// The message's length, its length word included.
        len: u32,
        /// The protocol's minor version (0 before PostgreSQL 18, 2 with its new cancel keys).
        minor: u16,
    },
}

/// Why the first bytes are no Postgres client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalid {
    /// The length is outside what a server accepts (under 8 or over 10000 bytes).
    Length,
    /// The code is neither protocol 3 nor a request a server knows.
    Code,
    /// A known request with the wrong length (an SSLRequest that is not 8 bytes long).
    RequestLength,
}

impl Invalid {
    /// The words for the access line.
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::Length => "not a Postgres client: first message length out of range",
            Invalid::Code => "not a Postgres client: unknown protocol or request code",
            Invalid::RequestLength => "not a Postgres client: request with the wrong length",
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Invalid {}

/// What the first bytes of a connection `buf` are (see the module's promises).
///
/// The checks go in byte order, each as soon as its bytes are there, so an impossible prefix
/// is refused at once (an HTTP or SSH client on its first byte) and no check on a later byte
/// can change a decision an earlier byte made.
pub fn classify(buf: &[u8]) -> Result<First, Invalid> {
    let Some(&b0) = buf.first() else {
        return Ok(First::NeedMore(1));
    };
    if b0 == TLS_HANDSHAKE {
        return Ok(First::DirectTls);
    }
    // The length is at most 10000 (0x2710): its first two bytes are 0, the third at most 0x27.
    if b0 != 0 || buf.get(1).is_some_and(|&b| b != 0) {
        return Err(Invalid::Length);
    }
    if buf
        .get(2)
        .is_some_and(|&b| u32::from(b) << 8 > MAX_STARTUP_LEN)
    {
        return Err(Invalid::Length);
    }
    let Some(len) = be32(buf, 0) else {
        return Ok(First::NeedMore(DECISION_BYTES));
    };
    if !(MIN_LEN..=MAX_STARTUP_LEN).contains(&len) {
        return Err(Invalid::Length);
    }
    // The code's major version: 3 (a startup message) or 1234 (a request).
    match (buf.get(4), buf.get(5)) {
        (Some(0), Some(3)) | (Some(0x04), Some(0xd2)) | (Some(0 | 0x04), None) | (None, _) => {}
        _ => return Err(Invalid::Code),
    }
    let Some(code) = be32(buf, 4) else {
        return Ok(First::NeedMore(DECISION_BYTES));
    };
    let request = |first: First, ok: bool| {
        if ok {
            Ok(first)
        } else {
            Err(Invalid::RequestLength)
        }
    };
    match code {
        SSL_CODE => request(First::SslRequest, len == MIN_LEN),
        GSSENC_CODE => request(First::GssEncRequest, len == MIN_LEN),
        CANCEL_CODE => request(
            First::Cancel { len },
            (CANCEL_LEN..=MAX_CANCEL_LEN).contains(&len),
        ),
        _ if code >> 16 == 3 => Ok(First::Startup {
            len,
            minor: (code & 0xffff) as u16,
        }),
        _ => Err(Invalid::Code),
    }
}

/// The big-endian u32 at `at`, when all its bytes are there.
fn be32(buf: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

#[cfg(test)]
#[path = "postgres_tests.rs"]
mod tests;
