//! A terminated TLS 1.3 client after its handshake, with records decrypted and encrypted in
//! buffers this stream owns: a record is read from the socket into the input buffer and
//! decrypted there (the relay copies its plaintext out once), and plaintext is encrypted into
//! the output buffer it is sent from. rustls's buffered connection instead copies every record
//! from the socket's read into its own buffer, then the plaintext into a new `Vec` per record,
//! then out of it (docs/benchmarks.md, "TLS records in our own buffers").
//!
//! rustls negotiated the keys (`actors::connection::handshake`) and still owns them: a KeyUpdate
//! from the client gets its new key from [`KernelConnection`], and so does ours (answering an
//! `update_requested`, or before a key reaches its suite's confidentiality limit).
//!
//! Memory policy as in the relay: the input buffer is held only while it holds bytes, the
//! output buffer only while records wait for the socket, so an idle connection holds neither.
//!
//! Close semantics as rustls's buffered stream: a close_notify reads as EOF, a TCP close
//! without one as `UnexpectedEof`, an alert as an `InvalidData` error carrying
//! `rustls::Error::AlertReceived`; `poll_close` sends close_notify, then shuts the TCP write half.

use std::io;
use std::net::TcpStream;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{AlertDescription, ExtractedSecrets, ProtocolVersion};

use super::buffered::Pool;
use super::tls_record::{self as record, Fatal, Keys};
use crate::rt::Async;

/// Size of the input and output buffers: two whole records and some.
pub(crate) const BUF: usize = 2 * record::MAX_RECORD + 1024;
/// Output kept free for control records (a KeyUpdate, an alert) while data fills the rest.
const RESERVE: usize = 64;
/// Plaintext queued after a write that sends it at once; smaller writes wait for the relay's
/// flush or close (an answer and the close_notify after it leave together), as
/// `CloseNotifyOptional::batching` does with rustls.
const BATCH: usize = 16 * 1024;
/// Empty records, ignored warning alerts or KeyUpdates in a row before we stop reading (a peer
/// could otherwise keep us busy without sending anything).
const MAX_EMPTY: u8 = 32;

/// Buffers for every record stream.
static BUFFERS: Pool<Box<[u8]>> = Pool::new(64);

/// A [`BUF`]-sized buffer that goes back to [`BUFFERS`] when dropped (zeroed once, when first
/// allocated; the handshake reads and encodes into these too).
pub(crate) struct Buf(pub(crate) Box<[u8]>);

impl Buf {
    /// A buffer of at least `len` bytes (from the pool when `len` fits one).
    pub(crate) fn take(len: usize) -> Self {
        match BUFFERS.take() {
            Some(b) if b.len() >= len => Buf(b),
            _ => Buf(vec![0; len.max(BUF)].into_boxed_slice()),
        }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if self.0.len() == BUF {
            BUFFERS.give(std::mem::take(&mut self.0));
        }
    }
}

/// How the read side stands.
enum ReadEnd {
    Open,
    /// close_notify received: EOF.
    Closed,
    /// TCP closed without close_notify.
    Eof,
    /// A fatal error (the alert for it was sent).
    Failed(rustls::Error),
}

/// What the handshake learnt that later stages ask for.
#[derive(Debug, Clone, Default)]
pub(crate) struct Negotiated {
    pub(crate) alpn: Option<Vec<u8>>,
    pub(crate) version: Option<ProtocolVersion>,
    pub(crate) peer_certificates: bool,
}

/// A terminated TLS 1.3 client stream (see the module docs).
pub(crate) struct RecordStream {
    io: Async<TcpStream>,
    kernel: KernelConnection<ServerConnectionData>,
    rx: Keys,
    tx: Keys,
    /// Records sent with one key before we move to the next.
    tx_limit: u64,
    negotiated: Negotiated,
    /// Plaintext that arrived during the handshake, served first.
    early: Vec<u8>,
    /// Input: `inb[in_start..in_end]` are received bytes not yet decrypted, `inb[plain.0..plain.1]`
    /// decrypted content not yet read.
    inb: Option<Buf>,
    in_start: usize,
    in_end: usize,
    plain: (usize, usize),
    /// Output: `out[out_start..out_end]` are records not yet sent.
    out: Option<Buf>,
    out_start: usize,
    out_end: usize,
    read: ReadEnd,
    /// close_notify (or a fatal alert) queued: nothing more is written.
    close_sent: bool,
    empty_in_a_row: u8,
    /// Our answer to an update_requested is queued and no data after it yet: further requests
    /// get no answer of their own (RFC 8446 §4.6.3), so answers never outgrow [`RESERVE`].
    answer_queued: bool,
}

