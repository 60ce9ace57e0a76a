//! `max_connection_duration_ms` (SPEC section 15) through the real binary, at 1 and 2
//! workers: a busy connection on a mapping with a maximum age of 1 s is closed by the proxy
//! (the client reads EOF), not before 90 % of that age, and its access line says
//! `end="max_duration"`; a connection on a mapping without one outlives it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::net;
use common::yaml::{mapping, mapping_with};

/// The maximum age, milliseconds.
const AGE_MS: u64 = 1000;

/// Echoes a byte every 50 ms until the proxy closes the connection (EOF or an error) or
/// `within` passes; returns how long the connection lived, `None` when it was still open.
fn lifetime(addr: SocketAddr, within: Duration) -> Option<Duration> {
    let opened = Instant::now();
    let mut s = net::connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    net::roundtrip(&mut s, b"hello");
    let mut b = [0u8; 1];
    while opened.elapsed() < within {
        if s.write_all(b"x").is_err() {
            return Some(opened.elapsed());
        }
        match s.read(&mut b) {
            Ok(1) => std::thread::sleep(Duration::from_millis(50)),
            _ => return Some(opened.elapsed()),
        }
    }
    None
}

fn closes_old_connections(workers: &str) {
    let up = net::echo("127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let (d, [aged, plain]) = Daemon::run_yaml(
        &cfg,
        |[aged, plain]| {
            mapping_with(
                "aged",
                aged,
                up.addr,
                &format!("max_connection_duration_ms: {AGE_MS}\n"),
            ) + &mapping("plain", plain, up.addr)
        },
        &["--workers", workers],
    );
    let (aged, plain) = (net::local(aged), net::local(plain));
    // The one without a maximum age runs beside it, for longer than the age.
    let other = std::thread::spawn(move || lifetime(plain, Duration::from_millis(3 * AGE_MS)));
    let lived = lifetime(aged, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("still open after 30 s:\n{}", d.log()));
    // Jitter takes up to 10 % off; a loaded machine only makes it later.
    assert!(
        lived >= Duration::from_millis(AGE_MS * 9 / 10),
        "closed after {lived:?}, the maximum age is {AGE_MS} ms"
    );
    let line = d
        .wait_for(0, "end=\"max_duration\"", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no max_duration access line:\n{}", d.log()));
    assert!(line.contains("mapping=\"aged\""), "{line}");
    assert_eq!(
        other.join().unwrap(),
        None,
        "the plain mapping's connection was closed"
    );
    assert_eq!(
        d.log().matches("end=\"max_duration\"").count(),
        1,
        "{}",
        d.log()
    );
}

#[test]
fn a_connection_at_its_maximum_age_is_closed_as_max_duration() {
    closes_old_connections("1");
}

#[test]
fn a_connection_at_its_maximum_age_is_closed_as_max_duration_over_two_workers() {
    closes_old_connections("2");
}
