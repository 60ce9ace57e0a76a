//! Termination (`host` set): SNI picks the upstream, the configured certificate is served,
//! unknown or missing SNI fails the handshake, wildcards, client certificates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::net;
use common::pki::{Ca, TlsSecret, write_ca_secret, write_secret};
use common::proxy;
use common::yaml::{mapping_with, tls_context};

struct Setup {
    ca: Ca,
    dir: tempfile::TempDir,
    port: u16,
    proxy: tcpmap::ProxyHandle,
    up1: net::Upstream,
    up2: net::Upstream,
}

/// The seed's termination example: my-host-1 → upstream 1, my-host-2 → upstream 2.
fn seed_setup(extra_ctx: &str) -> Setup {
    let TlsSecret { ca, dir } =
        TlsSecret::new("tcpmap test CA", "supersecret", &["my-host-1", "my-host-2"]);
    let up1 = net::banner("127.0.0.1:0", "upstream-host-1");
    let up2 = net::banner("127.0.0.1:0", "upstream-host-2");
    let (proxy, port) = proxy::start_port(Some(dir.path()), |port| {
        format!(
            r#"---
apiVersion: ambassador/v1
kind: TLSContext
name: my-context
hosts:
- my-host-1
- my-host-2
secret: supersecret
{extra_ctx}
---
apiVersion: ambassador/v1
kind: TCPMapping
name: test_mapping
address: 127.0.0.1
port: {port}
host: my-host-1
service: {}
---
apiVersion: ambassador/v1
kind: TCPMapping
name: test_mapping
address: 127.0.0.1
port: {port}
host: my-host-2
service: {}
"#,
            up1.addr, up2.addr
        )
    });
    Setup {
        ca,
        dir,
        port,
        proxy,
        up1,
        up2,
    }
}

#[test]
fn two_hosts_on_one_port_reach_two_upstreams_in_cleartext() {
    let s = seed_setup("");
    let cfg = net::tls_client_config(&s.ca.cert_pem(), None);
    let mut a = net::tls_connect(net::local(s.port), "my-host-1", cfg.clone()).unwrap();
    assert_eq!(net::read_line(&mut a), "upstream-host-1");
    net::roundtrip(&mut a, b"decrypted for host 1");
    let mut b = net::tls_connect(net::local(s.port), "my-host-2", cfg).unwrap();
    assert_eq!(net::read_line(&mut b), "upstream-host-2");
    net::roundtrip(&mut b, b"decrypted for host 2");
    assert_eq!((s.up1.connections(), s.up2.connections()), (1, 1));
    // The certificate served is the configured one: the client verified it against our CA
    // for the requested name; check the leaf too.
    let leaf = b.conn.peer_certificates().unwrap()[0].clone();
    let (configured, _) = std::fs::read_to_string(s.dir.path().join("supersecret/tls.crt"))
        .map(|pem| (pem, ()))
        .unwrap();
    use rustls::pki_types::pem::PemObject;
    let configured =
        rustls::pki_types::CertificateDer::from_pem_slice(configured.as_bytes()).unwrap();
    assert_eq!(leaf, configured);
    drop(s.proxy);
}

#[test]
fn unknown_sni_and_no_sni_fail_and_reach_no_upstream() {
    let s = seed_setup("");
    let cfg = net::tls_client_config(&s.ca.cert_pem(), None);
    let err = net::tls_connect(net::local(s.port), "my-host-3", cfg.clone()).err();
    assert!(err.is_some(), "unknown SNI must fail the handshake");
    // An IP address as server name: rustls sends no SNI.
    let err = net::tls_connect(net::local(s.port), "127.0.0.1", cfg).err();
    assert!(err.is_some(), "no SNI must fail the handshake");
    assert_eq!(s.up1.connections() + s.up2.connections(), 0);
}

#[test]
fn unknown_sni_gets_an_unrecognized_name_alert() {
    let s = seed_setup("");
    let cfg = net::tls_client_config(&s.ca.cert_pem(), None);
    let err = net::tls_connect(net::local(s.port), "nobody.test", cfg)
        .err()
        .unwrap();
    let text = err.to_string().to_lowercase();
    assert!(
        text.contains("unrecognisedname") || text.contains("unrecognizedname"),
        "{text}"
    );
}

#[test]
fn wildcard_context_terminates_any_subdomain() {
    let TlsSecret { ca, dir } = TlsSecret::new("wild CA", "wild", &["*.example.test"]);
    let up = net::banner("127.0.0.1:0", "wild-upstream");
    let (_p, port) = proxy::start_port(Some(dir.path()), |port| {
        tls_context("wild", "hosts: ['*.example.test']\nsecret: wild\n")
            + &mapping_with("wild", port, up.addr, "host: '*.example.test'\n")
    });
    let cfg = net::tls_client_config(&ca.cert_pem(), None);
    let mut c = net::tls_connect(net::local(port), "api.example.test", cfg.clone()).unwrap();
    assert_eq!(net::read_line(&mut c), "wild-upstream");
    assert!(net::tls_connect(net::local(port), "example.test", cfg).is_err());
}

