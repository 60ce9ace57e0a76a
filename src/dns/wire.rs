//! The DNS wire format for A/AAAA lookups: build a query, check and decode a reply.
//!
//! Queries are built with the `dns-protocol` crate. Replies are decoded here, by a small
//! bounded reader, because `dns-protocol`'s reader is not safe on hostile bytes: reading
//! the rcode panics for codes 12–15, following a compression pointer past the end panics
//! (slice index), a pointer cycle loops forever, and one record of a type it does not list
//! fails the whole message. A reply is accepted only when its id, QR bit and question
//! (name, type, class) match the query; addresses are taken only from records of the asked
//! type whose owner is the asked name or the end of its CNAME chain.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dns_protocol::{Flags, Message, Question, ResourceType};

const HEADER_LEN: usize = 12;
const CLASS_IN: u16 = 1;
const TYPE_CNAME: u16 = 5;
const MAX_NAME_LEN: usize = 255;
const MAX_POINTER_JUMPS: usize = 64;
const MAX_CNAME_HOPS: usize = 16;

/// The record type asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RecordType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
}

impl RecordType {
    fn code(self) -> u16 {
        match self {
            RecordType::A => 1,
            RecordType::Aaaa => 28,
        }
    }
}

/// A decoded reply that matched the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Addresses of the asked type and the smallest TTL along the CNAME chain.
    Records(Vec<IpAddr>, u32),
    /// NOERROR without records of the asked type.
    NoData,
    /// NXDOMAIN: the name does not exist.
    NxDomain,
    /// The TC bit: ask again over TCP.
    Truncated,
    /// Any other rcode (SERVFAIL, REFUSED, …): try another nameserver.
    ServerError(u8),
}

/// Why a query could not be built or a datagram is not a usable reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    /// The name cannot be sent (empty label, label over 63 bytes, over 255 bytes, not ASCII).
    #[error("invalid DNS name `{0}`")]
    BadName(String),
    /// The datagram is not an answer to our query (wrong id, not a response, other question).
    #[error("reply does not match the query: {0}")]
    Mismatch(&'static str),
    /// The bytes are not a well-formed DNS message.
    #[error("malformed DNS reply: {0}")]
    Malformed(&'static str),
}

/// Builds a recursive query for `name` (absolute, with or without its trailing dot).
pub(crate) fn encode_query(id: u16, name: &str, rtype: RecordType) -> Result<Vec<u8>, WireError> {
    let name = checked_name(name)?;
    let ty = match rtype {
        RecordType::A => ResourceType::A,
        RecordType::Aaaa => ResourceType::AAAA,
    };
    let mut questions = [Question::new(name, ty, CLASS_IN)];
    let message = Message::new(
        id,
        Flags::standard_query(),
        &mut questions,
        &mut [],
        &mut [],
        &mut [],
    );
    let mut buf = vec![0u8; message.space_needed()];
    let len = message
        .write(&mut buf)
        .map_err(|_| WireError::BadName(name.to_owned()))?;
    buf.truncate(len);
    Ok(buf)
}

/// Checks and decodes `buf` as the reply to query `id` for `name`/`rtype`.
pub(crate) fn decode_reply(
    buf: &[u8],
    id: u16,
    name: &str,
    rtype: RecordType,
) -> Result<Reply, WireError> {
    let header = buf
        .get(..HEADER_LEN)
        .ok_or(WireError::Malformed("shorter than a header"))?;
    // `header` is HEADER_LEN bytes and every `i` below is under it: the 0 never happens.
    let word = |i: usize| match header.get(i..i + 2) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    };
    let flags = word(2);
    if word(0) != id {
        return Err(WireError::Mismatch("id"));
    }
    if flags & 0x8000 == 0 {
        return Err(WireError::Mismatch("not a response"));
    }
    if (flags >> 11) & 0xF != 0 {
        return Err(WireError::Mismatch("opcode"));
    }
    if flags & 0x0200 != 0 {
        return Ok(Reply::Truncated);
    }
    if word(4) != 1 {
        return Err(WireError::Mismatch("question count"));
    }
    let want = name_key(checked_name(name)?);
    let (qname, mut pos) = read_name(buf, HEADER_LEN)?;
    let qtype = read_u16(buf, pos)?;
    let qclass = read_u16(buf, pos + 2)?;
    pos += 4;
    if qname != want || qtype != rtype.code() || qclass != CLASS_IN {
        return Err(WireError::Mismatch("question"));
    }
    match (flags & 0xF) as u8 {
        0 => {}
        3 => return Ok(Reply::NxDomain),
        rcode => return Ok(Reply::ServerError(rcode)),
    }
    let mut records = Vec::new();
    for _ in 0..word(6) {
        let (record, next) = read_record(buf, pos)?;
        records.push(record);
        pos = next;
    }
    Ok(pick_addresses(buf, &records, want, rtype))
}

