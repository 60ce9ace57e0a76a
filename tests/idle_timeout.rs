//! `idle_timeout_ms`: an idle connection is closed; one that trickles survives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::net;
use common::proxy;
use common::yaml::mapping_with;

fn setup() -> (u16, net::Upstream, tcpmap::ProxyHandle) {
    let up = net::echo("127.0.0.1:0");
    let (p, port) = proxy::start_port(None, |port| {
        mapping_with("idle", port, up.addr, "idle_timeout_ms: 300\n")
    });
    (port, up, p)
}

#[test]
fn idle_connection_is_closed_within_a_second() {
    let (port, _up, _p) = setup();
    let mut s = net::connect(net::local(port));
    net::roundtrip(&mut s, b"hello");
    let t = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut b = [0u8; 1];
    let r = s.read(&mut b);
    assert!(
        matches!(r, Ok(0)) || r.is_err() && t.elapsed() < Duration::from_secs(2),
        "{r:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "closed after {:?}",
        t.elapsed()
    );
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "closed too early: {:?}",
        t.elapsed()
    );
}

#[test]
fn trickling_connection_survives() {
    let (port, _up, _p) = setup();
    let mut s = net::connect(net::local(port));
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        s.write_all(b".").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    net::roundtrip(&mut s, b"still here");
}
