//! The TLS 1.3 record path driven by a hostile client, for the `tls13_records` fuzz target and
//! the property test beside it: a real handshake between rustls's client and our driver
//! ([`super::handshake::accept`]) over loopback, then a script of client actions (records
//! sealed with the client's own traffic keys, raw bytes, split points, closes) against the
//! [`RecordStream`](crate::net::tls_stream::RecordStream), whose reads are echoed back so its
//! write side runs too. Any script must end the session within [`DEADLINE`] without a panic.
//!
//! The client holds its keys, so every record it sends authenticates: malformed alerts,
//! KeyUpdates of any length and value, other handshake messages, empty and padding-only
//! records, oversized records. A KeyUpdate the server accepts moves the client's own key too
//! (RFC 8446 §7.2, from the traffic secret rustls's key log hands out), so the script goes on.
//!
//! Test harness (feature `testkit`): a failed setup is a finding, so it panics.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_lc_rs::hkdf;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use rustls::crypto::cipher::{AeadKey, Iv};
use rustls::pki_types::ServerName;
use rustls::{ConnectionTrafficSecrets, SupportedCipherSuite};

use super::handshake::accept;
use crate::net::tls_record::{self as record, Keys};
use crate::rt::{self, Async};
use crate::testkit::pki;

/// The most a session may take (a hang becomes a panic, which the fuzzer reports).
pub const DEADLINE: Duration = Duration::from_secs(10);
/// Pause at a split point, so the server reads the bytes before it separately.
const SPLIT_PAUSE: Duration = Duration::from_micros(100);

struct Pki {
    server: Arc<rustls::ServerConfig>,
    /// Clients offering only TLS 1.3 with one suite each (both with 32-byte keys).
    clients: [Arc<rustls::ClientConfig>; 2],
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let (cert, key) = pki::self_signed(&["localhost"]);
        let mut server = (*pki::server_config(&cert, &key, None)).clone();
        server.enable_secret_extraction = true;
        let client = |suite: SupportedCipherSuite| {
            let mut roots = rustls::RootCertStore::empty();
            use rustls::pki_types::{CertificateDer, pem::PemObject};
            for c in CertificateDer::pem_slice_iter(cert.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let provider = rustls::crypto::CryptoProvider {
                cipher_suites: vec![suite],
                ..rustls::crypto::aws_lc_rs::default_provider()
            };
            let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            cfg.enable_secret_extraction = true;
            Arc::new(cfg)
        };
        use rustls::crypto::aws_lc_rs::cipher_suite as cs;
        Pki {
            server: Arc::new(server),
            clients: [
                client(cs::TLS13_AES_256_GCM_SHA384),
                client(cs::TLS13_CHACHA20_POLY1305_SHA256),
            ],
        }
    })
}

/// Keeps the first application traffic secrets, client's and server's (for KeyUpdates).
#[derive(Debug, Default)]
struct SecretLog(Mutex<(Vec<u8>, Vec<u8>)>);

impl rustls::KeyLog for SecretLog {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        let mut s = self.0.lock().unwrap();
        match label {
            "CLIENT_TRAFFIC_SECRET_0" => s.0 = secret.to_vec(),
            "SERVER_TRAFFIC_SECRET_0" => s.1 = secret.to_vec(),
            _ => {}
        }
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(alg: hkdf::Algorithm, secret: &[u8], label: &[u8], len: usize) -> Vec<u8> {
    let out_len = u16::try_from(len).unwrap().to_be_bytes();
    let label_len = [u8::try_from(6 + label.len()).unwrap()];
    let info: [&[u8]; 5] = [&out_len, &label_len, b"tls13 ", label, &[0]];
    let mut out = vec![0; len];
    hkdf::Prk::new_less_safe(alg, secret)
        .expand(&info, Len(len))
        .unwrap()
        .fill(&mut out)
        .unwrap();
    out
}

/// One direction's current traffic secret and keys.
struct Direction {
    alg: hkdf::Algorithm,
    chacha: bool,
    secret: Vec<u8>,
    keys: Keys,
}

impl Direction {
    fn keys_from(&self) -> Keys {
        let key: [u8; 32] = expand_label(self.alg, &self.secret, b"key", 32)
            .try_into()
            .unwrap();
        let iv: [u8; 12] = expand_label(self.alg, &self.secret, b"iv", 12)
            .try_into()
            .unwrap();
        let (key, iv) = (AeadKey::from(key), Iv::new(iv));
        let secrets = if self.chacha {
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv }
        } else {
            ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        };
        Keys::new(0, &secrets).unwrap()
    }

