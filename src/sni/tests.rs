//! Tests of the ClientHello reader against real rustls hellos and hand-built edge cases.

use super::*;
use proptest::prelude::*;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::sync::{Arc, OnceLock};

/// The ClientHello rustls (aws-lc-rs provider, TLS 1.2 + 1.3) writes for `server_name`.
fn rustls_hello(server_name: &str) -> Vec<u8> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        Arc::new(config)
    });
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let mut conn = ClientConnection::new(config.clone(), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

fn example_hello() -> &'static [u8] {
    static HELLO: OnceLock<Vec<u8>> = OnceLock::new();
    HELLO.get_or_init(|| rustls_hello("Example.COM"))
}

/// The handshake bytes carried by a sequence of well-formed records.
fn payload(records: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = records;
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        out.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
    out
}

/// Frames handshake bytes into handshake records of at most `chunk` bytes each.
fn frame(handshake: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in handshake.chunks(chunk) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
        out.extend_from_slice(piece);
    }
    out
}

fn with_len16(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// A server_name extension body listing `(name_type, name)` entries.
fn sni_body(names: &[(u8, &[u8])]) -> Vec<u8> {
    let mut list = Vec::new();
    for (kind, name) in names {
        list.push(*kind);
        list.extend_from_slice(&with_len16(name));
    }
    with_len16(&list)
}

/// A hand-built ClientHello handshake message with the given extensions (`None`: no extension
/// block at all).
fn hello_message(extensions: Option<&[(u16, Vec<u8>)]>) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&with_len16(&[0x13, 0x01]));
    body.extend_from_slice(&[1, 0]); // compression: null
    if let Some(exts) = extensions {
        let mut block = Vec::new();
        for (kind, data) in exts {
            block.extend_from_slice(&kind.to_be_bytes());
            block.extend_from_slice(&with_len16(data));
        }
        body.extend_from_slice(&with_len16(&block));
    }
    let mut msg = vec![1];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(&body);
    msg
}

fn hello_with_name(name: &[u8]) -> Vec<u8> {
    frame(
        &hello_message(Some(&[(0, sni_body(&[(0, name)]))])),
        MAX_RECORD,
    )
}

#[test]
fn rustls_hello_yields_lower_cased_sni() {
    assert_eq!(
        parse_client_hello(example_hello()),
        Peek::Sni("example.com".into())
    );
    assert_eq!(
        parse_client_hello(&rustls_hello("a.b-c.example")),
        Peek::Sni("a.b-c.example".into())
    );
}

#[test]
fn ip_address_server_name_sends_no_sni() {
    assert_eq!(parse_client_hello(&rustls_hello("192.0.2.7")), Peek::NoSni);
    assert_eq!(parse_client_hello(&rustls_hello("::1")), Peek::NoSni);
}

#[test]
fn every_strict_prefix_needs_more() {
    let hello = example_hello();
    for cut in 0..hello.len() {
        assert_eq!(
            parse_client_hello(&hello[..cut]),
            Peek::NeedMore,
            "prefix of {cut} bytes"
        );
    }
}

#[test]
fn hello_fragmented_into_one_byte_records_is_read() {
    let framed = frame(&payload(example_hello()), 1);
    assert!(
        framed.len() < MAX_CLIENT_HELLO,
        "hello too big for this test: {}",
        framed.len()
    );
    assert_eq!(parse_client_hello(&framed), Peek::Sni("example.com".into()));
    assert_eq!(
        parse_client_hello(&framed[..framed.len() - 1]),
        Peek::NeedMore
    );
}

#[test]
fn bytes_after_the_hello_are_ignored() {
    let mut bytes = example_hello().to_vec();
    bytes.extend_from_slice(b"\x17\x03\x03 then anything at all");
    assert_eq!(parse_client_hello(&bytes), Peek::Sni("example.com".into()));
}

#[test]
fn other_protocols_are_not_tls() {
    for bytes in [
        &b"SSH-2.0-OpenSSH_9.6\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"G",
        b"\x00\x00\x00\x00",
        b"\x16\x02\x00",                                 // handshake, version major 2
        b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10", // SSLv2-compatible ClientHello
        b"\x15\x03\x03\x00\x02\x02\x28",                 // an alert record
        b"\x16\x03\x01\x00\x00",                         // empty handshake record
        b"\x16\x03\x01\x40\x01",                         // record longer than 2^14
        b"\x16\x03\x01\x00\x04\x02\x00\x00\x00",         // ServerHello, not ClientHello
        b"\x16\x03\x01\x00\x04\x01\x01\x00\x00",         // ClientHello longer than 64 KiB
    ] {
        assert_eq!(parse_client_hello(bytes), Peek::NotTls, "{bytes:?}");
    }
}

#[test]
fn plausible_beginnings_need_more() {
    for bytes in [
        &b""[..],
        b"\x16",
        b"\x16\x03",
        b"\x16\x03\x01\x02",
        b"\x16\x03\x01\x02\x00\x01",
    ] {
        assert_eq!(parse_client_hello(bytes), Peek::NeedMore, "{bytes:?}");
    }
}

#[test]
fn a_record_of_another_type_inside_the_hello_is_not_tls() {
    let hs = payload(example_hello());
    let mut bytes = frame(&hs[..10], MAX_RECORD);
    bytes.extend_from_slice(b"\x14\x03\x03\x00\x01\x01"); // ChangeCipherSpec
    bytes.extend_from_slice(&frame(&hs[10..], MAX_RECORD));
    assert_eq!(parse_client_hello(&bytes), Peek::NotTls);
}

