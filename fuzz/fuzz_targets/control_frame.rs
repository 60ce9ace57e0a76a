//! Fuzzes the workers' control-channel codec: any bytes decode to messages, "need more" or
//! an error — as requests and as replies — never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpmap::internals::decode_control_frames;

fuzz_target!(|data: &[u8]| {
    let _ = decode_control_frames(data);
});