impl RecordStream {
    /// The stream after a handshake: `inb[start..end]` holds the bytes read past it (whole or
    /// partial records), `early` any plaintext rustls already decrypted, `closed` whether the
    /// client's close_notify came with the handshake.
    pub(crate) fn new(
        io: Async<TcpStream>,
        secrets: ExtractedSecrets,
        kernel: KernelConnection<ServerConnectionData>,
        negotiated: Negotiated,
        ((inb, start, end), early, closed): ((Buf, usize, usize), Vec<u8>, bool),
    ) -> Result<Self, rustls::Error> {
        let tx_limit = kernel
            .negotiated_cipher_suite()
            .tls13()
            .map_or(1 << 23, |s| s.common.confidentiality_limit)
            .saturating_sub(1024)
            .max(1);
        let (inb, start, end) = if start < end {
            (Some(inb), start, end)
        } else {
            (None, 0, 0)
        };
        Ok(RecordStream {
            rx: Keys::new(secrets.rx.0, &secrets.rx.1)?,
            tx: Keys::new(secrets.tx.0, &secrets.tx.1)?,
            io,
            kernel,
            tx_limit,
            negotiated,
            early,
            inb,
            in_start: start,
            in_end: end,
            plain: (0, 0),
            out: None,
            out_start: 0,
            out_end: 0,
            read: if closed {
                ReadEnd::Closed
            } else {
                ReadEnd::Open
            },
            close_sent: false,
            empty_in_a_row: 0,
            answer_queued: false,
        })
    }

    /// The client's socket.
    pub(crate) fn socket(&self) -> &Async<TcpStream> {
        &self.io
    }

    /// ALPN, version and client certificate, as negotiated.
    pub(crate) fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// True when this stream holds a buffer (for memory tests).
    #[cfg(test)]
    pub(crate) fn holds_buffer(&self) -> bool {
        self.inb.is_some() || self.out.is_some()
    }

    /// Copies decrypted bytes into `buf`; None when there are none.
    fn take_plain(&mut self, buf: &mut [u8]) -> Option<usize> {
        if !self.early.is_empty() {
            let n = buf.len().min(self.early.len());
            buf.get_mut(..n)?.copy_from_slice(self.early.get(..n)?);
            self.early.drain(..n);
            return Some(n);
        }
        let (start, end) = self.plain;
        if start >= end {
            return None;
        }
        let inb = self.inb.as_ref()?;
        let n = buf.len().min(end - start);
        buf.get_mut(..n)?
            .copy_from_slice(inb.0.get(start..start + n)?);
        self.plain.0 += n;
        Some(n)
    }

    /// Decrypts the next record if it is all there: Ok(true) when one was handled.
    fn next_record(&mut self) -> Result<bool, Fatal> {
        let Some(inb) = self.inb.as_mut() else {
            return Ok(false);
        };
        let avail = inb.0.get(self.in_start..self.in_end).unwrap_or_default();
        let Some(len) = record::record_len(avail)? else {
            return Ok(false);
        };
        if avail.len() < len {
            return Ok(false);
        }
        let at = self.in_start;
        let rec = inb.0.get_mut(at..at + len).unwrap_or_default();
        let (kind, n) = record::open(&mut self.rx, rec)?;
        self.in_start += len;
        let content = (at + record::HEADER, at + record::HEADER + n);
        match kind {
            record::APPLICATION_DATA if n > 0 => {
                self.empty_in_a_row = 0;
                self.plain = content;
                Ok(true)
            }
            record::APPLICATION_DATA => self.quiet_record(),
            record::ALERT | record::HANDSHAKE => {
                let mut msg = [0u8; 8];
                let bytes = inb.0.get(content.0..content.1).unwrap_or_default();
                let Some(small) = msg.get_mut(..bytes.len()) else {
                    return Err(Fatal::new(
                        AlertDescription::DecodeError,
                        rustls::Error::General("control record too long".into()),
                    ));
                };
                small.copy_from_slice(bytes);
                let body = msg.get(..n).unwrap_or_default();
                if kind == record::ALERT {
                    self.alert(body)
                } else {
                    self.key_update(body)
                }
            }
            _ => Err(Fatal::new(
                AlertDescription::UnexpectedMessage,
                rustls::Error::General("unexpected content type".into()),
            )),
        }
    }

