//! Counters shared by the Supervisor and every worker: one `memfd` mapped `MAP_SHARED` in each
//! process, read and written as atomics, so `--max-connections` and each mapping's
//! `circuit_breakers.max_connections` count over all workers (docs/architecture.md, "Workers").
//!
//! Layout: blocks of one `AtomicUsize` followed by [`SLOTS`] `AtomicU32`s. Block 0 holds the
//! totals every limit is checked against: the open-connection count of `--max-connections`,
//! and in slot `i ≥ 1` the circuit-breaker count of the mapping the Supervisor gave index `i`
//! (`pool.rs`; slot 0 is unused). Block `1 + w` is worker `w`'s own share of those totals
//! (its [`Tally`]), written only by that worker, so when it dies the Supervisor can take its
//! share back out of the totals ([`Counters::release_worker`]) and no slot leaks. Pages a
//! worker never touches cost no memory.
//!
//! `max_connections_per_ip` counts in a [`ClientTable`]: after the blocks, [`SETS`] sets of
//! [`WAYS`] entries, each one `AtomicU64` packing a 40-bit key (the hash of the mapping's
//! index and the client address) over a 24-bit count, then one `AtomicU32` lock word per set.
//! Each block's third part (one `AtomicU32` per entry) is that worker's share of each entry,
//! given back like the others when it dies (block 0's third part is unused: the totals live
//! in the packed entries). An entry is bound to a key only under its set's lock, so a key is
//! never in two entries; counts move up and down without the lock (one CAS on the packed
//! word, which fails if the entry was rebound meanwhile). A set whose every entry holds open
//! connections of other keys is full: the caller then counts in its own process
//! (`crate::state::endpoints`, through [`ClientCounts`]), so the limit degrades to per worker, never to none.
//!
//! The only `unsafe` of the crate lives here: the `mmap` and the views of the mapping as
//! atomics. The mapping is made once per process and never unmapped, which is what makes the
//! `&'static` references sound.
#![allow(unsafe_code)]

use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use rustix::fs::{MemfdFlags, ftruncate, memfd_create};
use rustix::mm::{MapFlags, ProtFlags, mmap};

use crate::state::clients::{ClientCounts, Take};

/// Circuit-breaker slots per block (slot 0 unused).
pub(crate) const SLOTS: usize = 16_384;

/// Sets of the client table (a power of two).
pub(crate) const SETS: usize = 4_096;

/// Entries per set: a key lives in one of the [`WAYS`] entries of the set its hash picks.
pub(crate) const WAYS: usize = 8;

/// Entries of the client table.
const ENTRIES: usize = SETS * WAYS;

/// Bits of an entry's count (the low bits of its word); the key has the other 40.
const COUNT_BITS: u32 = 24;

/// The largest count an entry holds (a larger `max_connections_per_ip` is clamped to it).
pub(crate) const COUNT_MAX: u32 = (1 << COUNT_BITS) - 1;

/// A set's lock spins at most this often before the caller counts in its own process.
const LOCK_SPINS: u32 = 100_000;

/// One block: the count, the slots, then the share of each client entry (a multiple of 8
/// bytes, so every block is aligned).
const BLOCK: usize =
    size_of::<AtomicUsize>() + SLOTS * size_of::<AtomicU32>() + ENTRIES * size_of::<AtomicU32>();

/// The client table after the blocks: the packed entries, then one lock word per set.
const TABLE: usize = ENTRIES * size_of::<AtomicU64>() + SETS * size_of::<AtomicU32>();

/// One block's atomics.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tally {
    /// Open connections (under `--max-connections`).
    pub(crate) count: &'static AtomicUsize,
    /// Circuit-breaker counts by slot.
    pub(crate) slots: &'static [AtomicU32],
    /// This block's share of each client-table entry (unused in block 0).
    clients: &'static [AtomicU32],
}

impl Tally {
    /// Slot `index` (`None` for 0 and past the end).
    pub(crate) fn slot(&self, index: u32) -> Option<&'static AtomicU32> {
        match index {
            0 => None,
            i => self.slots.get(i as usize),
        }
    }
}

/// The shared counters of one Supervisor and its workers.
#[derive(Debug)]
pub(crate) struct Counters {
    fd: OwnedFd,
    blocks: Vec<Tally>,
    entries: &'static [AtomicU64],
    locks: &'static [AtomicU32],
}

