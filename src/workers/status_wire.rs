//! A worker's status-page numbers on the wire (the `Counts` reply): binary, by place in the
//! generation's [`StatusIndex`](crate::admin::status::index::StatusIndex), no names but those
//! of mappings the index lacks (pure: values in, bytes out, and back).
//!
//! ```text
//! "TMS1" generation fingerprint(8 bytes LE)
//! mappings: n, then per place: 0 | 1 active(zigzag) accepted c→u u→c failures ended[REASONS]
//! extra:    n, then per mapping: name namespace port host active accepted c→u u→c failures
//!           n (label count)*
//! sets:     n, then per set its number of rows; then every row:
//!           4 ip(4) | 6 ip(16), port(2 BE), state(0 healthy 1 ejected 2 unhealthy), active,
//!           failures, 0 | 1 at (check passed) | 2 at (check failed)
//! ```
//!
//! Numbers are LEB128 varints (most counters are small), strings a varint length and UTF-8.
//! The bytes come from another process: [`decode`] is total (an error for anything truncated,
//! malformed or longer than it says, never a panic), and no count makes it reserve more than
//! the bytes left could hold.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::admin::status::MappingTotals;
use crate::admin::status::index::{Counts, Dynamic, REASONS};
use crate::state::endpoints::{EndpointState, LastCheck, Row};
use crate::workers::codec::{self, CodecError, FromWorker, MAX_FRAME, frame_len};

const MAGIC: &[u8; 4] = b"TMS1";

/// The first byte of a frame's binary body (JSON text never starts with it).
const BINARY: u8 = 0;

/// The first byte of a `Kept` reply's binary body (`kept_wire.rs`).
const KEPT: u8 = 1;

/// One frame holding a worker's `reply`: binary for `Counts` and `Kept`, JSON for the others.
pub(crate) fn encode_reply(reply: &FromWorker) -> Result<Vec<u8>, CodecError> {
    let mut frame = match reply {
        FromWorker::Counts(counts) => {
            let mut frame = vec![0, 0, 0, 0, BINARY];
            encode(counts, &mut frame);
            frame
        }
        FromWorker::Kept(kept) => {
            let mut frame = vec![0, 0, 0, 0, KEPT];
            super::kept_wire::encode(kept, &mut frame);
            frame
        }
        FromWorker::KeptFrame(body) => {
            let mut frame = Vec::with_capacity(5 + body.len());
            frame.extend_from_slice(&[0, 0, 0, 0, KEPT]);
            frame.extend_from_slice(body);
            frame
        }
        _ => return codec::encode(reply),
    };
    let body = frame.len() - 4;
    if body > MAX_FRAME {
        return Err(CodecError::TooLong(body));
    }
    let len = u32::try_from(body).map_err(|_| CodecError::TooLong(body))?;
    if let Some(prefix) = frame.get_mut(..4) {
        prefix.copy_from_slice(&len.to_be_bytes());
    }
    Ok(frame)
}

/// The first reply in `buf` (binary or JSON) and the bytes it took, or `None` when `buf` does
/// not yet hold a whole frame. Total, as `codec::decode`.
pub(crate) fn decode_reply(buf: &[u8]) -> Result<Option<(FromWorker, usize)>, CodecError> {
    let Some(len) = frame_len(buf)? else {
        return Ok(None);
    };
    let Some(body) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    match body.split_first() {
        Some((&BINARY, rest)) => {
            let counts = decode(rest).map_err(|e| CodecError::Malformed(e.to_string()))?;
            Ok(Some((FromWorker::Counts(Box::new(counts)), 4 + len)))
        }
        Some((&KEPT, rest)) => {
            let kept =
                super::kept_wire::decode(rest).map_err(|e| CodecError::Malformed(e.to_string()))?;
            Ok(Some((FromWorker::Kept(Box::new(kept)), 4 + len)))
        }
        _ => codec::decode(buf),
    }
}

/// A worker's numbers for one generation's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkerCounts {
    /// The generation the worker serves.
    pub(crate) generation: u64,
    /// Its index's fingerprint.
    pub(crate) fingerprint: u64,
    /// Its counters and endpoints, by place.
    pub(crate) numbers: Dynamic,
}

