//! The ClientHello reader: what a new connection's first bytes say, read the way a TLS server
//! reads them.
//!
//! The connection code reads a new socket's first bytes and feeds them, as they arrive, to a
//! [`HelloReader`]. It reassembles the handshake stream across TLS records (a ClientHello may
//! span many, down to one byte each), up to the handshake-message bound rustls uses (64 KiB),
//! and once the whole ClientHello is in hand decides:
//!
//! - [`Peek::Hello`]: a well-formed ClientHello, with its server name and ALPN list
//!   ([`ClientHello`]), so the listener can pick a route before rustls reads the same bytes;
//! - [`Peek::Reject`]: TLS, but malformed or with an invalid host name; the [`Rejection`] names
//!   the fatal alert a TLS server sends for it ([`Alert`]);
//! - [`Peek::NotTls`]: the first byte is not the start of a TLS handshake (SSH, HTTP, ...).
//!
//! The bytes fed are kept for replay ([`HelloReader::finish`]): verbatim while they fit in
//! [`MAX_KEPT`]; a longer hello (only a heavily fragmented one gets there) is replayed
//! re-framed into full-size records, the same handshake bytes a TLS stack reads. What a
//! reader holds is bounded by [`MAX_BUFFERED`] and reported by [`HelloReader::buffered`].
//!
//! Pure and total: no I/O, no panics, no unchecked indexing, linear in the bytes fed (each
//! byte is looked at once; the complete message is parsed once). A verdict never changes as
//! more bytes arrive, so a strict prefix of a valid hello is always [`Peek::NeedMore`].
//!
//! ```text
//! record: type 22 | version 3.x | len (1..=2^14) ─┐   (repeated: the hello may span records)
//! handshake: type 1 | len24 (<= 0xffff) | legacy_version | random[32] | session_id<0..32>
//!            | cipher_suites<2..> | compression_methods<1..> | extensions<0..>
//!            ── 0 server_name: list<1..> of (type, name<1..>) ── 16 ALPN: list<2..> of name<1..>
//! ```

mod hello;
#[cfg(test)]
mod tests;

pub use hello::{Alpn, ClientHello};

/// The largest ClientHello body accepted, as rustls (`0xffff`; TLS allows 2^24).
pub const MAX_HANDSHAKE: usize = 0xffff;

/// The largest record payload a client may send (RFC 8446 §5.1).
pub const MAX_RECORD: usize = 1 << 14;

/// The bytes kept verbatim for replay: a maximal hello in full-size records plus a read's worth
/// of what follows it. Beyond this (a large hello cut into small records) the replay is
/// re-framed.
pub const MAX_KEPT: usize = 4 + MAX_HANDSHAKE + 5 * 5 + 4096;

/// The most bytes one reader holds at once (the verbatim copy and the reassembled handshake
/// message), as long as no single feed is longer than [`MAX_KEPT`] and nothing is fed after
/// the verdict (what the connection's read loop does).
pub const MAX_BUFFERED: usize = MAX_KEPT + 4 + MAX_HANDSHAKE;

/// TLS content type of handshake records.
const CONTENT_HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
const HANDSHAKE_CLIENT_HELLO: u8 = 1;

/// What the bytes read so far say about the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Peek {
    /// A plausible beginning of a ClientHello: read more.
    NeedMore,
    /// A complete, well-formed ClientHello.
    Hello(ClientHello),
    /// TLS, but a ClientHello a TLS server rejects (with the alert the rejection names).
    Reject(Rejection),
    /// Not a TLS handshake: the first byte is not a handshake record's.
    NotTls,
}

/// A fatal TLS alert the reader's rejections call for (RFC 8446 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Alert {
    /// `unexpected_message` (10): a record or message that has no place here.
    UnexpectedMessage,
    /// `record_overflow` (22): a record longer than 2^14 bytes.
    RecordOverflow,
    /// `illegal_parameter` (47): a well-formed field with a value that is not allowed.
    IllegalParameter,
    /// `decode_error` (50): a message that cannot be parsed.
    DecodeError,
    /// `unrecognized_name` (112, RFC 6066): no route for the server name.
    UnrecognizedName,
}

impl Alert {
    /// The alert description code.
    pub fn code(self) -> u8 {
        match self {
            Alert::UnexpectedMessage => 10,
            Alert::RecordOverflow => 22,
            Alert::IllegalParameter => 47,
            Alert::DecodeError => 50,
            Alert::UnrecognizedName => 112,
        }
    }

    /// The alert's name as the RFCs write it (from `alert_name`, the one table of names).
    pub fn as_str(self) -> &'static str {
        alert_name(self.code()).unwrap_or("unknown")
    }

    /// The plaintext alert record (level fatal, record version TLS 1.2) a server sends
    /// before it closes.
    pub fn record(self) -> [u8; 7] {
        [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, self.code()]
    }
}

