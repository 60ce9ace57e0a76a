use proptest::prelude::*;

use super::*;

/// A startup message as libpq writes it: protocol 3.0, `user` and `database`.
fn startup(user: &str, database: &str) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for s in ["user", user, "database", database] {
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend(body);
    msg
}

fn cancel(pid: u32, key: &[u8]) -> Vec<u8> {
    let mut msg = ((12 + key.len()) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&CANCEL_CODE.to_be_bytes());
    msg.extend_from_slice(&pid.to_be_bytes());
    msg.extend_from_slice(key);
    msg
}

#[test]
fn the_three_requests_and_their_codes() {
    assert_eq!(classify(&SSL_REQUEST), Ok(First::SslRequest));
    assert_eq!(classify(&GSSENC_REQUEST), Ok(First::GssEncRequest));
    assert_eq!(SSL_REQUEST[4..], SSL_CODE.to_be_bytes());
    assert_eq!(GSSENC_REQUEST[4..], GSSENC_CODE.to_be_bytes());
    assert_eq!(SSL_CODE, (1234 << 16) | 5679);
    assert_eq!(CANCEL_CODE, (1234 << 16) | 5678);
    assert_eq!(
        classify(&cancel(42, &[1, 2, 3, 4])),
        Ok(First::Cancel { len: 16 })
    );
    // Protocol 3.2 (PostgreSQL 18) cancel keys are up to 256 bytes.
    assert_eq!(
        classify(&cancel(42, &[7; 32])),
        Ok(First::Cancel { len: 44 })
    );
}

#[test]
fn a_startup_message_is_decided_on_its_first_8_bytes() {
    let msg = startup("alice", "db1");
    let len = msg.len() as u32;
    assert_eq!(classify(&msg), Ok(First::Startup { len, minor: 0 }));
    assert_eq!(classify(&msg[..8]), Ok(First::Startup { len, minor: 0 }));
    assert_eq!(classify(&msg[..7]), Ok(First::NeedMore(8)));
    assert_eq!(classify(&[]), Ok(First::NeedMore(1)));
    // Protocol 3.2.
    let mut v32 = msg.clone();
    v32[7] = 2;
    assert_eq!(classify(&v32), Ok(First::Startup { len, minor: 2 }));
}

#[test]
fn tls_is_decided_on_its_first_byte() {
    assert_eq!(classify(&[0x16]), Ok(First::DirectTls));
    assert_eq!(classify(&[0x16, 3, 1, 0, 200, 1]), Ok(First::DirectTls));
}

#[test]
fn other_protocols_are_refused_on_their_first_byte() {
    for first in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"SSH-2.0-OpenSSH",
        b"PROXY TCP4",
        b"\x80\x2e",
    ] {
        assert_eq!(classify(&first[..1]), Err(Invalid::Length), "{first:?}");
        assert_eq!(classify(first), Err(Invalid::Length), "{first:?}");
    }
}

#[test]
fn wrong_lengths_and_codes_are_refused() {
    // Under 8, over 10000 (decided on the third byte), a request that is not 8 bytes long.
    assert_eq!(classify(&[0, 0, 0, 7, 0, 3, 0, 0]), Err(Invalid::Length));
    assert_eq!(classify(&[0, 0, 0x28]), Err(Invalid::Length));
    assert_eq!(classify(&[0, 0, 0x27, 0x11]), Err(Invalid::Length));
    assert_eq!(
        classify(&[0, 0, 0x27, 0x10, 0, 3, 0, 0]),
        Ok(First::Startup {
            len: 10_000,
            minor: 0
        })
    );
    assert_eq!(
        classify(&[0, 0, 0, 9, 0x04, 0xd2, 0x16, 0x2f]),
        Err(Invalid::RequestLength)
    );
    assert_eq!(
        classify(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2e]),
        Err(Invalid::RequestLength)
    );
    // Protocol 2 (gone since PostgreSQL 14), an unknown request, a major version of neither.
    assert_eq!(classify(&[0, 0, 1, 0, 0, 2, 0, 0]), Err(Invalid::Code));
    assert_eq!(
        classify(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x31]),
        Err(Invalid::Code)
    );
    assert_eq!(classify(&[0, 0, 0, 8, 0x05]), Err(Invalid::Code));
    assert_eq!(classify(&[0, 0, 0, 8, 0x04, 0xd3]), Err(Invalid::Code));
    assert!(Invalid::Code.to_string().contains("not a Postgres client"));
}

proptest! {
    /// Never more than 8 bytes; a decision on a prefix is the decision on the whole; a
    /// `NeedMore` asks for more than it was given.
    #[test]
    fn decisions_are_bounded_and_stable(data in proptest::collection::vec(any::<u8>(), 0..24)) {
        let whole = classify(&data);
        if data.len() >= DECISION_BYTES {
            prop_assert!(!matches!(whole, Ok(First::NeedMore(_))));
        }
        for k in 0..=data.len() {
            match classify(&data[..k]) {
                Ok(First::NeedMore(n)) => {
                    prop_assert!(n > k && n <= DECISION_BYTES);
                }
                decided => prop_assert_eq!(decided, whole),
            }
        }
    }

    /// The same, near real messages: one byte of a request, a cancel or a startup changed.
    #[test]
    fn decisions_near_real_messages_are_stable(which in 0usize..4, at in 0usize..8, byte in any::<u8>(), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
        let mut data = match which {
            0 => SSL_REQUEST.to_vec(),
            1 => GSSENC_REQUEST.to_vec(),
            2 => cancel(7, &[1, 2, 3, 4]),
            _ => startup("u", "d"),
        };
        data[at] = byte;
        data.extend(tail);
        let whole = classify(&data);
        prop_assert!(!matches!(whole, Ok(First::NeedMore(_))));
        for k in 0..=data.len() {
            match classify(&data[..k]) {
                Ok(First::NeedMore(n)) => prop_assert!(n > k && n <= DECISION_BYTES),
                decided => prop_assert_eq!(decided, whole),
            }
        }
    }

    /// Every startup message libpq could write is a startup message of its length.
    #[test]
    fn startup_messages_are_recognised(user in "[a-z]{1,60}", db in "[a-z0-9_]{1,60}") {
        let msg = startup(&user, &db);
        prop_assert_eq!(
            classify(&msg),
            Ok(First::Startup { len: msg.len() as u32, minor: 0 })
        );
    }

    /// Every cancel of protocol 3.0 or 3.2 is a cancel, whatever its process and key.
    #[test]
    fn cancels_are_recognised(pid in any::<u32>(), key in proptest::collection::vec(any::<u8>(), 4..=256)) {
        let msg = cancel(pid, &key);
        prop_assert_eq!(classify(&msg), Ok(First::Cancel { len: msg.len() as u32 }));
    }
}
