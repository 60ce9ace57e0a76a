//! `--drain-strategy spread` (SPEC section 15): on SIGTERM, connections idle for a second
//! close then, and each active connection closes at its own random instant spread over
//! `--drain-timeout` (not all together at its end), every one by the timeout; the admin
//! endpoint answers during the drain (`check_ready` 503, `tcpmap_draining_connections`). At
//! 1 and 2 workers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, http_get};
use common::net;
use common::yaml::mapping;

/// Active connections held open through the drain.
const ACTIVE: usize = 30;
/// `--drain-timeout`, seconds.
const TIMEOUT: u64 = 4;

/// A client that keeps its connection busy (a byte echoed every 50 ms) until the proxy
/// closes it; returns when that happened.
fn busy(addr: SocketAddr, start: std::sync::Arc<std::sync::Barrier>) -> Instant {
    let mut s = net::connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(2 * TIMEOUT)))
        .unwrap();
    net::roundtrip(&mut s, b"hello");
    start.wait();
    let mut b = [0u8; 1];
    loop {
        if s.write_all(b"x").is_err() {
            return Instant::now();
        }
        match s.read(&mut b) {
            Ok(1) => std::thread::sleep(Duration::from_millis(50)),
            _ => return Instant::now(),
        }
    }
}

fn spread_drain(workers: &str) {
    let up = net::echo("127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let timeout = TIMEOUT.to_string();
    let (mut d, [port]) = Daemon::run_yaml(
        &cfg,
        |[port]| mapping("m", port, up.addr),
        &[
            "--workers",
            workers,
            "--admin",
            "127.0.0.1:0",
            "--drain-strategy",
            "spread",
            "--drain-timeout",
            &timeout,
        ],
    );
    let addr = net::local(port);
    let admin = d.admin_addr();
    // One idle connection: it closes about a second into the drain.
    let mut idle = net::connect(addr);
    net::roundtrip(&mut idle, b"idle");
    let go = std::sync::Arc::new(std::sync::Barrier::new(ACTIVE + 1));
    let clients: Vec<_> = (0..ACTIVE)
        .map(|_| {
            let go = go.clone();
            std::thread::spawn(move || busy(addr, go))
        })
        .collect();
    go.wait();
    let mark = d.mark();
    let signalled = Instant::now();
    d.signal(libc::SIGTERM);
    d.wait_for(mark, "shutting down graceful=", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no drain:\n{}", d.log()));
    // The admin endpoint answers during the drain: not ready.
    let (status, _) = http_get(admin, "/ambassador/v0/check_ready");
    assert_eq!(status, 503);
    if workers == "1" {
        let (_, text) = http_get(admin, "/metrics");
        let left = common::metrics::metric(&text, "tcpmap_draining_connections", &[]);
        assert!(left >= 1.0, "draining gauge {left}:\n{text}");
    }
    idle.set_read_timeout(Some(Duration::from_secs(2 * TIMEOUT)))
        .unwrap();
    let n = idle.read(&mut [0u8; 8]).unwrap_or(0);
    let idle_closed = signalled.elapsed();
    assert_eq!(n, 0);
    assert!(
        idle_closed < Duration::from_millis(2500),
        "the idle connection closed {idle_closed:?} into the drain"
    );
    let mut at: Vec<f64> = clients
        .into_iter()
        .map(|c| {
            c.join()
                .unwrap()
                .saturating_duration_since(signalled)
                .as_secs_f64()
        })
        .collect();
    at.sort_by(f64::total_cmp);
    let limit = TIMEOUT as f64;
    // Every one by the timeout (the last ones close a margin before the kill)...
    assert!(
        at.iter().all(|t| *t < limit),
        "closes after the {TIMEOUT} s timeout: {at:?}"
    );
    // ...and spread: no half-second holds more than a third of them, and the first and
    // last close are more than half the timeout apart (uniform over 3.6 s: about 4 per
    // half-second).
    let most = (0..(2 * TIMEOUT as usize))
        .map(|b| {
            let (lo, hi) = (b as f64 / 2.0, (b + 1) as f64 / 2.0);
            at.iter().filter(|t| **t >= lo && **t < hi).count()
        })
        .max()
        .unwrap();
    assert!(
        most <= ACTIVE / 3,
        "bunched: {most} in one half-second: {at:?}"
    );
    assert!(at[ACTIVE - 1] - at[0] > limit / 2.0, "not spread: {at:?}");
    let status = d.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success());
    let log = d.log();
    assert!(
        !log.contains("end=\"shutdown\""),
        "a connection was killed:\n{log}"
    );
}

#[test]
fn spread_closes_connections_over_the_drain_timeout() {
    spread_drain("1");
}

#[test]
fn spread_closes_connections_over_the_drain_timeout_with_workers() {
    spread_drain("2");
}
