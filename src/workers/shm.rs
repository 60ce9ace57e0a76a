//! Counters shared by the Supervisor and every worker: one `memfd` mapped `MAP_SHARED` in each
//! process, read and written as atomics, so `--max-connections` and each mapping's
//! `circuit_breakers.max_connections` count over all workers (docs/architecture.md, "Workers").
//!
//! Layout: blocks of one `AtomicUsize` followed by [`SLOTS`] `AtomicU32`s. Block 0 holds the
//! totals every limit is checked against: the open-connection count of `--max-connections`,
//! and in slot `i ≥ 1` the circuit-breaker count of the mapping the Supervisor gave index `i`
//! (`pool/apply.rs`; slot 0 is unused). Block `1 + w` is worker `w`'s own share of those totals
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
//! (`crate::state::endpoints`, through [`ClientCounts`](crate::state::clients::ClientCounts)),
//! so the limit degrades to per worker, never to none. The table's takes and gives are in
//! `shm/clients.rs`; this file holds the layout, the mapping and the blocks.
//!
//! After the client table, the connection rate limits' buckets (`state/ratelimit.rs`: a
//! header and `SETS × (WAYS + 1)` words, 288 KiB), initialized by the Supervisor.
//!
//! The only `unsafe` of the crate lives here: the `mmap` and the views of the mapping as
//! atomics. The mapping is made once per process and never unmapped, which is what makes the
//! `&'static` references sound.
#![allow(unsafe_code)]

mod clients;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use rustix::fs::{MemfdFlags, ftruncate, memfd_create};
use rustix::mm::{MapFlags, ProtFlags, mmap};

pub(crate) use clients::ClientTable;
use clients::sub_count;

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

/// The client table after the blocks: the packed entries, then one lock word per set, then
/// the connection rate limits' table (`state/ratelimit.rs`).
const TABLE: usize = ENTRIES * size_of::<AtomicU64>()
    + SETS * size_of::<AtomicU32>()
    + crate::state::ratelimit::WORDS * size_of::<AtomicU64>();

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
    /// The connection rate limits' buckets.
    rates: &'static [AtomicU64],
}

impl Counters {
    /// Creates a zeroed mapping for `workers` workers (the Supervisor, once).
    pub(crate) fn create(workers: usize) -> std::io::Result<Counters> {
        let fd = memfd_create("tcpmap-counters", MemfdFlags::CLOEXEC)?;
        ftruncate(&fd, ((1 + workers) * BLOCK + TABLE) as u64)?;
        let counters = Self::map(fd)?;
        crate::state::ratelimit::RateTable::init(counters.rates);
        Ok(counters)
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
        // The rate words after the locks: offset 8 * ENTRIES + 4 * SETS from an 8-aligned
        // start, a multiple of 8 (SETS is even), inside TABLE.
        let (entries, locks, rates) = unsafe {
            let base = ptr.cast::<u8>().add(n * BLOCK);
            let entries = base.cast::<AtomicU64>();
            let locks = base
                .add(ENTRIES * size_of::<AtomicU64>())
                .cast::<AtomicU32>();
            let rates = base
                .add(ENTRIES * size_of::<AtomicU64>() + SETS * size_of::<AtomicU32>())
                .cast::<AtomicU64>();
            (
                std::slice::from_raw_parts(entries, ENTRIES),
                std::slice::from_raw_parts(locks, SETS),
                std::slice::from_raw_parts(rates, crate::state::ratelimit::WORDS),
            )
        };
        Ok(Counters {
            fd,
            blocks,
            entries,
            locks,
            rates,
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

    /// The connection rate limits' table every worker shares.
    pub(crate) fn rate_table(&self) -> Option<crate::state::ratelimit::RateTable> {
        crate::state::ratelimit::RateTable::shared(self.rates)
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

    #[test]
    fn a_descriptor_of_the_wrong_size_is_refused() {
        let fd = memfd_create("x", MemfdFlags::CLOEXEC).unwrap();
        ftruncate(&fd, 100).unwrap();
        assert!(Counters::open(fd).is_err());
    }
}
