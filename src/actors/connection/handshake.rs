//! The client's TLS 1.3 handshake on rustls's unbuffered connection, then the stream that
//! carries the records in our own buffers (`net::tls_stream`).
//!
//! rustls's unbuffered API reads from and writes to buffers we hand it, and only an unbuffered
//! connection can give its keys to a [`rustls::kernel::KernelConnection`] (which keeps deriving
//! them: KeyUpdates) once the handshake is over. The handshake starts with the ClientHello bytes
//! routing already read; rustls's config is the group's, so certificates, ALPN, client
//! certificates, tickets and the session cache work as with the buffered connection.
//!
//! Used when the client offers TLS 1.3 and the group's config allows it (`Termination`'s
//! config then has `enable_secret_extraction`); other clients keep the buffered path
//! (`route.rs`).

use std::io;
use std::net::TcpStream;
use std::sync::Arc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncodeTlsData};

use crate::net::tls_stream::{BUF, Buf, Negotiated, RecordStream};
use crate::rt::Async;

/// Most handshake bytes held at once (rustls refuses handshake messages over 64 KiB).
const MAX_HELD: usize = 96 * 1024;
/// Largest record body rustls reads (2^14 + 2048, RFC 5246 §6.2.3).
const MAX_FRAGMENT: usize = 16 * 1024 + 2048;
/// Each read's room while handshaking.
const READ: usize = 16 * 1024;

/// Why a handshake failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// rustls refused (it sent an alert, or received one).
    Tls(rustls::Error),
    /// The socket failed.
    Io(io::Error),
    /// The client closed before the handshake finished.
    Closed,
}

impl Failure {
    /// The access line's words for it (the same as for the buffered path).
    pub(super) fn describe(&self) -> String {
        match self {
            Failure::Tls(rustls::Error::AlertReceived(alert)) => {
                format!("received alert {}", super::log::alert_name(*alert))
            }
            Failure::Tls(err) => format!("sent alert: {err}"),
            Failure::Closed => "client closed during the handshake".into(),
            Failure::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                "client closed during the handshake".into()
            }
            Failure::Io(e) => format!("i/o error during the handshake: {e}"),
        }
    }
}

/// What the handshake loop carries between rustls's states.
struct Flight {
    /// Received bytes rustls has not consumed yet: `inb[start..end]` (a pooled buffer, so no
    /// allocation or zeroing per handshake; it becomes the record stream's input buffer).
    inb: Buf,
    start: usize,
    end: usize,
    /// Encoded records waiting to be sent: `out[..out_len]`.
    out: Buf,
    out_len: usize,
    /// Application data that came with the client's Finished.
    early: Vec<u8>,
    /// The client's close_notify came too.
    closed: bool,
}

/// The handshake loop's next step.
enum Next {
    /// Ask rustls again.
    Go,
    /// rustls needs more bytes from the client.
    Read,
    /// The handshake is complete.
    Done,
    /// rustls failed.
    Fail(rustls::Error),
}

/// Runs the server handshake on `stream` from the ClientHello bytes in `hello`.
pub(super) async fn accept(
    stream: Async<TcpStream>,
    hello: Vec<u8>,
    config: Arc<rustls::ServerConfig>,
) -> Result<RecordStream, Failure> {
    let mut conn = UnbufferedServerConnection::new(config).map_err(Failure::Tls)?;
    let mut inb = Buf::take(hello.len());
    if let Some(slot) = inb.0.get_mut(..hello.len()) {
        slot.copy_from_slice(&hello);
    }
    let mut f = Flight {
        inb,
        start: 0,
        end: hello.len(),
        out: Buf::take(BUF),
        out_len: 0,
        early: Vec::new(),
        closed: false,
    };
    drop(hello);
    // rustls is shown one more whole record each time it is blocked, never a record after the
    // one that ends the handshake: those are ours. (A KeyUpdate rustls processed here would
    // leave its answer queued where a kernel connection cannot send it.) `shown` is where the
    // bytes shown end.
    let mut shown = 0;
    loop {
        let status = conn.process_tls_records(f.inb.0.get_mut(f.start..shown).unwrap_or_default());
        let discard = status.discard;
        let next = match status.state {
            Ok(ConnectionState::EncodeTlsData(mut enc)) => {
                encode(&mut enc, &mut f, &stream).await?;
                Next::Go
            }
            Ok(ConnectionState::TransmitTlsData(t)) => {
                send(&stream, &mut f).await?;
                t.done();
                Next::Go
            }
            Ok(ConnectionState::BlockedHandshake) => Next::Read,
            Ok(ConnectionState::ReadTraffic(mut r)) => {
                while let Some(rec) = r.next_record() {
                    f.early
                        .extend_from_slice(rec.map_err(Failure::Tls)?.payload);
                }
                Next::Go
            }
            Ok(ConnectionState::PeerClosed) => {
                f.closed = true;
                Next::Go
            }
            Ok(ConnectionState::WriteTraffic(_)) => Next::Done,
            Ok(_) => Next::Fail(rustls::Error::General(
                "unexpected state after the handshake".into(),
            )),
            Err(e) => Next::Fail(e),
        };
        f.start += discard.min(shown - f.start);
        match next {
            Next::Go => {}
            // Writable while the client's Finished is still to come (0.5-RTT): wait for it.
            Next::Read | Next::Done if conn.is_handshaking() => loop {
                let held = f.inb.0.get(f.start..f.end).unwrap_or_default();
                if let Some(end) = next_record_end(held, shown - f.start) {
                    shown = f.start + end;
                    break;
                }
                receive(&stream, &mut f, &mut shown).await?;
            },
            Next::Read => {
                return Err(Failure::Tls(rustls::Error::General(
                    "blocked after the handshake".into(),
                )));
            }
            Next::Done => break,
            Next::Fail(e) => {
                last_alert(&mut conn, &stream, &mut f, shown).await;
                return Err(Failure::Tls(e));
            }
        }
    }
    send(&stream, &mut f).await?;
    let negotiated = Negotiated {
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        version: conn.protocol_version(),
        peer_certificates: conn.peer_certificates().is_some(),
    };
    if negotiated.version != Some(rustls::ProtocolVersion::TLSv1_3) {
        return Err(Failure::Tls(rustls::Error::General(
            "TLS 1.3 was offered but not negotiated".into(),
        )));
    }
    let (secrets, kernel) = conn
        .dangerous_into_kernel_connection()
        .map_err(Failure::Tls)?;
    let rest = (f.inb, f.start, f.end);
    RecordStream::new(
        stream,
        secrets,
        kernel,
        negotiated,
        (rest, f.early, f.closed),
    )
    .map_err(Failure::Tls)
}

