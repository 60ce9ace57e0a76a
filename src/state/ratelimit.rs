//! Connection rate limits (`connection_rate_limit`, SPEC section 15): one token bucket per key
//! (a client address on a listener, or the listener), kept in a bounded table of atomics that
//! every worker maps (`workers/shm.rs`) or this process owns, so the limit is exact over all
//! workers.
//!
//! Each bucket is one `AtomicU64` in GCRA form (the "generic cell rate algorithm", a token
//! bucket stored as a single time): a 16-bit key tag over a 48-bit *theoretical arrival time*
//! (TAT) in microseconds since the table's base. A connection at `now` is allowed when
//! `max(TAT, now) + T − now ≤ burst · T` (`T` = 1 s / rate), and then TAT moves by `T`: one
//! compare-and-swap, no lock. A bucket whose TAT is not after `now` is full, exactly as if it
//! had never been used, which is what makes eviction safe: an entry is only ever taken over
//! when its bucket is full, so a flood of new addresses never resets anybody's bucket.
//!
//! Layout: a header of [`HEADER`] words (the hash seed, the base time in Unix microseconds),
//! then [`SETS`] sets of [`WAYS`] entries plus one *overflow* word each. A key lives in the set
//! its seeded hash picks; when all of a set's entries hold non-full buckets of other keys, the
//! newcomer is counted in the set's overflow bucket (same rate and burst), shared with the
//! other newcomers of that set: limited together, never unlimited, never a reset. Memory is
//! fixed at ([`HEADER`] + [`SETS`] × ([`WAYS`] + 1)) × 8 bytes = 288 KiB whatever the
//! number of addresses.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::route::balance::hash::hash64;
use crate::route::fleet::{RateLimit, RatePer};

/// Sets of the table (a power of two).
pub(crate) const SETS: usize = 4_096;
/// Entries per set.
pub(crate) const WAYS: usize = 8;
/// Words before the sets: the hash seed, the base time.
pub(crate) const HEADER: usize = 2;
/// Words of one set: its entries, then its overflow bucket.
const SET_WORDS: usize = WAYS + 1;
/// Words of a whole table.
pub(crate) const WORDS: usize = HEADER + SETS * SET_WORDS;
/// Bits of a bucket's time (µs: about 8.9 years from the base).
const TIME_BITS: u32 = 48;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
/// Compare-and-swap rounds before a connection is let through uncounted (never reached in
/// practice: each failed round means another connection of the set was counted).
const ROUNDS: usize = 64;

/// What a bucket said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A token was taken.
    Allowed,
    /// The bucket is empty: the connection is over the limit.
    Limited,
}

