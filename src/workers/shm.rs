//! Counters shared by the Supervisor and every worker: one `memfd` mapped `MAP_SHARED` in each
//! process, read and written as atomics, so `--max-connections` and each mapping's
//! `circuit_breakers.max_connections` count over all workers (docs/architecture.md, "Workers").
//!
//! Layout: one `AtomicUsize`, the open-connection count of the `--max-connections` limit,
//! then [`SLOTS`] `AtomicU32`s: slot `i ≥ 1` is the circuit-breaker count of the mapping the
//! Supervisor gave index `i` (`pool.rs`); slot 0 is unused.
//!
//! The only `unsafe` of the crate lives here: the `mmap` and the views of the mapping as
//! atomics. The mapping is made once per process and never unmapped, which is what makes the
//! `&'static` references sound.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicUsize};

use rustix::fs::{MemfdFlags, ftruncate, memfd_create};
use rustix::mm::{MapFlags, ProtFlags, mmap};

/// Circuit-breaker slots in the mapping (256 KiB), slot 0 unused.
pub(crate) const SLOTS: usize = 65_536;

/// The mapping's size: the global count, then the slots.
const LEN: usize = size_of::<AtomicUsize>() + SLOTS * size_of::<AtomicU32>();

/// The shared counters of one Supervisor and its workers.
#[derive(Debug)]
pub(crate) struct Counters {
    fd: OwnedFd,
    global: &'static AtomicUsize,
    slots: &'static [AtomicU32],
}

impl Counters {
    /// Creates a zeroed mapping (the Supervisor, once).
    pub(crate) fn create() -> std::io::Result<Counters> {
        let fd = memfd_create("tcpmap-counters", MemfdFlags::CLOEXEC)?;
        ftruncate(&fd, LEN as u64)?;
        Self::map(fd)
    }

    /// Maps the counters a Supervisor created (a worker, from the descriptor it was sent).
    pub(crate) fn open(fd: OwnedFd) -> std::io::Result<Counters> {
        let len = rustix::fs::fstat(&fd)?.st_size;
        if usize::try_from(len).ok() != Some(LEN) {
            return Err(std::io::Error::other("shared counters of the wrong size"));
        }
        Self::map(fd)
    }

    fn map(fd: OwnedFd) -> std::io::Result<Counters> {
        let len = LEN;
        // SAFETY: a fresh mapping chosen by the kernel (null hint), not overlapping any Rust
        // object; `fd` is a memfd of exactly `len` bytes (sized above, or checked in `open`),
        // so every page of the mapping is backed.
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
        // SAFETY: `ptr` is page-aligned (so aligned for AtomicUsize, and the slots at offset
        // size_of::<AtomicUsize>() are aligned for AtomicU32), valid for reads and writes of
        // `LEN` bytes, which hold exactly one AtomicUsize followed by SLOTS AtomicU32s, and never
        // unmapped (no munmap anywhere: the mapping lives as long as the process), so `'static`
        // references are sound. A memfd starts zeroed, and zero is a valid value of both
        // atomics. Other processes write the same bytes only through atomic instructions of the
        // same width, which is what concurrent access to atomics requires.
        let (global, slots) = unsafe {
            let global = &*ptr.cast::<AtomicUsize>();
            let first = ptr
                .cast::<u8>()
                .add(size_of::<AtomicUsize>())
                .cast::<AtomicU32>();
            (global, std::slice::from_raw_parts(first, SLOTS))
        };
        Ok(Counters { fd, global, slots })
    }

    /// The descriptor to send to a worker.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The open-connection count of `--max-connections`.
    pub(crate) fn global(&self) -> &'static AtomicUsize {
        self.global
    }

    /// The circuit-breaker count of mapping slot `index` (`None` for 0 and past the end).
    pub(crate) fn slot(&self, index: u32) -> Option<&'static AtomicU32> {
        match index {
            0 => None,
            i => self.slots.get(i as usize),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn two_mappings_of_one_memfd_see_the_same_counters() {
        let a = Counters::create().unwrap();
        let dup = a.fd().try_clone_to_owned().unwrap();
        let b = Counters::open(dup).unwrap();
        a.global().fetch_add(3, Ordering::SeqCst);
        b.slot(7).unwrap().fetch_add(2, Ordering::SeqCst);
        assert_eq!(b.global().load(Ordering::SeqCst), 3);
        assert_eq!(a.slot(7).unwrap().load(Ordering::SeqCst), 2);
        assert!(a.slot(0).is_none());
        assert!(a.slot(SLOTS as u32).is_none());
    }
}