    /// An empty record or an ignored warning: allowed, a few in a row.
    fn quiet_record(&mut self) -> Result<bool, Fatal> {
        self.empty_in_a_row += 1;
        if self.empty_in_a_row > MAX_EMPTY {
            return Err(Fatal::new(
                AlertDescription::UnexpectedMessage,
                rustls::Error::General("too many empty records".into()),
            ));
        }
        Ok(true)
    }

    /// A received alert (RFC 8446 §6): close_notify is EOF, a warning user_canceled is
    /// ignored, any other alert ends the connection with it.
    fn alert(&mut self, body: &[u8]) -> Result<bool, Fatal> {
        let &[level, desc] = body else {
            return Err(Fatal::new(
                AlertDescription::DecodeError,
                rustls::Error::General("bad alert".into()),
            ));
        };
        let desc = AlertDescription::from(desc);
        match (level, desc) {
            (1 | 2, AlertDescription::CloseNotify) => self.read = ReadEnd::Closed,
            (1, AlertDescription::UserCanceled) => return self.quiet_record(),
            (1, _) => {
                return Err(Fatal::new(
                    AlertDescription::DecodeError,
                    rustls::Error::AlertReceived(desc),
                ));
            }
            (2, _) => self.read = ReadEnd::Failed(rustls::Error::AlertReceived(desc)),
            _ => {
                return Err(Fatal::new(
                    AlertDescription::IllegalParameter,
                    rustls::Error::AlertReceived(desc),
                ));
            }
        }
        Ok(true)
    }

    /// A handshake record after the handshake: only a KeyUpdate, alone in its record (RFC 8446
    /// §4.6.3, §5.1). Our answer to `update_requested` goes out with the current key, and our
    /// own next key is used after it.
    fn key_update(&mut self, body: &[u8]) -> Result<bool, Fatal> {
        const KEY_UPDATE: u8 = 24;
        let &[KEY_UPDATE, 0, 0, 1, request] = body else {
            return Err(Fatal::new(
                AlertDescription::UnexpectedMessage,
                rustls::Error::General("unexpected handshake message".into()),
            ));
        };
        // Like empty records: a peer could keep us deriving keys without sending data.
        self.quiet_record()?;
        if request > 1 {
            return Err(Fatal::new(
                AlertDescription::IllegalParameter,
                rustls::Error::General("bad KeyUpdate".into()),
            ));
        }
        let (seq, secrets) = self.kernel.update_rx_secret().map_err(internal)?;
        self.rx = Keys::new(seq, &secrets).map_err(internal)?;
        if request == 1 && !self.close_sent && !self.answer_queued {
            self.update_tx()?;
            self.answer_queued = true;
        }
        Ok(true)
    }

    /// Sends KeyUpdate(update_not_requested) and moves to our next key (not when the record
    /// found no room: the peer could not read what we send after it).
    fn update_tx(&mut self) -> Result<(), Fatal> {
        self.room();
        if self.queue(record::HANDSHAKE, &[24, 0, 0, 1, 0]) == 0 {
            return Err(internal(rustls::Error::General(
                "no room for a KeyUpdate".into(),
            )));
        }
        let (seq, secrets) = self.kernel.update_tx_secret().map_err(internal)?;
        self.tx = Keys::new(seq, &secrets).map_err(internal)?;
        Ok(())
    }

    /// Seals one record of `content` into the output buffer (which has room: callers keep
    /// [`RESERVE`] free for control records).
    fn queue(&mut self, kind: u8, content: &[u8]) -> usize {
        let out = self.out.get_or_insert_with(|| Buf::take(BUF));
        let room = out.0.get_mut(self.out_end..).unwrap_or_default();
        let n = record::seal(&mut self.tx, kind, content, room).unwrap_or(0);
        self.out_end += n;
        n
    }

    /// Plaintext the output buffer can take now as one record (0: none).
    fn room(&mut self) -> usize {
        if self.out_start == self.out_end {
            (self.out_start, self.out_end) = (0, 0);
        }
        let len = self.out.as_ref().map_or(BUF, |b| b.0.len());
        if self.out_start > 0 && len - self.out_end < record::MAX_PLAIN + record::OVERHEAD + RESERVE
        {
            if let Some(out) = self.out.as_mut() {
                out.0.copy_within(self.out_start..self.out_end, 0);
            }
            (self.out_start, self.out_end) = (0, self.out_end - self.out_start);
        }
        (len - self.out_end)
            .saturating_sub(record::OVERHEAD + RESERVE)
            .min(record::MAX_PLAIN)
    }

