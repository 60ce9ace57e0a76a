//! Tests of the ClientHello reader against real rustls hellos and hand-built edge cases
//! (hellos are built byte by byte with the testkit's builder, `crate::testkit::hello`).

use super::*;
use crate::testkit::hello::{self, frame, len16 as with_len16, payload, server_names as sni_body};
use proptest::prelude::*;
use std::sync::OnceLock;

/// The ClientHello records rustls (aws-lc-rs provider, TLS 1.2 + 1.3, ALPN `h2`, `http/1.1`)
/// writes for `server_name`.
fn rustls_hello(server_name: &str) -> Vec<u8> {
    hello::rustls_records(Some(server_name), &[b"h2", b"http/1.1"])
}

fn example_hello() -> &'static [u8] {
    static HELLO: OnceLock<Vec<u8>> = OnceLock::new();
    HELLO.get_or_init(|| rustls_hello("Example.COM"))
}

/// A hand-built ClientHello handshake message (one TLS 1.3 suite) with the given extensions
/// (`None`: no extension block at all).
fn hello_message(extensions: Option<&[(u16, Vec<u8>)]>) -> Vec<u8> {
    hello::message(&[0x13, 0x01], extensions)
}

fn hello_with_name(name: &[u8]) -> Vec<u8> {
    frame(
        &hello_message(Some(&[(0, sni_body(&[(0, name)]))])),
        MAX_RECORD,
    )
}

/// A hello with one extension of `len` padding bytes before `name`'s server_name.
fn large_hello_message(len: usize, name: &[u8]) -> Vec<u8> {
    hello_message(Some(&[(21, vec![0; len]), (0, sni_body(&[(0, name)]))]))
}

fn sni_of(bytes: &[u8]) -> Option<String> {
    match parse_client_hello(bytes) {
        Peek::Hello(h) => h.sni,
        other => panic!("not a hello: {other:?}"),
    }
}

fn cause_of(bytes: &[u8]) -> Cause {
    match parse_client_hello(bytes) {
        Peek::Reject(r) => r.cause,
        other => panic!("not a rejection: {other:?}"),
    }
}

/// Feeds `bytes` in pieces of `chunk` bytes; the verdict and the replayed bytes.
fn feed_in(bytes: &[u8], chunk: usize) -> (Peek, Vec<u8>) {
    let mut reader = HelloReader::new();
    for piece in bytes.chunks(chunk.max(1)) {
        let done = reader.feed(piece);
        assert!(reader.buffered() <= MAX_BUFFERED);
        if done {
            break;
        }
    }
    reader.finish()
}

#[test]
fn rustls_hello_yields_lower_cased_sni_and_alpn() {
    let Peek::Hello(hello) = parse_client_hello(example_hello()) else {
        panic!("not a hello");
    };
    assert_eq!(hello.sni.as_deref(), Some("example.com"));
    let alpn: Vec<&[u8]> = hello.alpn().collect();
    assert_eq!(alpn, [&b"h2"[..], b"http/1.1"]);
    assert_eq!(
        sni_of(&rustls_hello("a.b-c.example")).as_deref(),
        Some("a.b-c.example")
    );
}

#[test]
fn ip_address_server_name_is_no_sni() {
    // rustls sends none for an IP address; a client that does send one is ignored, like rustls.
    assert_eq!(sni_of(&rustls_hello("192.0.2.7")), None);
    assert_eq!(sni_of(&rustls_hello("::1")), None);
    assert_eq!(sni_of(&hello_with_name(b"192.0.2.7")), None);
    assert_eq!(sni_of(&hello_with_name(b"::1")), None);
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
    assert_eq!(sni_of(&framed).as_deref(), Some("example.com"));
    assert_eq!(
        parse_client_hello(&framed[..framed.len() - 1]),
        Peek::NeedMore
    );
}

