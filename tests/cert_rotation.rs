//! Certificate rotation: after tls.crt/tls.key are replaced and the config reloaded (SIGHUP,
//! then the secrets-dir watch), new handshakes present the new certificate while a TLS
//! connection opened before keeps working.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::daemon::Daemon;
use common::net;
use common::pki::{Ca, write_secret};
use common::yaml::{mapping_with, tls_context};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

fn presented(tls: &Tls) -> Vec<u8> {
    tls.conn.peer_certificates().unwrap()[0].to_vec()
}

/// Waits for a reload outcome line with `trigger` after `mark`; it must be "applied".
fn wait_applied(d: &Daemon, mark: usize, trigger: &str) {
    let needle = format!("trigger=\"{trigger}\"");
    let line = d
        .wait_line(mark, Duration::from_secs(5), |l| {
            l.contains(&needle) && l.contains("reload ")
        })
        .unwrap_or_else(|| panic!("no {trigger} reload:\n{}", d.log()));
    assert!(line.contains("reload applied"), "{line}");
}

#[test]
fn new_handshakes_get_the_new_certificate_and_open_ones_continue() {
    let ca = Ca::new("rotation CA");
    let secrets = tempfile::tempdir().unwrap();
    let (cert1, key1) = ca.leaf(&["my-host"]);
    write_secret(secrets.path(), "sec", &cert1, &key1);
    let up = net::banner("127.0.0.1:0", "A");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let secrets_arg = secrets.path().to_str().unwrap().to_string();
    let (d, [port]) = Daemon::run_yaml(
        &cfg,
        |[port]| {
            tls_context("ctx", "hosts: [my-host]\nsecret: sec\n")
                + &mapping_with("m", port, up.addr, "host: my-host\n")
        },
        &["--secrets-dir", &secrets_arg],
    );
    let addr = net::local(port);
    let client = net::tls_client_config(&ca.cert_pem(), None);

    let mut held = net::tls_connect(addr, "my-host", client.clone()).unwrap();
    assert_eq!(net::read_line(&mut held), "A");
    assert_eq!(presented(&held), der(&cert1));

    // Rotate and SIGHUP.
    let (cert2, key2) = ca.leaf(&["my-host"]);
    write_secret(secrets.path(), "sec", &cert2, &key2);
    let mark = d.mark();
    d.signal(libc::SIGHUP);
    wait_applied(&d, mark, "sighup");
    let mut fresh = net::tls_connect(addr, "my-host", client.clone()).unwrap();
    assert_eq!(net::read_line(&mut fresh), "A");
    assert_eq!(
        presented(&fresh),
        der(&cert2),
        "new handshake got the old certificate"
    );
    net::roundtrip(&mut held, b"open connection still works");
    net::roundtrip(&mut fresh, b"new one works");

    // The watch also saw rotation 2; let that reload pass so it cannot be mistaken for the next.
    wait_applied(&d, mark, "watch");

    // Rotate again, no signal: the secrets-dir watch reloads.
    let (cert3, key3) = ca.leaf(&["my-host"]);
    let mark = d.mark();
    write_secret(secrets.path(), "sec", &cert3, &key3);
    wait_applied(&d, mark, "watch");
    let third = net::tls_connect(addr, "my-host", client).unwrap();
    assert_eq!(
        presented(&third),
        der(&cert3),
        "watch did not rotate the certificate"
    );
    net::roundtrip(&mut held, b"and still");
}
