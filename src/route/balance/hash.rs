//! Consistent hashing for `ring_hash` and `maglev`: tables built once per endpoint list,
//! looked up with the hash of the client's IP address.
//!
//! A table maps a hash to a sequence of endpoint indexes ([`HashTable::walk`]): the first
//! is the client's endpoint, the rest are where it goes when that one is not usable (ejected,
//! unhealthy, of the fallback family or already tried), in an order that depends only on
//! the client, so failover is sticky too.
//!
//! Both tables depend only on the endpoints' addresses (their hashes), not on their order,
//! so a reordered DNS answer keeps every client where it was.

use std::net::{IpAddr, SocketAddr};

/// Size of the Maglev lookup table: a prime well above the endpoint count (Maglev's paper
/// and Envoy use 65537), so each endpoint's share is within a fraction of a percent.
pub(crate) const MAGLEV_SIZE: usize = 65_537;

/// Points on the ring per endpoint. Fixed, not derived from the endpoint count: a ring for
/// N + 1 endpoints is then the ring for N plus the new one's points, so a change of one
/// endpoint moves only the clients between its points and their predecessors (~1/N).
pub(crate) const RING_POINTS: usize = 256;

/// 64-bit FNV-1a over `bytes`, then the SplitMix64 finalizer (FNV alone spreads short
/// inputs such as IPv4 addresses poorly over the high bits).
pub(crate) fn hash64(bytes: &[u8], seed: u64) -> u64 {
    mix(fnv1a(FNV_BASIS ^ seed, bytes))
}

/// 64-bit FNV-1a's offset basis: the state before any byte.
pub(crate) const FNV_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

/// 64-bit FNV-1a, continued from state `h` over `bytes` (the same on every platform).
pub(crate) fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The SplitMix64 finalizer.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The hash of a client address (its IP; the port changes per connection).
pub(crate) fn client_hash(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => hash64(&v4.octets(), 0),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => hash64(&v4.octets(), 0),
            None => hash64(&v6.octets(), 0),
        },
    }
}

/// The hash of an endpoint address (IP and port).
pub(crate) fn endpoint_hash(addr: SocketAddr) -> u64 {
    let mut bytes = [0u8; 18];
    let ip = match addr.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    bytes[..16].copy_from_slice(&ip);
    bytes[16..].copy_from_slice(&addr.port().to_be_bytes());
    hash64(&bytes, 0x5eed)
}

/// A consistent-hash table of either kind.
#[derive(Debug, Clone)]
pub(crate) enum HashTable {
    /// `ring_hash`.
    Ring(Ring),
    /// `maglev`.
    Maglev(Maglev),
}

impl HashTable {
    /// Endpoint indexes for `hash`: the client's endpoint first, then its fallbacks. Finite
    /// (at most the table's length) and may repeat indexes.
    pub(crate) fn walk(&self, hash: u64) -> Box<dyn Iterator<Item = usize> + '_> {
        match self {
            HashTable::Ring(r) => Box::new(r.walk(hash)),
            HashTable::Maglev(m) => Box::new(m.walk(hash)),
        }
    }
}

/// A hash ring (Karger et al., as in ketama and Envoy's `RING_HASH`): each endpoint owns
/// several points; a client goes to the first point at or after its hash.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ring {
    /// `(point, endpoint index)`, sorted by point.
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// The ring for endpoints whose [`endpoint_hash`]es are `keys` (index = position).
    pub(crate) fn build(keys: &[u64]) -> Ring {
        if keys.is_empty() {
            return Ring::default();
        }
        let mut points = Vec::with_capacity(RING_POINTS * keys.len());
        for (i, key) in keys.iter().enumerate() {
            for p in 0..RING_POINTS {
                points.push((mix(key ^ mix(p as u64 + 1)), i as u32));
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// Endpoint indexes from the first point at or after `hash`, around the ring once.
    pub(crate) fn walk(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let start = self.points.partition_point(|p| p.0 < hash);
        let (before, after) = self.points.split_at_checked(start).unwrap_or_default();
        after.iter().chain(before).map(|p| p.1 as usize)
    }
}

/// One endpoint's walk through the Maglev table.
struct Permutation {
    index: u32,
    offset: u64,
    skip: u64,
    next: u64,
}

/// A Maglev lookup table (Eisenbud et al., NSDI 2016): every slot names an endpoint, each
/// endpoint fills slots along its own permutation, so shares are near-equal and a change of
/// one endpoint moves about 1/N of the slots.
#[derive(Debug, Clone, Default)]
pub(crate) struct Maglev {
    table: Vec<u32>,
}

impl Maglev {
    /// The table for endpoints whose [`endpoint_hash`]es are `keys`.
    pub(crate) fn build(keys: &[u64]) -> Maglev {
        Maglev::build_sized(keys, MAGLEV_SIZE)
    }

    /// The table with `m` slots (`m` prime, larger than the endpoint count).
    pub(crate) fn build_sized(keys: &[u64], m: usize) -> Maglev {
        let n = keys.len();
        if n == 0 || m < 2 {
            return Maglev::default();
        }
        let m64 = m as u64;
        // The permutation of endpoint i is offset_i + j * skip_i (mod m); skip_i is never 0.
        // Endpoints take turns in the order of their keys, not of the list, so the table
        // does not depend on the order of the DNS answer.
        let mut by_key: Vec<(u64, u32)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, i as u32))
            .collect();
        by_key.sort_unstable();
        let mut perms: Vec<Permutation> = by_key
            .into_iter()
            .map(|(k, index)| Permutation {
                index,
                offset: mix(k ^ 0x00ff_5e70) % m64,
                skip: mix(k ^ 0x0005_c1b0) % (m64 - 1) + 1,
                next: 0,
            })
            .collect();
        let mut table = vec![u32::MAX; m];
        let mut filled = 0;
        'fill: loop {
            for p in perms.iter_mut() {
                // Each permutation visits every slot once within m steps (m is prime), so
                // a free slot is found while any is left.
                for _ in 0..m {
                    let c = ((p.offset + p.next * p.skip) % m64) as usize;
                    p.next += 1;
                    if let Some(slot) = table.get_mut(c).filter(|s| **s == u32::MAX) {
                        *slot = p.index;
                        break;
                    }
                }
                filled += 1;
                if filled >= m {
                    break 'fill;
                }
            }
        }
        Maglev { table }
    }

    /// Endpoint indexes from slot `hash mod m` on, once around the table.
    pub(crate) fn walk(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let n = self.table.len().max(1) as u64;
        let start = (hash % n) as usize;
        let (before, after) = self.table.split_at_checked(start).unwrap_or_default();
        after.iter().chain(before).map(|i| *i as usize)
    }
}