/// Why bytes are not a [`WorkerCounts`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status counts: {0}")]
pub(crate) struct WireError(pub(super) &'static str);

/// Appends `c` to `out`.
pub(crate) fn encode(c: &WorkerCounts, out: &mut Vec<u8>) {
    let d = &c.numbers;
    out.extend_from_slice(MAGIC);
    put(out, c.generation);
    out.extend_from_slice(&c.fingerprint.to_le_bytes());
    put(out, d.counts.len() as u64);
    for counts in &d.counts {
        match counts {
            None => out.push(0),
            Some(n) => {
                out.push(1);
                put_counts(out, n);
            }
        }
    }
    put(out, d.extra.len() as u64);
    for t in &d.extra {
        put_str(out, &t.mapping);
        put_str(out, &t.namespace);
        put(out, u64::from(t.port));
        put_str(out, &t.host);
        put(out, zigzag(t.active));
        for n in [
            t.accepted,
            t.bytes_client_to_upstream,
            t.bytes_upstream_to_client,
            t.connect_failures,
        ] {
            put(out, n);
        }
        put(out, t.ended.len() as u64);
        for (label, n) in &t.ended {
            put_str(out, label);
            put(out, *n);
        }
    }
    put(out, d.ends.len() as u64);
    for place in 0..d.ends.len() {
        put(out, d.set_rows(place).len() as u64);
    }
    for r in &d.rows {
        put_row(out, r);
    }
}

fn put_counts(out: &mut Vec<u8>, n: &Counts) {
    put(out, zigzag(n.active));
    put(out, n.accepted);
    put(out, n.bytes_client_to_upstream);
    put(out, n.bytes_upstream_to_client);
    put(out, n.connect_failures);
    for e in n.ended {
        put(out, e);
    }
}

fn put_row(out: &mut Vec<u8>, r: &Row) {
    match r.addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&r.addr.port().to_be_bytes());
    out.push(match r.state {
        EndpointState::Healthy => 0,
        EndpointState::Ejected => 1,
        EndpointState::Unhealthy => 2,
    });
    put(out, r.active);
    put(out, r.connect_failures);
    match r.last_check {
        None => out.push(0),
        Some(c) => {
            out.push(if c.ok { 1 } else { 2 });
            put(out, c.at_unix_ms);
        }
    }
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

/// LEB128.
pub(super) fn put(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

pub(super) fn put_str(out: &mut Vec<u8>, s: &str) {
    put(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The [`WorkerCounts`] in `body` (all of it).
pub(crate) fn decode(body: &[u8]) -> Result<WorkerCounts, WireError> {
    let mut r = Reader(body);
    if r.take(MAGIC.len())? != MAGIC {
        return Err(WireError("unknown version"));
    }
    let generation = r.num()?;
    let mut fp = [0u8; 8];
    fp.copy_from_slice(r.take(8)?);
    let fingerprint = u64::from_le_bytes(fp);
    let n = r.count(1)?;
    let mut counts = Vec::with_capacity(n);
    for _ in 0..n {
        counts.push(match r.byte()? {
            0 => None,
            1 => Some(r.counts()?),
            _ => return Err(WireError("bad mapping tag")),
        });
    }
    let n = r.count(8)?;
    let mut extra = Vec::with_capacity(n);
    for _ in 0..n {
        extra.push(r.totals()?);
    }
    let n = r.count(1)?;
    let mut ends = Vec::with_capacity(n);
    let mut total: u32 = 0;
    for _ in 0..n {
        let rows = u32::try_from(r.num()?).map_err(|_| WireError("too many rows"))?;
        total = total.checked_add(rows).ok_or(WireError("too many rows"))?;
        ends.push(total);
    }
    // Each row takes at least 10 bytes.
    if total as usize > r.0.len() / 10 {
        return Err(WireError("fewer rows than announced"));
    }
    let mut rows = Vec::with_capacity(total as usize);
    for _ in 0..total {
        rows.push(r.row()?);
    }
    if !r.0.is_empty() {
        return Err(WireError("bytes after the end"));
    }
    Ok(WorkerCounts {
        generation,
        fingerprint,
        numbers: Dynamic {
            counts,
            extra,
            rows,
            ends,
        },
    })
}

/// The bytes not read yet.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(WireError("truncated"))?;
        self.0 = rest;
        Ok(head)
    }

    pub(super) fn byte(&mut self) -> Result<u8, WireError> {
        let (first, rest) = self.0.split_first().ok_or(WireError("truncated"))?;
        self.0 = rest;
        Ok(*first)
    }

    pub(super) fn num(&mut self) -> Result<u64, WireError> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(WireError("number too large"));
            }
            n |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(WireError("number too long"))
    }

    /// A count of items of at least `min` bytes each, no more than the bytes left hold.
    pub(super) fn count(&mut self, min: usize) -> Result<usize, WireError> {
        let n = usize::try_from(self.num()?).map_err(|_| WireError("count too large"))?;
        if n > self.0.len() / min {
            return Err(WireError("count larger than the bytes left"));
        }
        Ok(n)
    }

    pub(super) fn str(&mut self) -> Result<String, WireError> {
        let n = self.count(1)?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError("not UTF-8"))
    }

    pub(super) fn port(&mut self) -> Result<u16, WireError> {
        u16::try_from(self.num()?).map_err(|_| WireError("bad port"))
    }

    fn counts(&mut self) -> Result<Counts, WireError> {
        let mut c = Counts {
            active: unzigzag(self.num()?),
            accepted: self.num()?,
            bytes_client_to_upstream: self.num()?,
            bytes_upstream_to_client: self.num()?,
            connect_failures: self.num()?,
            ended: [0; REASONS],
        };
        for e in &mut c.ended {
            *e = self.num()?;
        }
        Ok(c)
    }

    fn totals(&mut self) -> Result<MappingTotals, WireError> {
        let mut t = MappingTotals {
            mapping: self.str()?,
            namespace: self.str()?,
            port: self.port()?,
            host: self.str()?,
            active: unzigzag(self.num()?),
            accepted: self.num()?,
            bytes_client_to_upstream: self.num()?,
            bytes_upstream_to_client: self.num()?,
            connect_failures: self.num()?,
            ended: Default::default(),
        };
        let n = self.count(2)?;
        for _ in 0..n {
            let label = self.str()?;
            let count = self.num()?;
            t.ended.insert(label, count);
        }
        Ok(t)
    }

    fn row(&mut self) -> Result<Row, WireError> {
        let ip = match self.byte()? {
            4 => {
                let mut o = [0u8; 4];
                o.copy_from_slice(self.take(4)?);
                IpAddr::V4(Ipv4Addr::from(o))
            }
            6 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(self.take(16)?);
                IpAddr::V6(Ipv6Addr::from(o))
            }
            _ => return Err(WireError("bad address family")),
        };
        let mut port = [0u8; 2];
        port.copy_from_slice(self.take(2)?);
        let state = match self.byte()? {
            0 => EndpointState::Healthy,
            1 => EndpointState::Ejected,
            2 => EndpointState::Unhealthy,
            _ => return Err(WireError("bad endpoint state")),
        };
        let active = self.num()?;
        let connect_failures = self.num()?;
        let last_check = match self.byte()? {
            0 => None,
            tag @ (1 | 2) => Some(LastCheck {
                ok: tag == 1,
                at_unix_ms: self.num()?,
            }),
            _ => return Err(WireError("bad check tag")),
        };
        Ok(Row {
            addr: SocketAddr::new(ip, u16::from_be_bytes(port)),
            state,
            active,
            connect_failures,
            last_check,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn row(addr: &str, state: EndpointState, check: Option<(bool, u64)>) -> Row {
        Row {
            addr: addr.parse().unwrap(),
            state,
            active: 3,
            connect_failures: u64::MAX,
            last_check: check.map(|(ok, at_unix_ms)| LastCheck { ok, at_unix_ms }),
        }
    }

    /// Numbers with one of everything: absent and negative counts, the largest values, a
    /// mapping by name with a hostile name, IPv4 and IPv6 endpoints in every state, an empty
    /// set between two others.
    fn sample() -> WorkerCounts {
        let mut ended = [0; REASONS];
        ended[0] = 5;
        ended[REASONS - 1] = u64::MAX;
        let counts = Counts {
            active: -2,
            accepted: 1 << 40,
            bytes_client_to_upstream: u64::MAX,
            bytes_upstream_to_client: 0,
            connect_failures: 127,
            ended,
        };
        WorkerCounts {
            generation: 7,
            fingerprint: 0xdead_beef_0123_4567,
            numbers: Dynamic {
                counts: vec![Some(counts), None, Some(Counts::default())],
                extra: vec![MappingTotals {
                    mapping: "</script>\"é\n".into(),
                    namespace: "ns".into(),
                    port: 65_535,
                    host: "h.example".into(),
                    active: i64::MIN,
                    accepted: 1,
                    ended: BTreeMap::from([("client_closed".into(), 4)]),
                    ..Default::default()
                }],
                rows: vec![
                    row("10.0.0.1:80", EndpointState::Healthy, None),
                    row("[fd00::1]:443", EndpointState::Ejected, Some((true, 1))),
                    row(
                        "10.0.0.2:1",
                        EndpointState::Unhealthy,
                        Some((false, 1 << 50)),
                    ),
                ],
                ends: vec![1, 1, 3],
            },
        }
    }

    fn encoded(c: &WorkerCounts) -> Vec<u8> {
        let mut out = Vec::new();
        encode(c, &mut out);
        out
    }

    #[test]
    fn counts_survive_a_round_trip() {
        let c = sample();
        assert_eq!(decode(&encoded(&c)).unwrap(), c);
        let empty = WorkerCounts {
            generation: 0,
            fingerprint: 0,
            numbers: Dynamic::default(),
        };
        assert_eq!(decode(&encoded(&empty)).unwrap(), empty);
    }

    #[test]
    fn a_truncated_or_padded_body_is_an_error() {
        let bytes = encoded(&sample());
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let mut other = bytes;
        other[3] = b'2';
        assert_eq!(decode(&other), Err(WireError("unknown version")));
    }

    #[test]
    fn a_count_beyond_the_bytes_is_refused_before_anything_is_reserved() {
        let mut bytes = MAGIC.to_vec();
        put(&mut bytes, 1);
        bytes.extend_from_slice(&[0; 8]);
        put(&mut bytes, u64::MAX);
        assert!(decode(&bytes).is_err());
        // Eleven varint bytes, and a tenth byte above the 64th bit.
        let mut long = MAGIC.to_vec();
        long.extend_from_slice(&[0xff; 11]);
        assert!(decode(&long).is_err());
        let mut over = MAGIC.to_vec();
        over.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]);
        assert_eq!(decode(&over), Err(WireError("number too large")));
    }

    /// The codec carries `Counts` as a binary frame and every other reply as before.
    #[test]
    fn the_codec_frames_counts_in_binary_and_the_rest_in_json() {
        let reply = FromWorker::Counts(Box::new(sample()));
        let frame = encode_reply(&reply).unwrap();
        assert_eq!(frame[4], BINARY);
        let (back, used) = decode_reply(&frame).unwrap().unwrap();
        assert_eq!((back, used), (reply, frame.len()));
        for cut in 0..frame.len() {
            assert!(decode_reply(&frame[..cut]).unwrap().is_none());
        }
        let json = encode_reply(&FromWorker::Prepared).unwrap();
        assert_eq!(json, codec::encode(&FromWorker::Prepared).unwrap());
        assert_eq!(
            decode_reply(&json).unwrap().unwrap().0,
            FromWorker::Prepared
        );
        // A binary body that is not counts is malformed, not a panic.
        let bad = [0, 0, 0, 2, 0, 9];
        assert!(decode_reply(&bad).is_err());
        assert_eq!(codec::decode_all(&frame), 1);
    }

    /// A worker says in its `Status` reply that it reads `Counts`; an older one says nothing
    /// (then it is never sent one), and an older Supervisor skips the word.
    #[test]
    fn a_status_reply_says_whether_the_worker_reads_counts() {
        let old = br#"{"Status":{"generation":1,"active":2}}"#;
        let mut frame = (old.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(old);
        let (reply, _): (FromWorker, _) = codec::decode(&frame).unwrap().unwrap();
        assert!(matches!(
            reply,
            FromWorker::Status {
                counts: false,
                active: 2,
                ..
            }
        ));
        #[derive(serde::Deserialize)]
        enum OldFromWorker {
            Status { generation: u64 },
        }
        let new = FromWorker::Status {
            generation: 3,
            active: 0,
            endpoints: Vec::new(),
            mappings: Vec::new(),
            counts: true,
        };
        let (OldFromWorker::Status { generation }, _) =
            codec::decode(&codec::encode(&new).unwrap())
                .unwrap()
                .unwrap();
        assert_eq!(generation, 3);
    }

    proptest! {
        #[test]
        fn a_binary_body_is_total(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = ((body.len() + 1) as u32).to_be_bytes().to_vec();
            buf.push(BINARY);
            buf.extend(&body);
            match decode_reply(&buf) {
                Ok(Some((_, used))) => prop_assert_eq!(used, buf.len()),
                Ok(None) => prop_assert!(false, "a whole frame asked for more"),
                Err(_) => {}
            }
        }

        #[test]
        fn decode_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn a_damaged_body_is_total(at in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = encoded(&sample());
            let at = at % bytes.len();
            bytes[at] = byte;
            let _ = decode(&bytes);
        }
    }
}
