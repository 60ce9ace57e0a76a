//! ClientHellos built byte by byte (the ClientHello reader's unit tests, the interop tests),
//! and the server's first answer read the same way: what a foreign TLS stack (tlsfuzzer,
//! testssl.sh) would send and check.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// The records of the ClientHello rustls (aws-lc-rs provider, TLS 1.2 + 1.3) writes for `sni`
/// (`None`: no server name, as for an IP address), offering the protocols `alpn` in that order.
pub fn rustls_records(sni: Option<&str>, alpn: &[&[u8]]) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name =
        rustls::pki_types::ServerName::try_from(sni.unwrap_or("192.0.2.1").to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut records = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut records).unwrap();
    }
    records
}

/// The handshake message (type, length, body) of the ClientHello rustls writes for `sni`
/// (`None`: no server name, as for an IP address), without ALPN.
pub fn rustls_message(sni: Option<&str>) -> Vec<u8> {
    payload(&rustls_records(sni, &[]))
}

/// The handshake bytes carried by well-formed records.
pub fn payload(records: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = records;
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        out.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
    out
}

/// Frames handshake bytes into handshake records of at most `chunk` bytes.
pub fn frame(handshake: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in handshake.chunks(chunk) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
        out.extend_from_slice(piece);
    }
    out
}

/// `body` after its length as two big-endian bytes.
pub fn len16(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// Offset of the extensions block's length in a ClientHello message.
fn extensions_at(msg: &[u8]) -> usize {
    let mut at = 4 + 2 + 32;
    at += 1 + usize::from(msg[at]);
    at += 2 + usize::from(u16::from_be_bytes([msg[at], msg[at + 1]]));
    at += 1 + usize::from(msg[at]);
    at
}

/// `msg` with an extension `(kind, data)` put first in its extensions block, lengths fixed.
pub fn with_extension(msg: &[u8], kind: u16, data: &[u8]) -> Vec<u8> {
    let at = extensions_at(msg);
    let mut ext = kind.to_be_bytes().to_vec();
    ext.extend_from_slice(&len16(data));
    let mut out = msg[..at].to_vec();
    let block = u16::from_be_bytes([msg[at], msg[at + 1]]) as usize + ext.len();
    out.extend_from_slice(&(block as u16).to_be_bytes());
    out.extend_from_slice(&ext);
    out.extend_from_slice(&msg[at + 2..]);
    let body = (out.len() - 4) as u32;
    out[1..4].copy_from_slice(&body.to_be_bytes()[1..]);
    out
}

/// `msg` grown by a padding extension (RFC 7685) of `n` bytes.
pub fn padded(msg: &[u8], n: usize) -> Vec<u8> {
    with_extension(msg, 21, &vec![0; n])
}

/// A server_name extension body with one `host_name` entry, `name`.
pub fn server_name(name: &[u8]) -> Vec<u8> {
    server_names(&[(0, name)])
}

/// A server_name extension body listing `(name_type, name)` entries.
pub fn server_names(names: &[(u8, &[u8])]) -> Vec<u8> {
    let mut list = Vec::new();
    for (kind, name) in names {
        list.push(*kind);
        list.extend_from_slice(&len16(name));
    }
    len16(&list)
}

/// A hand-built TLS 1.2-format ClientHello message: a fixed random, no session id, the cipher
/// `suites` (two bytes each), null compression, and the extensions in this order (`None`: no
/// extension block at all).
pub fn message(suites: &[u8], extensions: Option<&[(u16, Vec<u8>)]>) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x5a; 32]);
    body.push(0);
    body.extend_from_slice(&len16(suites));
    body.extend_from_slice(&[1, 0]);
    if let Some(extensions) = extensions {
        let mut block = Vec::new();
        for (kind, data) in extensions {
            block.extend_from_slice(&kind.to_be_bytes());
            block.extend_from_slice(&len16(data));
        }
        body.extend_from_slice(&len16(&block));
    }
    let mut msg = vec![1];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(&body);
    msg
}

/// A minimal TLS 1.2 ClientHello message a TLS 1.2 server can answer (ECDHE AES-128-GCM
/// suites) with these extensions in this order.
pub fn minimal_message(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
    message(&[0xc0, 0x2f, 0xc0, 0x2b], Some(extensions))
}

/// `msg` cut to `body` bytes of body, its length saying so (complete but short).
pub fn truncated(msg: &[u8], body: usize) -> Vec<u8> {
    let mut out = msg[..4 + body].to_vec();
    out[1..4].copy_from_slice(&(body as u32).to_be_bytes()[1..]);
    out
}

/// The server's first answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// A fatal alert with this description code.
    Alert(u8),
    /// A handshake record; the first message's type (2: ServerHello).
    Handshake(u8),
    /// Another record type.
    Record(u8),
    /// EOF or reset before a whole record header.
    Closed,
}

/// Sends `bytes` on a new connection to `addr` and reads the first record that comes back.
pub fn send(addr: SocketAddr, bytes: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    // The server may answer (and close) before it has read everything: a failed write is fine.
    let _ = s.write_all(bytes);
    read_reply(&mut s)
}

/// Reads the first record from `s`.
pub fn read_reply(s: &mut TcpStream) -> Reply {
    let mut head = [0u8; 6];
    let mut got = 0;
    while got < head.len() {
        match s.read(&mut head[got..]) {
            Ok(0) | Err(_) => return Reply::Closed,
            Ok(n) => got += n,
        }
    }
    match head[0] {
        21 => {
            let mut desc = [0u8; 1];
            if s.read_exact(&mut desc).is_err() {
                return Reply::Closed;
            }
            assert_eq!(head[5], 2, "alert level must be fatal");
            Reply::Alert(desc[0])
        }
        22 => Reply::Handshake(head[5]),
        other => Reply::Record(other),
    }
}

/// Alert `unexpected_message` (RFC 8446 §6).
pub const UNEXPECTED_MESSAGE: u8 = 10;
/// Alert `record_overflow`.
pub const RECORD_OVERFLOW: u8 = 22;
/// Alert `illegal_parameter`.
pub const ILLEGAL_PARAMETER: u8 = 47;
/// Alert `decode_error`.
pub const DECODE_ERROR: u8 = 50;
/// Alert `unrecognized_name` (RFC 6066).
pub const UNRECOGNIZED_NAME: u8 = 112;
/// Handshake type of a ServerHello.
pub const SERVER_HELLO: u8 = 2;
