//! `connection_rate_limit` (SPEC section 15) through the real binary, at 1 and 2 workers: a
//! burst of connections from one client address (named by a PROXY protocol header, so the
//! limit keys on the client, not the balancer) gets exactly `burst` through over all workers
//! and the rest closed at once (counted, one warning line, no access line); another client
//! address has its own bucket; `per: listener` puts every client address in one bucket;
//! `dry_run` serves everyone and counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, http_get};
use common::net;
use common::yaml::mapping_with;

/// Connections tried per client in one burst.
const TRIED: usize = 12;
/// The bucket's size.
const BURST: usize = 5;

/// One connection from `client` (a PROXY v1 header): true when the upstream's banner came.
fn served(addr: SocketAddr, client: &str) -> bool {
    let mut s = net::connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let header = format!("PROXY TCP4 {client} 127.0.0.1 40000 80\r\n");
    if s.write_all(header.as_bytes()).is_err() {
        return false;
    }
    let mut b = [0u8; 2];
    matches!(s.read(&mut b), Ok(2) if &b == b"A\n")
}

/// `TRIED` connections at once from `client`; how many were served, and how long it took.
fn burst(addr: SocketAddr, client: &'static str) -> (usize, Duration) {
    let start = Instant::now();
    let n = std::thread::scope(|scope| {
        let all: Vec<_> = (0..TRIED)
            .map(|_| scope.spawn(move || served(addr, client)))
            .collect();
        all.into_iter()
            .map(|h| h.join().unwrap())
            .filter(|ok| *ok)
            .count()
    });
    (n, start.elapsed())
}

fn daemon(
    workers: &str,
    per: &str,
    dry_run: bool,
) -> (Daemon, SocketAddr, net::Upstream, tempfile::TempDir) {
    daemon_with(workers, per, dry_run, "use_proxy_proto: true\n")
}

fn daemon_with(
    workers: &str,
    per: &str,
    dry_run: bool,
    proxy: &str,
) -> (Daemon, SocketAddr, net::Upstream, tempfile::TempDir) {
    let up = net::banner("127.0.0.1:0", "A");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let addr = up.addr;
    let (d, [port]) = Daemon::run_yaml(
        &cfg,
        |[port]| {
            mapping_with(
                "m",
                port,
                addr,
                &format!(
                    "{proxy}connection_rate_limit: {{rate: 1, burst: {BURST}, per: {per}, dry_run: {dry_run}}}\n"
                ),
            )
        },
        &["--workers", workers, "--admin", "127.0.0.1:0"],
    );
    (d, net::local(port), up, dir)
}

/// The rate-limited count over the daemon's workers.
fn limited(d: &Daemon) -> f64 {
    let (_, text) = http_get(d.admin_addr(), "/metrics");
    common::metrics::samples(&text)
        .filter(|s| s.name == "tcpmap_connections_rate_limited_total")
        .map(|s| s.value.parse::<f64>().unwrap())
        .sum()
}

fn limits_a_burst(workers: &str) {
    let (d, addr, _up, _dir) = daemon(workers, "client_ip", false);
    // `/config` shows the limit on the mapping.
    let (status, body) = http_get(d.admin_addr(), "/config");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let limit =
        &json["routes"]["listeners"][0]["groups"][0]["upstreams"][0]["connection_rate_limit"];
    assert_eq!(
        *limit,
        serde_json::json!({"rate": 1, "burst": BURST, "per": "client_ip", "dry_run": false}),
        "{body}"
    );
    let (a, took) = burst(addr, "10.1.1.1");
    // At 1 per second, at most one more token came during the burst.
    let refill = took.as_secs() as usize;
    assert!(
        (BURST..=BURST + refill).contains(&a),
        "{a} of {TRIED} served in {took:?}"
    );
    // Another client has its own bucket.
    let (b, took_b) = burst(addr, "10.2.2.2");
    assert!(
        (BURST..=BURST + took_b.as_secs() as usize).contains(&b),
        "{b}"
    );
    let refused = (2 * TRIED - a - b) as f64;
    assert!(
        common::wait::eventually(Duration::from_secs(5), || limited(&d) == refused),
        "counted {} of {refused}",
        limited(&d)
    );
    let log = d.log();
    let warnings = log.matches("connection_rate_limit reached").count();
    assert!(
        (1..=4).contains(&warnings),
        "{warnings} warning lines:\n{log}"
    );
    assert!(
        !log.contains("end=\"rate_limit\""),
        "access lines for refusals:\n{log}"
    );
}