#[test]
fn hellos_up_to_64_kib_across_records_are_read() {
    for (padding, chunk) in [(20 * 1024, MAX_RECORD), (60_000, MAX_RECORD), (30_000, 700)] {
        let framed = frame(&large_hello_message(padding, b"late.example"), chunk);
        assert_eq!(
            sni_of(&framed).as_deref(),
            Some("late.example"),
            "{padding} in {chunk}"
        );
        let (verdict, replay) = feed_in(&framed, 4096);
        assert!(matches!(verdict, Peek::Hello(_)));
        assert_eq!(replay, framed, "replayed verbatim");
    }
    // The largest body rustls reads, 0xffff bytes.
    let mut msg = large_hello_message(0, b"max.example");
    let pad = MAX_HANDSHAKE - (msg.len() - 4);
    msg = large_hello_message(pad, b"max.example");
    assert_eq!(msg.len(), 4 + MAX_HANDSHAKE);
    assert_eq!(
        sni_of(&frame(&msg, MAX_RECORD)).as_deref(),
        Some("max.example")
    );
    let too_big = large_hello_message(pad + 1, b"max.example");
    assert_eq!(cause_of(&frame(&too_big, MAX_RECORD)), Cause::TooLarge);
    assert_eq!(Cause::TooLarge.alert(), Alert::DecodeError);
}

#[test]
fn a_large_hello_in_small_records_is_replayed_reframed() {
    let msg = large_hello_message(40_000, b"frag.example");
    let framed = frame(&msg, 3);
    assert!(framed.len() > MAX_KEPT);
    let mut extra = framed.clone();
    extra.extend_from_slice(b"\x14\x03\x03\x00\x01\x01after");
    let (verdict, replay) = feed_in(&extra, 1000);
    let Peek::Hello(hello) = verdict else {
        panic!("not a hello");
    };
    assert_eq!(hello.sni.as_deref(), Some("frag.example"));
    // The replay carries the same handshake bytes, then what followed, as a TLS stack sees them.
    assert!(replay.len() < framed.len());
    assert_eq!(sni_of(&replay).as_deref(), Some("frag.example"));
    assert!(replay.ends_with(b"\x14\x03\x03\x00\x01\x01after"));
    let records = &replay[..replay.len() - 11];
    assert_eq!(payload(records), msg);
}

#[test]
fn bytes_after_the_hello_are_ignored_and_replayed() {
    let mut bytes = example_hello().to_vec();
    bytes.extend_from_slice(b"\x17\x03\x03 then anything at all");
    assert_eq!(sni_of(&bytes).as_deref(), Some("example.com"));
    // The replay is every byte fed, up to the end of the read that completed the hello.
    let hello_len = example_hello().len();
    for chunk in [1, 7, 4096] {
        let fed = hello_len.div_ceil(chunk) * chunk;
        assert_eq!(feed_in(&bytes, chunk).1, bytes[..fed.min(bytes.len())]);
    }
}

#[test]
fn other_protocols_are_not_tls() {
    for bytes in [
        &b"SSH-2.0-OpenSSH_9.6\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"G",
        b"\x00\x00\x00\x00",
        b"\x15\x03\x03\x00\x02\x02\x28", // an alert record
        b"\x17\x03\x03\x00\x01\x00",     // application data
        b"\x80\x2e\x02",                 // high bit set, but not an SSLv2 CLIENT-HELLO
    ] {
        assert_eq!(parse_client_hello(bytes), Peek::NotTls, "{bytes:?}");
    }
}

#[test]
fn record_layer_errors_get_their_alerts() {
    for (bytes, cause, alert) in [
        (
            &b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10"[..],
            Cause::SslV2Hello,
            Alert::DecodeError,
        ),
        (b"\x16\x02\x00", Cause::RecordVersion, Alert::DecodeError),
        (
            b"\x16\x03\x01\x00\x00",
            Cause::EmptyRecord,
            Alert::DecodeError,
        ),
        (
            b"\x16\x03\x01\x40\x01",
            Cause::RecordOverflow,
            Alert::RecordOverflow,
        ),
        (
            b"\x16\x03\x01\x00\x04\x02\x00\x00\x00",
            Cause::NotClientHello,
            Alert::UnexpectedMessage,
        ),
        (
            b"\x16\x03\x01\x00\x04\x01\x01\x00\x00",
            Cause::TooLarge,
            Alert::DecodeError,
        ),
    ] {
        assert_eq!(cause_of(bytes), cause, "{bytes:?}");
        assert_eq!(cause.alert(), alert);
    }
}

