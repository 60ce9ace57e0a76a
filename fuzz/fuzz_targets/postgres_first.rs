//! Fuzzes the Postgres first-message codec: any bytes must give an answer, never a panic; a
//! decision never needs more than 8 bytes; a decision taken on a prefix is the decision on all
//! the bytes (the preamble stage acts on the first decision it gets); a `NeedMore` asks for
//! more than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpmap::postgres::{DECISION_BYTES, First, classify};

fuzz_target!(|data: &[u8]| {
    let whole = classify(data);
    if data.len() >= DECISION_BYTES {
        assert!(
            !matches!(whole, Ok(First::NeedMore(_))),
            "undecided after 8 bytes"
        );
    }
    for k in 0..=data.len().min(DECISION_BYTES + 1) {
        match classify(&data[..k]) {
            Ok(First::NeedMore(n)) => assert!(n > k && n <= DECISION_BYTES, "NeedMore({n}) at {k}"),
            decided => assert_eq!(decided, whole, "prefix {k} decided otherwise"),
        }
    }
});
