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

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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
pub enum Command {
    /// The connection was made by the sender itself (a health check): use the real peer.
    Local,
    /// The connection is relayed for the client named in the addresses.
    Proxy,
}

/// The addresses a header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        let subs = parse_tlvs(v.get(5..)?).ok()?;
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
            Version::V1 => self.encode_v1(),
            Version::V2 => self.encode_v2(),
        }
    }

    fn encode_v1(&self) -> Vec<u8> {
        let line = match (self.command, self.addresses) {
            (
                Command::Proxy,
                Addresses::Inet {
                    source,
                    destination,
                },
            ) => {
                let (s, d) = same_family(source, destination);
                let fam = if s.is_ipv4() { "TCP4" } else { "TCP6" };
                format!(
                    "PROXY {fam} {} {} {} {}\r\n",
                    s.ip(),
                    d.ip(),
                    s.port(),
                    d.port()
                )
            }
            _ => "PROXY UNKNOWN\r\n".to_string(),
        };
        line.into_bytes()
    }

    fn encode_v2(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(V2_SIGNATURE);
        out.push(match self.command {
            Command::Local => 0x20,
            Command::Proxy => 0x21,
        });
        let mut body = Vec::with_capacity(48);
        let fam = match self.addresses {
            Addresses::Unspecified => 0x00,
            Addresses::Inet {
                source,
                destination,
            } => match same_family(source, destination) {
                (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                    body.extend_from_slice(&s.ip().octets());
                    body.extend_from_slice(&d.ip().octets());
                    body.extend_from_slice(&s.port().to_be_bytes());
                    body.extend_from_slice(&d.port().to_be_bytes());
                    0x11
                }
                (s, d) => {
                    body.extend_from_slice(&v6(s.ip()).octets());
                    body.extend_from_slice(&v6(d.ip()).octets());
                    body.extend_from_slice(&s.port().to_be_bytes());
                    body.extend_from_slice(&d.port().to_be_bytes());
                    0x21
                }
            },
            Addresses::Unix => {
                body.resize(V2_UNIX_ADDRS, 0);
                0x31
            }
        };
        out.push(fam);
        let mut tlv_bytes = 0usize;
        for t in &self.tlvs {
            let Ok(len) = u16::try_from(t.value.len()) else {
                continue;
            };
            if tlv_bytes + 3 + t.value.len() > V2_MAX_TLVS {
                continue;
            }
            tlv_bytes += 3 + t.value.len();
            body.push(t.kind);
            body.extend_from_slice(&len.to_be_bytes());
            body.extend_from_slice(&t.value);
        }
        // Bounded above: at most 216 + 4096 bytes.
        let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&body);
        out
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
        (Some(true), _) => decode_v1(buf),
        (_, Some(true)) => decode_v2(buf),
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

fn decode_v1(buf: &[u8]) -> Result<Decoded, DecodeError> {
    let window = buf.get(..buf.len().min(V1_MAX)).unwrap_or_default();
    let lf = window.iter().position(|&b| b == b'\n');
    // The first bad byte decides, so a prefix fails the way the whole line does.
    v1_scan(window.get(..lf.unwrap_or(window.len())).unwrap_or_default())?;
    let Some(lf) = lf else {
        if buf.len() >= V1_MAX {
            return Err(DecodeError::V1TooLong);
        }
        return Ok(Decoded::Partial {
            committed: true,
            more: V1_MAX - buf.len(),
        });
    };
    let line = window.get(..lf).unwrap_or_default();
    let Some(line) = line.strip_suffix(b"\r") else {
        return Err(DecodeError::V1Malformed("line not ended by CRLF"));
    };
    let Ok(text) = std::str::from_utf8(line) else {
        return Err(DecodeError::V1Malformed("not ASCII"));
    };
    let rest = text.get(V1_SIGNATURE.len()..).unwrap_or_default();
    let addresses = v1_addresses(rest)?;
    Ok(Decoded::Complete {
        header: Header {
            version: Version::V1,
            command: Command::Proxy,
            addresses,
            tlvs: Vec::new(),
        },
        len: lf + 1,
    })
}