#[test]
fn a_record_of_another_type_inside_the_hello_is_unexpected() {
    let hs = payload(example_hello());
    let mut bytes = frame(&hs[..10], MAX_RECORD);
    bytes.extend_from_slice(b"\x14\x03\x03\x00\x01\x01"); // ChangeCipherSpec
    bytes.extend_from_slice(&frame(&hs[10..], MAX_RECORD));
    assert_eq!(cause_of(&bytes), Cause::InterleavedRecord);
    assert_eq!(Cause::InterleavedRecord.alert(), Alert::UnexpectedMessage);
    let mut bytes = frame(&hs[..10], MAX_RECORD);
    bytes.extend_from_slice(b"\x63\x03\x03\x00\x01\x01");
    assert_eq!(cause_of(&bytes), Cause::UnknownRecordType);
}

#[test]
fn plausible_beginnings_need_more() {
    for bytes in [
        &b""[..],
        b"\x16",
        b"\x16\x03",
        b"\x16\x03\x01\x02",
        b"\x16\x03\x01\x02\x00\x01",
        b"\x80",
        b"\x80\x2e",
    ] {
        assert_eq!(parse_client_hello(bytes), Peek::NeedMore, "{bytes:?}");
    }
}

#[test]
fn host_names_are_validated() {
    let max_name = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61),
    ]
    .join(".");
    assert_eq!(max_name.len(), 253);
    assert_eq!(
        sni_of(&hello_with_name(max_name.as_bytes())),
        Some(max_name.clone())
    );
    assert_eq!(
        sni_of(&hello_with_name(b"Svc_1.EXAMPLE.org")).as_deref(),
        Some("svc_1.example.org")
    );
    assert_eq!(
        sni_of(&hello_with_name(b"trailing.dot.")).as_deref(),
        Some("trailing.dot")
    );
    let long_label = "a".repeat(64);
    for bad in [
        &b"has space.example"[..],
        b"caf\xc3\xa9.example",
        b"ctl\x07.example",
        b"nul\x00",
        b"\x00",
        b".leading",
        b"double..dot",
        b"star.*.example",
        b"two.dots..",
        long_label.as_bytes(),
        "x".repeat(300).as_bytes(),
    ] {
        let Peek::Reject(r) = parse_client_hello(&hello_with_name(bad)) else {
            panic!("{bad:?} accepted");
        };
        assert_eq!(r.cause, Cause::InvalidHostName, "{bad:?}");
        assert_eq!(r.alert(), Alert::IllegalParameter);
        assert_eq!(r.name, Some(bad.escape_ascii().to_string()));
    }
}

#[test]
fn malformed_server_name_extensions_are_decode_errors() {
    let ext = |data: Vec<u8>| frame(&hello_message(Some(&[(0, data)])), MAX_RECORD);
    let mut long_list = sni_body(&[(0, b"a.b")]);
    long_list[1] += 1; // list length says one byte more than the extension holds
    let mut short_list = sni_body(&[(0, b"a.b")]);
    short_list.push(0); // a byte after the list
    for (data, cause) in [
        (vec![], Cause::EmptyServerName),
        (vec![0, 0], Cause::EmptyNameList),
        (sni_body(&[(0, b"")]), Cause::EmptyHostName),
        (
            sni_body(&[(0, b"a.b"), (0, b"c.d")]),
            Cause::DuplicateHostName,
        ),
        (long_list, Cause::ServerNameLength),
        (short_list, Cause::ServerNameLength),
        (vec![0, 2, 0, 0], Cause::ServerNameLength), // entry header cut short
        (vec![0], Cause::ServerNameLength),
    ] {
        assert_eq!(cause_of(&ext(data.clone())), cause, "{data:?}");
        assert_eq!(cause.alert(), Alert::DecodeError);
    }
    // A name type other than host_name ends the list (as in rustls): no name, no error.
    assert_eq!(
        sni_of(&ext(sni_body(&[(1, b"opaque"), (0, b"x.example")]))),
        None
    );
    assert_eq!(
        sni_of(&ext(sni_body(&[(0, b"x.example"), (1, b"opaque")]))).as_deref(),
        Some("x.example")
    );
}

