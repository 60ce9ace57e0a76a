//! Fuzzes the ClientHello/SNI parser: any bytes must give a verdict, never a panic, and a
//! prefix of a buffer must never be decided differently from the whole (except NeedMore).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpmap::sni::{Peek, parse_client_hello};

fuzz_target!(|data: &[u8]| {
    let whole = parse_client_hello(data);
    if let Peek::Sni(name) = &whole {
        assert!(!name.is_empty());
    }
    // Feeding the bytes as they would arrive (in two reads) must not change a final verdict.
    let half = data.len() / 2;
    let first = parse_client_hello(data.get(..half).unwrap_or_default());
    if !matches!(first, Peek::NeedMore) {
        assert_eq!(format!("{first:?}"), format!("{whole:?}"));
    }
});