/// Every TLS alert description with its name as the RFCs write it (RFC 8446 §6, RFC 5246
/// §7.2, RFC 6066, RFC 7301, the ECH draft): the one table of names, for the alerts this
/// reader sends ([`Alert::as_str`]) and those a handshake receives (the access line).
const ALERT_NAMES: [(u8, &str); 29] = [
    (0, "close_notify"),
    (10, "unexpected_message"),
    (20, "bad_record_mac"),
    (22, "record_overflow"),
    (40, "handshake_failure"),
    (42, "bad_certificate"),
    (43, "unsupported_certificate"),
    (44, "certificate_revoked"),
    (45, "certificate_expired"),
    (46, "certificate_unknown"),
    (47, "illegal_parameter"),
    (48, "unknown_ca"),
    (49, "access_denied"),
    (50, "decode_error"),
    (51, "decrypt_error"),
    (70, "protocol_version"),
    (71, "insufficient_security"),
    (80, "internal_error"),
    (86, "inappropriate_fallback"),
    (90, "user_canceled"),
    (100, "no_renegotiation"),
    (109, "missing_extension"),
    (110, "unsupported_extension"),
    (112, "unrecognized_name"),
    (113, "bad_certificate_status_response"),
    (115, "unknown_psk_identity"),
    (116, "certificate_required"),
    (120, "no_application_protocol"),
    (121, "ech_required"),
];

/// The name of alert description `code` (`bad_certificate` for 42), `None` for a code no
/// RFC names.
pub(crate) fn alert_name(code: u8) -> Option<&'static str> {
    ALERT_NAMES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, name)| *name)
}

/// Why a ClientHello is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// An SSL 2.0-format ClientHello (RFC 6101 Appendix E), which no TLS 1.2+ server reads.
    SslV2Hello,
    /// A record whose version is not 3.x.
    RecordVersion,
    /// A zero-length handshake record (RFC 8446 §5.1).
    EmptyRecord,
    /// A record longer than 2^14 bytes.
    RecordOverflow,
    /// A record of another content type inside the ClientHello.
    InterleavedRecord,
    /// A record of an unknown content type.
    UnknownRecordType,
    /// The first handshake message is not a ClientHello.
    NotClientHello,
    /// A ClientHello longer than [`MAX_HANDSHAKE`].
    TooLarge,
    /// A field runs past the end of the message.
    Truncated,
    /// A session id longer than 32 bytes.
    SessionId,
    /// An empty or odd-length cipher_suites list.
    CipherSuites,
    /// An empty compression_methods list.
    Compression,
    /// The extensions block does not end where the message ends.
    ExtensionsLength,
    /// An extension type appears twice.
    DuplicateExtension,
    /// A server_name extension without a body.
    EmptyServerName,
    /// A server_name extension with an empty name list.
    EmptyNameList,
    /// A host_name entry of length zero.
    EmptyHostName,
    /// Two host_name entries in one list (RFC 6066 §3).
    DuplicateHostName,
    /// The server_name list's length does not match its extension.
    ServerNameLength,
    /// A malformed ALPN extension (empty list or name, lengths that do not add up).
    Alpn,
    /// A host_name that is not a valid DNS name (NUL, control or non-ASCII bytes, ...).
    InvalidHostName,
}

impl Cause {
    /// The alert a TLS server sends for this.
    pub fn alert(self) -> Alert {
        match self {
            Cause::RecordOverflow => Alert::RecordOverflow,
            Cause::InterleavedRecord | Cause::NotClientHello => Alert::UnexpectedMessage,
            Cause::InvalidHostName => Alert::IllegalParameter,
            _ => Alert::DecodeError,
        }
    }

    /// True when the hello is well-formed but its host name is invalid (`tls_bad_sni`), false
    /// for a malformed hello (`tls_malformed_hello`).
    pub fn is_bad_name(self) -> bool {
        self == Cause::InvalidHostName
    }

    /// What went wrong, in words, for the access log.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::SslV2Hello => "SSLv2-format ClientHello",
            Cause::RecordVersion => "record version is not 3.x",
            Cause::EmptyRecord => "empty handshake record",
            Cause::RecordOverflow => "record longer than 2^14 bytes",
            Cause::InterleavedRecord => "non-handshake record inside the ClientHello",
            Cause::UnknownRecordType => "unknown record content type",
            Cause::NotClientHello => "first handshake message is not a ClientHello",
            Cause::TooLarge => "ClientHello longer than 64 KiB",
            Cause::Truncated => "a field runs past the end of the ClientHello",
            Cause::SessionId => "session id longer than 32 bytes",
            Cause::CipherSuites => "empty or odd-length cipher suite list",
            Cause::Compression => "empty compression method list",
            Cause::ExtensionsLength => "extensions length does not match the message",
            Cause::DuplicateExtension => "duplicate extension",
            Cause::EmptyServerName => "empty server_name extension",
            Cause::EmptyNameList => "empty server_name list",
            Cause::EmptyHostName => "empty host_name",
            Cause::DuplicateHostName => "two host_names in server_name",
            Cause::ServerNameLength => "server_name lengths do not add up",
            Cause::Alpn => "malformed ALPN extension",
            Cause::InvalidHostName => "host_name is not a valid DNS name",
        }
    }
}