    /// Moves to the next traffic secret (after a KeyUpdate).
    fn update(&mut self) {
        let len = self.secret.len();
        self.secret = expand_label(self.alg, &self.secret, b"traffic upd", len);
        self.keys = self.keys_from();
    }

    /// One record of inner type `kind` around `content`, then `pad` zero bytes.
    fn seal(&mut self, kind: u8, content: &[u8], pad: usize) -> Vec<u8> {
        let mut inner = content.to_vec();
        let last = if pad == 0 {
            kind
        } else {
            inner.push(kind);
            inner.resize(inner.len() + pad - 1, 0);
            0
        };
        let mut out = vec![0; inner.len() + record::OVERHEAD];
        let n = record::seal(&mut self.keys, last, &inner, &mut out).unwrap();
        out.truncate(n);
        out
    }
}

/// Reads the script from the front.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// A blocking client socket and the server's end of it.
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    c.set_nodelay(true).unwrap();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    c.set_write_timeout(Some(DEADLINE)).unwrap();
    let (s, _) = l.accept().unwrap();
    s.set_nodelay(true).unwrap();
    s.set_nonblocking(true).unwrap();
    (c, s)
}

/// Runs one session from `input` (see the module docs; the first byte picks the mode: mostly
/// a finished handshake then the record script, sometimes garbage during the handshake).
/// Returns normally for any input: the plaintext bytes the server read, None when the handshake
/// failed. Panics on a hang or a panic of the server side.
pub fn tls13_session(input: &[u8]) -> Option<usize> {
    let mut script = Script(input);
    let mode = script.byte().unwrap_or(0);
    let rest = script.0.to_vec();
    let (client, server) = pair();
    let cfg = pki().clients[usize::from(mode & 1)].clone();
    let t = std::thread::spawn(move || match mode % 16 {
        0 => garbage_in_handshake(cfg, client, &rest, false),
        1 => garbage_in_handshake(cfg, client, &rest, true),
        _ => records(cfg, client, &rest),
    });
    let server_cfg = pki().server.clone();
    let finished = rt::block_on(rt::timeout(DEADLINE, serve(server, server_cfg)));
    let Some(read) = finished else {
        panic!("the server side hung");
    };
    let echoed = t.join().expect("the client side failed");
    if let Some(echoed) = echoed {
        assert_eq!(
            Some(echoed),
            read,
            "the server's close_notify came before all its echo"
        );
    }
    read
}

/// The server: handshake, then echo what it reads until EOF or an error, then close.
async fn serve(sock: TcpStream, cfg: Arc<rustls::ServerConfig>) -> Option<usize> {
    let sock = Async::new_nonblocking(sock).unwrap();
    let mut tls = accept(sock, Vec::new(), cfg).await.ok()?;
    let mut buf = vec![0u8; 20_000];
    let mut read = 0;
    loop {
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                read += n;
                if tls.write_all(&buf[..n]).await.is_err() || tls.flush().await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = tls.close().await;
    Some(read)
}

/// Reads whatever the server sends until it closes (in a thread of its own).
fn drain(sock: &TcpStream) -> std::thread::JoinHandle<Option<usize>> {
    let mut r = sock.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
        None
    })
}