/// The table's words: owned by this process, or in memory every worker maps.
#[derive(Debug)]
enum Words {
    Own(Box<[AtomicU64]>),
    Shared(&'static [AtomicU64]),
}

/// A table of rate-limit buckets.
#[derive(Debug)]
pub(crate) struct RateTable {
    words: Words,
    /// This process's clock anchor: (an instant, the Unix µs then).
    anchor: (Instant, u64),
}

/// Unix time in µs (0 before 1970).
fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl RateTable {
    /// A table of this process only, with a random seed.
    pub(crate) fn own() -> RateTable {
        let words: Box<[AtomicU64]> = (0..WORDS).map(|_| AtomicU64::new(0)).collect();
        Self::init(&words);
        Self::over(Words::Own(words))
    }

    /// The table in `words` (another process may have made it with [`Self::init`]); `None`
    /// when `words` has not [`WORDS`] words.
    pub(crate) fn shared(words: &'static [AtomicU64]) -> Option<RateTable> {
        (words.len() == WORDS).then(|| Self::over(Words::Shared(words)))
    }

    /// Writes a fresh table's header into zeroed `words`: a random hash seed (so nobody can
    /// pick addresses that share a set) and the base time.
    pub(crate) fn init(words: &[AtomicU64]) {
        let mut seed = [0u8; 8];
        if aws_lc_rs::rand::fill(&mut seed).is_err() {
            seed = unix_us().to_le_bytes();
        }
        if let [s, b, ..] = words {
            s.store(u64::from_le_bytes(seed), Ordering::Relaxed);
            b.store(unix_us(), Ordering::Release);
        }
    }

    fn over(words: Words) -> RateTable {
        RateTable {
            words,
            anchor: (Instant::now(), unix_us()),
        }
    }

    fn words(&self) -> &[AtomicU64] {
        match &self.words {
            Words::Own(w) => w,
            Words::Shared(w) => w,
        }
    }

    fn header(&self, i: usize) -> u64 {
        self.words().get(i).map_or(0, |w| w.load(Ordering::Acquire))
    }

    /// µs since the table's base, by this process's monotonic clock (the wall clock is read
    /// once, at the anchor, so a clock step later does not move the buckets).
    fn now(&self) -> u64 {
        let elapsed = u64::try_from(self.anchor.0.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.anchor
            .1
            .saturating_add(elapsed)
            .saturating_sub(self.header(1))
            & TIME_MASK
    }

    /// Takes a token for a connection from `client` on `listener` under `limit`, now.
    pub(crate) fn take(&self, limit: &RateLimit, listener: SocketAddr, client: IpAddr) -> Verdict {
        let mut key = [0u8; 40];
        let n = encode(&mut key, limit.per, listener, client);
        let h = hash64(key.get(..n).unwrap_or_default(), self.header(0));
        self.take_at(h, limit.rate, limit.burst, self.now())
    }

    /// Takes a token of the bucket of hash `h` (rate per second, burst) at `now` (µs).
    pub(crate) fn take_at(&self, h: u64, rate: u32, burst: u32, now: u64) -> Verdict {
        let set = (h as usize) & (SETS - 1);
        let tag = ((h >> 32) & 0xffff).max(1);
        let t = (1_000_000 / u64::from(rate.max(1))).max(1);
        let allowance = t.saturating_mul(u64::from(burst.max(1)));
        let Some(words) = self
            .words()
            .get(HEADER + set * SET_WORDS..HEADER + (set + 1) * SET_WORDS)
        else {
            return Verdict::Allowed;
        };
        let (entries, overflow) = words.split_at(WAYS);
        for _ in 0..ROUNDS {
            match step(entries, overflow, tag, now, t, allowance) {
                Some(v) => return v,
                None => continue,
            }
        }
        Verdict::Allowed
    }
}

/// One round: the key's entry if it has one, else a free or full entry to take over, else the
/// set's overflow bucket. `None` when a compare-and-swap lost (the caller tries again).
fn step(
    entries: &[AtomicU64],
    overflow: &[AtomicU64],
    tag: u64,
    now: u64,
    t: u64,
    allowance: u64,
) -> Option<Verdict> {
    let pack = |tat: u64| (tag << TIME_BITS) | (tat & TIME_MASK);
    let mut candidate = None;
    for e in entries {
        let w = e.load(Ordering::Acquire);
        let (wtag, tat) = (w >> TIME_BITS, w & TIME_MASK);
        if wtag == tag {
            return cas_bucket(e, w, tat, now, t, allowance, pack);
        }
        if candidate.is_none() && (wtag == 0 || tat <= now) {
            candidate = Some((e, w));
        }
    }
    if let Some((e, w)) = candidate {
        // A free or full bucket: taking it over is the same as a fresh one.
        return cas_bucket(e, w, now, now, t, allowance, pack);
    }
    let o = overflow.first()?;
    let w = o.load(Ordering::Acquire);
    cas_bucket(o, w, w & TIME_MASK, now, t, allowance, |tat| {
        tat & TIME_MASK
    })
}

/// GCRA on one word holding `w` (its time `tat`): allowed when the new TAT is within the
/// allowance of `now`, stored as `pack(new TAT)`.
fn cas_bucket(
    e: &AtomicU64,
    w: u64,
    tat: u64,
    now: u64,
    t: u64,
    allowance: u64,
    pack: impl Fn(u64) -> u64,
) -> Option<Verdict> {
    let next = tat.max(now).saturating_add(t);
    if next - now > allowance {
        return Some(Verdict::Limited);
    }
    e.compare_exchange(w, pack(next), Ordering::AcqRel, Ordering::Acquire)
        .ok()
        .map(|_| Verdict::Allowed)
}

/// The key's bytes: the kind, the listener, and for `client_ip` the client's address (an
/// IPv4-mapped IPv6 address as its IPv4 one); the length used.
fn encode(out: &mut [u8; 40], per: RatePer, listener: SocketAddr, client: IpAddr) -> usize {
    let mut n = 0;
    let mut put = |bytes: &[u8]| {
        for b in bytes {
            if let Some(slot) = out.get_mut(n) {
                *slot = *b;
                n += 1;
            }
        }
    };
    let ip = |ip: IpAddr| -> ([u8; 16], usize) {
        let mut b = [0u8; 16];
        match ip {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                b = v6.octets();
                (b, 16)
            }
            IpAddr::V6(v6) => {
                let v4 = v6.to_ipv4_mapped().map(|v| v.octets()).unwrap_or_default();
                if let Some(d) = b.get_mut(..4) {
                    d.copy_from_slice(&v4);
                }
                (b, 4)
            }
            IpAddr::V4(v4) => {
                if let Some(d) = b.get_mut(..4) {
                    d.copy_from_slice(&v4.octets());
                }
                (b, 4)
            }
        }
    };
    put(&[u8::from(per == RatePer::ClientIp)]);
    let (l, ln) = ip(listener.ip());
    put(l.get(..ln).unwrap_or_default());
    put(&listener.port().to_be_bytes());
    if per == RatePer::ClientIp {
        let (c, cn) = ip(client);
        put(c.get(..cn).unwrap_or_default());
    }
    n
}

/// A process's own table, made on first use (a worker is given the shared one instead).
pub(crate) fn own_table(cell: &OnceLock<RateTable>) -> &RateTable {
    cell.get_or_init(RateTable::own)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn limit(rate: u32, burst: u32, per: RatePer) -> RateLimit {
        RateLimit {
            rate,
            burst,
            per,
            dry_run: false,
        }
    }

    /// Allowed takes of bucket `h` at each time of `at` (µs).
    fn allowed(t: &RateTable, h: u64, rate: u32, burst: u32, at: &[u64]) -> usize {
        at.iter()
            .filter(|now| t.take_at(h, rate, burst, **now) == Verdict::Allowed)
            .count()
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t = RateTable::own();
        // burst 5 at once: 5 allowed, the 6th not.
        assert_eq!(allowed(&t, 7, 10, 5, &[1_000_000; 6]), 5);
        // 10 per second: one more each 100 ms.
        assert_eq!(t.take_at(7, 10, 5, 1_050_000), Verdict::Limited);
        assert_eq!(t.take_at(7, 10, 5, 1_100_000), Verdict::Allowed);
        assert_eq!(t.take_at(7, 10, 5, 1_100_001), Verdict::Limited);
        // After a quiet second the bucket is full again (5), not more.
        assert_eq!(allowed(&t, 7, 10, 5, &[3_000_000; 8]), 5);
    }

    #[test]
    fn keys_have_their_own_buckets_and_listener_limits_share_one() {
        let t = RateTable::own();
        let l: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let per_ip = limit(1, 2, RatePer::ClientIp);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(t.take(&per_ip, l, a), Verdict::Allowed);
        assert_eq!(
            t.take(&per_ip, l, mapped),
            Verdict::Allowed,
            "the same client"
        );
        assert_eq!(t.take(&per_ip, l, a), Verdict::Limited);
        assert_eq!(t.take(&per_ip, l, b), Verdict::Allowed, "another client");
        let other: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        assert_eq!(
            t.take(&per_ip, other, a),
            Verdict::Allowed,
            "another listener"
        );
        let whole = limit(1, 2, RatePer::Listener);
        assert_eq!(t.take(&whole, l, a), Verdict::Allowed);
        assert_eq!(t.take(&whole, l, b), Verdict::Allowed);
        assert_eq!(
            t.take(&whole, l, "10.9.9.9".parse().unwrap()),
            Verdict::Limited
        );
    }

    #[test]
    fn a_flood_of_new_keys_neither_grows_the_table_nor_resets_a_bucket() {
        let t = RateTable::own();
        let victim = 0x1234_5678_0000_0003u64;
        let now = 5_000_000;
        // The victim empties its bucket (burst 2, 1 per second).
        assert_eq!(allowed(&t, victim, 1, 2, &[now, now, now]), 2);
        // A flood of a million other keys, many of them in the victim's set.
        for k in 0..1_000_000u64 {
            let h = (k << 12 | 3) ^ (k << 40);
            let _ = t.take_at(h, 1, 2, now);
        }
        assert_eq!(t.words().len(), WORDS, "fixed size");
        // Still empty: no reset by eviction.
        assert_eq!(t.take_at(victim, 1, 2, now + 10), Verdict::Limited);
        // And it refills by its own rate.
        assert_eq!(t.take_at(victim, 1, 2, now + 1_000_000), Verdict::Allowed);
    }

    #[test]
    fn two_processes_mapping_one_table_count_together() {
        let words: &'static [AtomicU64] =
            Box::leak((0..WORDS).map(|_| AtomicU64::new(0)).collect());
        RateTable::init(words);
        let (a, b) = (
            RateTable::shared(words).unwrap(),
            RateTable::shared(words).unwrap(),
        );
        let l: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let c: IpAddr = "192.0.2.1".parse().unwrap();
        let lim = limit(1, 3, RatePer::ClientIp);
        let got: usize = (0..4)
            .map(|i| {
                if i % 2 == 0 {
                    a.take(&lim, l, c)
                } else {
                    b.take(&lim, l, c)
                }
            })
            .filter(|v| *v == Verdict::Allowed)
            .count();
        assert_eq!(got, 3);
        assert!(RateTable::shared(&words[1..]).is_none());
    }

    proptest! {
        /// Over any schedule of takes, a bucket allows at most burst + rate × elapsed, and
        /// a take spaced at least 1/rate after the previous allowed one is always allowed
        /// while the bucket holds no debt.
        #[test]
        fn never_more_than_burst_plus_rate_times_time(
            rate in 1u32..2000,
            burst in 1u32..50,
            gaps in proptest::collection::vec(0u64..20_000, 1..400),
        ) {
            let t = RateTable::own();
            let start = 1_000_000u64;
            let mut now = start;
            let mut ok = 0u64;
            for g in gaps {
                now += g;
                if t.take_at(42, rate, burst, now) == Verdict::Allowed {
                    ok += 1;
                }
            }
            let period = (1_000_000 / u64::from(rate)).max(1);
            let bound = u64::from(burst) + (now - start) / period;
            prop_assert!(ok <= bound, "{} allowed, bound {}", ok, bound);
            // A quiet time of burst periods refills it whole.
            let later = now + period * u64::from(burst) + period;
            let refilled = (0..burst).filter(|_| t.take_at(42, rate, burst, later) == Verdict::Allowed).count();
            prop_assert_eq!(refilled as u32, burst);
        }
    }
}
