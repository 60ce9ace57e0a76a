//! One direction of the buffered relay: read from a futures-io source, write to a destination,
//! pass EOF on with `poll_close`.
//!
//! Memory policy (an idle connection must hold no big buffer): reads go into a per-thread scratch
//! buffer and are written straight out from it; only bytes the destination did not accept at once
//! are moved into a heap buffer taken from a small global pool. That buffer is kept while the
//! direction is busy and returned to the pool as soon as it is empty and the source has nothing to
//! read. No allocation happens per read. This file must not know about sides, timers or stats.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};

use super::copy::{Meter, PumpError};

/// Size of the scratch buffer and of each pooled buffer.
pub(super) const BUF_SIZE: usize = 32 * 1024;
/// Reads per direction per poll before yielding to other tasks (async-std has no coop budget).
pub(super) const BUDGET: usize = 32;
/// Most buffers the pool keeps for reuse (the rest are freed).
const POOL_CAP: usize = 64;

/// A small global free list: `take` reuses an item when there is one, `give` keeps at most `cap`.
#[derive(Debug)]
pub(super) struct Pool<T> {
    items: Mutex<Vec<T>>,
    cap: usize,
}

impl<T> Pool<T> {
    /// An empty pool keeping at most `cap` items.
    pub(super) const fn new(cap: usize) -> Self {
        Pool {
            items: Mutex::new(Vec::new()),
            cap,
        }
    }

    /// A pooled item, if any.
    pub(super) fn take(&self) -> Option<T> {
        self.items
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .pop()
    }

    /// Returns an item; dropped when the pool is full.
    pub(super) fn give(&self, item: T) {
        let mut items = self
            .items
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if items.len() < self.cap {
            items.push(item);
        }
    }

    /// How many items wait in the pool.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.items
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .len()
    }
}

/// Heap buffers for congested directions.
pub(super) static BUFFERS: Pool<Box<[u8]>> = Pool::new(POOL_CAP);