/// Reads and opens every record the server sends after the handshake, following its
/// KeyUpdates, in a thread of its own: the plaintext bytes once a close_notify ends them (None
/// when the stream ends otherwise). A record that does not open is a finding: it panics.
fn verify(sock: &TcpStream, mut rx: Direction) -> std::thread::JoinHandle<Option<usize>> {
    let mut r = sock.try_clone().unwrap();
    std::thread::spawn(move || {
        let (mut buf, mut held, mut plain) = (vec![0u8; 4 * record::MAX_RECORD], 0, 0);
        loop {
            while let Ok(Some(len)) = record::record_len(&buf[..held]) {
                if held < len {
                    break;
                }
                let (kind, n) = record::open(&mut rx.keys, &mut buf[..len])
                    .unwrap_or_else(|e| panic!("a record from the server does not open: {e:?}"));
                let content = buf[record::HEADER..record::HEADER + n].to_vec();
                match kind {
                    record::APPLICATION_DATA => plain += n,
                    record::ALERT => return (content == [1, 0]).then_some(plain),
                    record::HANDSHAKE => {
                        let mut msgs = &content[..];
                        while let [typ, a, b, c, rest @ ..] = msgs {
                            let body = usize::from_be_bytes([0, 0, 0, 0, 0, *a, *b, *c]);
                            assert!(rest.len() >= body, "a handshake message split: {content:?}");
                            if *typ == 24 {
                                assert_eq!(&rest[..body], [0], "our KeyUpdate requests none");
                                rx.update();
                            }
                            msgs = &rest[body..];
                        }
                    }
                    other => panic!("the server sent inner type {other}"),
                }
                buf.copy_within(len..held, 0);
                held -= len;
            }
            match r.read(&mut buf[held..]) {
                Ok(n) if n > 0 => held += n,
                _ => return None,
            }
        }
    })
}

/// The client's ClientHello then `bytes` (or, `late`, its handshake up to the server's flight,
/// then `bytes` in place of its Finished). None: nothing to compare.
fn garbage_in_handshake(
    cfg: Arc<rustls::ClientConfig>,
    sock: TcpStream,
    bytes: &[u8],
    late: bool,
) -> Option<usize> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let mut sock = sock;
    if conn.write_tls(&mut sock).is_err() {
        return None;
    }
    while late && conn.is_handshaking() && !conn.wants_write() {
        match conn.read_tls(&mut sock) {
            Ok(n) if n > 0 && conn.process_new_packets().is_ok() => {}
            _ => return None,
        }
    }
    let drained = drain(&sock);
    let _ = sock.write_all(bytes);
    let _ = sock.shutdown(Shutdown::Write);
    drained.join().unwrap()
}

/// A finished handshake, then the script of records: the bytes echoed before the server's
/// close_notify (None when it sent none).
fn records(cfg: Arc<rustls::ClientConfig>, sock: TcpStream, bytes: &[u8]) -> Option<usize> {
    let log = Arc::new(SecretLog::default());
    let mut cfg = (*cfg).clone();
    cfg.key_log = log.clone();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut c = rustls::StreamOwned::new(conn, sock);
    while c.conn.is_handshaking() || c.conn.wants_write() {
        c.conn.complete_io(&mut c.sock).expect("handshake");
    }
    let secrets = c.conn.dangerous_extract_secrets().unwrap();
    let (alg, chacha) = match &secrets.tx.1 {
        ConnectionTrafficSecrets::Chacha20Poly1305 { .. } => (hkdf::HKDF_SHA256, true),
        _ => (hkdf::HKDF_SHA384, false),
    };
    let (tx_secret, rx_secret) = log.0.lock().unwrap().clone();
    let mut tx = Direction {
        alg,
        chacha,
        secret: tx_secret,
        keys: Keys::new(secrets.tx.0, &secrets.tx.1).unwrap(),
    };
    let rx = Direction {
        alg,
        chacha,
        secret: rx_secret,
        keys: Keys::new(secrets.rx.0, &secrets.rx.1).unwrap(),
    };
    let mut sock = c.sock;
    let verified = verify(&sock, rx);
    let _ = run_script(&mut tx, &mut sock, Script(bytes));
    let _ = sock.shutdown(Shutdown::Write);
    verified.join().unwrap()
}

