//! PROXY protocol v1 and v2 (HAProxy's `proxy-protocol.txt`): a pure, bounded codec.
//!
//! ```text
//! v1: "PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\r\n"            (≤ 107 bytes, one line)
//! v2: \r\n\r\n\0\r\nQUIT\n | ver·cmd | fam·proto | len (BE u16) | addresses | TLVs
//!     (12-byte signature)                                         (≤ 4 KiB of TLVs here)
//! ```
//!
//! [`decode`] looks at the first bytes of a connection and answers whether they are no PROXY
//! header at all, the beginning of one (with how many more bytes may be looked at without
//! passing its end), or a whole header and its length. Its promise, which the reader in
//! `net/` relies on to consume the header and nothing after it: while it answers
//! [`Decoded::Partial`], every byte given belongs to the header. [`Header::encode`] writes
//! v1 or v2; decoding what it writes gives the same header back.
//!
//! Owns: the wire formats, the size bounds, TLV framing. Must not: touch sockets or clocks
//! (the caller reads and keeps time), allocate more than the bounds allow, or panic.

mod v1;
mod v2;

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The v1 signature: `PROXY ` (with the space).
pub const V1_SIGNATURE: &[u8; 6] = b"PROXY ";
/// The v2 signature.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 header, CRLF included (the spec's bound).
pub const V1_MAX: usize = 107;
/// The v2 fixed part: signature, version/command, family/protocol, length.
pub const V2_FIXED: usize = 16;
/// Most TLV bytes accepted in (and written to) a v2 header.
pub const V2_MAX_TLVS: usize = 4096;
/// The v2 address block of `AF_UNIX` (the largest family).
const V2_UNIX_ADDRS: usize = 216;
/// Largest v2 length field accepted: the largest address block plus the TLV bound.
pub const V2_MAX_PAYLOAD: usize = V2_UNIX_ADDRS + V2_MAX_TLVS;
/// Longest header of either version.
pub const MAX_HEADER: usize = V2_FIXED + V2_MAX_PAYLOAD;

/// TLV types of v2 (the ones tcpmap writes or names).
pub mod tlv {
    /// The negotiated application protocol (ALPN), as bytes.
    pub const ALPN: u8 = 0x01;
    /// The host name the client asked for (TLS SNI), UTF-8.
    pub const AUTHORITY: u8 = 0x02;
    /// CRC32c of the header (not verified by tcpmap).
    pub const CRC32C: u8 = 0x03;
    /// Padding, ignored.
    pub const NOOP: u8 = 0x04;
    /// An opaque connection id.
    pub const UNIQUE_ID: u8 = 0x05;
    /// TLS facts: `client` flags (u8), `verify` (u32 BE), then sub-TLVs.
    pub const SSL: u8 = 0x20;
    /// Sub-TLV of [`SSL`]: the TLS version, e.g. `TLSv1.3`.
    pub const SSL_VERSION: u8 = 0x21;
    /// Sub-TLV of [`SSL`]: the client certificate's common name.
    pub const SSL_CN: u8 = 0x22;
    /// Sub-TLV of [`SSL`]: the cipher suite name.
    pub const SSL_CIPHER: u8 = 0x23;
    /// `client` flag of [`SSL`]: the client connected over TLS.
    pub const CLIENT_SSL: u8 = 0x01;
    /// `client` flag of [`SSL`]: a client certificate was presented on this connection.
    pub const CLIENT_CERT_CONN: u8 = 0x02;
    /// `client` flag of [`SSL`]: a client certificate was presented in this session.
    pub const CLIENT_CERT_SESS: u8 = 0x04;
}

/// Which protocol version a header used (or is to be written in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Version {
    /// The text line.
    V1,
    /// The binary form with TLVs.
    V2,
}

impl Version {
    /// `v1` or `v2`, as in the config and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

/// How a listener takes PROXY protocol headers (`use_proxy_proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Accept {
    /// No header is read: the first bytes belong to the client's protocol.
    #[default]
    Off,
    /// Every connection must start with a header (v1 or v2).
    Required,
    /// A header is used when one comes; otherwise the bytes go on as they are.
    Optional,
}

impl Accept {
    /// `off`, `required` or `optional`, as `check` and `/config` show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Accept::Off => "off",
            Accept::Required => "required",
            Accept::Optional => "optional",
        }
    }
}

