//! The ClientHello message body, once it is complete: its structure (every length must add up,
//! as a TLS server requires), the server_name extension (RFC 6066 §3) and the ALPN extension
//! (RFC 7301 §3.1).
//!
//! Lenient where rustls is: `legacy_version` is not judged (version negotiation is the TLS
//! stack's), a host_name with one trailing dot is accepted without it, an IP address sent as a
//! host_name counts as no server name, and name types other than host_name end the list.

use std::net::IpAddr;

use super::{Cause, Rejection};

/// Extension number of server_name (RFC 6066 §3).
const EXT_SERVER_NAME: u16 = 0;
/// Extension number of application_layer_protocol_negotiation (RFC 7301).
const EXT_ALPN: u16 = 16;
/// Extension number of supported_versions (RFC 8446 §4.2.1).
const EXT_SUPPORTED_VERSIONS: u16 = 43;
/// TLS 1.3 in supported_versions.
const TLS13: [u8; 2] = [3, 4];
/// server_name entry type of a DNS host name.
const NAME_TYPE_HOST: u8 = 0;

/// What a well-formed ClientHello asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// The server name: ASCII, lower-cased, without a trailing dot. `None` when the hello has
    /// no server_name extension, or names only an IP address or other name types.
    pub sni: Option<String>,
    /// The ALPN protocol_name_list as sent (validated), empty without the extension.
    alpn: Vec<u8>,
    /// supported_versions lists TLS 1.3.
    tls13: bool,
}

impl ClientHello {
    /// The protocols the client offers with ALPN, in its order of preference.
    pub fn alpn(&self) -> Alpn<'_> {
        Alpn(&self.alpn)
    }

    /// Whether the client offers TLS 1.3 (its supported_versions extension lists it; a list
    /// that does not parse counts as no offer, the TLS stack judges it).
    pub fn offers_tls13(&self) -> bool {
        self.tls13
    }
}

/// The protocol names of an ALPN list ([`ClientHello::alpn`]).
#[derive(Debug, Clone)]
pub struct Alpn<'a>(&'a [u8]);

impl<'a> Iterator for Alpn<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let mut c = Cursor(self.0);
        let name = c.vec8().ok()?;
        self.0 = c.0;
        Some(name)
    }
}

/// Parses a complete ClientHello body (after the 4-byte handshake header).
///
/// A structural error wins over an invalid host name, as in a TLS stack that decodes the whole
/// message before it looks at values.
pub(super) fn parse(body: &[u8]) -> Result<ClientHello, Rejection> {
    let reject = |cause| Rejection { cause, name: None };
    let mut c = Cursor(body);
    c.take(2 + 32).map_err(reject)?; // legacy_version, random
    if c.vec8().map_err(reject)?.len() > 32 {
        return Err(reject(Cause::SessionId));
    }
    let suites = c.vec16().map_err(reject)?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(reject(Cause::CipherSuites));
    }
    if c.vec8().map_err(reject)?.is_empty() {
        return Err(reject(Cause::Compression));
    }
    let mut hello = ClientHello::default();
    if c.0.is_empty() {
        return Ok(hello); // a hello without extensions
    }
    let mut exts = Cursor(c.vec16().map_err(reject)?);
    if !c.0.is_empty() {
        return Err(reject(Cause::ExtensionsLength));
    }
    let mut seen = Seen::default();
    let mut bad_name = None;
    while !exts.0.is_empty() {
        let kind = exts.u16().map_err(reject)?;
        let data = exts.vec16().map_err(reject)?;
        if !seen.insert(kind) {
            return Err(reject(Cause::DuplicateExtension));
        }
        match kind {
            EXT_SERVER_NAME => match server_name(data).map_err(reject)? {
                Name::Host(name) => hello.sni = Some(name),
                Name::Invalid(raw) => bad_name = Some(raw),
                Name::None => {}
            },
            EXT_ALPN => hello.alpn = alpn(data).map_err(reject)?.to_vec(),
            EXT_SUPPORTED_VERSIONS => {
                hello.tls13 = Cursor(data)
                    .vec8()
                    .is_ok_and(|list| list.chunks_exact(2).any(|v| v == TLS13));
            }
            _ => {}
        }
    }
    match bad_name {
        Some(raw) => Err(Rejection {
            cause: Cause::InvalidHostName,
            name: Some(raw.escape_ascii().to_string()),
        }),
        None => Ok(hello),
    }
}

