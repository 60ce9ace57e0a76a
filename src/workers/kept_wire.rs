//! A worker's counters and histograms on the wire (the `Kept` reply to `ToWorker::Keep`, the
//! pool's once-a-second snapshot): binary, by place in the fixed layout of
//! [`Kept`](crate::metrics::Kept) (pure: values in, bytes out, and back).
//!
//! ```text
//! "TMK1"
//! mappings: n, then per mapping: name namespace port host, then a tag
//!           (bit 0: its own series follow, NUMBERS numbers; bit 1: its endpoint counters
//!           follow, ENDPOINT_NUMBERS numbers)
//! rest:     the process-wide and fleet families' text
//! ```
//!
//! Numbers are LEB128 varints (the latency sum is its `f64` bits, so 10 bytes), strings a
//! varint length and UTF-8 (`status_wire.rs`'s). The bytes come from another process:
//! [`decode`] is total (an error for anything truncated, malformed or longer than it says,
//! never a panic), and no count makes it reserve more than the bytes left could hold.

use super::status_wire::{Reader, WireError, put, put_str};
use crate::metrics::kept::{ENDPOINT_NUMBERS, NUMBERS};
use crate::metrics::{Kept, KeptMapping, Metrics};
use crate::route::MappingId;

const MAGIC: &[u8; 4] = b"TMK1";

/// Appends `k` to `out`.
pub(crate) fn encode(k: &Kept, out: &mut Vec<u8>) {
    out.reserve(k.mappings.len() * (NUMBERS + 32) + k.rest.len());
    out.extend_from_slice(MAGIC);
    put(out, k.mappings.len() as u64);
    for m in &k.mappings {
        put_mapping(out, &m.id, m.numbers.as_ref(), m.endpoints.as_ref());
    }
    put_str(out, &k.rest);
}

/// Appends what `metrics.keep()` holds, read straight from the registry (no copy of an id:
/// what a worker answers `Keep` with).
pub(crate) fn encode_registry(metrics: &Metrics, out: &mut Vec<u8>) {
    let mut body = Vec::new();
    let mut n: u64 = 0;
    metrics.each_kept(|id, numbers, endpoints| {
        n += 1;
        put_mapping(&mut body, id, numbers, endpoints);
    });
    out.reserve(body.len() + 16);
    out.extend_from_slice(MAGIC);
    put(out, n);
    out.extend_from_slice(&body);
    put_str(out, &metrics.kept_rest());
}

fn put_mapping(
    out: &mut Vec<u8>,
    id: &MappingId,
    numbers: Option<&[u64; NUMBERS]>,
    endpoints: Option<&[u64; ENDPOINT_NUMBERS]>,
) {
    put_str(out, &id.name);
    put_str(out, &id.namespace);
    put(out, u64::from(id.port));
    put_str(out, &id.host);
    out.push(u8::from(numbers.is_some()) | (u8::from(endpoints.is_some()) << 1));
    for n in numbers.into_iter().flatten() {
        put(out, *n);
    }
    for n in endpoints.into_iter().flatten() {
        put(out, *n);
    }
}

/// The [`Kept`] in `body` (all of it).
pub(crate) fn decode(body: &[u8]) -> Result<Kept, WireError> {
    let mut r = Reader(body);
    if r.take(MAGIC.len())? != MAGIC {
        return Err(WireError("unknown version"));
    }
    // A mapping takes at least 5 bytes: three empty strings, a port, a tag.
    let n = r.count(5)?;
    let mut mappings = Vec::with_capacity(n);
    for _ in 0..n {
        let id = MappingId {
            name: r.str()?,
            namespace: r.str()?,
            port: r.port()?,
            host: r.str()?,
        };
        let tag = r.byte()?;
        if tag > 3 {
            return Err(WireError("bad mapping tag"));
        }
        let numbers = if tag & 1 == 1 {
            Some(fixed::<NUMBERS>(&mut r)?)
        } else {
            None
        };
        let endpoints = if tag & 2 == 2 {
            Some(fixed::<ENDPOINT_NUMBERS>(&mut r)?)
        } else {
            None
        };
        mappings.push(KeptMapping {
            id,
            numbers,
            endpoints,
        });
    }
    let rest = r.str()?;
    if !r.0.is_empty() {
        return Err(WireError("bytes after the end"));
    }
    Ok(Kept { mappings, rest })
}