/// The command of a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// The connection was made by the sender itself (a health check): use the real peer.
    Local,
    /// The connection is relayed for the client named in the addresses.
    Proxy,
}

/// The addresses a header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Addresses {
    /// None given (v1 `UNKNOWN`, v2 `AF_UNSPEC` or `LOCAL`): the real peer is the client.
    Unspecified,
    /// TCP over IPv4 or IPv6: the client (`source`) and the address it connected to.
    Inet {
        /// The original client.
        source: SocketAddr,
        /// The address the client connected to.
        destination: SocketAddr,
    },
    /// `AF_UNIX` addresses (v2 only): no IP client, the real peer is used.
    Unix,
}

/// One v2 TLV as received (type and raw value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    /// The type byte (see [`tlv`]).
    pub kind: u8,
    /// The value bytes (at most [`V2_MAX_TLVS`] in all).
    pub value: Vec<u8>,
}

/// A decoded (or to-be-encoded) PROXY protocol header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// v1 or v2.
    pub version: Version,
    /// `LOCAL` or `PROXY` (v1 is always `PROXY`).
    pub command: Command,
    /// The addresses (ignored for `LOCAL`).
    pub addresses: Addresses,
    /// v2 TLVs in wire order (always empty for v1 and for a received `LOCAL`).
    pub tlvs: Vec<Tlv>,
}

impl Header {
    /// A `PROXY` header for a TCP connection from `source` to `destination`.
    pub fn proxy(version: Version, source: SocketAddr, destination: SocketAddr) -> Header {
        Header {
            version,
            command: Command::Proxy,
            addresses: Addresses::Inet {
                source,
                destination,
            },
            tlvs: Vec::new(),
        }
    }

    /// The client the header speaks for: the source of a `PROXY` header with IP addresses;
    /// `None` for `LOCAL`, `UNKNOWN`, `AF_UNSPEC` and `AF_UNIX` (the real peer is the client).
    pub fn client(&self) -> Option<SocketAddr> {
        match (self.command, self.addresses) {
            (Command::Proxy, Addresses::Inet { source, .. }) => Some(source),
            _ => None,
        }
    }

    /// The address the client connected to, when the header gives one.
    pub fn destination(&self) -> Option<SocketAddr> {
        match (self.command, self.addresses) {
            (Command::Proxy, Addresses::Inet { destination, .. }) => Some(destination),
            _ => None,
        }
    }

    /// The value of the first TLV of type `kind`.
    pub fn tlv(&self, kind: u8) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|t| t.kind == kind)
            .map(|t| t.value.as_slice())
    }

    /// `PP2_TYPE_AUTHORITY` as text, when present and UTF-8.
    pub fn authority(&self) -> Option<&str> {
        self.tlv(tlv::AUTHORITY)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The sub-TLVs of `PP2_TYPE_SSL`, with its `client` flags and `verify` result.
    pub fn ssl(&self) -> Option<Ssl> {
        let v = self.tlv(tlv::SSL)?;
        let client = *v.first()?;
        let verify = u32::from_be_bytes(v.get(1..5)?.try_into().ok()?);
        let subs = v2::parse_tlvs(v.get(5..)?).ok()?;
        Some(Ssl {
            client,
            verify,
            subs,
        })
    }

    /// The header on the wire in its version. v1 cannot carry TLVs (they are left out), nor
    /// `LOCAL` (written as `UNKNOWN`); v2 TLVs beyond [`V2_MAX_TLVS`] bytes are left out.
    pub fn encode(&self) -> Vec<u8> {
        match self.version {
            Version::V1 => v1::encode(self),
            Version::V2 => v2::encode(self),
        }
    }
}

/// The parsed value of a `PP2_TYPE_SSL` TLV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssl {
    /// `PP2_CLIENT_*` flags.
    pub client: u8,
    /// 0 when the client certificate (if any) was verified.
    pub verify: u32,
    /// The sub-TLVs (version, CN, cipher, ...).
    pub subs: Vec<Tlv>,
}

