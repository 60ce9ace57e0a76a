//! The client table of `max_connections_per_ip` in the shared mapping: a worker's view
//! ([`ClientTable`]) takes and gives a client's slots in the packed entries, binding an entry
//! to a key only under its set's lock (the layout is described in the parent module).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::{COUNT_BITS, COUNT_MAX, LOCK_SPINS, SETS, WAYS};
use crate::state::clients::{ClientCounts, Take};

/// Takes `n` off the count of a packed entry, saturating at zero (the key stays).
pub(super) fn sub_count(entry: &AtomicU64, n: u32) {
    let _ = entry.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
        let count = (v & u64::from(COUNT_MAX)) as u32;
        Some((v & !u64::from(COUNT_MAX)) | u64::from(count.saturating_sub(n)))
    });
}

/// One worker's view of the client table: the shared entries and its own shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientTable {
    /// The packed entries, shared by every process.
    pub(super) entries: &'static [AtomicU64],
    /// One lock word per set.
    pub(super) locks: &'static [AtomicU32],
    /// This worker's share of each entry (its block's third part).
    pub(super) mine: &'static [AtomicU32],
    /// The lock value of this worker (its id + 1; 0 is free).
    pub(super) owner: u32,
}

impl ClientTable {
    /// The set and key of client `ip` under the mapping of shared index `index`.
    fn place(index: u32, ip: IpAddr) -> (usize, u64) {
        let h = crate::route::balance::hash::mix(
            crate::route::balance::hash::client_hash(ip)
                ^ u64::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let set = (h as usize) & (SETS - 1);
        let key = (h >> COUNT_BITS).max(1);
        (set, key)
    }

    /// Takes one of `max` slots of client `ip` under the mapping of shared index `index`.
    pub(crate) fn take(&self, index: u32, ip: IpAddr, max: u32) -> Take {
        let max = u64::from(max.min(COUNT_MAX));
        let (set, key) = Self::place(index, ip);
        let ways = set * WAYS..set * WAYS + WAYS;
        // A bound entry's count moves without the lock; retried only when it was rebound
        // between the look and the CAS (a few times at most).
        for _ in 0..4 {
            if let Some(i) = ways.clone().find(|&i| {
                self.entries
                    .get(i)
                    .is_some_and(|e| e.load(Ordering::Acquire) >> COUNT_BITS == key)
            }) {
                match self.bump(i, key, max) {
                    Some(t) => return t,
                    None => continue,
                }
            }
            // Not bound: bind a free entry under the set's lock (a key is bound only there,
            // after a look that it is not bound already, so it is never in two entries).
            let Some(lock) = self.locks.get(set) else {
                return Take::Full;
            };
            if !self.lock(lock) {
                return Take::Full;
            }
            let taken = self.bind(ways.clone(), key, max);
            lock.store(0, Ordering::Release);
            match taken {
                Some(t) => return t,
                None => continue,
            }
        }
        Take::Full
    }

    /// Under the set's lock: the key's entry if another worker bound it meanwhile, or a
    /// free one (no open connections) bound to it now. `None`: retry (a count moved).
    fn bind(&self, ways: std::ops::Range<usize>, key: u64, max: u64) -> Option<Take> {
        if let Some(i) = ways.clone().find(|&i| {
            self.entries
                .get(i)
                .is_some_and(|e| e.load(Ordering::Acquire) >> COUNT_BITS == key)
        }) {
            return self.bump(i, key, max);
        }
        if max == 0 {
            return Some(Take::Refused);
        }
        for i in ways {
            let (Some(entry), Some(mine)) = (self.entries.get(i), self.mine.get(i)) else {
                return Some(Take::Full);
            };
            let v = entry.load(Ordering::Acquire);
            if v & u64::from(COUNT_MAX) != 0 {
                continue;
            }
            // Own share first: a death between the two leaves the total one short, not a
            // slot that never comes back.
            mine.fetch_add(1, Ordering::AcqRel);
            if entry
                .compare_exchange(
                    v,
                    key << COUNT_BITS | 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                return Some(Take::Taken(i));
            }
            mine.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Take::Full)
    }

    /// One more on entry `i` if it still holds `key` and fewer than `max`; `None` when it
    /// was rebound meanwhile.
    fn bump(&self, i: usize, key: u64, max: u64) -> Option<Take> {
        let (Some(entry), Some(mine)) = (self.entries.get(i), self.mine.get(i)) else {
            return Some(Take::Full);
        };
        mine.fetch_add(1, Ordering::AcqRel);
        let r = entry.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            (v >> COUNT_BITS == key && v & u64::from(COUNT_MAX) < max).then_some(v + 1)
        });
        match r {
            Ok(_) => Some(Take::Taken(i)),
            Err(v) => {
                mine.fetch_sub(1, Ordering::AcqRel);
                (v >> COUNT_BITS == key).then_some(Take::Refused)
            }
        }
    }

    fn lock(&self, lock: &AtomicU32) -> bool {
        for _ in 0..LOCK_SPINS {
            if lock
                .compare_exchange_weak(0, self.owner, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return true;
            }
            std::hint::spin_loop();
        }
        false
    }

    /// Gives back the slot [`Self::take`] took in entry `i`.
    pub(crate) fn give(&self, i: usize) {
        let (Some(entry), Some(mine)) = (self.entries.get(i), self.mine.get(i)) else {
            return;
        };
        // Saturating: the Supervisor may have zeroed the share (never while this process
        // lives, but a stale guard must not wrap it).
        let _ = mine.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        sub_count(entry, 1);
    }

    /// The total count of client `ip` under shared index `index` (tests and status).
    #[cfg(test)]
    pub(crate) fn count(&self, index: u32, ip: IpAddr) -> u32 {
        let (set, key) = Self::place(index, ip);
        (set * WAYS..set * WAYS + WAYS)
            .filter_map(|i| self.entries.get(i))
            .map(|e| e.load(Ordering::Acquire))
            .find(|v| v >> COUNT_BITS == key)
            .map_or(0, |v| (v & u64::from(COUNT_MAX)) as u32)
    }
}

