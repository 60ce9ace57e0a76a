//! The SNI peek: reads the server name from the first bytes of a TCP connection.
//!
//! This module owns one pure function, [`parse_client_hello`], over the first bytes the connection
//! code read (and keeps, to replay them) from a new socket. It decides whether those bytes are a TLS
//! ClientHello and, if so, which host name it asks for, so the listener can pick a route before the
//! TLS acceptor reads the very same bytes.
//!
//! It must not do I/O, allocate (except the returned host name), panic, or index unchecked: every
//! byte goes through `Records`, a cursor that hands out the handshake stream across TLS records
//! and reports "need more bytes" or "this is not TLS" as values. It decides only once the whole
//! ClientHello is in hand, so a strict prefix of a valid hello is always [`Peek::NeedMore`].
//!
//! ```text
//! record: type 22 | version 3.x | len ─┐   (the ClientHello may span several records)
//! handshake: type 1 | len24 | legacy_version | random[32] | session_id<..32> | cipher_suites<2..>
//!            | compression_methods<1..> | extensions<..>  ── extension 0 (server_name) ── host_name
//! ```

/// The bytes the caller peeks at most. A ClientHello that is still incomplete at this size is
/// treated as having no usable server name ([`Peek::NoSni`]).
///
/// One full TLS record (16 KiB of payload plus its 5-byte header): real ClientHellos, including
/// post-quantum key shares (about 1.3 KiB) and large resumption tickets, fit in one record, and a
/// hello fragmented into tiny records still fits as long as it is under about 2.7 KiB.
pub const MAX_CLIENT_HELLO: usize = 16 * 1024 + 5;

/// What the peeked bytes say about the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// A plausible ClientHello that is not complete yet: peek again after more bytes arrive.
    NeedMore,
    /// A complete ClientHello with this server name (ASCII, lower-cased).
    Sni(String),
    /// A complete ClientHello without a usable server name (absent, not a host name, or invalid).
    NoSni,
    /// Not a TLS handshake (SSH banner, HTTP, SSLv2-compatible hello, malformed records, ...).
    NotTls,
}

/// Classifies the peeked bytes `buf`; only the first [`MAX_CLIENT_HELLO`] bytes are looked at.
pub fn parse_client_hello(buf: &[u8]) -> Peek {
    let bounded = buf.get(..MAX_CLIENT_HELLO).unwrap_or(buf);
    let mut name = [0u8; MAX_NAME];
    match client_hello(&mut Records::new(bounded), &mut name) {
        Ok(Some(len)) => match name.get(..len) {
            Some(host) => Peek::Sni(
                host.iter()
                    .map(|b| char::from(b.to_ascii_lowercase()))
                    .collect(),
            ),
            None => Peek::NoSni,
        },
        Ok(None) => Peek::NoSni,
        Err(Stop::NeedMore) if bounded.len() >= MAX_CLIENT_HELLO => Peek::NoSni,
        Err(Stop::NeedMore) => Peek::NeedMore,
        Err(Stop::NotTls) => Peek::NotTls,
    }
}

/// The longest host name accepted in a server_name extension.
const MAX_NAME: usize = 255;
/// TLS content type of handshake records.
const CONTENT_HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// The largest plaintext record payload (RFC 8446 §5.1).
const MAX_RECORD: usize = 1 << 14;
/// The largest handshake message a TLS stack accepts (rustls: 64 KiB - 1); anything larger is not
/// a ClientHello a server would answer.
const MAX_HANDSHAKE: u32 = 0xffff;
/// Extension number of server_name (RFC 6066 §3).
const EXT_SERVER_NAME: u16 = 0;
/// server_name entry type of a DNS host name.
const NAME_TYPE_HOST: u8 = 0;

/// Why parsing stopped before reaching a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The bytes so far are a valid beginning; more are needed.
    NeedMore,
    /// The bytes are not a (well-formed) TLS handshake.
    NotTls,
}

/// A cursor over the handshake byte stream carried by consecutive handshake records.
struct Records<'a> {
    /// All peeked bytes.
    buf: &'a [u8],
    /// Index of the next unread byte in `buf`.
    pos: usize,
    /// Payload bytes left in the current record.
    left_in_record: usize,
}

impl<'a> Records<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Records {
            buf,
            pos: 0,
            left_in_record: 0,
        }
    }

    /// Enters the next record when the current one is used up.
    fn fill(&mut self) -> Result<(), Stop> {
        if self.left_in_record > 0 {
            return Ok(());
        }
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        // Judge each header byte as soon as it is there, so a short non-TLS banner is NotTls at once.
        match rest.first() {
            None => return Err(Stop::NeedMore),
            Some(&CONTENT_HANDSHAKE) => {}
            Some(_) => return Err(Stop::NotTls),
        }
        match rest.get(1) {
            None => return Err(Stop::NeedMore),
            Some(3) => {}
            Some(_) => return Err(Stop::NotTls),
        }
        let (Some(&hi), Some(&lo)) = (rest.get(3), rest.get(4)) else {
            return Err(Stop::NeedMore);
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len == 0 || len > MAX_RECORD {
            return Err(Stop::NotTls);
        }
        self.pos += 5;
        self.left_in_record = len;
        Ok(())
    }

    /// Reads one byte of the handshake stream.
    fn byte(&mut self) -> Result<u8, Stop> {
        self.fill()?;
        let b = *self.buf.get(self.pos).ok_or(Stop::NeedMore)?;
        self.pos += 1;
        self.left_in_record -= 1;
        Ok(b)
    }

    /// Skips `n` bytes of the handshake stream, a record's worth at a time.
    fn skip(&mut self, mut n: usize) -> Result<(), Stop> {
        while n > 0 {
            self.fill()?;
            let avail = self.buf.len().saturating_sub(self.pos);
            let step = n.min(self.left_in_record);
            if avail < step {
                return Err(Stop::NeedMore);
            }
            self.pos += step;
            self.left_in_record -= step;
            n -= step;
        }
        Ok(())
    }
}