impl Ssl {
    /// A `PP2_TYPE_SSL` TLV for a terminated connection: `version` (e.g. `TLSv1.3`) as the
    /// version sub-TLV, the certificate flags when the client presented one (verified: the
    /// handshake only completes when it is).
    pub fn tlv(version: &str, client_cert: bool) -> Tlv {
        let mut client = tlv::CLIENT_SSL;
        if client_cert {
            client |= tlv::CLIENT_CERT_CONN | tlv::CLIENT_CERT_SESS;
        }
        let mut value = vec![client, 0, 0, 0, 0];
        let v = version.as_bytes();
        let v = v.get(..v.len().min(255)).unwrap_or_default();
        value.push(tlv::SSL_VERSION);
        value.extend_from_slice(&(v.len() as u16).to_be_bytes());
        value.extend_from_slice(v);
        Tlv {
            kind: tlv::SSL,
            value,
        }
    }

    /// The version sub-TLV as text.
    pub fn version(&self) -> Option<&str> {
        self.subs
            .iter()
            .find(|t| t.kind == tlv::SSL_VERSION)
            .and_then(|t| std::str::from_utf8(&t.value).ok())
    }
}

/// Both addresses in one family: when they differ, IPv4 becomes IPv4-mapped IPv6.
fn same_family(s: SocketAddr, d: SocketAddr) -> (SocketAddr, SocketAddr) {
    if s.is_ipv4() == d.is_ipv4() {
        return (s, d);
    }
    (
        SocketAddr::new(IpAddr::V6(v6(s.ip())), s.port()),
        SocketAddr::new(IpAddr::V6(v6(d.ip())), d.port()),
    )
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// What the first bytes of a connection are.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decoded {
    /// They cannot start a PROXY header: the client's protocol begins here.
    NotProxy,
    /// The beginning of a header; every byte given belongs to it. `more` is how many further
    /// bytes may be looked at without passing the header's end (at least 1).
    /// `committed` is false while the bytes are only a prefix of a signature (a client's
    /// own protocol could still begin this way).
    Partial {
        /// True once the whole signature of a version is seen.
        committed: bool,
        /// How many more bytes may be read without passing the header's end.
        more: usize,
    },
    /// A whole header, `len` bytes long; the bytes after it are the client's.
    Complete {
        /// The header.
        header: Header,
        /// Its length on the wire.
        len: usize,
    },
}

/// Why bytes that started like a PROXY header are not a valid one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// A v1 line longer than [`V1_MAX`] bytes.
    V1TooLong,
    /// A v1 line that does not follow the grammar.
    V1Malformed(&'static str),
    /// A v2 length beyond [`V2_MAX_PAYLOAD`] (or TLVs beyond [`V2_MAX_TLVS`]).
    V2TooLong,
    /// A v2 header that does not follow the format.
    V2Malformed(&'static str),
}

impl DecodeError {
    /// A short label for metrics: `too_long` or `malformed`.
    pub fn kind(self) -> &'static str {
        match self {
            DecodeError::V1TooLong | DecodeError::V2TooLong => "too_long",
            DecodeError::V1Malformed(_) | DecodeError::V2Malformed(_) => "malformed",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::V1TooLong => write!(f, "v1 header longer than {V1_MAX} bytes"),
            DecodeError::V1Malformed(why) => write!(f, "malformed v1 header: {why}"),
            DecodeError::V2TooLong => {
                write!(
                    f,
                    "v2 header longer than its bound ({V2_MAX_TLVS} bytes of TLVs)"
                )
            }
            DecodeError::V2Malformed(why) => write!(f, "malformed v2 header: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes the start of `buf`. Total: any bytes give an answer, never a panic.
pub fn decode(buf: &[u8]) -> Result<Decoded, DecodeError> {
    let v1 = prefix_of(buf, V1_SIGNATURE);
    let v2 = prefix_of(buf, V2_SIGNATURE);
    match (v1, v2) {
        (Some(true), _) => v1::decode(buf),
        (_, Some(true)) => v2::decode(buf),
        (Some(false), _) | (_, Some(false)) => Ok(Decoded::Partial {
            committed: false,
            more: V1_MAX.saturating_sub(buf.len()).max(1),
        }),
        (None, None) => Ok(Decoded::NotProxy),
    }
}

/// `Some(true)`: `buf` starts with `sig`; `Some(false)`: `buf` is a strict prefix of it
/// (or empty); `None`: neither.
fn prefix_of(buf: &[u8], sig: &[u8]) -> Option<bool> {
    let n = buf.len().min(sig.len());
    if buf.get(..n) != sig.get(..n) {
        return None;
    }
    Some(buf.len() >= sig.len())
}

#[cfg(test)]
#[path = "proxy_protocol/tests.rs"]
mod tests;
