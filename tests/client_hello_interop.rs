//! ClientHellos as a foreign TLS stack sends them, built byte by byte (the way tlsfuzzer does),
//! and `openssl s_client` / `curl`: large hellos across records, 1-byte records, truncated
//! hellos, bad server names, and the catch-all `host: "*"` for clients without SNI. Each
//! rejection must come back as the alert a TLS server sends; each good hello as a ServerHello.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::hello::{self, Reply};
use common::net;
use common::pki::{Ca, write_secret};
use common::proxy;
use common::yaml::{mapping_with, tls_context};

struct Setup {
    _dir: tempfile::TempDir,
    ca: Ca,
    /// `my-host-1` only: no catch-all, no host-less group.
    strict: SocketAddr,
    /// `my-host-1` and the catch-all `*` (a `Host` with `hostname: "*"`).
    catch_all: SocketAddr,
    proxy: tcpmap::ProxyHandle,
    up: net::Upstream,
    fallback: net::Upstream,
}

fn host_doc(name: &str, hostname: &str, secret: &str) -> String {
    format!(
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {{name: {name}}}\nspec: {{hostname: \"{hostname}\", tlsSecret: {{name: {secret}}}}}\n"
    )
}

fn setup() -> Setup {
    let ca = Ca::new("hello CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf(&["my-host-1"]);
    write_secret(dir.path(), "named", &cert, &key);
    let (cert, key) = ca.leaf(&["default.test"]);
    write_secret(dir.path(), "default-cert", &cert, &key);
    let up = net::banner("127.0.0.1:0", "named-upstream");
    let fallback = net::banner("127.0.0.1:0", "catch-all-upstream");
    let (proxy, [strict, catch_all]) = proxy::start_ports(
        Some(dir.path()),
        |[strict, catch_all]| {
            // `Host`s are tried before TLSContexts, the exact one before `*`.
            host_doc("named", "my-host-1", "named")
                + &host_doc("fallback", "*", "default-cert")
                + &mapping_with("strict", strict, up.addr, "host: my-host-1\n")
                + &mapping_with("named", catch_all, up.addr, "host: my-host-1\n")
                + &mapping_with("any", catch_all, fallback.addr, "host: \"*\"\n")
        },
        |b| b.handshake_timeout(Duration::from_secs(3)),
    );
    Setup {
        _dir: dir,
        ca,
        strict: net::local(strict),
        catch_all: net::local(catch_all),
        proxy,
        up,
        fallback,
    }
}

#[test]
fn large_and_fragmented_hellos_are_answered_with_a_server_hello() {
    let s = setup();
    let msg = hello::rustls_message(Some("my-host-1"));
    // 20 KiB across two records (what post-quantum key shares and big tickets lead to).
    let big = hello::padded(&msg, 20 * 1024);
    let two_records = hello::frame(&big, 16 * 1024);
    assert!(two_records.len() > 20 * 1024 + 10);
    assert_eq!(
        hello::send(s.strict, &two_records),
        Reply::Handshake(hello::SERVER_HELLO)
    );
    // Near rustls' 64 KiB bound, in full-size records.
    let huge = hello::padded(&msg, 60_000);
    assert_eq!(
        hello::send(s.strict, &hello::frame(&huge, 16 * 1024)),
        Reply::Handshake(hello::SERVER_HELLO)
    );
    // A real hello, one byte per record.
    assert_eq!(
        hello::send(s.strict, &hello::frame(&msg, 1)),
        Reply::Handshake(hello::SERVER_HELLO)
    );
    // 40 KiB in 3-byte records: more than 100 KiB on the wire (replayed re-framed).
    let frag = hello::frame(&hello::padded(&msg, 40_000), 3);
    assert!(frag.len() > 100 * 1024);
    assert_eq!(
        hello::send(s.strict, &frag),
        Reply::Handshake(hello::SERVER_HELLO)
    );
    // Over 64 KiB: rejected at once, as rustls does.
    let over = hello::padded(&msg, 0x1_0000);
    assert_eq!(
        hello::send(s.strict, &hello::frame(&over, 16 * 1024)),
        Reply::Alert(hello::DECODE_ERROR)
    );
    assert_eq!(s.up.connections(), 0, "no handshake finished");
}

#[test]
fn truncated_and_malformed_hellos_get_decode_error() {
    let s = setup();
    let msg = hello::rustls_message(Some("my-host-1"));
    let body = msg.len() - 4;
    // tlsfuzzer's truncation: the message is complete by its length, but its fields are cut.
    for cut in [0, 1, 2, 33, 34, 35, 40, 60, body / 2, body - 1] {
        let short = hello::truncated(&msg, cut);
        assert_eq!(
            hello::send(s.strict, &hello::frame(&short, 16 * 1024)),
            Reply::Alert(hello::DECODE_ERROR),
            "cut at {cut} of {body}"
        );
    }
    // A record longer than 2^14 bytes, an empty record, another record type inside the hello.
    assert_eq!(
        hello::send(s.strict, b"\x16\x03\x01\x40\x01"),
        Reply::Alert(hello::RECORD_OVERFLOW)
    );
    assert_eq!(
        hello::send(s.strict, b"\x16\x03\x01\x00\x00"),
        Reply::Alert(hello::DECODE_ERROR)
    );
    let mut interleaved = hello::frame(&msg[..10], 16 * 1024);
    interleaved.extend_from_slice(b"\x14\x03\x03\x00\x01\x01");
    assert_eq!(
        hello::send(s.strict, &interleaved),
        Reply::Alert(hello::UNEXPECTED_MESSAGE)
    );
    // An SSLv2-format hello.
    assert_eq!(
        hello::send(s.strict, b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10"),
        Reply::Alert(hello::DECODE_ERROR)
    );
    // Not TLS at all: closed without an alert.
    assert_eq!(hello::send(s.strict, b"SSH-2.0-x\r\n"), Reply::Closed);
    // The catch-all does not change any of this.
    let short = hello::truncated(&msg, body / 2);
    assert_eq!(
        hello::send(s.catch_all, &hello::frame(&short, 16 * 1024)),
        Reply::Alert(hello::DECODE_ERROR)
    );
}

#[test]
fn bad_server_names_get_the_alert_a_tls_server_sends() {
    let s = setup();
    let sni = |data: Vec<u8>| hello::frame(&hello::minimal_message(&[(0, data)]), 16 * 1024);
    // Malformed extension: decode_error.
    for (what, data) in [
        ("empty extension", vec![]),
        ("empty list", vec![0, 0]),
        ("empty name", hello::server_name(b"")),
        ("list longer than the extension", vec![0, 9, 0, 0, 1, b'a']),
    ] {
        for addr in [s.strict, s.catch_all] {
            assert_eq!(
                hello::send(addr, &sni(data.clone())),
                Reply::Alert(hello::DECODE_ERROR),
                "{what}"
            );
        }
    }
    // A name that is not a DNS name: illegal_parameter.
    for name in [
        &b"my-host-1\x00"[..],
        b"nul\x00.example",
        b"ctl\x07",
        b"caf\xc3\xa9",
    ] {
        for addr in [s.strict, s.catch_all] {
            assert_eq!(
                hello::send(addr, &sni(hello::server_name(name))),
                Reply::Alert(hello::ILLEGAL_PARAMETER),
                "{name:?}"
            );
        }
    }
    // A well-formed name no group matches: unrecognized_name, without a catch-all only.
    let unknown = hello::frame(&hello::rustls_message(Some("nobody.test")), 16 * 1024);
    assert_eq!(
        hello::send(s.strict, &unknown),
        Reply::Alert(hello::UNRECOGNIZED_NAME)
    );
    assert_eq!(
        hello::send(s.catch_all, &unknown),
        Reply::Handshake(hello::SERVER_HELLO)
    );
    // No SNI at all: the same.
    let none = hello::frame(&hello::rustls_message(None), 16 * 1024);
    assert_eq!(
        hello::send(s.strict, &none),
        Reply::Alert(hello::UNRECOGNIZED_NAME)
    );
    assert_eq!(
        hello::send(s.catch_all, &none),
        Reply::Handshake(hello::SERVER_HELLO)
    );
    let text = s.proxy.metrics_text();
    for reason in ["malformed_hello", "bad_sni", "unknown_sni", "no_sni"] {
        let n = common::metrics::metric(
            &text,
            "tcpmap_tls_handshake_failures_total",
            &[("side", "client"), ("reason", reason)],
        );
        assert!(n >= 1.0, "{reason}: {n}\n{text}");
    }
}

#[test]
fn a_client_without_sni_gets_the_catch_all_certificate() {
    let s = setup();
    // rustls: an IP address as server name sends no SNI; the catch-all's certificate is for
    // default.test, so verify it as that name.
    let cfg = net::tls_client_config(&s.ca.cert_pem(), None);
    let mut tls = net::tls_connect(s.catch_all, "127.0.0.1", cfg.clone()).err();
    assert!(tls.take().is_some(), "the certificate is not for 127.0.0.1");
    let mut named = net::tls_connect(s.catch_all, "my-host-1", cfg.clone()).unwrap();
    assert_eq!(net::read_line(&mut named), "named-upstream");
    let mut other = net::tls_connect(s.catch_all, "default.test", cfg).unwrap();
    assert_eq!(net::read_line(&mut other), "catch-all-upstream");
    let leaf = other.conn.peer_certificates().unwrap()[0].clone();
    assert_eq!(net::common_name(&leaf), "default.test");
    assert_eq!(s.fallback.connections(), 1);

    // openssl without -servername (it sends none for an IP address) gets that certificate.
    if Command::new("openssl").arg("version").output().is_err() {
        panic!("openssl is required for this test (scripts/test installs it)");
    }
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &s.catch_all.to_string(),
            "-noservername",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("CN = default.test") || stdout.contains("CN=default.test"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Against the strict port it gets the alert.
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &s.strict.to_string(),
            "-noservername",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(stderr.contains("unrecognized name"), "{stderr}");
}

#[test]
fn curl_by_address_reaches_the_catch_all() {
    // An HTTP upstream behind a catch-all, reached by `curl -k https://127.0.0.1:PORT/`.
    let ca = Ca::new("curl CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf(&["default.test"]);
    write_secret(dir.path(), "default-cert", &cert, &key);
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http_addr = http.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for conn in http.incoming().take(1) {
            let mut c = conn.unwrap();
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 9\r\n\r\ncatch-all");
        }
    });
    let (_p, port) = proxy::start_port(Some(dir.path()), |port| {
        tls_context("any", "hosts: [\"*\"]\nsecret: default-cert\n")
            + &mapping_with("web", port, http_addr, "host: \"*\"\n")
    });
    if Command::new("curl").arg("--version").output().is_err() {
        panic!("curl is required for this test (scripts/test installs it)");
    }
    let out = Command::new("curl")
        .args(["-sS", "-k", "--max-time", "10"])
        .arg(format!("https://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "catch-all",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
