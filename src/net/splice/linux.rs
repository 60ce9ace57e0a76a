//! The splice(2) pump and its pipe pool.

use std::io;
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use crate::rt::Async;
use rustix::io::Errno;
use rustix::pipe::{PipeFlags, SpliceFlags};

use super::super::buffered::{BUDGET, Pool};
use super::super::copy::{Meter, PumpError, shutdown_write};

/// Requested capacity of a new pipe (the kernel may grant less when the user's pipe pages
/// run low).
const PIPE_SIZE: usize = 64 * 1024;
/// What a pipe grows to once a splice has filled it (a bulk direction): splice moves up to
/// a pipe's worth per call, so a bulk stream costs fewer calls and wake-ups per byte
/// (docs/benchmarks.md, "Bulk: pipe size").
const BULK_PIPE_SIZE: usize = 256 * 1024;
/// Most grown pipes alive in this process, pooled ones included. Pipe pages count against
/// the user's `fs.pipe-user-pages-soft` (16384 pages by default); once an unprivileged user
/// is over it, new pipes get two pages. 64 grown pipes take a quarter of the default.
const MAX_GROWN: usize = 64;
/// Grown pipes alive in this process.
static GROWN: AtomicUsize = AtomicUsize::new(0);
/// Most empty pipes kept for reuse (two descriptors each).
const PIPE_POOL_CAP: usize = 32;

/// Empty pipes ready for reuse.
pub(super) static PIPES: Pool<Pipe> = Pool::new(PIPE_POOL_CAP);

#[cfg(test)]
thread_local! {
    /// Test hook: pipe creation fails on this thread (as with EMFILE).
    pub(in super::super) static NO_PIPES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A pipe's two ends and its capacity.
#[derive(Debug)]
pub(super) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    cap: usize,
    growth: Growth,
}

/// Whether a pipe has grown to `BULK_PIPE_SIZE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Growth {
    /// At its first size; it may grow.
    Not,
    /// Grown and counted in `GROWN` (given back when the pipe closes).
    Grown,
    /// The kernel refused (the user's pipe pages are spent): not asked again.
    Refused,
}

impl Pipe {
    /// A pooled pipe, or a new one.
    fn take() -> io::Result<Pipe> {
        #[cfg(test)]
        if NO_PIPES.get() {
            return Err(io::ErrorKind::QuotaExceeded.into());
        }
        match PIPES.take() {
            Some(pipe) => Ok(pipe),
            None => Pipe::new(),
        }
    }

    /// A new pipe of about `PIPE_SIZE`.
    fn new() -> io::Result<Pipe> {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        // Best effort: the default is already 64 KiB on most systems.
        let _ = rustix::pipe::fcntl_setpipe_size(&write, PIPE_SIZE);
        let cap = rustix::pipe::fcntl_getpipe_size(&write)
            .unwrap_or(4096)
            .max(1);
        Ok(Pipe {
            read,
            write,
            cap,
            growth: Growth::Not,
        })
    }