impl Counters {
    /// Creates a zeroed mapping for `workers` workers (the Supervisor, once).
    pub(crate) fn create(workers: usize) -> std::io::Result<Counters> {
        let fd = memfd_create("tcpmap-counters", MemfdFlags::CLOEXEC)?;
        ftruncate(&fd, ((1 + workers) * BLOCK + TABLE) as u64)?;
        Self::map(fd)
    }

    /// Maps the counters a Supervisor created (a worker, from the descriptor it was sent).
    pub(crate) fn open(fd: OwnedFd) -> std::io::Result<Counters> {
        Self::map(fd)
    }

    fn map(fd: OwnedFd) -> std::io::Result<Counters> {
        let len = usize::try_from(rustix::fs::fstat(&fd)?.st_size)
            .map_err(|_| std::io::Error::other("shared counters of a bad size"))?;
        if len < 2 * BLOCK + TABLE || (len - TABLE) % BLOCK != 0 {
            return Err(std::io::Error::other("shared counters of the wrong size"));
        }
        // SAFETY: a fresh mapping chosen by the kernel (null hint), not overlapping any Rust
        // object; `fd` is a memfd of exactly `len` bytes (just read with fstat), so every page
        // of the mapping is backed.
        let ptr = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )?
        };
        let n = (len - TABLE) / BLOCK;
        let mut blocks = Vec::with_capacity(n);
        for b in 0..n {
            // SAFETY: block `b` lies inside the `len` bytes of the mapping (b < n, and the
            // n blocks come before the TABLE bytes); the mapping is page-aligned and BLOCK is
            // a multiple of 8, so the block's AtomicUsize is aligned, and the AtomicU32s after
            // it (offset 8, then 8 + 4 * SLOTS) are too. The bytes
            // are valid for reads and writes and never unmapped (no munmap anywhere: the
            // mapping lives as long as the process), so `'static` references are sound. A memfd
            // starts zeroed, and zero is a valid value of both atomics. Other processes write
            // the same bytes only through atomic instructions of the same width, which is what
            // concurrent access to atomics requires.
            let tally = unsafe {
                let base = ptr.cast::<u8>().add(b * BLOCK);
                let count = &*base.cast::<AtomicUsize>();
                let first = base.add(size_of::<AtomicUsize>()).cast::<AtomicU32>();
                Tally {
                    count,
                    slots: std::slice::from_raw_parts(first, SLOTS),
                    clients: std::slice::from_raw_parts(first.add(SLOTS), ENTRIES),
                }
            };
            blocks.push(tally);
        }
        // SAFETY: the TABLE bytes after the n blocks are inside the mapping (len = n * BLOCK +
        // TABLE, checked above); their offset n * BLOCK is a multiple of 8, so the AtomicU64
        // entries are aligned, and the AtomicU32 locks after them (offset 8 * ENTRIES) too.
        // Lifetime, zeroed start and cross-process access as for the blocks above.
        let (entries, locks) = unsafe {
            let base = ptr.cast::<u8>().add(n * BLOCK);
            let entries = base.cast::<AtomicU64>();
            let locks = base
                .add(ENTRIES * size_of::<AtomicU64>())
                .cast::<AtomicU32>();
            (
                std::slice::from_raw_parts(entries, ENTRIES),
                std::slice::from_raw_parts(locks, SETS),
            )
        };
        Ok(Counters {
            fd,
            blocks,
            entries,
            locks,
        })
    }

    /// Worker `id`'s view of the client table (`None` when the mapping has no block for it).
    pub(crate) fn clients(&self, id: u32) -> Option<ClientTable> {
        let mine = self.tally(id)?;
        Some(ClientTable {
            entries: self.entries,
            locks: self.locks,
            mine: mine.clients,
            owner: id.saturating_add(1),
        })
    }

    /// The descriptor to send to a worker.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The totals the limits are checked against (block 0).
    pub(crate) fn totals(&self) -> Option<Tally> {
        self.blocks.first().copied()
    }

    /// Worker `id`'s own share (`None` when the mapping has no block for it).
    pub(crate) fn tally(&self, id: u32) -> Option<Tally> {
        self.blocks.get(1 + id as usize).copied()
    }

    /// Takes dead worker `id`'s share out of the totals and zeroes it, before a replacement
    /// starts on the same block. Subtractions saturate at zero: a worker that died between
    /// counting its share and the total leaves at most one count short, never a wrap.
    pub(crate) fn release_worker(&self, id: u32) {
        let (Some(totals), Some(mine)) = (self.totals(), self.tally(id)) else {
            return;
        };
        let n = mine.count.swap(0, Ordering::AcqRel);
        if n > 0 {
            let _ = totals
                .count
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                    Some(t.saturating_sub(n))
                });
        }
        for (total, own) in totals.slots.iter().zip(mine.slots) {
            let n = own.swap(0, Ordering::AcqRel);
            if n > 0 {
                let _ = total.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                    Some(t.saturating_sub(n))
                });
            }
        }
        for (entry, own) in self.entries.iter().zip(mine.clients) {
            let n = own.swap(0, Ordering::AcqRel);
            if n > 0 {
                sub_count(entry, n);
            }
        }
        // A lock the dead worker held (it died in the few instructions under it) is free.
        let owner = id.saturating_add(1);
        for lock in self.locks {
            let _ = lock.compare_exchange(owner, 0, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

/// Takes `n` off the count of a packed entry, saturating at zero (the key stays).
fn sub_count(entry: &AtomicU64, n: u32) {
    let _ = entry.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
        let count = (v & u64::from(COUNT_MAX)) as u32;
        Some((v & !u64::from(COUNT_MAX)) | u64::from(count.saturating_sub(n)))
    });
}

