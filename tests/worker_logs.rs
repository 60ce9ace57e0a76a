//! `tcpmap run --workers 2` logs that a person can read: every line a worker writes names the
//! worker (`worker=N`, text and JSON), the Supervisor's summary lines (config applied, shutting
//! down, drained) appear once, not once per process, and a worker's copies stay at debug.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::daemon::Daemon;
use common::net;
use common::yaml::mapping;

/// A daemon with two workers serving one plain mapping to an echo upstream.
fn start(log_format: &str) -> (tempfile::TempDir, net::Upstream, Daemon, u16) {
    let up = net::echo("127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let addr = up.addr;
    let (d, [port]) = Daemon::run_yaml(
        &cfg,
        |[port]| mapping("plain", port, addr),
        &["--workers", "2", "--log-format", log_format],
    );
    (dir, up, d, port)
}

/// Eight connections at once, each echoing once, then closed: some land on each worker
/// (not guaranteed, and not needed: every access line must name its worker either way).
fn traffic(port: u16) {
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(move || {
                let mut c = TcpStream::connect(net::local(port)).unwrap();
                net::roundtrip(&mut c, b"hello");
            });
        }
    });
}

/// Drains the daemon (SIGTERM) and returns every line it wrote.
fn stop(mut d: Daemon) -> Vec<String> {
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(15)).expect("exited");
    assert!(status.success(), "{status:?}\n{}", d.log());
    d.lines()
}

fn count(lines: &[String], needle: &str) -> usize {
    lines.iter().filter(|l| l.contains(needle)).count()
}

#[test]
fn text_lines_name_their_worker_and_summaries_appear_once() {
    let (_dir, _up, d, port) = start("text");
    traffic(port);
    // Access lines are buffered up to 100 ms; the drain flushes them anyway.
    let lines = stop(d);
    let log = lines.join("\n");
    let access: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("tcpmap::access"))
        .collect();
    assert_eq!(access.len(), 8, "{log}");
    for l in &access {
        let n = l.rsplit_once(" worker=").map(|(_, n)| n.trim());
        assert!(
            n.is_some_and(|n| n.parse::<u32>().is_ok()),
            "an access line without its worker: {l}"
        );
    }
    // The Supervisor's lines are its own: no worker tag, once each.
    assert_eq!(count(&lines, "config applied"), 1, "{log}");
    assert_eq!(count(&lines, "shutting down graceful="), 1, "{log}");
    assert_eq!(count(&lines, "drained"), 1, "{log}");
    for l in lines.iter().filter(|l| l.contains("config applied")) {
        assert!(!l.contains(" worker="), "{l}");
    }
}

#[test]
fn json_lines_carry_a_worker_key() {
    let (_dir, _up, d, port) = start("json");
    traffic(port);
    let lines = stop(d);
    let log = lines.join("\n");
    let mut access = 0;
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        if v["target"] == "tcpmap::access" {
            access += 1;
            assert!(
                v["worker"].is_u64(),
                "an access line without its worker: {l}"
            );
        }
    }
    assert_eq!(access, 8, "{log}");
}
