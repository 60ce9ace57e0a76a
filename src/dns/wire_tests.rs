//! Unit tests of the DNS codec: replies are built with `dns-protocol` or by hand.

use super::*;
use dns_protocol::{MessageType, ResourceRecord, ResponseCode};

fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend(label.as_bytes());
    }
    out.push(0);
    out
}

/// A reply to `qname`/`qtype` with the given answers, built by `dns-protocol`.
fn reply(
    id: u16,
    qname: &str,
    qtype: ResourceType,
    rcode: ResponseCode,
    answers: &[(&str, ResourceType, u32, &[u8])],
) -> Vec<u8> {
    let mut flags = Flags::standard_query();
    flags.set_qr(MessageType::Reply);
    flags.set_response_code(rcode);
    let mut questions = [Question::new(qname, qtype, 1)];
    let mut records: Vec<ResourceRecord<'_>> = answers
        .iter()
        .map(|(n, t, ttl, data)| ResourceRecord::new(*n, *t, 1, *ttl, data))
        .collect();
    let message = Message::new(id, flags, &mut questions, &mut records, &mut [], &mut []);
    let mut buf = vec![0; message.space_needed()];
    let len = message.write(&mut buf).unwrap();
    buf.truncate(len);
    buf
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn query_encodes_header_and_question() {
    let q = encode_query(0xBEEF, "Api.Example.", RecordType::Aaaa).unwrap();
    assert_eq!(&q[..4], &[0xBE, 0xEF, 0x01, 0x00], "id and the RD flag");
    assert_eq!(&q[4..12], &[0, 1, 0, 0, 0, 0, 0, 0], "one question");
    let mut want = wire_name("Api.Example");
    want.extend([0, 28, 0, 1]);
    assert_eq!(&q[12..], &want[..]);
}

#[test]
fn query_rejects_names_that_cannot_be_sent() {
    let long_label = "a".repeat(64);
    let long_name = ["abcdefghij"; 26].join(".");
    for bad in [
        "",
        ".",
        "a..b",
        long_label.as_str(),
        long_name.as_str(),
        "sp ace.example",
        "ü.example",
    ] {
        assert!(
            matches!(
                encode_query(1, bad, RecordType::A),
                Err(WireError::BadName(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn a_records_are_decoded_with_the_smallest_ttl() {
    let buf = reply(
        7,
        "web.test",
        ResourceType::A,
        ResponseCode::NoError,
        &[
            ("web.test", ResourceType::A, 30, &[10, 0, 0, 1]),
            ("WEB.test", ResourceType::A, 20, &[10, 0, 0, 2]),
        ],
    );
    assert_eq!(
        decode_reply(&buf, 7, "web.test", RecordType::A),
        Ok(Reply::Records(vec![ip("10.0.0.1"), ip("10.0.0.2")], 20))
    );
}

#[test]
fn aaaa_records_and_cname_chains_are_followed() {
    let v6 = ip("2001:db8::7");
    let IpAddr::V6(v6b) = v6 else { unreachable!() };
    let target = wire_name("real.test");
    let buf = reply(
        9,
        "alias.test",
        ResourceType::AAAA,
        ResponseCode::NoError,
        &[
            ("alias.test", ResourceType::CName, 60, &target),
            ("real.test", ResourceType::AAAA, 120, &v6b.octets()),
            ("other.test", ResourceType::AAAA, 5, &[0; 16]),
        ],
    );
    assert_eq!(
        decode_reply(&buf, 9, "alias.test", RecordType::Aaaa),
        Ok(Reply::Records(vec![v6], 60))
    );
}

#[test]
fn records_of_other_owners_or_types_are_not_addresses() {
    // async-dns took any 4- or 16-byte rdata as an address, whoever owned it.
    let buf = reply(
        3,
        "web.test",
        ResourceType::A,
        ResponseCode::NoError,
        &[
            ("evil.test", ResourceType::A, 30, &[6, 6, 6, 6]),
            ("web.test", ResourceType::Txt, 30, &[3, b'a', b'b', b'c']),
        ],
    );
    assert_eq!(
        decode_reply(&buf, 3, "web.test", RecordType::A),
        Ok(Reply::NoData)
    );
}

#[test]
fn nxdomain_and_server_errors_are_told_apart() {
    let nx = reply(
        5,
        "gone.test",
        ResourceType::A,
        ResponseCode::NameError,
        &[],
    );
    assert_eq!(
        decode_reply(&nx, 5, "gone.test", RecordType::A),
        Ok(Reply::NxDomain)
    );
    let fail = reply(
        5,
        "gone.test",
        ResourceType::A,
        ResponseCode::ServerFailure,
        &[],
    );
    assert_eq!(
        decode_reply(&fail, 5, "gone.test", RecordType::A),
        Ok(Reply::ServerError(2))
    );
    let mut odd = nx.clone();
    odd[3] = (odd[3] & 0xF0) | 0x0F; // rcode 15: dns-protocol would panic reading it
    assert_eq!(
        decode_reply(&odd, 5, "gone.test", RecordType::A),
        Ok(Reply::ServerError(15))
    );
}

#[test]
fn truncated_replies_ask_for_tcp() {
    let mut buf = reply(
        11,
        "big.test",
        ResourceType::A,
        ResponseCode::NoError,
        &[("big.test", ResourceType::A, 1, &[1, 2, 3, 4])],
    );
    buf[2] |= 0x02;
    buf.truncate(buf.len() - 3); // cut inside the record, as a server may
    assert_eq!(
        decode_reply(&buf, 11, "big.test", RecordType::A),
        Ok(Reply::Truncated)
    );
}

#[test]
fn replies_to_other_queries_are_rejected() {
    let buf = reply(
        1,
        "web.test",
        ResourceType::A,
        ResponseCode::NoError,
        &[("web.test", ResourceType::A, 1, &[1, 2, 3, 4])],
    );
    assert_eq!(
        decode_reply(&buf, 2, "web.test", RecordType::A),
        Err(WireError::Mismatch("id"))
    );
    assert_eq!(
        decode_reply(&buf, 1, "other.test", RecordType::A),
        Err(WireError::Mismatch("question"))
    );
    assert_eq!(
        decode_reply(&buf, 1, "web.test", RecordType::Aaaa),
        Err(WireError::Mismatch("question"))
    );
    let query = encode_query(1, "web.test", RecordType::A).unwrap();
    assert_eq!(
        decode_reply(&query, 1, "web.test", RecordType::A),
        Err(WireError::Mismatch("not a response"))
    );
}

#[test]
fn compressed_names_are_followed() {
    // Header, question web.test A IN, one answer whose owner is a pointer to offset 12.
    let mut buf = vec![0, 4, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    buf.extend(wire_name("web.test"));
    buf.extend([0, 1, 0, 1]);
    buf.extend([0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 42, 0, 4, 192, 0, 2, 1]);
    assert_eq!(
        decode_reply(&buf, 4, "web.test", RecordType::A),
        Ok(Reply::Records(vec![ip("192.0.2.1")], 42))
    );
}

#[test]
fn hostile_bytes_are_errors_not_panics_or_hangs() {
    let mut base = vec![0, 4, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    base.extend(wire_name("web.test"));
    base.extend([0, 1, 0, 1]);
    let answer_at = base.len();
    // A pointer to itself, a forward pointer, a pointer cut in half, a record cut short.
    let cases: Vec<Vec<u8>> = vec![
        [base.clone(), vec![0xC0, answer_at as u8]].concat(),
        [base.clone(), vec![0xC0, 0xFF]].concat(),
        [base.clone(), vec![0xC0]].concat(),
        [
            base.clone(),
            vec![0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 42, 0, 4, 192],
        ]
        .concat(),
        [base.clone(), vec![0x80, 1]].concat(),
        base[..5].to_vec(),
    ];
    for case in cases {
        assert!(
            matches!(
                decode_reply(&case, 4, "web.test", RecordType::A),
                Err(WireError::Malformed(_))
            ),
            "{case:?}"
        );
    }
    // Every prefix of a good reply decodes to something without panicking.
    let good = reply(
        4,
        "web.test",
        ResourceType::A,
        ResponseCode::NoError,
        &[("web.test", ResourceType::A, 1, &[1, 2, 3, 4])],
    );
    for cut in 0..good.len() {
        let _ = decode_reply(&good[..cut], 4, "web.test", RecordType::A);
    }
}

#[test]
fn huge_ttls_count_as_zero() {
    let buf = reply(
        8,
        "web.test",
        ResourceType::A,
        ResponseCode::NoError,
        &[("web.test", ResourceType::A, 0x8000_0000, &[1, 2, 3, 4])],
    );
    assert_eq!(
        decode_reply(&buf, 8, "web.test", RecordType::A),
        Ok(Reply::Records(vec![ip("1.2.3.4")], 0))
    );
}
