//! Emissary's behaviour on the wire (SPEC section 13): a ClientHello cut short by the
//! client's EOF gets `decode_error`; certificate choice by specificity.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::hello::{self, Reply};
use common::net;
use common::pki::{Ca, write_secret};
use common::proxy;
use common::yaml::{mapping_with, tls_context};

#[test]
fn a_client_hello_cut_short_by_eof_gets_decode_error() {
    let ca = Ca::new("eof CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf(&["eof.test"]);
    write_secret(dir.path(), "eof", &cert, &key);
    let up = net::banner("127.0.0.1:0", "eof-upstream");
    // A long handshake deadline: the answer must come from the EOF, not from the timer.
    let (_p, port) = proxy::start_port(Some(dir.path()), |port| {
        tls_context("eof", "hosts: [eof.test]\nsecret: eof\n")
            + &mapping_with("eof", port, up.addr, "host: eof.test\n")
    });
    let whole = hello::frame(&hello::rustls_message(Some("eof.test")), 1 << 14);
    for cut in [3, 5, 20, whole.len() - 1] {
        let mut s = TcpStream::connect(net::local(port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&whole[..cut]).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let t0 = std::time::Instant::now();
        assert_eq!(
            hello::read_reply(&mut s),
            Reply::Alert(hello::DECODE_ERROR),
            "cut at {cut}"
        );
        assert!(t0.elapsed() < Duration::from_secs(2), "cut at {cut}");
    }
    // Nothing sent before the EOF: a plain close, no alert.
    let mut s = TcpStream::connect(net::local(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(hello::read_reply(&mut s), Reply::Closed);
    // The whole hello is served.
    let cfg = net::tls_client_config(&ca.cert_pem(), None);
    let mut c = net::tls_connect(net::local(port), "eof.test", cfg).unwrap();
    assert_eq!(net::read_line(&mut c), "eof-upstream");
}

#[test]
fn a_proxy_listener_strips_the_header_before_the_backend() {
    use std::io::Read;
    let echo = net::echo("127.0.0.1:0");
    let (_p, port) = proxy::start_port(None, |port| {
        format!(
            "---
apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {{name: nlb}}
spec: {{port: {port}, protocol: TCP, protocolStack: [PROXY, TCP], securityModel: INSECURE, hostBinding: {{namespace: {{from: ALL}}}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata: {{name: behind-nlb}}
spec: {{address: 127.0.0.1, port: {port}, service: \"{}\"}}
",
            echo.addr
        )
    });
    let mut s = TcpStream::connect(net::local(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"PROXY TCP4 192.0.2.1 192.0.2.2 40000 5432\r\nhello")
        .unwrap();
    let mut got = [0u8; 5];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello", "the header must not reach the backend");
    // Without the header the connection is refused.
    let mut bare = TcpStream::connect(net::local(port)).unwrap();
    bare.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    bare.write_all(b"hello\r\n\r\n").unwrap();
    let mut buf = [0u8; 16];
    assert!(matches!(bare.read(&mut buf), Ok(0) | Err(_)));
    assert_eq!(echo.connections(), 1);
}