    /// Grows the pipe to `BULK_PIPE_SIZE` once, if fewer than `limit` grown pipes are
    /// alive; best effort (the kernel may refuse or grant less, and is then not asked
    /// again for this pipe). Bytes in the pipe stay.
    fn grow(&mut self, limit: usize) {
        if self.growth != Growth::Not || self.cap >= BULK_PIPE_SIZE {
            return;
        }
        if GROWN
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_err()
        {
            return;
        }
        match rustix::pipe::fcntl_setpipe_size(&self.write, BULK_PIPE_SIZE) {
            Ok(cap) if cap > self.cap => {
                self.cap = cap;
                self.growth = Growth::Grown;
            }
            _ => {
                GROWN.fetch_sub(1, Ordering::Relaxed);
                self.growth = Growth::Refused;
            }
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        if self.growth == Growth::Grown {
            GROWN.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// What the splice pump decided.
pub(super) enum Step {
    /// Progress as usual.
    Poll(Poll<Result<(), PumpError>>),
    /// Splicing is impossible here: continue with the buffered copy (the pipe is empty).
    Fallback,
}

/// One spliced direction: the pipe while busy and how many bytes sit in it.
#[derive(Debug, Default)]
pub(super) struct SpliceHalf {
    pipe: Option<Pipe>,
    in_pipe: usize,
    /// Bytes delivered through the pipe so far.
    pub(super) spliced: u64,
    /// Wait for the source to be readable before the next splice from it (the last one
    /// came back EAGAIN; see `TcpPump`).
    wait: bool,
}

const FLAGS: SpliceFlags = SpliceFlags::MOVE.union(SpliceFlags::NONBLOCK);

impl SpliceHalf {
    /// A direction with no pipe yet; `wait`: wait for readiness before the first splice.
    pub(super) fn new(wait: bool) -> Self {
        SpliceHalf {
            pipe: None,
            in_pipe: 0,
            spliced: 0,
            wait,
        }
    }

    /// Moves bytes until the source is drained for now, EOF was passed on, or an error.
    pub(super) fn poll_pump(
        &mut self,
        cx: &mut Context<'_>,
        src: &Async<TcpStream>,
        dst: &Async<TcpStream>,
        meter: &mut Meter<'_>,
    ) -> Step {
        let mut budget = BUDGET;
        loop {
            match self.poll_drain(cx, dst, meter) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    return Step::Poll(Poll::Ready(Err(PumpError::Write(e))));
                }
                Poll::Pending => return Step::Poll(Poll::Pending),
            }
            if meter.eof {
                if meter.peer_done {
                    // The relay ends here and the sockets get closed: close sends the FIN.
                    return Step::Poll(Poll::Ready(Ok(())));
                }
                return Step::Poll(Poll::Ready(shutdown_write(dst).map_err(PumpError::Write)));
            }
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Step::Poll(Poll::Pending);
            }
            budget -= 1;
            if self.wait {
                if let Some(pipe) = self.pipe.take() {
                    PIPES.give(pipe); // empty here: nothing is in flight while we wait
                }
                match src.poll_readable(cx) {
                    Poll::Ready(Ok(())) => self.wait = false,
                    Poll::Ready(Err(e)) => {
                        return Step::Poll(Poll::Ready(Err(PumpError::Read(e))));
                    }
                    Poll::Pending => return Step::Poll(Poll::Pending),
                }
            }
            let pipe = match self.pipe.take().map_or_else(Pipe::take, Ok) {
                Ok(pipe) => self.pipe.insert(pipe),
                // No pipe (EMFILE, ENFILE): the pipe is empty, so copying in userspace is safe.
                Err(_) => return Step::Fallback,
            };
            let tick = src.read_tick();
            match rustix::pipe::splice(src.get_ref(), None, &pipe.write, None, pipe.cap, FLAGS) {
                // At a TCP urgent mark splice stops for good (EAGAIN, or 0 once the FIN
                // is in): only recv skips the urgent byte. The pipe is empty here, so the
                // buffered copy takes over without losing a byte.
                Ok(0) | Err(Errno::AGAIN) if src.urgent_seen() => return Step::Fallback,
                Ok(0) => meter.eof = true,
                // A short splice is not taken as "drained": under a fast sender more is
                // often queued by the time the pipe is emptied (measured: waiting after
                // short splices cost CPU per GB).
                Ok(n) => {
                    self.in_pipe = n;
                    if n >= pipe.cap {
                        pipe.grow(MAX_GROWN);
                    }
                }
                Err(Errno::INTR) => {}
                // Nothing to read: wait (the empty pipe goes back to the pool meanwhile).
                Err(Errno::AGAIN) => {
                    src.read_drained(tick);
                    self.wait = true;
                }
                // The kernel cannot splice these sockets; nothing is stranded in the pipe.
                Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => return Step::Fallback,
                Err(e) => return Step::Poll(Poll::Ready(Err(PumpError::Read(e.into())))),
            }
        }
    }

    /// Empties the pipe into `dst`; Ready(Ok) once it is empty.
    fn poll_drain(
        &mut self,
        cx: &mut Context<'_>,
        dst: &Async<TcpStream>,
        meter: &mut Meter<'_>,
    ) -> Poll<io::Result<()>> {
        while self.in_pipe > 0 {
            let Some(pipe) = &self.pipe else {
                self.in_pipe = 0;
                break;
            };
            let tick = dst.write_tick();
            match rustix::pipe::splice(&pipe.read, None, dst.get_ref(), None, self.in_pipe, FLAGS) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    let n = n.min(self.in_pipe);
                    self.in_pipe -= n;
                    self.spliced += n as u64;
                    meter.delivered(n);
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => match dst.write_drained_then_poll(tick, cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                },
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for SpliceHalf {
    fn drop(&mut self) {
        // Only an empty pipe may be reused; one with stranded bytes is closed.
        if let Some(pipe) = self.pipe.take() {
            if self.in_pipe == 0 {
                PIPES.give(pipe);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Writes `bytes` into the pipe; how many it took (it is non-blocking).
    fn fill(pipe: &Pipe, bytes: &[u8]) -> usize {
        let mut done = 0;
        while done < bytes.len() {
            match rustix::io::write(&pipe.write, &bytes[done..]) {
                Ok(n) => done += n,
                Err(Errno::AGAIN) => break,
                Err(e) => panic!("pipe write: {e}"),
            }
        }
        done
    }

    /// Everything in the pipe, in order.
    fn drain(pipe: &Pipe) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rustix::io::read(&pipe.read, &mut buf) {
                Ok(0) | Err(Errno::AGAIN) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => panic!("pipe read: {e}"),
            }
        }
    }

    #[test]
    fn a_full_pipe_grows_and_keeps_its_bytes() {
        let mut pipe = Pipe::new().unwrap();
        let data: Vec<u8> = (0..BULK_PIPE_SIZE).map(|i| (i % 251) as u8).collect();
        let first = fill(&pipe, &data);
        assert_eq!(first, pipe.cap, "a new pipe holds its capacity");
        pipe.grow(usize::MAX);
        assert_eq!(pipe.growth, Growth::Grown);
        assert!(pipe.cap >= BULK_PIPE_SIZE, "grown to {}", pipe.cap);
        // The grown pipe takes the rest; what comes out is every byte in order.
        assert_eq!(first + fill(&pipe, &data[first..]), data.len());
        assert_eq!(drain(&pipe), data);
    }

    #[test]
    fn growth_stops_at_the_limit() {
        let mut pipe = Pipe::new().unwrap();
        let cap = pipe.cap;
        pipe.grow(0);
        assert_eq!(pipe.growth, Growth::Not, "the limit is not a refusal");
        assert_eq!(pipe.cap, cap);
        let data = vec![7u8; BULK_PIPE_SIZE];
        assert_eq!(fill(&pipe, &data), cap, "the pipe kept its size");
    }
}