#[test]
fn host_names_are_validated() {
    let long_label = "a".repeat(64);
    let max_name = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61),
    ]
    .join(".");
    assert_eq!(max_name.len(), 253);
    assert_eq!(
        parse_client_hello(&hello_with_name(max_name.as_bytes())),
        Peek::Sni(max_name.clone())
    );
    assert_eq!(
        parse_client_hello(&hello_with_name(b"Svc_1.EXAMPLE.org")),
        Peek::Sni("svc_1.example.org".into())
    );
    for bad in [
        &b""[..],
        b"has space.example",
        b"caf\xc3\xa9.example",
        b"ctl\x07.example",
        b"nul\x00",
        b"trailing.dot.",
        b".leading",
        b"double..dot",
        b"star.*.example",
        long_label.as_bytes(),
        "x".repeat(256).as_bytes(),
    ] {
        assert_eq!(
            parse_client_hello(&hello_with_name(bad)),
            Peek::NoSni,
            "{bad:?}"
        );
    }
}

#[test]
fn hellos_without_a_host_name_have_no_sni() {
    let no_block = frame(&hello_message(None), MAX_RECORD);
    assert_eq!(parse_client_hello(&no_block), Peek::NoSni);
    let empty_block = frame(&hello_message(Some(&[])), MAX_RECORD);
    assert_eq!(parse_client_hello(&empty_block), Peek::NoSni);
    let other_type = frame(
        &hello_message(Some(&[(0, sni_body(&[(1, b"x.example")]))])),
        MAX_RECORD,
    );
    assert_eq!(parse_client_hello(&other_type), Peek::NoSni);
    let empty_ext = frame(&hello_message(Some(&[(0, vec![])])), MAX_RECORD);
    assert_eq!(parse_client_hello(&empty_ext), Peek::NoSni);
    // Another name type before the host name does not hide it.
    let mixed = sni_body(&[(1, b"opaque"), (0, b"x.example")]);
    let mixed = frame(
        &hello_message(Some(&[(10, vec![0, 0]), (0, mixed)])),
        MAX_RECORD,
    );
    assert_eq!(parse_client_hello(&mixed), Peek::Sni("x.example".into()));
}

#[test]
fn malformed_hellos_are_not_tls() {
    let dup = frame(
        &hello_message(Some(&[
            (0, sni_body(&[(0, b"a.b")])),
            (0, sni_body(&[(0, b"a.b")])),
        ])),
        MAX_RECORD,
    );
    assert_eq!(parse_client_hello(&dup), Peek::NotTls);
    let mut bad_list = sni_body(&[(0, b"a.b")]);
    bad_list[1] += 1; // list length says one byte more than the extension holds
    let bad_list = frame(&hello_message(Some(&[(0, bad_list)])), MAX_RECORD);
    assert_eq!(parse_client_hello(&bad_list), Peek::NotTls);
    // A list whose only entry is cut short inside its header, followed by another extension.
    let short_entry = frame(
        &hello_message(Some(&[(0, vec![0, 2, 0, 0]), (10, vec![0, 0])])),
        MAX_RECORD,
    );
    assert_eq!(parse_client_hello(&short_entry), Peek::NotTls);
    let mut msg = hello_message(Some(&[(0, sni_body(&[(0, b"a.b")]))]));
    let block_len_at = 4 + 2 + 32 + 1 + 4 + 2;
    msg[block_len_at + 1] -= 1; // extensions block shorter than the rest of the body
    assert_eq!(parse_client_hello(&frame(&msg, MAX_RECORD)), Peek::NotTls);
}

#[test]
fn a_hello_larger_than_the_peek_bound_has_no_sni() {
    let padding = vec![0u8; 20_000];
    let msg = hello_message(Some(&[
        (21, padding),
        (0, sni_body(&[(0, b"late.example")])),
    ]));
    let framed = frame(&msg, MAX_RECORD);
    assert!(framed.len() > MAX_CLIENT_HELLO);
    assert_eq!(
        parse_client_hello(&framed[..MAX_CLIENT_HELLO - 1]),
        Peek::NeedMore
    );
    assert_eq!(parse_client_hello(&framed[..MAX_CLIENT_HELLO]), Peek::NoSni);
    assert_eq!(parse_client_hello(&framed), Peek::NoSni);
}

fn host_name() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,18}[a-z0-9])?(\\.[a-z][a-z0-9]{0,10}){0,3}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = parse_client_hello(&bytes);
    }

    #[test]
    fn arbitrary_record_contents_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..300) {
        let mut msg = vec![1];
        msg.extend_from_slice(&tail);
        let _ = parse_client_hello(&frame(&msg, chunk));
    }

    #[test]
    fn every_prefix_of_a_real_hello_needs_more(name in host_name(), cut in any::<prop::sample::Index>()) {
        let hello = rustls_hello(&name);
        let cut = cut.index(hello.len());
        prop_assert_eq!(parse_client_hello(&hello[..cut]), Peek::NeedMore);
        prop_assert_eq!(parse_client_hello(&hello), Peek::Sni(name));
    }

    #[test]
    fn refragmenting_keeps_the_name(chunk in 1usize..2000) {
        let framed = frame(&payload(example_hello()), chunk);
        prop_assert_eq!(parse_client_hello(&framed), Peek::Sni("example.com".into()));
    }

    #[test]
    fn mutated_hellos_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = example_hello().to_vec();
        for (at, byte) in edits {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        let cut = cut.index(bytes.len() + 1);
        let _ = parse_client_hello(&bytes[..cut]);
    }
}
