//! Hostile clients against a TLS-terminating port: garbage, a stalled ClientHello, silence,
//! an oversized ClientHello. Each is closed (with the alert a TLS server sends, when it is
//! TLS); the process and other clients are unaffected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::net;
use common::pki::TlsSecret;
use common::proxy;
use common::yaml::{mapping_with, tls_context};

struct Setup {
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    client: Arc<rustls::ClientConfig>,
    proxy: tcpmap::ProxyHandle,
}

/// A terminating port for `my-host-1` (no host-less group), echo upstream behind it.
fn setup(handshake_timeout: Duration) -> Setup {
    let TlsSecret { ca, dir } = TlsSecret::new("hostile CA", "supersecret", &["my-host-1"]);
    let up = net::echo("127.0.0.1:0");
    let (proxy, [port]) = proxy::start_ports(
        Some(dir.path()),
        |[port]| {
            tls_context("ctx", "hosts: [my-host-1]\nsecret: supersecret\n")
                + &mapping_with("term", port, up.addr, "host: my-host-1\n")
        },
        |b| b.handshake_timeout(handshake_timeout),
    );
    std::mem::forget(up);
    Setup {
        _dir: dir,
        addr: net::local(port),
        client: net::tls_client_config(&ca.cert_pem(), None),
        proxy,
    }
}

/// A full TLS round trip through the proxy works.
fn good_roundtrip(s: &Setup, msg: &[u8]) {
    let mut tls = net::tls_connect(s.addr, "my-host-1", s.client.clone()).unwrap();
    net::roundtrip(&mut tls, msg);
}

/// The bytes of a real ClientHello for `sni`, as a client would send them.
fn client_hello(cfg: Arc<rustls::ClientConfig>, sni: &str) -> Vec<u8> {
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// Waits for EOF or reset; returns how long it took, or `None` if still open after `max`.
fn time_to_close(s: &mut TcpStream, max: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < max {
        match s.read(&mut buf) {
            Ok(0) => return Some(t0.elapsed()),
            Ok(_) => continue, // an alert, say: keep reading until the close
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue;
            }
            Err(_) => return Some(t0.elapsed()),
        }
    }
    None
}

#[test]
fn random_bytes_are_closed_and_a_parallel_client_is_served() {
    let s = setup(Duration::from_secs(5));
    let good = {
        let (addr, client) = (s.addr, s.client.clone());
        std::thread::spawn(move || {
            // A TLS client holding its connection open during the garbage.
            let mut tls = net::tls_connect(addr, "my-host-1", client).unwrap();
            for i in 0..20u8 {
                net::roundtrip(&mut tls, &[i; 1000]);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut rng = fastrand::Rng::with_seed(7);
    for prefix in [
        &[][..],
        &[0x16, 0x03, 0x01][..],
        &[0x16, 0x03, 0x03, 0x40, 0x00, 0x01][..],
    ] {
        let mut garbage = prefix.to_vec();
        garbage.extend((0..64 * 1024).map(|_| rng.u8(..)));
        let mut c = TcpStream::connect(s.addr).unwrap();
        // The proxy may close before taking it all: a failed write is fine.
        let _ = c.write_all(&garbage);
        let took = time_to_close(&mut c, Duration::from_secs(4));
        assert!(took.is_some(), "garbage (prefix {prefix:?}) was not closed");
    }
    good.join().unwrap();
    good_roundtrip(&s, b"still serving");
    assert!(s.proxy.ready());
}

#[test]
fn truncated_client_hello_is_closed_at_the_deadline_while_others_are_served() {
    let s = setup(Duration::from_secs(1));
    let hello = client_hello(s.client.clone(), "my-host-1");
    assert!(hello.len() > 100);
    let t0 = Instant::now();
    let mut stalled = TcpStream::connect(s.addr).unwrap();
    stalled.write_all(&hello[..hello.len() / 2]).unwrap();
    // Served meanwhile.
    for i in 0..5u8 {
        good_roundtrip(&s, &[i; 100]);
    }
    time_to_close(&mut stalled, Duration::from_secs(4)).expect("stalled hello not closed");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(2500),
        "closed after {took:?}, expected about 1 s"
    );
}

/// One handshake window from accept: a client that sends its ClientHello late in the window
/// and then stalls (never answers the ServerHello) is closed when the window ends, not a whole
/// window after its hello (which was 0.7 + 1 = 1.7 s here before the fix).
#[test]
fn a_late_hello_then_silence_is_closed_when_the_window_from_accept_ends() {
    let s = setup(Duration::from_secs(1));
    let hello = client_hello(s.client.clone(), "my-host-1");
    let t0 = Instant::now();
    let mut late = TcpStream::connect(s.addr).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    late.write_all(&hello).unwrap();
    time_to_close(&mut late, Duration::from_secs(4)).expect("stalled handshake not closed");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1450),
        "closed after {took:?}, expected about 1 s from accept"
    );
}

#[test]
fn silent_client_is_closed_at_the_deadline() {
    let s = setup(Duration::from_secs(1));
    let t0 = Instant::now();
    let mut silent = TcpStream::connect(s.addr).unwrap();
    time_to_close(&mut silent, Duration::from_secs(4)).expect("silent client not closed");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(2500),
        "closed after {took:?}, expected about 1 s"
    );
    good_roundtrip(&s, b"after the silent one");
}

#[test]
fn oversized_client_hello_is_closed_without_waiting_for_the_deadline() {
    let s = setup(Duration::from_secs(8));
    // A handshake record announcing a ClientHello over rustls' 64 KiB bound, spread over
    // full-size records: rejected with decode_error as soon as its length is read.
    let mut bytes = Vec::new();
    let mut payload = vec![0x01, 0x01, 0x00, 0x00, 0x03, 0x03];
    payload.resize(16 * 1024, 0x41);
    for _ in 0..2 {
        bytes.extend_from_slice(&[0x16, 0x03, 0x01, 0x40, 0x00]);
        bytes.extend_from_slice(&payload);
        payload.iter_mut().for_each(|b| *b = 0x42);
    }
    let t0 = Instant::now();
    let mut c = TcpStream::connect(s.addr).unwrap();
    let _ = c.write_all(&bytes);
    c.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let mut alert = [0u8; 7];
    c.read_exact(&mut alert).unwrap();
    assert_eq!(
        alert,
        [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 50],
        "fatal decode_error"
    );
    time_to_close(&mut c, Duration::from_secs(6)).expect("oversized hello not closed");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "closed only after {:?} (deadline is 8 s: the size bound did not act)",
        t0.elapsed()
    );
    good_roundtrip(&s, b"after the big one");
}
