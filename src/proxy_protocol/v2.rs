//! v2: the 12-byte signature, version/command, family/protocol, a big-endian length, the
//! address block of the family, then TLVs (at most [`V2_MAX_TLVS`] bytes here).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{
    Addresses, Command, DecodeError, Decoded, Header, Tlv, V2_FIXED, V2_MAX_PAYLOAD, V2_MAX_TLVS,
    V2_SIGNATURE, V2_UNIX_ADDRS, Version, same_family, v6,
};

/// The v2 bytes of `h`, TLVs beyond [`V2_MAX_TLVS`] bytes left out.
pub(super) fn encode(h: &Header) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(V2_SIGNATURE);
    out.push(match h.command {
        Command::Local => 0x20,
        Command::Proxy => 0x21,
    });
    let mut body = Vec::with_capacity(48);
    let fam = match h.addresses {
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
    for t in &h.tlvs {
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

/// Decodes a buffer that starts with [`V2_SIGNATURE`].
pub(super) fn decode(buf: &[u8]) -> Result<Decoded, DecodeError> {
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
pub(super) fn parse_tlvs(mut b: &[u8]) -> Result<Vec<Tlv>, DecodeError> {
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
