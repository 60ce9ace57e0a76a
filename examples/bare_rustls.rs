//! A bare rustls server, the yardstick for `scripts/tlsfuzzer.sh` (not part of the test run):
//! rustls 0.23 with the aws-lc-rs provider and the same protocol versions as tcpmap's
//! terminating listeners, one certificate for every server name, and no ClientHello reader in
//! front. After a handshake it answers any request with a small HTTP/1.0 response, sends
//! `close_notify` and closes.
//!
//! With `--http ADDR` it is instead the plain upstream behind tcpmap in the same runs: it
//! answers each request with the same response, in one write (so tcpmap relays it as one TLS
//! record, as the bare server sends it).
//!
//! ```text
//! cargo run --example bare_rustls -- CERT.pem KEY.pem 127.0.0.1:4433
//! cargo run --example bare_rustls -- --http 127.0.0.1:8080
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The one response, written at once.
const RESPONSE: &[u8] = b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\nok\n";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, addr] = args.as_slice() {
        if flag == "--http" {
            return http(addr);
        }
    }
    let [cert, key, addr] = args.as_slice() else {
        eprintln!("usage: bare_rustls CERT.pem KEY.pem ADDR | bare_rustls --http ADDR");
        std::process::exit(2);
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("certificate file")
        .map(|c| c.expect("certificate"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).expect("key file");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate and key");
    let config = Arc::new(config);
    let listener = TcpListener::bind(addr).expect("bind");
    println!("listening {}", listener.local_addr().unwrap());
    for sock in listener.incoming() {
        let Ok(sock) = sock else { continue };
        let config = config.clone();
        std::thread::spawn(move || serve(sock, config));
    }
}

fn http(addr: &str) {
    let listener = TcpListener::bind(addr).expect("bind");
    println!("listening {}", listener.local_addr().unwrap());
    for sock in listener.incoming() {
        let Ok(mut sock) = sock else { continue };
        std::thread::spawn(move || {
            let _ = sock.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            let mut buf = [0u8; 4096];
            if matches!(sock.read(&mut buf), Ok(n) if n > 0) {
                let _ = sock.write_all(RESPONSE);
            }
        });
    }
}

fn serve(sock: TcpStream, config: Arc<rustls::ServerConfig>) {
    let _ = sock.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut buf = [0u8; 4096];
    if matches!(tls.read(&mut buf), Ok(n) if n > 0) {
        let _ = tls.write_all(RESPONSE);
        tls.conn.send_close_notify();
    }
    // Flush what rustls queued: the response and close_notify, or the alert of a failed
    // handshake (without waiting for the client, as rustls-based servers do).
    while tls.conn.wants_write() {
        if tls.conn.write_tls(&mut tls.sock).is_err() {
            break;
        }
    }
}