/// A length-limited view of the handshake stream: a read past `left` means malformed input.
struct Body<'r, 'a> {
    records: &'r mut Records<'a>,
    left: usize,
}

impl Body<'_, '_> {
    fn take(&mut self, n: usize) -> Result<(), Stop> {
        self.left = self.left.checked_sub(n).ok_or(Stop::NotTls)?;
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, Stop> {
        self.take(1)?;
        self.records.byte()
    }

    fn u16(&mut self) -> Result<u16, Stop> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    fn skip(&mut self, n: usize) -> Result<(), Stop> {
        self.take(n)?;
        self.records.skip(n)
    }

    /// Reads a length prefix of `width` bytes and checks it fits in what is left.
    fn len(&mut self, width: u8) -> Result<usize, Stop> {
        let len = match width {
            1 => usize::from(self.u8()?),
            _ => usize::from(self.u16()?),
        };
        if len > self.left {
            return Err(Stop::NotTls);
        }
        Ok(len)
    }
}

/// Walks a complete ClientHello; on success returns the length of the host name copied into
/// `name`, or `None` when the hello carries no usable host name.
fn client_hello(
    records: &mut Records<'_>,
    name: &mut [u8; MAX_NAME],
) -> Result<Option<usize>, Stop> {
    if records.byte()? != HANDSHAKE_CLIENT_HELLO {
        return Err(Stop::NotTls);
    }
    let len = u32::from_be_bytes([0, records.byte()?, records.byte()?, records.byte()?]);
    if len > MAX_HANDSHAKE {
        return Err(Stop::NotTls);
    }
    let mut body = Body {
        records,
        left: usize::try_from(len).map_err(|_| Stop::NotTls)?,
    };

    // legacy_version: SSL 3.x / TLS 1.x all have major 3.
    if body.u8()? != 3 {
        return Err(Stop::NotTls);
    }
    body.skip(1 + 32)?; // minor version, random
    let session_id = body.len(1)?;
    if session_id > 32 {
        return Err(Stop::NotTls);
    }
    body.skip(session_id)?;
    let suites = body.len(2)?;
    if suites < 2 || suites % 2 != 0 {
        return Err(Stop::NotTls);
    }
    body.skip(suites)?;
    let compression = body.len(1)?;
    if compression < 1 {
        return Err(Stop::NotTls);
    }
    body.skip(compression)?;
    if body.left == 0 {
        return Ok(None); // a hello without extensions
    }
    let extensions = body.len(2)?;
    if extensions != body.left {
        return Err(Stop::NotTls);
    }
    let mut found: Option<Option<usize>> = None;
    while body.left > 0 {
        let kind = body.u16()?;
        let ext_len = body.len(2)?;
        if kind != EXT_SERVER_NAME {
            body.skip(ext_len)?;
            continue;
        }
        if found.is_some() {
            return Err(Stop::NotTls); // a repeated extension is malformed (RFC 8446 §4.2)
        }
        let end = body.left - ext_len;
        found = Some(server_name(&mut body, ext_len, name)?);
        if body.left != end {
            return Err(Stop::NotTls);
        }
    }
    Ok(found.flatten())
}

/// Reads the body of a server_name extension of `ext_len` bytes; returns the length of the first
/// valid host_name copied into `name`.
fn server_name(
    body: &mut Body<'_, '_>,
    ext_len: usize,
    name: &mut [u8; MAX_NAME],
) -> Result<Option<usize>, Stop> {
    if ext_len == 0 {
        return Ok(None); // the empty form a server echoes; treat as no name
    }
    let list = body.len(2)?;
    if list + 2 != ext_len {
        return Err(Stop::NotTls);
    }
    let mut host = None;
    let mut left = list;
    while left > 0 {
        if left < 3 {
            return Err(Stop::NotTls); // an entry header would run past the extension
        }
        let kind = body.u8()?;
        let len = body.len(2)?;
        left = left.checked_sub(3 + len).ok_or(Stop::NotTls)?;
        if kind != NAME_TYPE_HOST || host.is_some() {
            body.skip(len)?;
            continue;
        }
        if len == 0 || len > MAX_NAME {
            body.skip(len)?;
            host = Some(None);
            continue;
        }
        for slot in name.iter_mut().take(len) {
            *slot = body.u8()?;
        }
        host = Some(
            name.get(..len)
                .filter(|n| crate::hostname::is_valid(n))
                .map(<[u8]>::len),
        );
    }
    Ok(host.flatten())
}

#[cfg(test)]
mod tests;