fn fixed<const N: usize>(r: &mut Reader<'_>) -> Result<[u64; N], WireError> {
    let mut out = [0u64; N];
    for n in &mut out {
        *n = r.num()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use proptest::prelude::*;

    use super::*;
    use crate::workers::codec::FromWorker;
    use crate::workers::status_wire::{decode_reply, encode_reply};

    /// One of everything: both parts, either part, neither, the largest numbers, a hostile
    /// name, non-ASCII text.
    fn sample() -> Kept {
        let id = |name: &str, host: &str| MappingId {
            name: name.into(),
            namespace: "ns\"\n".into(),
            port: 65_535,
            host: host.into(),
        };
        let mut numbers = [0u64; NUMBERS];
        for (i, n) in numbers.iter_mut().enumerate() {
            *n = if i % 3 == 0 { u64::MAX } else { i as u64 };
        }
        Kept {
            mappings: vec![
                KeptMapping {
                    id: id("a", ""),
                    numbers: Some(numbers),
                    endpoints: Some([1, 2, 3, u64::MAX]),
                },
                KeptMapping {
                    id: id("b", "héllo.example"),
                    numbers: Some([0; NUMBERS]),
                    endpoints: None,
                },
                KeptMapping {
                    id: id("", ""),
                    numbers: None,
                    endpoints: Some([0; ENDPOINT_NUMBERS]),
                },
                KeptMapping {
                    id: id("d", ""),
                    numbers: None,
                    endpoints: None,
                },
            ],
            rest: "# TYPE tcpmap_dns_lookups counter\ntcpmap_dns_lookups_total 3\n".into(),
        }
    }

    fn encoded(k: &Kept) -> Vec<u8> {
        let mut out = Vec::new();
        encode(k, &mut out);
        out
    }

    #[test]
    fn kept_numbers_survive_a_round_trip() {
        for k in [sample(), Kept::default()] {
            assert_eq!(decode(&encoded(&k)).unwrap(), k);
        }
        // And in a frame, beside the JSON replies.
        let frame = encode_reply(&FromWorker::Kept(Box::new(sample()))).unwrap();
        assert_eq!(frame[4], 1);
        let (back, used) = decode_reply(&frame).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(back, FromWorker::Kept(Box::new(sample())));
    }

    #[test]
    fn the_registry_encodes_as_its_kept_numbers() {
        let m = Metrics::new();
        for (i, name) in ["b", "a", "c"].iter().enumerate() {
            let id = MappingId {
                name: (*name).into(),
                namespace: "ns".into(),
                port: 80,
                host: String::new(),
            };
            if i != 2 {
                m.mapping(&id).accepted();
            }
            if i != 0 {
                m.endpoints(&id).attempt(true);
            }
        }
        let kept = m.keep();
        assert_eq!(kept.mappings.len(), 3);
        let mut direct = Vec::new();
        encode_registry(&m, &mut direct);
        assert_eq!(direct, encoded(&kept));
        // In a frame it reads back as the numbers.
        let frame = encode_reply(&FromWorker::KeptFrame(direct)).unwrap();
        let (back, _) = decode_reply(&frame).unwrap().unwrap();
        assert_eq!(back, FromWorker::Kept(Box::new(kept)));
    }

    #[test]
    fn a_truncated_padded_or_mislabelled_body_is_an_error() {
        let good = encoded(&sample());
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut padded = good.clone();
        padded.push(0);
        assert!(decode(&padded).is_err());
        let mut other = good.clone();
        other[3] = b'9';
        assert!(decode(&other).is_err());
        // The first mapping's tag (after "TMK1", the count and "a", "ns\"\n", 65535, ""): 4.
        let tag = 4 + 1 + 2 + 5 + 3 + 1;
        assert_eq!(good[tag], 3);
        let mut bad = good;
        bad[tag] = 4;
        assert!(decode(&bad).is_err());
    }

    #[test]
    fn a_count_beyond_the_bytes_is_refused_before_anything_is_reserved() {
        let mut body = MAGIC.to_vec();
        put(&mut body, u64::MAX >> 1);
        assert!(decode(&body).is_err());
    }

    #[test]
    fn a_commit_says_whether_the_worker_reads_keep() {
        use crate::workers::codec;
        // An older binary's worker: asked for its metrics text.
        let old = br#"{"Committed":{"generation":4}}"#;
        let mut frame = (old.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(old);
        let (reply, _): (FromWorker, _) = codec::decode(&frame).unwrap().unwrap();
        assert_eq!(
            reply,
            FromWorker::Committed {
                generation: 4,
                keeps: false
            }
        );
        // An older binary's Supervisor reads a new worker's commit.
        #[derive(serde::Deserialize)]
        enum OldFromWorker {
            Committed { generation: u64 },
        }
        let new = FromWorker::Committed {
            generation: 5,
            keeps: true,
        };
        let (OldFromWorker::Committed { generation }, _) =
            codec::decode(&codec::encode(&new).unwrap())
                .unwrap()
                .unwrap();
        assert_eq!(generation, 5);
    }

    proptest! {
        #[test]
        fn decode_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut body = MAGIC.to_vec();
            body.extend_from_slice(&bytes);
            let _ = decode(&body);
            let _ = decode(&bytes);
        }

        #[test]
        fn a_damaged_body_is_total(at in any::<usize>(), byte in any::<u8>()) {
            let mut body = encoded(&sample());
            let at = at % body.len();
            body[at] = byte;
            let _ = decode(&body);
        }

        #[test]
        fn any_numbers_round_trip(
            n in proptest::collection::vec(any::<u64>(), NUMBERS),
            e in proptest::array::uniform4(any::<u64>()),
            name in ".{0,12}",
            port in any::<u16>(),
        ) {
            let mut numbers = [0u64; NUMBERS];
            numbers.copy_from_slice(&n);
            let k = Kept {
                mappings: vec![KeptMapping {
                    id: MappingId { name, namespace: String::new(), port, host: String::new() },
                    numbers: Some(numbers),
                    endpoints: Some(e),
                }],
                rest: String::new(),
            };
            prop_assert_eq!(decode(&encoded(&k)).unwrap(), k);
        }
    }
}
