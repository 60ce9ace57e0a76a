//! A bad reload is rejected whole: a YAML error, a validation error, or a port another
//! process holds. The old routes keep serving, the process stays up, `/config` shows the
//! errors, and a following valid config applies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use common::daemon::{Daemon, http_get, write_atomic};
use common::net::{self, free_port};
use common::yaml::mapping;

fn banner_of(port: u16) -> String {
    let mut s = net::connect(net::local(port));
    net::read_line(&mut s)
}

fn config_json(d: &Daemon) -> serde_json::Value {
    let (status, body) = http_get(d.admin_addr(), "/config");
    assert_eq!(status, 200);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/config is not JSON ({e}): {body}"))
}

/// Sends SIGHUP and waits for its outcome line; returns it.
fn sighup(d: &Daemon) -> String {
    let mark = d.mark();
    d.signal(libc::SIGHUP);
    d.wait_line(mark, Duration::from_secs(5), |l| {
        l.contains("trigger=\"sighup\"") && l.contains("reload ")
    })
    .unwrap_or_else(|| panic!("no SIGHUP outcome:\n{}", d.log()))
}

/// Runs one bad config through a daemon serving mapping `one` → A, then a good one.
/// `bad` gets the port of mapping one and the address of upstream B.
/// `must_refuse`: a port the bad config adds that must not be left bound.
fn rejected_then_recovers(
    bad: impl Fn(u16, SocketAddr) -> String,
    error_has: &str,
    must_refuse: Option<u16>,
) {
    let a = net::banner("127.0.0.1:0", "A");
    let b = net::banner("127.0.0.1:0", "B");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let (mut d, [p1]) = Daemon::run_yaml(
        &cfg,
        |[p1]| mapping("one", p1, a.addr),
        &["--admin", "127.0.0.1:0"],
    );
    let mut held = net::connect(net::local(p1));
    assert_eq!(net::read_line(&mut held), "A");
    let generation = config_json(&d)["generation"].as_u64().unwrap();

    write_atomic(&cfg, &bad(p1, b.addr));
    let line = sighup(&d);
    assert!(line.contains("reload rejected"), "not rejected: {line}");
    assert!(line.contains(error_has), "error not named in {line:?}");
    assert!(d.wait_exit(Duration::from_millis(100)).is_none(), "exited");
    if let Some(port) = must_refuse {
        assert!(
            std::net::TcpStream::connect(net::local(port)).is_err(),
            "a listener of the rejected reload stayed bound"
        );
    }
    // Old routes still serve, old connections too.
    assert_eq!(banner_of(p1), "A");
    net::roundtrip(&mut held, b"still here");
    let json = config_json(&d);
    assert_eq!(json["generation"].as_u64(), Some(generation));
    assert_eq!(json["last_reload"]["ok"], false, "{json}");
    let errors = json["last_reload"]["errors"].as_array().unwrap();
    assert!(!errors.is_empty(), "{json}");
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains(error_has)),
        "{json}"
    );

    // A following valid config applies.
    write_atomic(&cfg, &mapping("one", p1, b.addr));
    let line = sighup(&d);
    assert!(line.contains("reload applied"), "{line}");
    assert_eq!(banner_of(p1), "B");
    let json = config_json(&d);
    assert_eq!(json["last_reload"]["ok"], true, "{json}");
    assert!(json["generation"].as_u64().unwrap() > generation);
    net::roundtrip(&mut held, b"and still");
}

#[test]
fn yaml_error_is_rejected() {
    rejected_then_recovers(
        |p, b| format!("{}---\nkind: [unclosed\n", mapping("one", p, b)),
        "config.yaml",
        None,
    );
}

#[test]
fn validation_error_is_rejected_whole() {
    // A valid change to mapping one plus an invalid mapping: nothing applies.
    rejected_then_recovers(
        |p, b| format!("{}{}", mapping("one", p, b), mapping("bad", 0, b)),
        "bad",
        None,
    );
}

#[test]
fn port_in_use_is_rejected_whole() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let free = free_port();
    // The free port sorts either side of the taken one; both orders must leave nothing bound.
    rejected_then_recovers(
        move |p, b| {
            format!(
                "{}{}{}",
                mapping("one", p, b),
                mapping("two", port, b),
                mapping("three", free, b)
            )
        },
        &port.to_string(),
        Some(free),
    );
    drop(taken);
}

#[test]
fn a_port_in_use_at_the_first_start_says_cannot_bind_not_reload_rejected() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, mapping("one", port, "127.0.0.1:9")).unwrap();
    let mut d = Daemon::spawn(&["run", "--config", cfg.to_str().unwrap()]);
    let status = d.wait_exit(Duration::from_secs(10)).expect("did not exit");
    assert_eq!(status.code(), Some(1));
    let log = d.log();
    assert!(
        log.contains(&format!("cannot bind 127.0.0.1:{port}")),
        "{log}"
    );
    assert!(!log.contains("reload"), "{log}");
    drop(taken);
}