/// The bytes of a v1 line before its LF: printable ASCII, and a CR only as the last byte.
fn v1_scan(before_lf: &[u8]) -> Result<(), DecodeError> {
    let last = before_lf.len().saturating_sub(1);
    for (i, &b) in before_lf.iter().enumerate() {
        if b == b'\r' {
            if i != last {
                return Err(DecodeError::V1Malformed("CR not followed by LF"));
            }
        } else if !(0x20..0x7f).contains(&b) {
            return Err(DecodeError::V1Malformed("non-printable byte"));
        }
    }
    Ok(())
}

fn v1_addresses(rest: &str) -> Result<Addresses, DecodeError> {
    if rest == "UNKNOWN" || rest.starts_with("UNKNOWN ") {
        // The receiver ignores whatever follows UNKNOWN.
        return Ok(Addresses::Unspecified);
    }
    let mut parts = rest.split(' ');
    let fam = parts.next().unwrap_or_default();
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(DecodeError::V1Malformed(
            "expected `TCP4|TCP6 SRC DST SPORT DPORT` or `UNKNOWN`",
        ));
    };
    let (src, dst): (IpAddr, IpAddr) = match fam {
        "TCP4" => (
            IpAddr::V4(
                src.parse::<Ipv4Addr>()
                    .map_err(|_| bad_v1("source address"))?,
            ),
            IpAddr::V4(
                dst.parse::<Ipv4Addr>()
                    .map_err(|_| bad_v1("destination address"))?,
            ),
        ),
        "TCP6" => (
            IpAddr::V6(
                src.parse::<Ipv6Addr>()
                    .map_err(|_| bad_v1("source address"))?,
            ),
            IpAddr::V6(
                dst.parse::<Ipv6Addr>()
                    .map_err(|_| bad_v1("destination address"))?,
            ),
        ),
        _ => return Err(bad_v1("protocol must be TCP4, TCP6 or UNKNOWN")),
    };
    Ok(Addresses::Inet {
        source: SocketAddr::new(src, v1_port(sport)?),
        destination: SocketAddr::new(dst, v1_port(dport)?),
    })
}

fn bad_v1(what: &'static str) -> DecodeError {
    DecodeError::V1Malformed(what)
}

/// A decimal port 0-65535 without sign or leading zeros.
fn v1_port(s: &str) -> Result<u16, DecodeError> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return Err(bad_v1("port"));
    }
    s.parse().map_err(|_| bad_v1("port"))
}

fn decode_v2(buf: &[u8]) -> Result<Decoded, DecodeError> {
    let Some(fixed) = buf.get(..V2_FIXED) else {
        // Signature seen; validate the bytes present so garbage fails early.
        if let Some(&vc) = buf.get(12) {
            check_ver_cmd(vc)?;
        }
        if let Some(&fp) = buf.get(13) {
            check_fam(fp)?;
        }
        return Ok(Decoded::Partial {
            committed: true,
            more: V2_FIXED - buf.len(),
        });
    };
    let (&vc, &fp, l0, l1) = match fixed {
        [.., vc, fp, l0, l1] => (vc, fp, *l0, *l1),
        _ => return Err(DecodeError::V2Malformed("short header")),
    };
    let command = check_ver_cmd(vc)?;
    let addr_len = check_fam(fp)?;
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    if len > V2_MAX_PAYLOAD {
        return Err(DecodeError::V2TooLong);
    }
    if command == Command::Proxy && len < addr_len {
        return Err(DecodeError::V2Malformed(
            "length shorter than the address block",
        ));
    }
    let total = V2_FIXED + len;
    let Some(payload) = buf.get(V2_FIXED..total) else {
        return Ok(Decoded::Partial {
            committed: true,
            more: total - buf.len(),
        });
    };
    if command == Command::Local {
        // The receiver discards the address block and TLVs of LOCAL.
        return Ok(Decoded::Complete {
            header: Header {
                version: Version::V2,
                command,
                addresses: Addresses::Unspecified,
                tlvs: Vec::new(),
            },
            len: total,
        });
    }
    let (addrs, tlv_bytes) = payload.split_at_checked(addr_len).unwrap_or((payload, &[]));
    if tlv_bytes.len() > V2_MAX_TLVS {
        return Err(DecodeError::V2TooLong);
    }
    let addresses = v2_addresses(fp >> 4, addrs)?;
    let tlvs = parse_tlvs(tlv_bytes)?;
    Ok(Decoded::Complete {
        header: Header {
            version: Version::V2,
            command,
            addresses,
            tlvs,
        },
        len: total,
    })
}

