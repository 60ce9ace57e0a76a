//! Replays the fuzz seeds and every checked-in fuzz reproducer (`fuzz/seeds/TARGET/*`,
//! `fuzz/artifacts/TARGET/crash-*`) through the same entry points as the fuzz targets, so
//! a fixed crash stays fixed in the ordinary test run (no fuzzer needed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use tcpmap::internals::{decode_control_frames, parse_service};
use tcpmap::sni::{HelloReader, Peek, parse_client_hello};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in [
        root.join("seeds").join(target),
        root.join("artifacts").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            out.push(e.unwrap().path());
        }
    }
    out.sort();
    out
}

/// What each named ClientHello seed must be read as (`fuzz/seeds/client_hello/NAME.bin`).
const HELLO_SEEDS: [(&str, &str); 18] = [
    ("openssl-0", "sni"),
    ("openssl-1", "sni"),
    ("openssl-2", "hello"),
    ("records-1-byte", "sni"),
    ("records-7-byte", "sni"),
    ("large-20k-two-records", "sni"),
    ("large-60k", "sni"),
    ("alpn", "sni"),
    ("sni-ip", "hello"),
    ("too-large", "decode_error"),
    ("truncated-fixed-length", "decode_error"),
    ("sni-empty-extension", "decode_error"),
    ("sni-empty-list", "decode_error"),
    ("sni-empty-name", "decode_error"),
    ("sslv2", "decode_error"),
    ("sni-nul", "illegal_parameter"),
    ("record-overflow", "record_overflow"),
    ("ssh", "not_tls"),
];

fn verdict(peek: &Peek) -> &'static str {
    match peek {
        Peek::Hello(h) if h.sni.is_some() => "sni",
        Peek::Hello(_) => "hello",
        Peek::Reject(r) => r.alert().as_str(),
        Peek::NotTls => "not_tls",
        Peek::NeedMore => "need_more",
        // `Peek` is #[non_exhaustive]; no seed expects another verdict.
        _ => "unknown",
    }
}

#[test]
fn client_hello_inputs() {
    let files = inputs("client_hello");
    assert!(files.len() >= HELLO_SEEDS.len(), "seeds missing: {files:?}");
    for f in files {
        let data = std::fs::read(&f).unwrap();
        let whole = parse_client_hello(&data);
        if let Peek::Hello(hello) = &whole {
            if let Some(name) = &hello.sni {
                assert!(!name.is_empty());
            }
        }
        // Fed as reads deliver it, in pieces, the verdict is the same.
        for chunk in [1, 100, 4096] {
            let mut reader = HelloReader::new();
            for piece in data.chunks(chunk) {
                if reader.feed(piece) {
                    break;
                }
            }
            assert_eq!(
                reader.finish().0,
                whole,
                "{} in {chunk}-byte reads",
                f.display()
            );
        }
        let stem = f.file_stem().unwrap().to_str().unwrap();
        if let Some((_, want)) = HELLO_SEEDS.iter().find(|(name, _)| *name == stem) {
            assert_eq!(verdict(&whole), *want, "{}", f.display());
        }
    }
}

#[test]
fn config_load_inputs() {
    let files = inputs("config_load");
    assert!(files.len() >= 5, "seeds missing: {files:?}");
    for f in files {
        let Ok(text) = String::from_utf8(std::fs::read(&f).unwrap()) else {
            continue;
        };
        let input = tcpmap::ConfigInput {
            inline: vec![("fuzz.yaml".into(), text)],
            ..Default::default()
        };
        match tcpmap::config::load(&input) {
            Ok(l) => drop(l.render_text()),
            Err(problems) => assert!(!problems.is_empty()),
        }
    }
}

#[test]
fn service_inputs() {
    let files = inputs("service");
    assert!(files.len() >= 5, "seeds missing: {files:?}");
    for f in files {
        let Ok(text) = String::from_utf8(std::fs::read(&f).unwrap()) else {
            continue;
        };
        if let Ok(p) = parse_service(&text) {
            assert_ne!(p.port, Some(0), "{}", f.display());
        }
    }
}

#[test]
fn control_frame_inputs() {
    let files = inputs("control_frame");
    assert!(files.len() >= 5, "seeds missing: {files:?}");
    let mut decoded = 0;
    for f in files {
        decoded += decode_control_frames(&std::fs::read(&f).unwrap());
    }
    // The well-formed seeds decode (each frame once, as a request or as a reply).
    assert!(decoded >= 7, "{decoded}");
}

