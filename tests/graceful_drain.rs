//! SIGTERM/SIGINT drain: listeners stop at once, open connections finish (up to
//! `--drain-timeout`), exit 0; a second signal exits at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::net;
use common::yaml::mapping;

struct Setup {
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    _up: net::Upstream,
}

/// A banner upstream and a running daemon (`tcpmap run ARGS...`) relaying to it.
fn setup(args: &[&str]) -> (Setup, Daemon) {
    let up = net::banner("127.0.0.1:0", "A");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let (d, [port]) = Daemon::run_yaml(&cfg, |[port]| mapping("m", port, up.addr), args);
    let s = Setup {
        _dir: dir,
        addr: net::local(port),
        _up: up,
    };
    (s, d)
}

fn open(addr: SocketAddr) -> TcpStream {
    let mut s = net::connect(addr);
    assert_eq!(net::read_line(&mut s), "A");
    s
}

/// Sends `sig` and waits until the daemon has stopped its listeners.
fn begin_drain(d: &Daemon, sig: libc::c_int) {
    let mark = d.mark();
    d.signal(sig);
    d.wait_for(mark, "shutting down graceful=", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no drain started:\n{}", d.log()));
}

#[test]
fn sigterm_refuses_new_connections_and_lets_the_open_one_finish() {
    let (s, mut d) = setup(&[]);
    let mut held = open(s.addr);
    begin_drain(&d, libc::SIGTERM);

    assert!(
        TcpStream::connect_timeout(&s.addr, Duration::from_secs(1)).is_err(),
        "a draining proxy accepted a new connection"
    );
    // The open connection still works both ways, for a while.
    for i in 0..3 {
        net::roundtrip(&mut held, format!("draining {i}").as_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        d.wait_exit(Duration::from_millis(200)).is_none(),
        "exited before the connection ended"
    );
    held.shutdown(Shutdown::Write).unwrap();
    assert!(net::closed_within(&mut held, Duration::from_secs(3)));
    let status = d
        .wait_exit(Duration::from_secs(5))
        .expect("exits after the drain");
    assert_eq!(status.code(), Some(0), "{}", d.log());
    // The held connection ended by itself (the client's close), not by the drain's kill, and
    // the Supervisor reported the end of the drain (of its workers, or of its own connections
    // with one process).
    let log = d.log();
    assert!(log.contains("drained: every"), "{log}");
    let access: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("tcpmap::access"))
        .collect();
    assert_eq!(access.len(), 1, "{log}");
    assert!(access[0].contains("end=\"client_closed\""), "{log}");
}

#[test]
fn drain_timeout_closes_held_connections_and_exits_zero() {
    let (s, mut d) = setup(&["--drain-timeout", "1"]);
    let mut held = open(s.addr);
    let t = Instant::now();
    begin_drain(&d, libc::SIGTERM);
    assert!(
        net::closed_within(&mut held, Duration::from_secs(4)),
        "held connection not closed"
    );
    let closed_after = t.elapsed();
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_millis(2500),
        "closed after {closed_after:?}, want ~1 s"
    );
    let status = d.wait_exit(Duration::from_secs(4)).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", d.log());
    assert!(
        d.log().contains("end=\"shutdown\""),
        "access log does not say shutdown:\n{}",
        d.log()
    );
}

#[test]
fn second_signal_exits_at_once() {
    let (s, mut d) = setup(&["--drain-timeout", "30"]);
    let _held = open(s.addr);
    begin_drain(&d, libc::SIGINT);
    assert!(
        d.wait_exit(Duration::from_millis(300)).is_none(),
        "did not wait for the drain"
    );
    let t = Instant::now();
    d.signal(libc::SIGTERM);
    let status = d
        .wait_exit(Duration::from_secs(2))
        .expect("second signal exits at once");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert!(status.success(), "exit {status:?}");
}