fn check_ver_cmd(vc: u8) -> Result<Command, DecodeError> {
    if vc >> 4 != 2 {
        return Err(DecodeError::V2Malformed("version is not 2"));
    }
    match vc & 0x0f {
        0 => Ok(Command::Local),
        1 => Ok(Command::Proxy),
        _ => Err(DecodeError::V2Malformed("unknown command")),
    }
}

/// The address block length of the family byte (unknown families and protocols are errors).
fn check_fam(fp: u8) -> Result<usize, DecodeError> {
    if fp & 0x0f > 2 {
        return Err(DecodeError::V2Malformed("unknown transport protocol"));
    }
    match fp >> 4 {
        0 => Ok(0),
        1 => Ok(12),
        2 => Ok(36),
        3 => Ok(V2_UNIX_ADDRS),
        _ => Err(DecodeError::V2Malformed("unknown address family")),
    }
}

fn v2_addresses(family: u8, a: &[u8]) -> Result<Addresses, DecodeError> {
    let port = |i: usize| -> Result<u16, DecodeError> {
        a.get(i..i + 2)
            .and_then(|p| p.try_into().ok())
            .map(u16::from_be_bytes)
            .ok_or(DecodeError::V2Malformed("short address block"))
    };
    match family {
        1 => {
            let ip = |i: usize| -> Result<Ipv4Addr, DecodeError> {
                let o: [u8; 4] = a
                    .get(i..i + 4)
                    .and_then(|o| o.try_into().ok())
                    .ok_or(DecodeError::V2Malformed("short address block"))?;
                Ok(Ipv4Addr::from(o))
            };
            Ok(Addresses::Inet {
                source: SocketAddr::new(IpAddr::V4(ip(0)?), port(8)?),
                destination: SocketAddr::new(IpAddr::V4(ip(4)?), port(10)?),
            })
        }
        2 => {
            let ip = |i: usize| -> Result<Ipv6Addr, DecodeError> {
                let o: [u8; 16] = a
                    .get(i..i + 16)
                    .and_then(|o| o.try_into().ok())
                    .ok_or(DecodeError::V2Malformed("short address block"))?;
                Ok(Ipv6Addr::from(o))
            };
            Ok(Addresses::Inet {
                source: SocketAddr::new(IpAddr::V6(ip(0)?), port(32)?),
                destination: SocketAddr::new(IpAddr::V6(ip(16)?), port(34)?),
            })
        }
        3 => Ok(Addresses::Unix),
        _ => Ok(Addresses::Unspecified),
    }
}

/// Splits TLV bytes into TLVs; a TLV running past the end is an error.
fn parse_tlvs(mut b: &[u8]) -> Result<Vec<Tlv>, DecodeError> {
    let mut out = Vec::new();
    while let [kind, l0, l1, rest @ ..] = b {
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let Some((value, after)) = rest.split_at_checked(len) else {
            return Err(DecodeError::V2Malformed("TLV runs past the header"));
        };
        out.push(Tlv {
            kind: *kind,
            value: value.to_vec(),
        });
        b = after;
    }
    if !b.is_empty() {
        return Err(DecodeError::V2Malformed("truncated TLV"));
    }
    Ok(out)
}

#[cfg(test)]
#[path = "proxy_protocol/tests.rs"]
mod tests;