#[test]
fn proxy_header_inputs() {
    use tcpmap::proxy_protocol::{Decoded, decode};
    let files = inputs("proxy_header");
    assert!(files.len() >= 5, "seeds missing: {files:?}");
    let mut whole_headers = 0;
    for f in files {
        let data = std::fs::read(&f).unwrap();
        let whole = decode(&data);
        if let Ok(Decoded::Complete { header, len }) = &whole {
            whole_headers += 1;
            assert!(*len <= data.len());
            for k in 0..*len {
                assert!(
                    matches!(decode(&data[..k]), Ok(Decoded::Partial { .. })),
                    "{}: prefix {k} decided",
                    f.display()
                );
            }
            let again = header.encode();
            assert!(
                matches!(decode(&again), Ok(Decoded::Complete { .. })),
                "{}",
                f.display()
            );
        }
        let first = decode(&data[..data.len() / 2]);
        if !matches!(first, Ok(Decoded::Partial { .. })) {
            assert_eq!(first, whole, "{}", f.display());
        }
    }
    assert!(whole_headers >= 5, "the header seeds should decode");
}

/// What each Postgres first-message seed is (`fuzz/seeds/postgres_first/NAME.bin`).
const POSTGRES_SEEDS: [(&str, &str); 10] = [
    ("ssl-request", "ssl"),
    ("gssenc-request", "gssenc"),
    ("cancel-3.0", "cancel"),
    ("cancel-3.2-head", "cancel"),
    ("startup-3.0", "startup"),
    ("startup-3.2", "startup"),
    ("direct-tls", "tls"),
    ("http", "invalid"),
    ("ssl-request-wrong-length", "invalid"),
    ("startup-too-long", "invalid"),
];

#[test]
fn postgres_first_inputs() {
    use tcpmap::postgres::{DECISION_BYTES, First, classify};
    let files = inputs("postgres_first");
    assert!(
        files.len() >= POSTGRES_SEEDS.len(),
        "seeds missing: {files:?}"
    );
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let whole = classify(&data);
        for k in 0..=data.len() {
            match classify(&data[..k]) {
                Ok(First::NeedMore(n)) => assert!(n > k && n <= DECISION_BYTES),
                decided => assert_eq!(decided, whole, "{}: prefix {k}", f.display()),
            }
        }
        let name = f.file_stem().unwrap().to_str().unwrap();
        if let Some((_, want)) = POSTGRES_SEEDS.iter().find(|(n, _)| *n == name) {
            let got = match whole {
                Ok(First::SslRequest) => "ssl",
                Ok(First::GssEncRequest) => "gssenc",
                Ok(First::Cancel { .. }) => "cancel",
                Ok(First::Startup { .. }) => "startup",
                Ok(First::DirectTls) => "tls",
                Ok(First::NeedMore(_)) => "need_more",
                Err(_) => "invalid",
            };
            assert_eq!(got, *want, "{}", f.display());
        }
    }
}

/// The plaintext bytes the server reads from each named TLS 1.3 record seed
/// (`fuzz/seeds/tls13_records/NAME`; None: the handshake fails).
const TLS13_SEEDS: [(&str, Option<usize>); 12] = [
    ("data_keyupdates_close", Some(5)),
    // "hello", "world", then a record past 2^14 bytes: record_overflow.
    ("chacha_split_records", Some(10)),
    // 2^14 bytes are one record's most; 128 bytes more are not.
    ("big_records", Some(16_384)),
    // A warning user_canceled between data is ignored; close_notify is the end.
    ("alerts", Some(2)),
    ("fatal_alert", Some(0)),
    ("handshake_types", Some(0)),
    // Empty records between data are fine; a record of padding only is not.
    ("empty_and_padding", Some(12)),
    ("unencrypted_record", Some(1)),
    ("huge_length_header", Some(1)),
    // 32 KeyUpdates in a row are allowed, the 33rd after data is not.
    ("keyupdate_storm", Some(1)),
    ("garbage_after_hello", None),
    ("garbage_for_finished", None),
];

#[test]
fn tls13_records_inputs() {
    let files = inputs("tls13_records");
    assert!(files.len() >= TLS13_SEEDS.len(), "seeds missing: {files:?}");
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let read = tcpmap::fuzzing::tls13_session(&data);
        let name = f.file_stem().unwrap().to_str().unwrap();
        if let Some((_, want)) = TLS13_SEEDS.iter().find(|(n, _)| *n == name) {
            assert_eq!(read, *want, "{}", f.display());
        }
    }
}
