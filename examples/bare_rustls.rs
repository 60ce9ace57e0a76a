//! A bare rustls server, the yardstick for `scripts/tlsfuzzer.sh` and TLS suite comparisons (not
//! part of the test run): the very `rustls::ServerConfig` tcpmap's terminating listeners use
//! (built by the same function, `tcpmap::internals::server_config`, with a TLSContext's
//! defaults: the aws-lc-rs provider with AES-128-GCM first and the server's order, TLS 1.2 and
//! 1.3, session tickets from the process-wide key ring, one TLS 1.3 ticket per handshake, the
//! in-memory session cache), one certificate for every server name, and no ClientHello reader
//! in front. After a handshake it answers any request with a small HTTP/1.0 response, sends
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

use tcpmap::internals::{TlsParams, parse_cert_key, server_config};

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
    let cert = std::fs::read(cert).expect("certificate file");
    let key = std::fs::read(key).expect("key file");
    let cert_key = parse_cert_key(&cert, &key).expect("certificate and key");
    // A TLSContext with no version, cipher or ALPN settings, no client certificates.
    let config = server_config(&cert_key, &TlsParams::default(), None, false).expect("config");
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
