//! v1: one text line, `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n` or `PROXY UNKNOWN ...\r\n`,
//! at most 107 bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{
    Addresses, Command, DecodeError, Decoded, Header, V1_MAX, V1_SIGNATURE, Version, same_family,
};

/// The v1 line of `h`: the addresses of a `PROXY` header, else `UNKNOWN` (v1 has no `LOCAL`
/// and no TLVs).
pub(super) fn encode(h: &Header) -> Vec<u8> {
    let line = match (h.command, h.addresses) {
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

/// Decodes a buffer that starts with [`V1_SIGNATURE`].
pub(super) fn decode(buf: &[u8]) -> Result<Decoded, DecodeError> {
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