/// Where the record starting at `from` ends, once it is all in `inb`; all of `inb` for a header
/// no record fits (rustls refuses it with the right alert).
fn next_record_end(inb: &[u8], from: usize) -> Option<usize> {
    let &[_, _, _, hi, lo] = inb.get(from..from + 5)? else {
        return None;
    };
    let end = from + 5 + usize::from(u16::from_be_bytes([hi, lo]));
    if end > from + 5 + MAX_FRAGMENT {
        return Some(inb.len());
    }
    (end <= inb.len()).then_some(end)
}

/// Encodes one handshake record at the end of the output (sending what is there first when
/// it does not fit).
async fn encode(
    enc: &mut EncodeTlsData<'_, ServerConnectionData>,
    f: &mut Flight,
    stream: &Async<TcpStream>,
) -> Result<(), Failure> {
    loop {
        let room = f.out.0.get_mut(f.out_len..).unwrap_or_default();
        match enc.encode(room) {
            Ok(n) => {
                f.out_len += n;
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(_)) if f.out_len > 0 => send(stream, f).await?,
            Err(EncodeError::InsufficientSize(need)) => {
                // Bigger than a whole buffer (rustls fragments at 16 KiB: never expected).
                f.out = Buf(vec![0; need.required_size].into_boxed_slice());
            }
            Err(EncodeError::AlreadyEncoded) => return Ok(()),
        }
    }
}

/// Sends and empties the output.
async fn send(stream: &Async<TcpStream>, f: &mut Flight) -> Result<(), Failure> {
    if f.out_len == 0 {
        return Ok(());
    }
    let mut w = stream;
    let bytes = f.out.0.get(..f.out_len).unwrap_or_default();
    w.write_all(bytes).await.map_err(Failure::Io)?;
    f.out_len = 0;
    Ok(())
}

/// Reads what the socket has behind the held bytes (moving them to the front, or into a bigger
/// buffer, when the end is reached). `shown` moves with the bytes.
async fn receive(
    stream: &Async<TcpStream>,
    f: &mut Flight,
    shown: &mut usize,
) -> Result<(), Failure> {
    if f.end == f.inb.0.len() {
        let held = f.end - f.start;
        if held >= MAX_HELD {
            return Err(Failure::Tls(rustls::Error::General(
                "handshake too large".into(),
            )));
        }
        if f.inb.0.len() - held >= READ {
            f.inb.0.copy_within(f.start..f.end, 0);
        } else {
            let mut bigger = Buf(vec![0; held + READ + MAX_FRAGMENT].into_boxed_slice());
            if let (Some(dst), Some(src)) = (bigger.0.get_mut(..held), f.inb.0.get(f.start..f.end))
            {
                dst.copy_from_slice(src);
            }
            f.inb = bigger;
        }
        *shown -= f.start;
        (f.start, f.end) = (0, held);
    }
    let mut r = stream;
    match r.read(f.inb.0.get_mut(f.end..).unwrap_or_default()).await {
        Ok(0) => Err(Failure::Closed),
        Ok(n) => {
            f.end += n;
            Ok(())
        }
        Err(e) => Err(Failure::Io(e)),
    }
}

/// After a failure: sends the alert rustls queued for it, if any (best effort). rustls is
/// asked only while it has records queued, which it hands out before it looks at the bytes
/// again (a second look would fail again, and its handshake deframer may still point into
/// them: they are passed as they are).
async fn last_alert(
    conn: &mut UnbufferedServerConnection,
    stream: &Async<TcpStream>,
    f: &mut Flight,
    shown: usize,
) {
    for _ in 0..8 {
        if !conn.wants_write() {
            break;
        }
        let held = f.inb.0.get_mut(f.start..shown).unwrap_or_default();
        match conn.process_tls_records(held).state {
            Ok(ConnectionState::EncodeTlsData(mut enc)) => {
                if encode(&mut enc, f, stream).await.is_err() {
                    return;
                }
            }
            _ => break,
        }
    }
    let _ = send(stream, f).await;
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