/// Plays the script (see [`tls13_session`]); Err once the server stopped taking bytes.
fn run_script(tx: &mut Direction, sock: &mut TcpStream, mut s: Script<'_>) -> std::io::Result<()> {
    let mut pending = Vec::new();
    while let Some(op) = s.byte() {
        match op % 8 {
            // Any record: inner type, content length, padding, content.
            0 | 1 => {
                let (kind, len, pad) = (s.byte(), s.byte(), s.byte());
                let (kind, len, pad) = (kind.unwrap_or(23), len.unwrap_or(0), pad.unwrap_or(0));
                let content = s.take(usize::from(len)).to_vec();
                pending.extend(tx.seal(kind, &content, usize::from(pad % 64)));
            }
            // A big application data record: 128-byte steps, up to past the 2^14 limit.
            2 => {
                let len = usize::from(s.byte().unwrap_or(0)) * 128;
                pending.extend(tx.seal(record::APPLICATION_DATA, &vec![0x5a; len], 0));
            }
            // A KeyUpdate with any request byte (a valid one moves our key too).
            3 => {
                let request = s.byte().unwrap_or(0);
                pending.extend(tx.seal(record::HANDSHAKE, &[24, 0, 0, 1, request], 0));
                if request <= 1 {
                    tx.update();
                }
            }
            // An alert.
            4 => {
                let (level, desc) = (s.byte().unwrap_or(1), s.byte().unwrap_or(0));
                pending.extend(tx.seal(record::ALERT, &[level, desc], 0));
            }
            // Raw bytes (an unencrypted record, a bad header, a record cut short).
            5 => {
                let len = s.byte().unwrap_or(0);
                pending.extend_from_slice(s.take(usize::from(len)));
            }
            // A split: what is pending goes out now, the rest after a pause.
            6 => {
                sock.write_all(&pending)?;
                pending.clear();
                std::thread::sleep(SPLIT_PAUSE);
            }
            // The end: close_notify, a bare TCP close, or a reset-like full shutdown.
            _ => {
                match s.byte().unwrap_or(0) % 3 {
                    0 => pending.extend(tx.seal(record::ALERT, &[1, 0], 0)),
                    1 => {}
                    _ => {
                        sock.write_all(&pending)?;
                        return sock.shutdown(Shutdown::Both);
                    }
                }
                break;
            }
        }
    }
    sock.write_all(&pending)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        // Each case is a whole handshake over loopback (a few ms): 64 keep the run short.
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any script of client records ends the session, without a panic or a hang.
        #[test]
        fn any_client_script_ends_the_session(mode in any::<u8>(), ops in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut input = vec![mode];
            input.extend(ops);
            // Mode 0 and 1 send garbage in the handshake: it fails.
            let read = tls13_session(&input);
            prop_assert!(mode % 16 > 1 || read.is_none(), "{read:?}");
        }
    }

    /// The script's own keys are right: data sealed with them, also after KeyUpdates the server
    /// accepts, reaches the server's reads (so scripts get past the record layer's MAC check).
    #[test]
    fn scripted_records_are_read_by_the_server() {
        for mode in [2, 3] {
            // Record "hi", KeyUpdate(update_requested), "yo", KeyUpdate(not requested), padded
            // "!", close_notify.
            let input = [
                mode, 0, 23, 2, 0, b'h', b'i', 3, 1, 0, 23, 2, 0, b'y', b'o', 3, 0, 1, 23, 1, 9,
                b'!', 7, 0,
            ];
            assert_eq!(tls13_session(&input), Some(5), "mode {mode}");
            // The same script with a bad KeyUpdate: the server stops reading at it.
            let mut bad = input;
            bad[8] = 2;
            assert_eq!(tls13_session(&bad), Some(2), "mode {mode}");
        }
    }
}
