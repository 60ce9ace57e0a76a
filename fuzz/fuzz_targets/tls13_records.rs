//! Fuzzes the TLS 1.3 record path (handshake driver and `RecordStream`) against a client that
//! holds its traffic keys: a real handshake over loopback, then the input as a script of
//! authenticated records of any inner type and content, raw bytes, split points and closes
//! (`tcpmap::fuzzing::tls13_session`). Any script must end the session: a panic or a session
//! over `tcpmap::fuzzing::DEADLINE` (a hang) is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tcpmap::fuzzing::tls13_session(data);
});
