//! Limits: many simultaneous connections; a mapping's `circuit_breakers.max_connections`
//! and the overall `--max-connections` refuse extra connections at once and count them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::net;
use common::proxy;
use common::yaml::mapping_with;

fn plain_yaml(port: u16, upstream: SocketAddr, extra: &str) -> String {
    mapping_with("plain", port, upstream, extra)
}

/// True when the proxy closed the connection without relaying (refused by a limit).
fn refused(addr: SocketAddr) -> bool {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = c.write_all(b"hello?");
    let mut b = [0u8; 16];
    matches!(c.read(&mut b), Ok(0) | Err(_))
}

/// Opens a connection and proves it relays.
fn open(addr: SocketAddr, tag: u8) -> TcpStream {
    let mut c = net::connect(addr);
    net::roundtrip(&mut c, &[tag; 64]);
    c
}

/// Waits until a new connection relays again (a slot was released); also returns how many
/// attempts were refused meanwhile.
fn eventually_open(addr: SocketAddr, tag: u8) -> (TcpStream, u64) {
    for attempt in 0..100 {
        let mut c = net::connect(addr);
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = c.write_all(&[tag; 8]);
        let mut got = [0u8; 8];
        if c.read_exact(&mut got).is_ok() && got == [tag; 8] {
            return (c, attempt);
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    panic!("no slot became free");
}

#[test]
fn five_hundred_simultaneous_connections_all_echo() {
    let up = net::echo("127.0.0.1:0");
    let (_proxy, port) = proxy::start_port(None, |port| plain_yaml(port, up.addr, ""));
    let addr = net::local(port);
    let mut conns: Vec<TcpStream> = (0..500).map(|_| net::connect(addr)).collect();
    // All open at once: write to each, then read each back.
    for (i, c) in conns.iter_mut().enumerate() {
        c.write_all(format!("conn-{i:04}\n").as_bytes()).unwrap();
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let mut got = [0u8; 10];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, format!("conn-{i:04}\n").as_bytes());
    }
    assert_eq!(up.connections(), 500);
}

#[test]
fn circuit_breaker_refuses_the_third_and_admits_a_fourth_after_one_closes() {
    let up = net::echo("127.0.0.1:0");
    let (proxy, port) = proxy::start_port(None, |port| {
        plain_yaml(port, up.addr, "circuit_breakers:\n- max_connections: 2\n")
    });
    let addr = net::local(port);
    let a = open(addr, 1);
    let mut b = open(addr, 2);
    assert!(refused(addr), "a third concurrent connection was served");
    assert_eq!(proxy.metrics().rejected_mapping, 1);
    assert_eq!(proxy.metrics().rejected_global, 0);
    drop(a);
    let (mut d, retries) = eventually_open(addr, 4);
    net::roundtrip(&mut b, b"b still works");
    net::roundtrip(&mut d, b"d works");
    assert!(refused(addr), "over the limit again, yet served");
    let expected = 2 + retries;
    assert_eq!(proxy.metrics().rejected_mapping, expected);
    assert!(
        proxy.metrics_text().contains(&format!(
            "tcpmap_connections_rejected_total{{scope=\"mapping\"}} {expected}"
        )),
        "{}",
        proxy.metrics_text()
    );
}

#[test]
fn global_max_connections_refuses_the_third_and_admits_a_fourth_after_one_closes() {
    let up = net::echo("127.0.0.1:0");
    // Two mappings on two ports: the limit is over both.
    let (proxy, [port, port2]) = proxy::start_ports(
        None,
        |[port, port2]| {
            plain_yaml(port, up.addr, "")
                + &plain_yaml(port2, up.addr, "").replace("name: plain", "name: plain2")
        },
        |b| b.max_connections(2),
    );
    let addr = net::local(port);
    let addr2 = net::local(port2);
    let a = open(addr, 1);
    let mut b = open(addr2, 2);
    assert!(refused(addr), "a third connection was served");
    assert!(
        refused(addr2),
        "a third connection was served on the other port"
    );
    assert_eq!(proxy.metrics().rejected_global, 2);
    drop(a);
    let (mut d, retries) = eventually_open(addr2, 4);
    net::roundtrip(&mut b, b"b still works");
    net::roundtrip(&mut d, b"d works");
    assert!(refused(addr));
    assert_eq!(proxy.metrics().rejected_global, 3 + retries);
    assert_eq!(proxy.metrics().rejected_mapping, 0);
}