/// One answer record, with its rdata located in the message.
struct Record {
    owner: Vec<u8>,
    rtype: u16,
    class: u16,
    ttl: u32,
    rdata: std::ops::Range<usize>,
}

fn read_record(buf: &[u8], pos: usize) -> Result<(Record, usize), WireError> {
    let (owner, pos) = read_name(buf, pos)?;
    let rtype = read_u16(buf, pos)?;
    let class = read_u16(buf, pos + 2)?;
    let ttl = u32::from(read_u16(buf, pos + 4)?) << 16 | u32::from(read_u16(buf, pos + 6)?);
    let len = usize::from(read_u16(buf, pos + 8)?);
    let start = pos + 10;
    if buf.len() < start + len {
        return Err(WireError::Malformed("record data past the end"));
    }
    // RFC 2181 §8: a TTL with the top bit set counts as zero.
    let ttl = if ttl > i32::MAX as u32 { 0 } else { ttl };
    Ok((
        Record {
            owner,
            rtype,
            class,
            ttl,
            rdata: start..start + len,
        },
        start + len,
    ))
}

/// Follows the CNAME chain from the asked name, then takes that owner's address records.
fn pick_addresses(buf: &[u8], records: &[Record], asked: Vec<u8>, rtype: RecordType) -> Reply {
    let mut owner = asked;
    let mut ttl = u32::MAX;
    for _ in 0..MAX_CNAME_HOPS {
        let cname = records
            .iter()
            .find(|r| r.rtype == TYPE_CNAME && r.class == CLASS_IN && r.owner == owner);
        let Some(cname) = cname else { break };
        let Ok((target, _)) = read_name(buf, cname.rdata.start) else {
            break;
        };
        ttl = ttl.min(cname.ttl);
        owner = target;
    }
    let mut addrs = Vec::new();
    for r in records
        .iter()
        .filter(|r| r.rtype == rtype.code() && r.class == CLASS_IN && r.owner == owner)
    {
        let Some(data) = buf.get(r.rdata.clone()) else {
            continue;
        };
        let addr = match (rtype, data.len()) {
            (RecordType::A, 4) => <[u8; 4]>::try_from(data)
                .ok()
                .map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            (RecordType::Aaaa, 16) => <[u8; 16]>::try_from(data)
                .ok()
                .map(|b| IpAddr::V6(Ipv6Addr::from(b))),
            _ => None,
        };
        if let Some(addr) = addr {
            ttl = ttl.min(r.ttl);
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    if addrs.is_empty() {
        Reply::NoData
    } else {
        Reply::Records(addrs, ttl)
    }
}

fn read_u16(buf: &[u8], pos: usize) -> Result<u16, WireError> {
    match buf.get(pos..pos + 2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(WireError::Malformed("message ends inside a field")),
    }
}

/// Reads a (possibly compressed) name at `pos`: its comparison key (lower-cased,
/// length-prefixed labels) and the position after the name where it is written.
fn read_name(buf: &[u8], mut pos: usize) -> Result<(Vec<u8>, usize), WireError> {
    let mut key = Vec::new();
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *buf
            .get(pos)
            .ok_or(WireError::Malformed("name past the end"))?;
        match len & 0xC0 {
            0x00 if len == 0 => return Ok((key, end.unwrap_or(pos + 1))),
            0x00 => {
                let label = buf
                    .get(pos + 1..pos + 1 + usize::from(len))
                    .ok_or(WireError::Malformed("label past the end"))?;
                key.push(len);
                key.extend(label.iter().map(u8::to_ascii_lowercase));
                if key.len() + 1 > MAX_NAME_LEN {
                    return Err(WireError::Malformed("name longer than 255 bytes"));
                }
                pos += 1 + usize::from(len);
            }
            0xC0 => {
                let low = *buf
                    .get(pos + 1)
                    .ok_or(WireError::Malformed("pointer past the end"))?;
                let target = usize::from(len & 0x3F) << 8 | usize::from(low);
                jumps += 1;
                if target >= pos || jumps > MAX_POINTER_JUMPS {
                    return Err(WireError::Malformed("compression pointer loop"));
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            _ => return Err(WireError::Malformed("unknown label type")),
        }
    }
}

/// Validates a name for sending and strips its trailing dot.
fn checked_name(name: &str) -> Result<&str, WireError> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if crate::hostname::is_valid(bare.as_bytes()) {
        Ok(bare)
    } else {
        Err(WireError::BadName(name.to_owned()))
    }
}

/// The comparison key of a checked name (same form as `read_name` returns).
fn name_key(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 1);
    for label in name.split('.') {
        key.push(label.len() as u8);
        key.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    key
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
