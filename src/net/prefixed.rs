//! A stream that first replays bytes already read from it (the ClientHello read while
//! routing), then reads from the socket, reading ahead for small readers. Writes go straight
//! through.
//!
//! Read-ahead: rustls asks its transport for at most 4 KiB at a time, so a 16 KiB record
//! would cost four `read`s. A read smaller than [`READ_AHEAD_BELOW`] is served from one
//! [`BUF_SIZE`] read into a pooled buffer instead. The buffer is held only while it holds
//! bytes: an idle connection holds none.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};

use super::buffered::{BUF_SIZE, PooledBuf};

/// Reads asking for fewer bytes than this go through the read-ahead buffer.
const READ_AHEAD_BELOW: usize = BUF_SIZE;

/// `prefix` bytes, then `inner`.
pub(crate) struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    /// Bytes read ahead from `inner` and not yet handed out: `ahead[start..end]`.
    ahead: Option<PooledBuf>,
    start: usize,
    end: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// Wraps `inner`, replaying `prefix` first.
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            pos: 0,
            ahead: None,
            start: 0,
            end: 0,
            inner,
        }
    }

    /// The wrapped stream.
    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    /// True while read-ahead bytes wait in a pooled buffer (for memory tests).
    #[cfg(test)]
    pub(crate) fn holds_buffer(&self) -> bool {
        self.ahead.is_some()
    }
}

/// Copies as much of `src` as fits into `dst`; how much that was.
fn copy_into(dst: &mut [u8], src: &[u8]) -> usize {
    let n = src.len().min(dst.len());
    if let (Some(d), Some(s)) = (dst.get_mut(..n), src.get(..n)) {
        d.copy_from_slice(s);
    }
    n
}

impl<S: AsyncRead + Unpin> Prefixed<S> {
    /// Serves `buf` from the read-ahead buffer, refilling it with one read of `inner` when it
    /// is empty. The buffer goes back to the pool as soon as it is empty again.
    fn poll_read_ahead(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if self.start >= self.end {
            let mut ahead = self.ahead.take().unwrap_or_else(PooledBuf::take);
            let n = match Pin::new(&mut self.inner).poll_read(cx, &mut ahead.0) {
                Poll::Ready(Ok(n)) => n.min(ahead.0.len()),
                // Pending or an error: the buffer goes back to the pool (dropped here).
                other => return other,
            };
            (self.start, self.end) = (0, n);
            self.ahead = Some(ahead);
        }
        let got = self
            .ahead
            .as_ref()
            .and_then(|a| a.0.get(self.start..self.end))
            .map_or(0, |held| copy_into(buf, held));
        self.start += got;
        if self.start >= self.end {
            self.ahead = None;
            (self.start, self.end) = (0, 0);
        }
        Poll::Ready(Ok(got))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let Some(rest) = this.prefix.get(this.pos..).filter(|r| !r.is_empty()) {
            let n = copy_into(buf, rest);
            this.pos += n;
            if this.pos >= this.prefix.len() {
                // Done replaying: give the memory back.
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(n));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.start < this.end || buf.len() < READ_AHEAD_BELOW {
            return this.poll_read_ahead(cx, buf);
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use futures_lite::AsyncReadExt;

    /// A source that hands out `data` in the chunks asked for, and Pending once per `gaps`
    /// entry before the read at that offset; it records every read's requested size.
    struct Source {
        data: Vec<u8>,
        at: usize,
        gaps: Vec<usize>,
        asked: Vec<usize>,
    }

    impl AsyncRead for Source {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let at = self.at;
            if let Some(i) = self.gaps.iter().position(|&g| g == at) {
                self.gaps.remove(i);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.asked.push(buf.len());
            let n = copy_into(buf, self.data.get(at..).unwrap_or_default());
            self.at += n;
            Poll::Ready(Ok(n))
        }
    }

    fn source(len: usize, gaps: Vec<usize>) -> Source {
        Source {
            data: (0..len).map(|i| (i % 251) as u8).collect(),
            at: 0,
            gaps,
            asked: Vec::new(),
        }
    }

    /// Reads everything in `chunk`-byte reads; the bytes, in order.
    fn read_all(s: &mut Prefixed<Source>, chunk: usize) -> Vec<u8> {
        futures_lite::future::block_on(async {
            let mut out = Vec::new();
            let mut buf = vec![0; chunk];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    return out;
                }
                out.extend_from_slice(&buf[..n]);
            }
        })
    }

    #[test]
    fn small_reads_are_served_from_one_big_read_in_order_after_the_prefix() {
        let mut s = Prefixed::new(b"hello".to_vec(), source(100_000, vec![0, 40_000]));
        let got = read_all(&mut s, 4096);
        let mut want = b"hello".to_vec();
        want.extend((0..100_000).map(|i| (i % 251) as u8));
        assert_eq!(got, want);
        // Every read of the socket asked for a whole buffer, not 4 KiB.
        assert!(
            s.inner.asked.iter().all(|&n| n == BUF_SIZE),
            "{:?}",
            s.inner.asked
        );
        assert!(s.inner.asked.len() <= 100_000 / BUF_SIZE + 3);
        assert!(!s.holds_buffer(), "a drained stream keeps no buffer");
    }

    #[test]
    fn large_reads_go_straight_to_the_socket() {
        let mut s = Prefixed::new(Vec::new(), source(100_000, Vec::new()));
        let got = read_all(&mut s, BUF_SIZE);
        assert_eq!(got.len(), 100_000);
        assert!(s.inner.asked.iter().all(|&n| n == BUF_SIZE));
        assert!(!s.holds_buffer());
    }

    #[test]
    fn a_pending_socket_leaves_no_buffer_held() {
        let mut s = Prefixed::new(Vec::new(), source(10, vec![0]));
        let waker = futures_lite::future::block_on(futures_lite::future::poll_fn(|cx| {
            Poll::Ready(cx.waker().clone())
        }));
        let mut cx = Context::from_waker(&waker);
        let mut buf = [0u8; 100];
        assert!(Pin::new(&mut s).poll_read(&mut cx, &mut buf).is_pending());
        assert!(!s.holds_buffer(), "waiting for the socket holds no buffer");
        // Partly served: the rest waits in the buffer, then it is given back.
        let mut three = [0u8; 3];
        assert!(matches!(
            Pin::new(&mut s).poll_read(&mut cx, &mut three),
            Poll::Ready(Ok(3))
        ));
        assert!(s.holds_buffer());
        assert!(matches!(
            Pin::new(&mut s).poll_read(&mut cx, &mut buf),
            Poll::Ready(Ok(7))
        ));
        assert!(!s.holds_buffer());
        assert!(matches!(
            Pin::new(&mut s).poll_read(&mut cx, &mut buf),
            Poll::Ready(Ok(0))
        ));
    }
}