#[test]
fn a_structural_error_wins_over_a_bad_name() {
    let mut msg = hello_message(Some(&[(0, sni_body(&[(0, b"nul\x00")])), (10, vec![0, 0])]));
    let last = msg.len() - 1;
    msg[last - 2] = 9; // the last extension's length runs past the message
    assert_eq!(cause_of(&frame(&msg, MAX_RECORD)), Cause::Truncated);
}

#[test]
fn hellos_without_a_host_name_have_no_sni() {
    let no_block = frame(&hello_message(None), MAX_RECORD);
    assert_eq!(sni_of(&no_block), None);
    let empty_block = frame(&hello_message(Some(&[])), MAX_RECORD);
    assert_eq!(sni_of(&empty_block), None);
    let Peek::Hello(h) = parse_client_hello(&empty_block) else {
        panic!()
    };
    assert_eq!(h.alpn().count(), 0);
}

#[test]
fn malformed_hello_bodies_are_decode_errors() {
    let dup = frame(
        &hello_message(Some(&[(10, vec![0, 0]), (10, vec![0, 0])])),
        MAX_RECORD,
    );
    assert_eq!(cause_of(&dup), Cause::DuplicateExtension);
    let mut msg = hello_message(Some(&[(0, sni_body(&[(0, b"a.b")]))]));
    let block_len_at = 4 + 2 + 32 + 1 + 4 + 2;
    msg[block_len_at + 1] -= 1; // extensions block shorter than the rest of the body
    assert_eq!(cause_of(&frame(&msg, MAX_RECORD)), Cause::ExtensionsLength);
    let mut session = hello_message(None);
    session[4 + 34] = 33;
    session.extend_from_slice(&[0; 33]);
    let body = (session.len() - 4) as u32;
    session[1..4].copy_from_slice(&body.to_be_bytes()[1..]);
    assert_eq!(cause_of(&frame(&session, MAX_RECORD)), Cause::SessionId);
    for (at, value, cause) in [
        (4 + 35 + 1, 3, Cause::CipherSuites), // odd suite list length
        (4 + 35 + 1, 0, Cause::CipherSuites), // empty suite list...
        (4 + 39, 0, Cause::Compression),
    ] {
        let mut m = hello_message(None);
        m[at] = value;
        let c = cause_of(&frame(&m, MAX_RECORD));
        assert!(c == cause || c == Cause::Truncated, "{c:?}");
    }
    let mut alpn_empty_name = with_len16(&[0]);
    let bad_alpn = frame(
        &hello_message(Some(&[(16, alpn_empty_name.clone())])),
        MAX_RECORD,
    );
    assert_eq!(cause_of(&bad_alpn), Cause::Alpn);
    alpn_empty_name = with_len16(&[]);
    let bad_alpn = frame(&hello_message(Some(&[(16, alpn_empty_name)])), MAX_RECORD);
    assert_eq!(cause_of(&bad_alpn), Cause::Alpn);
}