#[test]
fn a_burst_over_the_limit_is_cut_to_the_bucket() {
    limits_a_burst("1");
}

#[test]
fn a_burst_over_the_limit_is_cut_to_the_bucket_over_two_workers() {
    limits_a_burst("2");
}

fn dry_run(workers: &str) {
    let (d, addr, _up, _dir) = daemon(workers, "client_ip", true);
    let (a, took) = burst(addr, "10.3.3.3");
    assert_eq!(a, TRIED);
    let over = (TRIED - BURST) as f64;
    let slack = took.as_secs() as f64;
    assert!(
        common::wait::eventually(Duration::from_secs(5), || {
            let n = limited(&d);
            n <= over && n >= over - slack
        }),
        "counted {}",
        limited(&d)
    );
    let log = d.log();
    assert!(log.contains("served (dry_run)"), "{log}");
    assert!(!log.contains("end=\"rate_limit\""), "{log}");
}

#[test]
fn dry_run_serves_every_connection_and_counts_the_excess() {
    dry_run("1");
}

#[test]
fn dry_run_serves_every_connection_and_counts_the_excess_over_two_workers() {
    dry_run("2");
}

/// `per: listener`: two client addresses, one after the other, draw from one bucket, so the
/// second gets only what refilled during the first burst.
fn one_bucket_for_the_listener(workers: &str) {
    let (d, addr, _up, _dir) = daemon(workers, "listener", false);
    let (a, took_a) = burst(addr, "10.4.4.4");
    let (b, took_b) = burst(addr, "10.5.5.5");
    let refill = (took_a + took_b).as_secs() as usize + 1;
    assert!(a >= BURST, "the first client got {a}");
    assert!(
        a + b <= BURST + refill,
        "{a} + {b} served from one bucket of {BURST} in {:?}",
        took_a + took_b
    );
    let refused = (2 * TRIED - a - b) as f64;
    assert!(
        common::wait::eventually(Duration::from_secs(5), || limited(&d) == refused),
        "counted {} of {refused}",
        limited(&d)
    );
}

#[test]
fn per_listener_one_bucket_serves_every_client() {
    one_bucket_for_the_listener("1");
}

#[test]
fn per_listener_one_bucket_serves_every_client_over_two_workers() {
    one_bucket_for_the_listener("2");
}

/// Without the PROXY protocol the client is the peer and the listener refuses at accept
/// (a reset, no task): still exactly `burst` through over the workers, every refusal counted.
fn refuses_at_accept(workers: &str) {
    let (d, addr, _up, _dir) = daemon_with(workers, "client_ip", false, "");
    // The header is just bytes for the upstream here; the banner says whether it was served.
    let (a, took) = burst(addr, "10.6.6.6");
    assert!(
        (BURST..=BURST + took.as_secs() as usize).contains(&a),
        "{a} of {TRIED} served in {took:?}"
    );
    let refused = (TRIED - a) as f64;
    assert!(
        common::wait::eventually(Duration::from_secs(5), || limited(&d) == refused),
        "counted {} of {refused}",
        limited(&d)
    );
    let log = d.log();
    assert!(log.contains("connection_rate_limit reached"), "{log}");
    assert!(!log.contains("end=\"rate_limit\""), "{log}");
}

#[test]
fn without_proxy_protocol_the_listener_refuses_at_accept() {
    refuses_at_accept("1");
}

#[test]
fn without_proxy_protocol_the_listener_refuses_at_accept_over_two_workers() {
    refuses_at_accept("2");
}
