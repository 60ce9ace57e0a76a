//! Fuzzes `service:` parsing: any string parses or is rejected with a message, never a panic;
//! a parsed port is never 0.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpmap::internals::parse_service;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = parse_service(text) {
        assert_ne!(parsed.port, Some(0));
    }
});