thread_local! {
    /// Where reads land first; sized on first use, shared by every relay on this thread.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A heap buffer that goes back to [`BUFFERS`] when dropped.
#[derive(Debug)]
pub(super) struct PooledBuf(pub(super) Box<[u8]>);

impl PooledBuf {
    /// A buffer of [`BUF_SIZE`] bytes from the pool (allocated when the pool is empty).
    pub(super) fn take() -> Self {
        PooledBuf(
            BUFFERS
                .take()
                .unwrap_or_else(|| vec![0; BUF_SIZE].into_boxed_slice()),
        )
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        BUFFERS.give(std::mem::take(&mut self.0));
    }
}

/// State of one buffered direction: bytes read but not yet written, and whether a flush is owed.
#[derive(Debug, Default)]
pub(super) struct Half {
    buf: Option<PooledBuf>,
    start: usize,
    end: usize,
    need_flush: bool,
    /// A read error that came after bytes of the same fill: reported once those bytes are
    /// out (a TLS peer's reply followed by a bare FIN must still arrive).
    deferred: Option<io::Error>,
}

/// What one read attempt ended with (any bytes it read are written or stashed by then).
enum Read {
    /// End of stream.
    Eof,
    /// Bytes read; the source may have more.
    Data,
    /// The source has nothing more for now (its waker is registered).
    Pending,
}

impl Half {
    /// True when this direction holds a heap buffer (for memory tests).
    #[cfg(test)]
    pub(super) fn holds_buffer(&self) -> bool {
        self.buf.is_some()
    }

    /// True while read bytes wait in userspace for the destination.
    pub(super) fn holds_data(&self) -> bool {
        self.start < self.end
    }

    /// Copies until the source is drained for now (Pending), or until EOF has been passed on with
    /// `poll_close` (Ready(Ok)), or an error.
    pub(super) fn poll_pump<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
        dst: &mut W,
        meter: &mut Meter<'_>,
    ) -> Poll<Result<(), PumpError>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        let mut budget = BUDGET;
        loop {
            if self.poll_write_pending(cx, dst, meter)?.is_pending() {
                return Poll::Pending;
            }
            if let Some(e) = self.deferred.take() {
                self.buf = None;
                return Poll::Ready(Err(PumpError::Read(e)));
            }
            if meter.eof {
                // Done reading: the (empty) buffer goes back now, not when the other
                // direction ends too.
                self.buf = None;
                return Pin::new(dst).poll_close(cx).map_err(PumpError::Write);
            }
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            budget -= 1;
            let read = if self.buf.is_some() {
                self.read_into_buf(cx, src)?
            } else {
                self.read_via_scratch(cx, src, dst, meter)?
            };
            match read {
                Read::Eof => meter.eof = true,
                Read::Data => {}
                Read::Pending => {
                    // Write out what the read gave before it said Pending, then wait
                    // (reading again now would only repeat the EAGAIN).
                    if self.poll_write_pending(cx, dst, meter)?.is_pending() {
                        return Poll::Pending;
                    }
                    if self.need_flush {
                        if let Poll::Ready(done) = Pin::new(&mut *dst).poll_flush(cx) {
                            done.map_err(PumpError::Write)?;
                            self.need_flush = false;
                        }
                    }
                    // Quiet and empty: give the buffer back so an idle connection holds none.
                    self.buf = None;
                    return Poll::Pending;
                }
            }
        }
    }

    /// Writes out the heap buffer's pending bytes; Ready once it is empty.
    fn poll_write_pending<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut W,
        meter: &mut Meter<'_>,
    ) -> Poll<Result<(), PumpError>> {
        while self.start < self.end {
            let Some(chunk) = self
                .buf
                .as_ref()
                .and_then(|b| b.0.get(self.start..self.end))
            else {
                self.start = self.end;
                break;
            };
            let n = match Pin::new(&mut *dst).poll_write(cx, chunk) {
                Poll::Ready(Ok(n)) => n.min(chunk.len()),
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(PumpError::Write(e))),
                Poll::Pending => return Poll::Pending,
            };
            if n == 0 {
                return Poll::Ready(Err(PumpError::Write(io::ErrorKind::WriteZero.into())));
            }
            self.start += n;
            self.need_flush = true;
            meter.delivered(n);
        }
        self.start = 0;
        self.end = 0;
        Poll::Ready(Ok(()))
    }

    /// Reads into the held heap buffer (which is empty here).
    fn read_into_buf<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
    ) -> Result<Read, PumpError> {
        let Some(buf) = self.buf.as_mut() else {
            return Ok(Read::Data);
        };
        match poll_read(cx, src, &mut buf.0)? {
            Some(0) => Ok(Read::Eof),
            Some(n) => {
                self.start = 0;
                self.end = n;
                Ok(Read::Data)
            }
            None => Ok(Read::Pending),
        }
    }

    /// Reads into the thread's scratch buffer until it is full or the source has nothing more
    /// for now (a TLS stream hands out one record per read: several go out in one write), and
    /// writes straight from it; whatever the destination does not take at once is stashed in a
    /// pooled heap buffer.
    fn read_via_scratch<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
        dst: &mut W,
        meter: &mut Meter<'_>,
    ) -> Result<Read, PumpError>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        SCRATCH.with(|cell| {
            let Ok(mut scratch) = cell.try_borrow_mut() else {
                // Re-entered on this thread (never expected): read into a heap buffer instead.
                self.buf = Some(PooledBuf::take());
                return self.read_into_buf(cx, src);
            };
            if scratch.len() < BUF_SIZE {
                scratch.resize(BUF_SIZE, 0);
            }
            let mut n = 0;
            let read = loop {
                let Some(room) = scratch.get_mut(n..).filter(|r| !r.is_empty()) else {
                    break Read::Data;
                };
                match poll_read(cx, src, room) {
                    Ok(Some(0)) if n == 0 => return Ok(Read::Eof),
                    Ok(None) if n == 0 => return Ok(Read::Pending),
                    Err(e) if n == 0 => return Err(e),
                    Ok(Some(0)) => break Read::Eof,
                    Ok(None) => break Read::Pending,
                    Ok(Some(got)) => n += got,
                    // After bytes: they go out first, the error after them.
                    Err(PumpError::Read(e)) => {
                        self.deferred = Some(e);
                        break Read::Data;
                    }
                    Err(e) => return Err(e),
                }
            };
            let data = scratch.get(..n).unwrap_or_default();
            let written = match Pin::new(&mut *dst).poll_write(cx, data) {
                Poll::Ready(Ok(0)) => {
                    return Err(PumpError::Write(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(w)) => w.min(n),
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => 0,
                Poll::Ready(Err(e)) => return Err(PumpError::Write(e)),
                Poll::Pending => 0,
            };
            if written > 0 {
                self.need_flush = true;
                meter.delivered(written);
            }
            let rest = data.get(written..).unwrap_or_default();
            if !rest.is_empty() {
                let mut buf = PooledBuf::take();
                if let Some(slot) = buf.0.get_mut(..rest.len()) {
                    slot.copy_from_slice(rest);
                }
                self.buf = Some(buf);
                self.start = 0;
                self.end = rest.len();
            }
            Ok(read)
        })
    }
}