/// What a server_name extension names.
enum Name<'a> {
    /// A valid DNS host name (normalised).
    Host(String),
    /// A host_name that is not a valid DNS name (as sent).
    Invalid(&'a [u8]),
    /// No host name (an IP address, or only other name types).
    None,
}

fn server_name(data: &[u8]) -> Result<Name<'_>, Cause> {
    if data.is_empty() {
        return Err(Cause::EmptyServerName);
    }
    let mut ext = Cursor(data);
    let mut list = Cursor(ext.vec16().map_err(|_| Cause::ServerNameLength)?);
    if !ext.0.is_empty() {
        return Err(Cause::ServerNameLength);
    }
    if list.0.is_empty() {
        return Err(Cause::EmptyNameList);
    }
    let mut found = None;
    while !list.0.is_empty() {
        if list.u8().map_err(|_| Cause::ServerNameLength)? != NAME_TYPE_HOST {
            // The entry's length encoding is the name type's; rustls stops here too.
            break;
        }
        let raw = list.vec16().map_err(|_| Cause::ServerNameLength)?;
        if raw.is_empty() {
            return Err(Cause::EmptyHostName);
        }
        if found.is_some() {
            return Err(Cause::DuplicateHostName);
        }
        found = Some(raw);
    }
    let Some(raw) = found else {
        return Ok(Name::None);
    };
    let name = raw.strip_suffix(b".").unwrap_or(raw);
    if std::str::from_utf8(name).is_ok_and(|s| s.parse::<IpAddr>().is_ok()) {
        return Ok(Name::None);
    }
    if !crate::hostname::is_valid(name) {
        return Ok(Name::Invalid(raw));
    }
    Ok(Name::Host(
        name.iter()
            .map(|b| char::from(b.to_ascii_lowercase()))
            .collect(),
    ))
}

/// Checks an ALPN extension body; returns its protocol_name_list.
fn alpn(data: &[u8]) -> Result<&[u8], Cause> {
    let mut ext = Cursor(data);
    let list = ext.vec16().map_err(|_| Cause::Alpn)?;
    if !ext.0.is_empty() || list.is_empty() {
        return Err(Cause::Alpn);
    }
    let mut names = Cursor(list);
    while !names.0.is_empty() {
        if names.vec8().map_err(|_| Cause::Alpn)?.is_empty() {
            return Err(Cause::Alpn);
        }
    }
    Ok(list)
}

/// Which extension types were seen: one bit each of the 65536 (8 KiB, on the stack).
struct Seen([u64; 1024]);

impl Default for Seen {
    fn default() -> Self {
        Seen([0; 1024])
    }
}

impl Seen {
    /// Marks `kind`; false when it was already marked.
    fn insert(&mut self, kind: u16) -> bool {
        let bit = 1u64 << (kind % 64);
        match self.0.get_mut(usize::from(kind / 64)) {
            Some(word) if *word & bit != 0 => false,
            Some(word) => {
                *word |= bit;
                true
            }
            None => true,
        }
    }
}

/// A cursor over a byte slice; a read past the end is [`Cause::Truncated`].
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Cause> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(Cause::Truncated)?;
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Cause> {
        self.take(1)?.first().copied().ok_or(Cause::Truncated)
    }

    fn u16(&mut self) -> Result<u16, Cause> {
        match self.take(2)? {
            &[a, b] => Ok(u16::from_be_bytes([a, b])),
            _ => Err(Cause::Truncated),
        }
    }

    /// A vector with a 1-byte length prefix.
    fn vec8(&mut self) -> Result<&'a [u8], Cause> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    /// A vector with a 2-byte length prefix.
    fn vec16(&mut self) -> Result<&'a [u8], Cause> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}