/// A rejected ClientHello: why, and (for an invalid host name) the name, escaped for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// What is wrong.
    pub cause: Cause,
    /// The offending host_name, escaped (`\x00`, `\xc3`, ...), when the cause is the name.
    pub name: Option<String>,
}

impl Rejection {
    fn of(cause: Cause) -> Self {
        Rejection { cause, name: None }
    }

    /// The alert to send.
    pub fn alert(&self) -> Alert {
        self.cause.alert()
    }
}

/// Classifies `buf` as if it were all a client sent so far (one-shot [`HelloReader`]).
pub fn parse_client_hello(buf: &[u8]) -> Peek {
    let mut reader = HelloReader::new();
    reader.feed(buf);
    reader.finish().0
}

/// Where the reader is in the record layer.
#[derive(Debug, Clone, Copy)]
enum Layer {
    /// Reading a record header; `len` of its 5 bytes are in `header`.
    Header { len: usize },
    /// Inside a record's payload, `left` bytes to go; its payload starts at `hs[start]`.
    Payload { left: usize, start: usize },
}

/// Reads a ClientHello from bytes fed as they arrive; see the module docs.
#[derive(Debug)]
pub struct HelloReader {
    /// Every byte fed, while `kept` (and at most about [`MAX_KEPT`]).
    raw: Vec<u8>,
    /// False once `raw` outgrew [`MAX_KEPT`] and was dropped: replay re-frames `hs`.
    kept: bool,
    /// The handshake stream so far (record payloads joined), at most the message.
    hs: Vec<u8>,
    /// The current (or last) record header.
    header: [u8; 5],
    layer: Layer,
    /// Bytes fed after the verdict was reached (needed only when `raw` was dropped).
    tail: Vec<u8>,
    verdict: Peek,
}

impl Default for HelloReader {
    fn default() -> Self {
        Self::new()
    }
}

impl HelloReader {
    /// A reader that has seen nothing.
    pub fn new() -> Self {
        HelloReader {
            raw: Vec::new(),
            kept: true,
            hs: Vec::new(),
            header: [0; 5],
            layer: Layer::Header { len: 0 },
            tail: Vec::new(),
            verdict: Peek::NeedMore,
        }
    }

    /// Takes the next bytes the client sent; true once the verdict is reached (bytes fed
    /// after that are only kept for replay).
    pub fn feed(&mut self, input: &[u8]) -> bool {
        let decided = !matches!(self.verdict, Peek::NeedMore);
        if self.kept && !decided && self.raw.len() + input.len() > MAX_KEPT {
            self.kept = false;
            self.raw = Vec::new();
        }
        if self.kept {
            self.raw.extend_from_slice(input);
        }
        if decided {
            if !self.kept {
                self.tail.extend_from_slice(input);
            }
            return true;
        }
        let mut rest = input;
        while !rest.is_empty() {
            match self.step(rest) {
                (used, None) => rest = rest.get(used..).unwrap_or_default(),
                (used, Some(verdict)) => {
                    self.verdict = verdict;
                    if !self.kept {
                        self.tail
                            .extend_from_slice(rest.get(used..).unwrap_or_default());
                    }
                    return true;
                }
            }
        }
        false
    }

    /// The verdict so far ([`Peek::NeedMore`] until one is reached).
    pub fn verdict(&self) -> &Peek {
        &self.verdict
    }

    /// The bytes held now (what [`MAX_BUFFERED`] bounds).
    pub fn buffered(&self) -> usize {
        self.raw.len() + self.hs.len() + self.tail.len()
    }

    /// [`HelloReader::finish`] for a client that closed (EOF) before the verdict: TLS bytes
    /// that stop short of a whole ClientHello are a [`Cause::Truncated`] rejection, answered
    /// with `decode_error` as OpenSSL does; nothing fed stays [`Peek::NeedMore`] (a plain
    /// close).
    pub fn finish_at_eof(mut self) -> (Peek, Vec<u8>) {
        if self.verdict == Peek::NeedMore && self.buffered() > 0 {
            self.verdict = Peek::Reject(Rejection::of(Cause::Truncated));
        }
        self.finish()
    }

