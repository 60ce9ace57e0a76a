//! Fuzzes the ClientHello reader: any bytes must give a verdict, never a panic; feeding the
//! bytes in pieces (as reads deliver them) must decide exactly as feeding them at once; the
//! replay must be the bytes fed (or, for a hello re-framed past `MAX_KEPT`, a hello that
//! decides the same); and the reader's memory stays under its bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpmap::sni::{HelloReader, MAX_BUFFERED, MAX_KEPT, Peek, parse_client_hello};

fuzz_target!(|data: &[u8]| {
    let whole = parse_client_hello(data);
    if let Peek::Hello(hello) = &whole {
        if let Some(name) = &hello.sni {
            assert!(!name.is_empty() && name.is_ascii());
        }
        assert!(hello.alpn().all(|p| !p.is_empty()));
    }
    // The first byte picks the piece size, so the fuzzer explores read patterns too.
    let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1) * 7;
    let mut reader = HelloReader::new();
    for piece in data.chunks(chunk) {
        let done = reader.feed(piece);
        assert!(reader.buffered() <= MAX_BUFFERED);
        if done {
            break;
        }
    }
    let (pieces, replay) = reader.finish();
    assert_eq!(pieces, whole);
    if data.len() <= MAX_KEPT {
        assert!(data.starts_with(&replay));
    } else if matches!(whole, Peek::Hello(_)) {
        assert_eq!(parse_client_hello(&replay), whole);
    }
});