/// One worker's view of the client table: the shared entries and its own shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientTable {
    entries: &'static [AtomicU64],
    locks: &'static [AtomicU32],
    mine: &'static [AtomicU32],
    /// The lock value of this worker (its id + 1; 0 is free).
    owner: u32,
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

    #[test]
    fn two_mappings_of_one_memfd_see_the_same_counters() {
        let a = Counters::create(2).unwrap();
        let dup = a.fd().try_clone_to_owned().unwrap();
        let b = Counters::open(dup).unwrap();
        a.totals().unwrap().count.fetch_add(3, Ordering::SeqCst);
        b.totals()
            .unwrap()
            .slot(7)
            .unwrap()
            .fetch_add(2, Ordering::SeqCst);
        assert_eq!(b.totals().unwrap().count.load(Ordering::SeqCst), 3);
        assert_eq!(
            a.totals().unwrap().slot(7).unwrap().load(Ordering::SeqCst),
            2
        );
        assert!(a.totals().unwrap().slot(0).is_none());
        assert!(a.totals().unwrap().slot(SLOTS as u32).is_none());
        assert!(a.tally(1).is_some() && a.tally(2).is_none());
    }

    #[test]
    fn a_dead_workers_share_goes_back() {
        let c = Counters::create(2).unwrap();
        let (totals, w0, w1) = (
            c.totals().unwrap(),
            c.tally(0).unwrap(),
            c.tally(1).unwrap(),
        );
        for (t, n) in [(w0, 2), (w1, 3)] {
            t.count.fetch_add(n, Ordering::SeqCst);
            totals.count.fetch_add(n, Ordering::SeqCst);
            t.slot(5).unwrap().fetch_add(n as u32, Ordering::SeqCst);
            totals
                .slot(5)
                .unwrap()
                .fetch_add(n as u32, Ordering::SeqCst);
        }
        c.release_worker(1);
        assert_eq!(totals.count.load(Ordering::SeqCst), 2);
        assert_eq!(totals.slot(5).unwrap().load(Ordering::SeqCst), 2);
        assert_eq!(w1.count.load(Ordering::SeqCst), 0);
        // A share larger than the total (a death mid-count) saturates at zero.
        w0.count.fetch_add(5, Ordering::SeqCst);
        c.release_worker(0);
        assert_eq!(totals.count.load(Ordering::SeqCst), 0);
    }

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

    #[test]
    fn a_descriptor_of_the_wrong_size_is_refused() {
        let fd = memfd_create("x", MemfdFlags::CLOEXEC).unwrap();
        ftruncate(&fd, 100).unwrap();
        assert!(Counters::open(fd).is_err());
    }
}
