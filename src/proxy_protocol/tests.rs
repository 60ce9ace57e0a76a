//! The codec against the spec's examples, its bounds, and properties: encode → decode gives
//! the header back, arbitrary bytes never panic, and a strict prefix of a header is always
//! `Partial` (what lets the reader consume exactly the header).

use super::*;
use proptest::prelude::*;

fn complete(buf: &[u8]) -> (Header, usize) {
    match decode(buf) {
        Ok(Decoded::Complete { header, len }) => (header, len),
        other => panic!("not complete: {other:?}"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn v1_tcp4_and_the_bytes_after_it() {
    let mut buf = b"PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\r\n".to_vec();
    let n = buf.len();
    buf.extend_from_slice(b"\x16\x03\x01 client hello");
    let (h, len) = complete(&buf);
    assert_eq!(len, n);
    assert_eq!(h.version, Version::V1);
    assert_eq!(h.client(), Some(addr("192.0.2.1:51000")));
    assert_eq!(h.destination(), Some(addr("198.51.100.2:443")));
}

#[test]
fn v1_tcp6_and_unknown() {
    let (h, _) = complete(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n");
    assert_eq!(h.client(), Some(addr("[2001:db8::1]:1")));
    let (h, len) = complete(b"PROXY UNKNOWN\r\n");
    assert_eq!((h.addresses, len), (Addresses::Unspecified, 15));
    let (h, _) = complete(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n");
    assert_eq!(h.client(), None);
}

#[test]
fn v1_errors() {
    let bad: [&[u8]; 10] = [
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n",
    ];
    for b in bad {
        assert!(
            matches!(decode(b), Err(DecodeError::V1Malformed(_))),
            "{:?} gave {:?}",
            String::from_utf8_lossy(b),
            decode(b)
        );
    }
}

#[test]
fn v1_longer_than_107_bytes_is_refused_at_107() {
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(V1_MAX - 1, b'x');
    assert!(matches!(
        decode(&line),
        Ok(Decoded::Partial {
            committed: true,
            more: 1
        })
    ));
    line.push(b'x');
    assert_eq!(decode(&line), Err(DecodeError::V1TooLong));
    // 107 bytes with the CRLF is still fine.
    let mut ok = b"PROXY UNKNOWN ".to_vec();
    ok.resize(V1_MAX - 2, b'x');
    ok.extend_from_slice(b"\r\n");
    assert_eq!(complete(&ok).1, V1_MAX);
}

#[test]
fn not_proxy_and_signature_prefixes() {
    assert_eq!(decode(b"\x16\x03\x01\x02\x00"), Ok(Decoded::NotProxy));
    assert_eq!(decode(b"GET / HTTP/1.1\r\n"), Ok(Decoded::NotProxy));
    assert_eq!(decode(b"PROXZ"), Ok(Decoded::NotProxy));
    assert!(matches!(
        decode(b"PROX"),
        Ok(Decoded::Partial {
            committed: false,
            ..
        })
    ));
    assert!(matches!(
        decode(b"\r\n\r\n\0"),
        Ok(Decoded::Partial {
            committed: false,
            ..
        })
    ));
    assert!(matches!(
        decode(b"\r\n\r\n\0\r\nQUIT\n"),
        Ok(Decoded::Partial {
            committed: true,
            more: 4
        })
    ));
}

/// The header HAProxy's documentation shows for IPv4 (with no TLVs), built by hand.
fn v2_inet(cmd: u8, tlvs: &[u8]) -> Vec<u8> {
    let mut b = V2_SIGNATURE.to_vec();
    b.push(cmd);
    b.push(0x11);
    b.extend_from_slice(&((12 + tlvs.len()) as u16).to_be_bytes());
    b.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 2]);
    b.extend_from_slice(&51000u16.to_be_bytes());
    b.extend_from_slice(&443u16.to_be_bytes());
    b.extend_from_slice(tlvs);
    b
}

#[test]
fn v2_proxy_inet_with_tlvs() {
    let tlvs = [
        &[tlv::AUTHORITY, 0, 11][..],
        b"example.com",
        &[tlv::NOOP, 0, 0],
    ]
    .concat();
    let mut buf = v2_inet(0x21, &tlvs);
    let n = buf.len();
    buf.extend_from_slice(b"rest");
    let (h, len) = complete(&buf);
    assert_eq!(len, n);
    assert_eq!(h.client(), Some(addr("192.0.2.1:51000")));
    assert_eq!(h.authority(), Some("example.com"));
    assert_eq!(h.tlvs.len(), 2);
}

#[test]
fn v2_local_keeps_the_peer() {
    let (h, len) = complete(&v2_inet(0x20, &[]));
    assert_eq!(len, 28);
    assert_eq!(h.command, Command::Local);
    assert_eq!(h.client(), None);
    // LOCAL with no address block at all (what balancers send for health checks).
    let mut b = V2_SIGNATURE.to_vec();
    b.extend_from_slice(&[0x20, 0x00, 0, 0]);
    assert_eq!(complete(&b).0.client(), None);
}

#[test]
fn v2_errors_and_bounds() {
    let mut wrong_version = v2_inet(0x21, &[]);
    wrong_version[12] = 0x11;
    assert!(matches!(
        decode(&wrong_version),
        Err(DecodeError::V2Malformed(_))
    ));
    let mut wrong_cmd = v2_inet(0x22, &[]);
    assert!(decode(&wrong_cmd).is_err());
    wrong_cmd[12] = 0x21;
    wrong_cmd[13] = 0x41;
    assert!(decode(&wrong_cmd).is_err());
    // Length too short for the address block.
    let mut short = V2_SIGNATURE.to_vec();
    short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
    assert!(decode(&short).is_err());
    // A TLV running past the end.
    assert!(decode(&v2_inet(0x21, &[tlv::ALPN, 0, 9, b'h'])).is_err());
    assert!(decode(&v2_inet(0x21, &[tlv::ALPN, 0])).is_err());
    // The length is judged from the fixed part alone: refused before the payload arrives.
    let mut huge = V2_SIGNATURE.to_vec();
    huge.extend_from_slice(&[0x21, 0x11]);
    huge.extend_from_slice(&((V2_MAX_PAYLOAD + 1) as u16).to_be_bytes());
    assert_eq!(decode(&huge), Err(DecodeError::V2TooLong));
    // 4 KiB of TLVs pass; one byte more does not.
    let max = [
        &[tlv::NOOP][..],
        &((V2_MAX_TLVS - 3) as u16).to_be_bytes(),
        &vec![0; V2_MAX_TLVS - 3],
    ]
    .concat();
    assert!(matches!(
        decode(&v2_inet(0x21, &max)),
        Ok(Decoded::Complete { .. })
    ));
    let over = [
        &[tlv::NOOP][..],
        &((V2_MAX_TLVS - 2) as u16).to_be_bytes(),
        &vec![0; V2_MAX_TLVS - 2],
    ]
    .concat();
    assert_eq!(decode(&v2_inet(0x21, &over)), Err(DecodeError::V2TooLong));
}

#[test]
fn v2_partial_tells_how_much_more_belongs_to_it() {
    let b = v2_inet(0x21, &[tlv::NOOP, 0, 2, 0, 0]);
    assert_eq!(
        decode(&b[..20]),
        Ok(Decoded::Partial {
            committed: true,
            more: b.len() - 20
        })
    );
}

#[test]
fn encode_v2_with_authority_alpn_and_ssl() {
    let mut h = Header::proxy(
        Version::V2,
        addr("[2001:db8::7]:4000"),
        addr("10.0.0.1:443"),
    );
    h.tlvs.push(Tlv {
        kind: tlv::AUTHORITY,
        value: b"my-host".to_vec(),
    });
    h.tlvs.push(Tlv {
        kind: tlv::ALPN,
        value: b"h2".to_vec(),
    });
    h.tlvs.push(Ssl::tlv("TLSv1.3", false));
    let wire = h.encode();
    let (back, len) = complete(&wire);
    assert_eq!(len, wire.len());
    // Mixed families are sent as IPv6 (IPv4-mapped).
    assert_eq!(back.destination(), Some(addr("[::ffff:10.0.0.1]:443")));
    assert_eq!(back.authority(), Some("my-host"));
    assert_eq!(back.tlv(tlv::ALPN), Some(&b"h2"[..]));
    let ssl = back.ssl().unwrap();
    assert_eq!(ssl.client, tlv::CLIENT_SSL);
    assert_eq!(ssl.verify, 0);
    assert_eq!(ssl.version(), Some("TLSv1.3"));
}

#[test]
fn encode_v1_lines() {
    let h = Header::proxy(
        Version::V1,
        addr("192.0.2.1:51000"),
        addr("198.51.100.2:443"),
    );
    assert_eq!(
        h.encode(),
        b"PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\r\n"
    );
    let h = Header::proxy(Version::V1, addr("[::1]:5"), addr("[::2]:6"));
    assert_eq!(h.encode(), b"PROXY TCP6 ::1 ::2 5 6\r\n");
}

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(o, p)| SocketAddr::from((o, p))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(o, p)| SocketAddr::from((o, p))),
    ]
}

