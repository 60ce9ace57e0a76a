//! Plain relay (no `host`, no `tls`): bytes intact both ways, half-close in both orders,
//! server-speaks-first protocols, TLS passthrough, bind address and IPv6 upstreams.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::thread;
use std::time::Duration;

use common::net;
use common::proxy;
use common::yaml::{mapping, mapping_with};
use sha2::{Digest, Sha256};

/// The `plain` mapping under the `getambassador.io/v2` apiVersion.
fn plain_mapping(port: u16, service: &str) -> String {
    mapping("plain", port, service).replace("ambassador/v1", "getambassador.io/v2")
}

#[test]
fn one_mebibyte_each_way_arrives_intact() {
    let up = net::echo("127.0.0.1:0");
    let (_p, port) = proxy::start_port(None, |port| plain_mapping(port, &up.addr.to_string()));
    let mut s = net::connect(net::local(port));
    let data: Vec<u8> = (0..1 << 20).map(|_| fastrand::u8(..)).collect();
    let sent = Sha256::digest(&data);
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert_eq!(got.len(), 1 << 20);
    assert_eq!(Sha256::digest(&got), sent, "bytes changed on the way");
}

#[test]
fn client_half_close_still_gets_the_reply() {
    // The upstream answers only after it sees EOF.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut req = Vec::new();
        s.read_to_end(&mut req).unwrap();
        s.write_all(b"got:").unwrap();
        s.write_all(&req).unwrap();
    });
    let (_p, port) = proxy::start_port(None, |port| plain_mapping(port, &up.to_string()));
    let mut s = net::connect(net::local(port));
    s.write_all(b"question").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "got:question");
}

#[test]
fn upstream_half_close_lets_the_client_keep_sending() {
    // The upstream sends a greeting and shuts its write side, then reads everything.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"bye").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        tx.send(rest).unwrap();
    });
    let (_p, port) = proxy::start_port(None, |port| plain_mapping(port, &up.to_string()));
    let mut s = net::connect(net::local(port));
    let mut greeting = Vec::new();
    s.read_to_end(&mut greeting).unwrap();
    assert_eq!(greeting, b"bye");
    s.write_all(b"still talking").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let rest = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(rest, b"still talking");
}

#[test]
fn server_speaks_first() {
    let up = net::banner("127.0.0.1:0", "SSH-2.0-test");
    let (_p, port) = proxy::start_port(None, |port| plain_mapping(port, &up.addr.to_string()));
    let mut s = net::connect(net::local(port));
    // We send nothing: the banner must arrive anyway.
    assert_eq!(net::read_line(&mut s), "SSH-2.0-test");
    net::roundtrip(&mut s, b"after banner");
}

#[test]
fn tls_passes_through_untouched() {
    let (cert, key) = common::pki::self_signed(&["passthrough.test"]);
    let up = net::tls_banner(
        "127.0.0.1:0",
        "upstream",
        net::tls_server_config(&cert, &key, None),
    );
    let (_p, port) = proxy::start_port(None, |port| plain_mapping(port, &up.addr.to_string()));
    // The client trusts only the upstream's own certificate: the handshake proves it is end to end.
    let cfg = net::tls_client_config(&cert, None);
    let mut tls = net::tls_connect(net::local(port), "passthrough.test", cfg).unwrap();
    assert!(net::read_line(&mut tls).starts_with("upstream client-cert=none"));
    net::roundtrip(&mut tls, b"end to end");
}

#[test]
fn address_binds_only_there() {
    let up = net::echo("127.0.0.1:0");
    let (_p, port) = proxy::start_port(None, |port| {
        mapping("only2", port, up.addr).replace("address: 127.0.0.1", "address: 127.0.0.2")
    });
    let mut s = net::connect(SocketAddr::from(([127, 0, 0, 2], port)));
    net::roundtrip(&mut s, b"on .2");
    assert!(
        std::net::TcpStream::connect(net::local(port)).is_err(),
        "127.0.0.1 must not accept"
    );
}

#[test]
fn ipv6_literal_upstream() {
    if let Err(e) = std::net::TcpListener::bind("[::1]:0") {
        common::env::missing("IPV6", &format!("no IPv6 loopback here ({e})"));
        return;
    }
    let up = net::echo("[::1]:0");
    let (_p, port) = proxy::start_port(None, |port| {
        let service = format!("'[::1]:{}'", up.port());
        mapping_with("v6", port, service, "enable_ipv6: true\n")
    });
    let mut s = net::connect(net::local(port));
    net::roundtrip(&mut s, b"over v6");
    assert_eq!(up.connections(), 1);
}
