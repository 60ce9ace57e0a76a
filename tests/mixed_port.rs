//! A host group and a host-less group on one port: matching SNI terminates, everything
//! else goes raw to the host-less upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;

use common::net;
use common::pki::TlsSecret;
use common::proxy;
use common::yaml::{mapping, mapping_with, tls_context};

#[test]
fn matching_sni_terminates_and_the_rest_goes_raw() {
    let TlsSecret { ca, dir } = TlsSecret::new("mixed CA", "known", &["known.test"]);
    let term_up = net::banner("127.0.0.1:0", "terminated-upstream");
    // The raw upstream is itself a TLS server for other names, so raw TLS can be checked end to end.
    let (raw_cert, raw_key) = common::pki::self_signed(&["other.test"]);
    let raw_tls_up = net::tls_banner(
        "127.0.0.1:0",
        "raw-tls-upstream",
        net::tls_server_config(&raw_cert, &raw_key, None),
    );
    let (_p, port) = proxy::start_port(Some(dir.path()), |port| {
        tls_context("known", "hosts: [known.test]\nsecret: known\n")
            + &mapping_with("term", port, term_up.addr, "host: known.test\n")
            + &mapping("raw", port, raw_tls_up.addr)
    });
    let a = net::local(port);

    let mut t = net::tls_connect(
        a,
        "known.test",
        net::tls_client_config(&ca.cert_pem(), None),
    )
    .unwrap();
    assert_eq!(net::read_line(&mut t), "terminated-upstream");

    // Unknown SNI: relayed raw, so the handshake is with the raw upstream itself.
    let mut r = net::tls_connect(a, "other.test", net::tls_client_config(&raw_cert, None)).unwrap();
    assert!(net::read_line(&mut r).starts_with("raw-tls-upstream"));
    net::roundtrip(&mut r, b"raw tls");
    assert_eq!(term_up.connections(), 1);
}

#[test]
fn plain_bytes_go_raw_to_the_hostless_upstream() {
    let TlsSecret { ca: _, dir } = TlsSecret::new("mixed CA 2", "known", &["known.test"]);
    let term_up = net::banner("127.0.0.1:0", "terminated-upstream");
    let raw_up = net::echo("127.0.0.1:0");
    let (_p, port) = proxy::start_port(Some(dir.path()), |port| {
        tls_context("known", "hosts: [known.test]\nsecret: known\n")
            + &mapping_with("term", port, term_up.addr, "host: known.test\n")
            + &mapping("raw", port, raw_up.addr)
    });
    let mut s = net::connect(net::local(port));
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut got = [0u8; 18];
    use std::io::Read;
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!((raw_up.connections(), term_up.connections()), (1, 0));
}
