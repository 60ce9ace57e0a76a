//! Self-test of the integration-test PKI (tests/common/pki.rs): its certificates work with the
//! configs tcpmap builds, over an in-memory rustls handshake, and its secret writers lay files
//! out where the secrets loader looks for them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::sync::Arc;

use common::pki::{self, Ca};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};
use tcpmap::internals::{self as tls, TlsParams};

/// Moves pending TLS bytes from one side to the other; the receiver's error is returned.
fn transfer(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).unwrap();
    }
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).unwrap();
        to.process_new_packets()?;
    }
    Ok(())
}

/// An in-memory handshake plus one message each way; `Err` carries the failing side's error.
fn connect(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
    name: &str,
) -> Result<(), String> {
    let sni = ServerName::try_from(name.to_owned()).unwrap();
    let mut c = Connection::Client(ClientConnection::new(client.clone(), sni).unwrap());
    let mut s = Connection::Server(ServerConnection::new(server.clone()).unwrap());
    for _ in 0..10 {
        transfer(&mut c, &mut s).map_err(|e| format!("server: {e}"))?;
        transfer(&mut s, &mut c).map_err(|e| format!("client: {e}"))?;
    }
    c.writer().write_all(b"hello").unwrap();
    transfer(&mut c, &mut s).map_err(|e| format!("server: {e}"))?;
    let mut got = [0u8; 5];
    s.reader().read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    Ok(())
}

fn server(cert_pem: &str, key_pem: &str) -> Arc<ServerConfig> {
    let ck = tls::parse_cert_key(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    tls::server_config(&ck, &TlsParams::default(), None, false).unwrap()
}

fn verifying_client(ca: &Ca) -> Arc<ClientConfig> {
    let roots = tls::parse_cert_chain(ca.cert_pem().as_bytes()).unwrap();
    tls::client_config(None, &TlsParams::default(), Some(&roots)).unwrap()
}

#[test]
fn leaf_verifies_against_its_ca_for_dns_and_ip_names() {
    let ca = Ca::new("selftest CA");
    let (cert, key) = ca.leaf(&["svc.test", "127.0.0.1"]);
    let server = server(&cert, &key);
    connect(&verifying_client(&ca), &server, "svc.test").unwrap();
    connect(&verifying_client(&ca), &server, "127.0.0.1").unwrap();
    let err = connect(&verifying_client(&ca), &server, "other.test").unwrap_err();
    assert!(err.starts_with("client:"), "{err}");
    let err = connect(&verifying_client(&Ca::new("other CA")), &server, "svc.test").unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[test]
fn self_signed_needs_an_insecure_client() {
    let (cert, key) = pki::self_signed(&["raw.test"]);
    let server = server(&cert, &key);
    let insecure = tls::client_config(None, &TlsParams::default(), None).unwrap();
    connect(&insecure, &server, "raw.test").unwrap();
    assert!(connect(&verifying_client(&Ca::new("any CA")), &server, "raw.test").is_err());
}

#[test]
fn leaf_serves_as_client_certificate() {
    let ca = Ca::new("client CA");
    let (server_cert, server_key) = pki::self_signed(&["mtls.test"]);
    let roots = tls::parse_cert_chain(ca.cert_pem().as_bytes()).unwrap();
    let ck = tls::parse_cert_key(server_cert.as_bytes(), server_key.as_bytes()).unwrap();
    let server = tls::server_config(&ck, &TlsParams::default(), Some(&roots), true).unwrap();
    let (cert, key) = ca.leaf(&["client.test"]);
    let client_ck = tls::parse_cert_key(cert.as_bytes(), key.as_bytes()).unwrap();
    let client = tls::client_config(Some(&client_ck), &TlsParams::default(), None).unwrap();
    connect(&client, &server, "mtls.test").unwrap();
    let anonymous = tls::client_config(None, &TlsParams::default(), None).unwrap();
    assert!(
        connect(&anonymous, &server, "mtls.test")
            .unwrap_err()
            .starts_with("server:")
    );
}

#[test]
fn secrets_are_written_like_mounted_kubernetes_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("secret CA");
    let (cert, key) = ca.leaf(&["svc.test"]);
    pki::write_secret(dir.path(), "svc-cert", &cert, &key);
    pki::write_secret(dir.path(), "prod/svc-cert", &cert, &key);
    pki::write_ca_secret(dir.path(), "svc-ca", &ca.cert_pem());
    for folder in ["svc-cert", "prod/svc-cert"] {
        let crt = std::fs::read(dir.path().join(folder).join("tls.crt")).unwrap();
        let key = std::fs::read(dir.path().join(folder).join("tls.key")).unwrap();
        tls::parse_cert_key(&crt, &key).unwrap();
    }
    let ca_crt = std::fs::read(dir.path().join("svc-ca/ca.crt")).unwrap();
    assert_eq!(tls::parse_cert_chain(&ca_crt).unwrap().len(), 1);
}
