//! A non-Rust client: `openssl s_client -servername` through termination.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::net;
use common::pki::TlsSecret;
use common::proxy;
use common::yaml::{mapping_with, tls_context};

#[test]
fn openssl_s_client_through_termination() {
    if Command::new("openssl").arg("version").output().is_err() {
        panic!("openssl is required for this test (scripts/test installs it)");
    }
    let TlsSecret { ca, dir } = TlsSecret::new("interop CA", "interop", &["interop.test"]);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let up = net::echo("127.0.0.1:0");
    let (_p, port) = proxy::start_port(Some(dir.path()), |port| {
        tls_context("interop", "hosts: [interop.test]\nsecret: interop\n")
            + &mapping_with("interop", port, up.addr, "host: interop.test\n")
    });
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "interop.test",
        ])
        .arg("-CAfile")
        .arg(&ca_file)
        .args(["-verify_return_error", "-quiet", "-no_ign_eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello from openssl\n").unwrap();
    stdin.flush().unwrap();
    // Read the echo before closing stdin: s_client exits on stdin EOF without waiting.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(line, "hello from openssl\n", "stderr: {stderr}");
    assert!(
        stderr.contains("verify return:1") && !stderr.contains("verify error"),
        "{stderr}"
    );
    assert_eq!(up.connections(), 1);
}

/// OpenSSL's `K` command sends a KeyUpdate that asks for ours (`update_requested`), `k` one that
/// does not: the terminated stream answers the first with its own and keeps relaying under the
/// new keys both ways (each line after an update still comes back).
#[test]
fn openssl_key_updates_through_termination() {
    let TlsSecret { ca, dir } = TlsSecret::new("interop CA", "interop", &["interop.test"]);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let up = net::echo("127.0.0.1:0");
    let (_p, port) = proxy::start_port(Some(dir.path()), |port| {
        tls_context("interop", "hosts: [interop.test]\nsecret: interop\n")
            + &mapping_with("interop", port, up.addr, "host: interop.test\n")
    });
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "interop.test", "-tls1_3", "-msg", "-CAfile"])
        .arg(&ca_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    // Each line is sent after the previous one came back (commands act at a line's start);
    // with -msg, stdout also shows every handshake message either way.
    let mut seen = Vec::new();
    // A command is acted on only at the start of what s_client reads at once (the rest of
    // that read is dropped), so the next line waits until the KeyUpdate went out.
    let sent_update = ">>> TLS 1.3, Handshake [length 0005], KeyUpdate\n";
    for line in ["before\n", "K\n", "after K\n", "k\n", "after k\n"] {
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.flush().unwrap();
        let until = if line.len() == 2 { sent_update } else { line };
        loop {
            let mut got = String::new();
            std::io::BufRead::read_line(&mut stdout, &mut got).unwrap();
            assert!(!got.is_empty(), "s_client ended before {until:?}: {seen:?}");
            seen.push(got.clone());
            if got == until {
                break;
            }
        }
    }
    drop(stdin);
    let _ = child.wait();
    let count = |what: &str| seen.iter().filter(|l| l.starts_with(what)).count();
    assert_eq!(
        count(">>> TLS 1.3, Handshake [length 0005], KeyUpdate"),
        2,
        "{seen:?}"
    );
    // Only the update that asked for ours got one.
    assert_eq!(
        count("<<< TLS 1.3, Handshake [length 0005], KeyUpdate"),
        1,
        "{seen:?}"
    );
}