/// One read: Some(n) on data or EOF (0), None when the source has nothing now.
fn poll_read<R: AsyncRead + Unpin + ?Sized>(
    cx: &mut Context<'_>,
    src: &mut R,
    buf: &mut [u8],
) -> Result<Option<usize>, PumpError> {
    loop {
        return match Pin::new(&mut *src).poll_read(cx, buf) {
            Poll::Ready(Ok(n)) => Ok(Some(n.min(buf.len()))),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Poll::Ready(Err(e)) => Err(PumpError::Read(e)),
            Poll::Pending => Ok(None),
        };
    }
}

#[cfg(test)]
mod tests {
    //! The memory policy, with scripted streams: a heap buffer exists only while the destination
    //! lags, and is gone once the direction is quiet.

    use std::collections::VecDeque;
    use std::sync::atomic::AtomicU64;
    use std::task::Waker;

    use super::*;

    /// Yields its chunks one per read, then has nothing (Pending) — never EOF.
    struct Script(VecDeque<Vec<u8>>);

    impl AsyncRead for Script {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            match self.get_mut().0.pop_front() {
                Some(chunk) => {
                    buf[..chunk.len()].copy_from_slice(&chunk);
                    Poll::Ready(Ok(chunk.len()))
                }
                None => Poll::Pending,
            }
        }
    }

    /// Refuses the first `refusals` writes (Pending), then takes everything.
    struct Laggard {
        refusals: usize,
        got: Vec<u8>,
    }

    impl AsyncWrite for Laggard {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            if this.refusals > 0 {
                this.refusals -= 1;
                return Poll::Pending;
            }
            this.got.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn buffer_is_held_only_while_destination_lags() {
        let total = AtomicU64::new(0);
        let mut meter = Meter::new(&total);
        let mut cx = Context::from_waker(Waker::noop());
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let mut src = Script(VecDeque::from([data.clone()]));
        let mut dst = Laggard {
            refusals: 2,
            got: Vec::new(),
        };
        let mut half = Half::default();

        // An idle direction never touched a heap buffer.
        assert!(!half.holds_buffer());
        // The destination refuses: the read bytes are parked in a pooled buffer.
        assert!(
            half.poll_pump(&mut cx, &mut src, &mut dst, &mut meter)
                .is_pending()
        );
        assert!(half.holds_buffer());
        assert!(dst.got.is_empty());
        // It accepts now: everything is delivered and, the source being quiet, the buffer goes back.
        assert!(
            half.poll_pump(&mut cx, &mut src, &mut dst, &mut meter)
                .is_pending()
        );
        assert!(!half.holds_buffer());
        assert_eq!(dst.got, data);
        assert_eq!(total.load(std::sync::atomic::Ordering::Relaxed), 5000);
        assert!(BUFFERS.len() >= 1, "the buffer was freed instead of pooled");
    }

    #[test]
    fn fast_destination_needs_no_heap_buffer() {
        let total = AtomicU64::new(0);
        let mut meter = Meter::new(&total);
        let mut cx = Context::from_waker(Waker::noop());
        let mut src = Script(VecDeque::from([vec![1u8; 100], vec![2u8; 200]]));
        let mut dst = Laggard {
            refusals: 0,
            got: Vec::new(),
        };
        let mut half = Half::default();
        assert!(
            half.poll_pump(&mut cx, &mut src, &mut dst, &mut meter)
                .is_pending()
        );
        assert!(!half.holds_buffer());
        assert_eq!(dst.got.len(), 300);
    }
}

