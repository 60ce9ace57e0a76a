//! Fuzzes the PROXY protocol decoder: any bytes must give an answer, never a panic; a whole
//! header is no longer than the input and re-encodes to a header that decodes the same; every
//! strict prefix of a whole header is `Partial` (the reader consumes exactly the header on
//! that promise); a decision made on a prefix is the decision on all the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpmap::proxy_protocol::{Decoded, decode};

fuzz_target!(|data: &[u8]| {
    let whole = decode(data);
    if let Ok(Decoded::Complete { header, len }) = &whole {
        assert!(*len <= data.len());
        for k in 0..*len {
            assert!(
                matches!(decode(&data[..k]), Ok(Decoded::Partial { .. })),
                "prefix {k} of a {len}-byte header was decided"
            );
        }
        let again = header.encode();
        match decode(&again) {
            Ok(Decoded::Complete { header: back, len }) => {
                assert_eq!(len, again.len());
                // v1 UNKNOWN and v2 LOCAL lose nothing the decoder kept.
                assert_eq!(back.client(), header.client());
                assert_eq!(back.destination(), header.destination());
                assert_eq!(back.tlvs, header.tlvs);
            }
            other => panic!("re-encoded header does not decode: {other:?}"),
        }
    }
    let half = data.len() / 2;
    let first = decode(data.get(..half).unwrap_or_default());
    if !matches!(first, Ok(Decoded::Partial { .. })) {
        assert_eq!(first, whole);
    }
});