impl ClientCounts for ClientTable {
    fn take(&self, index: u32, ip: IpAddr, max: u32) -> Take {
        ClientTable::take(self, index, ip, max)
    }

    fn give(&self, entry: usize) {
        ClientTable::give(self, entry)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::workers::shm::Counters;

    fn v4(i: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(i))
    }

    #[test]
    fn a_clients_slots_count_over_every_worker() {
        let c = Counters::create(2).unwrap();
        let (w0, w1) = (c.clients(0).unwrap(), c.clients(1).unwrap());
        let (a, b) = (v4(1), v4(2));
        let mut held = Vec::new();
        for w in [w0, w1, w0] {
            match w.take(1, a, 3) {
                Take::Taken(i) => held.push((w, i)),
                t => panic!("{t:?}"),
            }
        }
        assert_eq!(w1.take(1, a, 3), Take::Refused);
        assert_eq!(w0.take(1, a, 3), Take::Refused);
        assert!(
            matches!(w1.take(1, b, 3), Take::Taken(_)),
            "another address"
        );
        assert!(
            matches!(w1.take(2, a, 3), Take::Taken(_)),
            "another mapping"
        );
        assert_eq!(w0.count(1, a), 3);
        let (w, i) = held.pop().unwrap();
        w.give(i);
        assert_eq!(w1.count(1, a), 2);
        assert!(matches!(w1.take(1, a, 3), Take::Taken(_)));
        assert_eq!(w1.take(1, a, 0), Take::Refused, "max 0 admits nothing");
    }

    #[test]
    fn a_dead_workers_client_slots_go_back_and_its_lock_is_freed() {
        let c = Counters::create(2).unwrap();
        let (w0, w1) = (c.clients(0).unwrap(), c.clients(1).unwrap());
        let a = v4(7);
        assert!(matches!(w0.take(1, a, 4), Take::Taken(_)));
        for _ in 0..3 {
            assert!(matches!(w1.take(1, a, 4), Take::Taken(_)));
        }
        assert_eq!(w0.take(1, a, 4), Take::Refused);
        // Worker 1 dies holding 3 slots and (as if mid-bind) its set's lock.
        let (set, _) = ClientTable::place(1, a);
        c.locks[set].store(w1.owner, Ordering::SeqCst);
        c.release_worker(1);
        assert_eq!(w0.count(1, a), 1);
        assert_eq!(c.locks[set].load(Ordering::SeqCst), 0);
        let w1 = c.clients(1).unwrap();
        for _ in 0..3 {
            assert!(matches!(w1.take(1, a, 4), Take::Taken(_)));
        }
        assert_eq!(
            w1.take(1, a, 4),
            Take::Refused,
            "no more than 4 after the death"
        );
    }