    /// The verdict and every byte fed, for replay: verbatim, or (for a hello that outgrew
    /// [`MAX_KEPT`]) the same handshake bytes in full-size records followed by the rest.
    pub fn finish(self) -> (Peek, Vec<u8>) {
        if self.kept {
            return (self.verdict, self.raw);
        }
        let (done, open) = match self.layer {
            Layer::Header { len } => (self.hs.as_slice(), self.header.get(..len)),
            Layer::Payload { start, .. } => (
                self.hs.get(..start).unwrap_or_default(),
                Some(self.header.as_slice()),
            ),
        };
        let mut out = Vec::with_capacity(self.buffered() + 5 * (done.len() / MAX_RECORD + 2));
        let version = [self.header[1], self.header[2]];
        for piece in done.chunks(MAX_RECORD) {
            out.extend_from_slice(&[CONTENT_HANDSHAKE, version[0], version[1]]);
            out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
            out.extend_from_slice(piece);
        }
        if let (Some(open), Layer::Payload { start, .. }) = (open, self.layer) {
            out.extend_from_slice(open);
            out.extend_from_slice(self.hs.get(start..).unwrap_or_default());
        } else if let Some(open) = open {
            out.extend_from_slice(open);
        }
        out.extend_from_slice(&self.tail);
        (self.verdict, out)
    }

    /// Consumes a prefix of `input` (at least one byte); returns how many bytes it used and
    /// the verdict if that prefix reached one.
    fn step(&mut self, input: &[u8]) -> (usize, Option<Peek>) {
        match self.layer {
            Layer::Header { len } => {
                let Some(&b) = input.first() else {
                    return (0, None);
                };
                if let Some(slot) = self.header.get_mut(len) {
                    *slot = b;
                }
                let len = len + 1;
                self.layer = Layer::Header { len };
                (1, self.check_header(len))
            }
            Layer::Payload { left, start } => {
                let need = match message_len(&self.hs) {
                    Some(body) => 4 + body - self.hs.len(),
                    None => 4 - self.hs.len(),
                };
                let n = left.min(need).min(input.len());
                self.hs
                    .extend_from_slice(input.get(..n).unwrap_or_default());
                let left = left - n;
                self.layer = match left {
                    0 => Layer::Header { len: 0 },
                    _ => Layer::Payload { left, start },
                };
                (n, self.check_message())
            }
        }
    }

    /// Judges the record header as each byte arrives (so a non-TLS banner is known at once).
    fn check_header(&mut self, len: usize) -> Option<Peek> {
        let first = self.hs.is_empty();
        let [kind, major, _, hi, lo] = self.header;
        if first && kind & 0x80 != 0 {
            // SSL 2.0 record: 2-byte length with the top bit set, then msg type 1 (CLIENT-HELLO).
            return match len {
                3 if self.header[2] == HANDSHAKE_CLIENT_HELLO => {
                    Some(Peek::Reject(Rejection::of(Cause::SslV2Hello)))
                }
                3 => Some(Peek::NotTls),
                _ => None,
            };
        }
        match len {
            1 if kind == CONTENT_HANDSHAKE => None,
            1 if first => Some(Peek::NotTls),
            1 if matches!(kind, 20 | 21 | 23 | 24) => {
                Some(Peek::Reject(Rejection::of(Cause::InterleavedRecord)))
            }
            1 => Some(Peek::Reject(Rejection::of(Cause::UnknownRecordType))),
            2 if major != 3 => Some(Peek::Reject(Rejection::of(Cause::RecordVersion))),
            5 => {
                let n = usize::from(u16::from_be_bytes([hi, lo]));
                if n == 0 {
                    return Some(Peek::Reject(Rejection::of(Cause::EmptyRecord)));
                }
                if n > MAX_RECORD {
                    return Some(Peek::Reject(Rejection::of(Cause::RecordOverflow)));
                }
                self.layer = Layer::Payload {
                    left: n,
                    start: self.hs.len(),
                };
                None
            }
            _ => None,
        }
    }

    /// Judges the handshake stream: its header, then the whole message once it is complete.
    fn check_message(&self) -> Option<Peek> {
        if self
            .hs
            .first()
            .is_some_and(|&t| t != HANDSHAKE_CLIENT_HELLO)
        {
            return Some(Peek::Reject(Rejection::of(Cause::NotClientHello)));
        }
        let body = message_len(&self.hs)?;
        if body > MAX_HANDSHAKE {
            return Some(Peek::Reject(Rejection::of(Cause::TooLarge)));
        }
        let message = self.hs.get(4..4 + body)?;
        Some(match hello::parse(message) {
            Ok(hello) => Peek::Hello(hello),
            Err(rejection) => Peek::Reject(rejection),
        })
    }
}

/// The body length of the handshake message at the start of `hs`, once its header is in.
fn message_len(hs: &[u8]) -> Option<usize> {
    match hs.get(..4)? {
        &[_, a, b, c] => Some(usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c)),
        _ => None,
    }
}