fn arb_header() -> impl Strategy<Value = Header> {
    let tlvs = proptest::collection::vec(
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(kind, value)| Tlv { kind, value }),
        0..8,
    );
    (any::<bool>(), any::<bool>(), arb_addr(), arb_addr(), tlvs).prop_map(
        |(v2, local, s, d, tlvs)| {
            // Each version's header space: v1 has no TLVs and no LOCAL; a received LOCAL
            // carries neither addresses nor TLVs; one family per header.
            let (s, d) = same_family(s, d);
            if !v2 {
                return Header::proxy(Version::V1, s, d);
            }
            if local {
                return Header {
                    version: Version::V2,
                    command: Command::Local,
                    addresses: Addresses::Unspecified,
                    tlvs: Vec::new(),
                };
            }
            Header {
                tlvs,
                ..Header::proxy(Version::V2, s, d)
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_round_trips(h in arb_header(), tail in proptest::collection::vec(any::<u8>(), 0..32)) {
        let wire = h.encode();
        let mut buf = wire.clone();
        buf.extend_from_slice(&tail);
        let (back, len) = complete(&buf);
        prop_assert_eq!(len, wire.len());
        prop_assert_eq!(back, h);
        // Every strict prefix is Partial and its bytes all belong to the header.
        for k in 1..wire.len() {
            match decode(&wire[..k]) {
                Ok(Decoded::Partial { more, .. }) => prop_assert!(k + more <= wire.len().max(V1_MAX)),
                other => prop_assert!(false, "prefix {} of {}: {:?}", k, wire.len(), other),
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_a_signature_never_panic(v2 in any::<bool>(), tail in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut b = if v2 { V2_SIGNATURE.to_vec() } else { V1_SIGNATURE.to_vec() };
        b.extend_from_slice(&tail);
        let whole = decode(&b);
        if let Ok(Decoded::Complete { len, .. }) = &whole {
            prop_assert!(*len <= b.len());
        }
        for k in 0..b.len() {
            let first = decode(&b[..k]);
            if !matches!(first, Ok(Decoded::Partial { .. })) {
                prop_assert_eq!(&first, &whole);
            }
        }
    }

    #[test]
    fn a_decided_prefix_is_decided_the_same(bytes in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..300) {
        let whole = decode(&bytes);
        let first = decode(&bytes[..cut.min(bytes.len())]);
        if !matches!(first, Ok(Decoded::Partial { .. })) {
            prop_assert_eq!(first, whole);
        }
    }
}