    #[test]
    fn a_full_set_says_so_and_a_freed_entry_is_reused() {
        let c = Counters::create(1).unwrap();
        let w = c.clients(0).unwrap();
        let (set, _) = ClientTable::place(1, v4(0));
        let same: Vec<IpAddr> = (1..)
            .map(v4)
            .filter(|ip| ClientTable::place(1, *ip).0 == set)
            .take(WAYS + 1)
            .collect();
        let entries: Vec<usize> = same[..WAYS]
            .iter()
            .map(|ip| match w.take(1, *ip, 1) {
                Take::Taken(i) => i,
                t => panic!("{t:?}"),
            })
            .collect();
        assert_eq!(w.take(1, same[WAYS], 1), Take::Full);
        // A bound key still counts (and refuses) in a full set.
        assert_eq!(w.take(1, same[0], 1), Take::Refused);
        w.give(entries[3]);
        assert!(matches!(w.take(1, same[WAYS], 1), Take::Taken(i) if i == entries[3]));
        assert_eq!(
            w.count(1, same[3]),
            0,
            "the rebound entry no longer counts the old key"
        );
    }

    #[test]
    fn concurrent_takes_never_pass_the_limit() {
        let c = Counters::create(4).unwrap();
        let views: Vec<ClientTable> = (0..4).map(|w| c.clients(w).unwrap()).collect();
        let ip = v4(9);
        let over = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            for w in &views {
                let over = &over;
                s.spawn(move || {
                    for round in 0..2_000u32 {
                        // Other keys bind and free entries of the same sets meanwhile.
                        let other = w.take(1, v4(round % 64 + 100), 2);
                        if let Take::Taken(i) = w.take(1, ip, 5) {
                            if w.count(1, ip) > 5 {
                                over.store(true, Ordering::SeqCst);
                            }
                            w.give(i);
                        }
                        if let Take::Taken(i) = other {
                            w.give(i);
                        }
                    }
                });
            }
        });
        assert!(!over.load(Ordering::SeqCst));
        assert_eq!(views[0].count(1, ip), 0);
        assert!(
            views
                .iter()
                .all(|v| v.mine.iter().all(|n| n.load(Ordering::SeqCst) == 0))
        );
    }

    proptest::proptest! {
        // Every case maps a table for good (mappings are never unmapped): keep them few.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Takes and gives from two workers, and a worker's death, against a map of counts.
        #[test]
        fn the_table_counts_like_a_map(
            ops in proptest::collection::vec((0u8..4, 0u32..2, 0u32..12, 1u32..4), 1..200)
        ) {
            let c = Counters::create(2).unwrap();
            let mut views = [c.clients(0).unwrap(), c.clients(1).unwrap()];
            let mut held: Vec<(usize, IpAddr, usize)> = Vec::new();
            let mut model: std::collections::HashMap<IpAddr, u32> = Default::default();
            for (op, w, client, max) in ops {
                let (w, ip) = (w as usize, v4(client));
                match op {
                    0 | 1 => {
                        let n = model.get(&ip).copied().unwrap_or(0);
                        match views[w].take(3, ip, max) {
                            Take::Taken(i) => {
                                proptest::prop_assert!(n < max);
                                *model.entry(ip).or_default() += 1;
                                held.push((w, ip, i));
                            }
                            Take::Refused => proptest::prop_assert!(n >= max),
                            Take::Full => {}
                        }
                    }
                    2 => {
                        if let Some((w, ip, i)) = held.pop() {
                            views[w].give(i);
                            *model.entry(ip).or_default() -= 1;
                        }
                    }
                    _ => {
                        c.release_worker(w as u32);
                        views[w] = c.clients(w as u32).unwrap();
                        held.retain(|(hw, ip, _)| {
                            if *hw == w {
                                *model.entry(*ip).or_default() -= 1;
                            }
                            *hw != w
                        });
                    }
                }
                for (ip, n) in &model {
                    proptest::prop_assert_eq!(views[0].count(3, *ip), *n);
                }
            }
        }
    }
}