#[cfg(test)]
mod pump_properties {
    //! `Half::poll_pump` against scripted ends: whatever the chunking, the Pendings and the
    //! partial writes, every byte the source gave arrives once and in order, the end (EOF or
    //! an error) is reported after them, and the pump never busy-loops.

    use std::collections::VecDeque;
    use std::sync::atomic::AtomicU64;
    use std::task::Waker;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Step {
        Data(Vec<u8>),
        Pending,
    }

    /// Plays `steps`, then ends with EOF or an error (`fail`).
    struct Source {
        steps: VecDeque<Step>,
        fail: bool,
    }

    impl AsyncRead for Source {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            match this.steps.pop_front() {
                Some(Step::Pending) => Poll::Pending,
                Some(Step::Data(mut d)) => {
                    let n = d.len().min(buf.len());
                    buf[..n].copy_from_slice(&d[..n]);
                    if n < d.len() {
                        this.steps.push_front(Step::Data(d.split_off(n)));
                    }
                    Poll::Ready(Ok(n))
                }
                None if this.fail => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
                None => Poll::Ready(Ok(0)),
            }
        }
    }

    /// Takes at most `accept[i]` bytes on write `i` (0: Pending), everything once the list
    /// is used up.
    struct Sink {
        accept: VecDeque<usize>,
        got: Vec<u8>,
        closed: bool,
    }

    impl AsyncWrite for Sink {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let n = match this.accept.pop_front() {
                Some(0) => return Poll::Pending,
                Some(n) => n.min(buf.len()),
                None => buf.len(),
            };
            this.got.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().closed = true;
            Poll::Ready(Ok(()))
        }
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                3 => prop::collection::vec(any::<u8>(), 1..40_000).prop_map(Step::Data),
                1 => Just(Step::Pending),
            ],
            0..12,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn every_byte_arrives_in_order_before_the_end(
            steps in steps(),
            accept in prop::collection::vec(0usize..50_000, 0..12),
            fail in any::<bool>(),
        ) {
            let want: Vec<u8> = steps
                .iter()
                .filter_map(|s| match s { Step::Data(d) => Some(d.clone()), Step::Pending => None })
                .flatten()
                .collect();
            let mut src = Source { steps: steps.into(), fail };
            let mut dst = Sink { accept: accept.into(), got: Vec::new(), closed: false };
            let total = AtomicU64::new(0);
            let mut meter = Meter::new(&total);
            let mut half = Half::default();
            let mut cx = Context::from_waker(Waker::noop());
            // Every poll makes progress (a step, a write or the end) or the scripts run dry:
            // a bound on polls catches a pump that spins without moving.
            let mut outcome = None;
            for _ in 0..200 {
                if let Poll::Ready(r) = half.poll_pump(&mut cx, &mut src, &mut dst, &mut meter) {
                    outcome = Some(r);
                    break;
                }
            }
            let outcome = outcome.expect("the pump never finished");
            prop_assert_eq!(&dst.got, &want, "bytes lost, doubled or reordered");
            prop_assert_eq!(meter.bytes(), want.len() as u64);
            match outcome {
                Ok(()) => prop_assert!(!fail && dst.closed, "EOF passed on as a close"),
                Err(PumpError::Read(e)) => {
                    prop_assert!(fail);
                    prop_assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
                    prop_assert!(!dst.closed);
                }
                Err(PumpError::Write(e)) => prop_assert!(false, "write error {e}"),
            }
            // After its EOF a direction holds no buffer while the other one runs on (an
            // error ends the whole relay, and the buffer with it).
            if !fail {
                prop_assert!(!half.holds_buffer(), "a finished direction holds no buffer");
            }
        }
    }
}