#[test]
fn cert_required_accepts_a_good_client_and_rejects_none_and_bad() {
    let ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let stranger_ca = Ca::new("stranger CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf(&["secure.test"]);
    write_secret(dir.path(), "srv", &cert, &key);
    write_ca_secret(dir.path(), "clients", &client_ca.cert_pem());
    let up = net::banner("127.0.0.1:0", "secure-upstream");
    let (_p, port) = proxy::start_port(Some(dir.path()), |port| {
        tls_context(
            "mtls",
            "hosts: [secure.test]\nsecret: srv\nca_secret: clients\ncert_required: true\n",
        ) + &mapping_with("mtls", port, up.addr, "host: secure.test\n")
    });
    let (cc, ck) = client_ca.leaf(&["good-client"]);
    let good = net::tls_client_config(&ca.cert_pem(), Some((&cc, &ck)));
    let mut c = net::tls_connect(net::local(port), "secure.test", good).unwrap();
    assert_eq!(net::read_line(&mut c), "secure-upstream");

    // Without a certificate: TLS 1.3 reports the rejection on the first read.
    let none = net::tls_client_config(&ca.cert_pem(), None);
    let rejected = match net::tls_connect(net::local(port), "secure.test", none) {
        Err(_) => true,
        Ok(mut t) => net::read_line(&mut t).is_empty(),
    };
    assert!(rejected, "no client certificate must be refused");

    let (bc, bk) = stranger_ca.leaf(&["bad-client"]);
    let bad = net::tls_client_config(&ca.cert_pem(), Some((&bc, &bk)));
    let rejected = match net::tls_connect(net::local(port), "secure.test", bad) {
        Err(_) => true,
        Ok(mut t) => net::read_line(&mut t).is_empty(),
    };
    assert!(
        rejected,
        "a client certificate from another CA must be refused"
    );
    assert_eq!(up.connections(), 1);
}

#[test]
fn tls_half_close_passes_on_as_eof_and_the_reply_still_arrives() {
    // The upstream answers only after it sees EOF (the client's close_notify becomes a FIN).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        let mut req = Vec::new();
        s.read_to_end(&mut req).unwrap();
        s.write_all(b"got:").unwrap();
        s.write_all(&req).unwrap();
    });
    let TlsSecret { ca, dir } = TlsSecret::new("half-close CA", "half", &["half.test"]);
    let (_p, port) = proxy::start_port(Some(dir.path()), |port| {
        tls_context("half", "hosts: [half.test]\nsecret: half\n")
            + &mapping_with("half", port, up, "host: half.test\n")
    });
    let mut tls = net::tls_connect(
        net::local(port),
        "half.test",
        net::tls_client_config(&ca.cert_pem(), None),
    )
    .unwrap();
    use std::io::{Read, Write};
    tls.write_all(b"question").unwrap();
    tls.conn.send_close_notify();
    tls.conn.complete_io(&mut tls.sock).unwrap();
    let mut reply = Vec::new();
    let _ = tls.read_to_end(&mut reply);
    assert_eq!(reply, b"got:question");
}

#[test]
fn large_download_arrives_intact_then_close_notify() {
    // The terminating relay queues TLS records in rustls and writes them out in batches (up to
    // rustls's buffer limit): 8 MiB that the client reads only after a pause (so the proxy's
    // socket fills and its writes wait) must arrive whole, in order, and end with close_notify
    // (a TLS client reads a missing one as an error).
    let data: Vec<u8> = (0u32..8 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let sent = data.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        let mut req = [0u8; 3];
        s.read_exact(&mut req).unwrap();
        s.write_all(&sent).unwrap();
    });
    let TlsSecret { ca, dir } = TlsSecret::new("download CA", "dl", &["dl.test"]);
    let (_p, port) = proxy::start_port(Some(dir.path()), |port| {
        tls_context("dl", "hosts: [dl.test]\nsecret: dl\n")
            + &mapping_with("dl", port, up, "host: dl.test\n")
    });
    let mut tls = net::tls_connect(
        net::local(port),
        "dl.test",
        net::tls_client_config(&ca.cert_pem(), None),
    )
    .unwrap();
    use std::io::{Read, Write};
    tls.write_all(b"get").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut got = Vec::new();
    tls.read_to_end(&mut got)
        .expect("the download ends with close_notify");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the download arrived changed");
}