    /// A fatal error: the alert goes out (best effort) and reads fail from now on.
    fn fail(&mut self, cx: &mut Context<'_>, fatal: Fatal) {
        if !self.close_sent {
            self.room();
            self.queue(record::ALERT, &[2, u8::from(fatal.alert)]);
            self.close_sent = true;
            let _ = self.poll_send(cx);
        }
        self.read = ReadEnd::Failed(fatal.error);
    }

    /// Reads more from the socket into the input buffer: Ready(Ok(0)) at EOF.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.in_start >= self.in_end && self.plain.0 >= self.plain.1 {
            (self.in_start, self.in_end, self.plain) = (0, 0, (0, 0));
        }
        let inb = self.inb.get_or_insert_with(|| Buf::take(BUF));
        // Compact only when the record being received would not fit behind it.
        let avail = inb.0.get(self.in_start..self.in_end).unwrap_or_default();
        let need = record::record_len(avail)
            .ok()
            .flatten()
            .unwrap_or(record::MAX_RECORD);
        if self.in_start > 0 && self.in_start + need > inb.0.len() {
            inb.0.copy_within(self.in_start..self.in_end, 0);
            (self.in_start, self.in_end) = (0, self.in_end - self.in_start);
        }
        let room = inb.0.get_mut(self.in_end..).unwrap_or_default();
        let mut io = &self.io;
        match Pin::new(&mut io).poll_read(cx, room) {
            Poll::Ready(Ok(n)) => {
                self.in_end += n;
                Poll::Ready(Ok(n))
            }
            Poll::Pending => {
                if self.in_start >= self.in_end {
                    // Quiet and empty: an idle connection holds no buffer.
                    self.inb = None;
                    (self.in_start, self.in_end) = (0, 0);
                }
                Poll::Pending
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }

    /// Sends every queued record; Ready(Ok) once none is left (the buffer goes back).
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_start < self.out_end {
            let Some(pending) = self
                .out
                .as_ref()
                .and_then(|b| b.0.get(self.out_start..self.out_end))
            else {
                break;
            };
            let mut io = &self.io;
            match Pin::new(&mut io).poll_write(cx, pending) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.out_start += n,
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.out = None;
        (self.out_start, self.out_end) = (0, 0);
        Poll::Ready(Ok(()))
    }
}

fn internal(e: rustls::Error) -> Fatal {
    Fatal::new(AlertDescription::InternalError, e)
}

fn invalid_data(e: &rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.clone())
}

impl AsyncRead for RecordStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if let Some(n) = this.take_plain(buf) {
                return Poll::Ready(Ok(n));
            }
            match &this.read {
                ReadEnd::Open => {}
                ReadEnd::Closed => return Poll::Ready(Ok(0)),
                ReadEnd::Eof => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "peer closed connection without sending TLS close_notify",
                    )));
                }
                ReadEnd::Failed(e) => return Poll::Ready(Err(invalid_data(e))),
            }
            match this.next_record() {
                Ok(true) => {
                    // A KeyUpdate's answer waits in the output: on its way now.
                    if this.out_start < this.out_end {
                        if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                            return Poll::Ready(Err(e));
                        }
                    }
                    continue;
                }
                Ok(false) => {}
                Err(fatal) => {
                    this.fail(cx, fatal);
                    continue;
                }
            }
            match this.poll_fill(cx) {
                Poll::Ready(Ok(0)) => this.read = ReadEnd::Eof,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncWrite for RecordStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.close_sent {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let mut done = 0;
        while done < data.len() {
            let room = this.room();
            if room == 0 {
                // Full: send what is queued; bytes already taken are reported first.
                match this.poll_send(cx) {
                    Poll::Ready(Ok(())) => continue,
                    _ if done > 0 => return Poll::Ready(Ok(done)),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if this.tx.seq >= this.tx_limit {
                if let Err(fatal) = this.update_tx() {
                    return Poll::Ready(Err(invalid_data(&fatal.error)));
                }
            }
            let n = room.min(data.len() - done);
            let chunk = data.get(done..done + n).unwrap_or_default();
            if this.queue(record::APPLICATION_DATA, chunk) == 0 {
                return Poll::Ready(Err(io::Error::other("TLS record did not fit")));
            }
            this.answer_queued = false;
            done += n;
        }
        if this.out_end - this.out_start >= BATCH {
            if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(done))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_send(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            this.room();
            this.queue(record::ALERT, &[1, 0]);
            this.close_sent = true;
        }
        match this.poll_send(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(super::copy::shutdown_write(&this.io)),
            other => other,
        }
    }
}