#[test]
fn every_truncation_of_a_real_hello_with_fixed_lengths_is_a_decode_error() {
    // tlsfuzzer's test-truncating-of-client-hello: the body is cut, the handshake and record
    // lengths say the cut length, so the message is complete but its fields do not add up.
    let msg = payload(example_hello());
    let full_body = msg.len() - 4;
    let mut rejected = 0;
    for cut in 0..full_body {
        let mut m = vec![1];
        m.extend_from_slice(&(cut as u32).to_be_bytes()[1..]);
        m.extend_from_slice(&msg[4..4 + cut]);
        match parse_client_hello(&frame(&m, MAX_RECORD)) {
            Peek::Reject(r) => {
                assert_eq!(r.alert(), Alert::DecodeError, "cut at {cut}: {:?}", r.cause);
                rejected += 1;
            }
            Peek::Hello(_) => {} // cut exactly before the extensions block: a valid hello
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    assert!(rejected >= full_body - 1, "{rejected} of {full_body}");
}

fn host_name() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,18}[a-z0-9])?(\\.[a-z][a-z0-9]{0,10}){0,3}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        chunk in 1usize..600,
    ) {
        let whole = parse_client_hello(&bytes);
        let (chunked, replay) = feed_in(&bytes, chunk);
        prop_assert_eq!(&whole, &chunked);
        prop_assert!(bytes.starts_with(&replay) || replay == bytes);
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
        prop_assert_eq!(sni_of(&hello), Some(name));
    }

    #[test]
    fn refragmenting_and_rechunking_keep_the_name_and_the_bytes(
        records in 1usize..2000,
        reads in 1usize..5000,
    ) {
        let framed = frame(&payload(example_hello()), records);
        let (verdict, replay) = feed_in(&framed, reads);
        let Peek::Hello(h) = verdict else { panic!("not a hello") };
        prop_assert_eq!(h.sni.as_deref(), Some("example.com"));
        prop_assert_eq!(replay, framed);
    }

    #[test]
    fn mutated_hellos_never_panic_and_decide_the_same_in_pieces(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        chunk in 1usize..200,
    ) {
        let mut bytes = example_hello().to_vec();
        for (at, byte) in edits {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        let cut = cut.index(bytes.len() + 1);
        let whole = parse_client_hello(&bytes[..cut]);
        prop_assert_eq!(whole, feed_in(&bytes[..cut], chunk).0);
    }
}

#[test]
fn a_hello_cut_short_by_eof_is_a_decode_error_and_nothing_is_a_plain_close() {
    let hello = example_hello();
    for cut in [1, 3, 5, 6, hello.len() / 2, hello.len() - 1] {
        let mut r = HelloReader::new();
        r.feed(&hello[..cut]);
        assert_eq!(r.verdict(), &Peek::NeedMore, "cut at {cut}");
        let (verdict, bytes) = r.finish_at_eof();
        match verdict {
            Peek::Reject(rej) => {
                assert_eq!(rej.cause, Cause::Truncated, "cut at {cut}");
                assert_eq!(rej.alert(), Alert::DecodeError);
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
        assert_eq!(bytes, &hello[..cut]);
    }
    assert_eq!(HelloReader::new().finish_at_eof().0, Peek::NeedMore);
    // A verdict reached before the EOF stands.
    let mut r = HelloReader::new();
    r.feed(hello);
    assert!(matches!(r.finish_at_eof().0, Peek::Hello(_)));
}

#[test]
fn the_alerts_sent_are_named_from_the_one_table() {
    let sent = [
        (Alert::UnexpectedMessage, 10, "unexpected_message"),
        (Alert::RecordOverflow, 22, "record_overflow"),
        (Alert::IllegalParameter, 47, "illegal_parameter"),
        (Alert::DecodeError, 50, "decode_error"),
        (Alert::UnrecognizedName, 112, "unrecognized_name"),
    ];
    for (alert, code, name) in sent {
        assert_eq!((alert.code(), alert.as_str()), (code, name));
    }
    assert_eq!(alert_name(42), Some("bad_certificate"));
    assert_eq!(alert_name(200), None);
    // Every code of the table is one rustls knows, and none is named twice.
    for (i, (code, _)) in ALERT_NAMES.iter().enumerate() {
        let known = rustls::AlertDescription::from(*code);
        assert!(
            !matches!(known, rustls::AlertDescription::Unknown(_)),
            "{code}"
        );
        assert!(ALERT_NAMES[..i].iter().all(|(c, _)| c != code), "{code}");
    }
}
