//! The control channel codec: frames round trip, bad frames are errors.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
use super::*;
use proptest::prelude::*;

fn samples() -> Vec<ToWorker> {
    vec![
        ToWorker::Commit,
        ToWorker::Abort,
        ToWorker::Metrics,
        ToWorker::Keep,
        ToWorker::Status,
        ToWorker::Shutdown {
            graceful: true,
            drain_timeout_ms: 30_000,
        },
        ToWorker::Hello {
            id: 3,
            settings: Settings {
                max_connections: Some(10),
                handshake_timeout_ms: 250,
                zero_copy: false,
                resolv_conf: "/etc/resolv.conf".into(),
                drain_timeout_ms: 30_000,
                drain_spread: true,
                dont_log_null: true,
            },
            tickets: Some(TicketKeys::generate(1).unwrap()),
        },
        ToWorker::TicketKeys {
            keys: TicketKeys::generate(2).unwrap().rotated(3).unwrap(),
        },
    ]
}

#[test]
fn every_message_survives_a_round_trip() {
    for msg in samples() {
        let frame = encode(&msg).unwrap();
        let (back, used): (ToWorker, usize) = decode(&frame).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(format!("{back:?}"), format!("{msg:?}"));
    }
    let reply = FromWorker::Status {
        generation: 7,
        active: 2,
        endpoints: vec![crate::state::endpoints::EndpointSet {
            mapping: "db".into(),
            namespace: "default".into(),
            port: 5432,
            host: String::new(),
            service: "db:5432".into(),
            endpoints: vec![crate::state::endpoints::EndpointRow {
                address: "10.0.0.1:5432".into(),
                state: "ejected".into(),
                active: 3,
                connect_failures: 5,
                last_check: Some(crate::state::endpoints::LastCheck {
                    ok: false,
                    at_unix_ms: 1_700_000_000_000,
                }),
            }],
        }],
        mappings: vec![crate::admin::status::MappingTotals {
            mapping: "db".into(),
            namespace: "default".into(),
            port: 5432,
            accepted: 9,
            bytes_client_to_upstream: 1 << 40,
            ended: [("client_closed".to_string(), 6)].into(),
            active: 3,
            ..Default::default()
        }],
        counts: true,
    };
    let frame = encode(&reply).unwrap();
    assert_eq!(decode::<FromWorker>(&frame).unwrap().unwrap().0, reply);
}

fn worker_errors() -> Vec<WorkerError> {
    vec![
        WorkerError::AlreadyStarted,
        WorkerError::TicketKeys("rng".into()),
        WorkerError::Config(vec!["a.yaml:3: bad".into(), "b.yaml:1: worse".into()]),
        WorkerError::NothingPrepared,
        WorkerError::Listener {
            addr: "127.0.0.1:8443".parse().unwrap(),
            cause: "address in use".into(),
        },
        WorkerError::ShuttingDown,
        WorkerError::Injected,
        WorkerError::Other("from an older worker".into()),
    ]
}

#[test]
fn every_failure_survives_a_round_trip_typed() {
    for error in worker_errors() {
        let reply = FromWorker::failed(error.clone());
        let frame = encode(&reply).unwrap();
        let (back, _): (FromWorker, _) = decode(&frame).unwrap().unwrap();
        assert_eq!(back, reply);
        let pool = PoolError::expect(4, Ok(back), |_| false).unwrap_err();
        assert!(
            matches!(&pool, PoolError::Refused { id: 4, error: e } if *e == error),
            "{pool:?}"
        );
        assert_eq!(pool.to_string(), format!("worker 4: {error}"));
    }
}

#[test]
fn failures_cross_binaries_of_either_age() {
    // An older worker sends only the words: they arrive as `Other`.
    let old = br#"{"Failed":{"message":"nothing prepared"}}"#;
    let mut frame = (old.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(old);
    let (reply, _): (FromWorker, _) = decode(&frame).unwrap().unwrap();
    let pool = PoolError::expect(0, Ok(reply), |_| false).unwrap_err();
    assert!(matches!(
        pool,
        PoolError::Refused { error: WorkerError::Other(ref m), .. } if m == "nothing prepared"
    ));
    // An older Supervisor reads `message` and ignores the typed field.
    #[derive(Deserialize)]
    enum OldFromWorker {
        Failed { message: String },
    }
    let frame = encode(&FromWorker::failed(WorkerError::NothingPrepared)).unwrap();
    let (OldFromWorker::Failed { message }, _) = decode(&frame).unwrap().unwrap();
    assert_eq!(message, "nothing prepared");
}

#[test]
fn the_pool_says_which_worker_and_what_went_wrong() {
    let unexpected = PoolError::expect(1, Ok(FromWorker::Aborted), |r| *r == FromWorker::Prepared);
    assert!(matches!(
        unexpected,
        Err(PoolError::Unexpected { id: 1, .. })
    ));
    let gone = std::io::Error::other("worker gone");
    let channel = PoolError::expect(2, Err(gone), |_| true).unwrap_err();
    assert_eq!(channel.to_string(), "worker 2: worker gone");
    assert!(PoolError::expect(3, Ok(FromWorker::Prepared), |r| *r == FromWorker::Prepared).is_ok());
}

#[test]
fn ticket_keys_arrive_whole_and_an_old_handover_still_decodes() {
    let keys = TicketKeys::generate(1).unwrap().rotated(2).unwrap();
    let frame = encode(&ToWorker::TicketKeys { keys: keys.clone() }).unwrap();
    let (back, _): (ToWorker, _) = decode(&frame).unwrap().unwrap();
    assert!(matches!(back, ToWorker::TicketKeys { keys: k } if k == keys));
    // A Handover from a binary without ticket keys.
    let old = br#"{"Handover":{"listeners":["127.0.0.1:80"],"admin":false}}"#;
    let mut frame = (old.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(old);
    let (msg, _): (Upgrade, _) = decode(&frame).unwrap().unwrap();
    assert!(matches!(msg, Upgrade::Handover { tickets: None, .. }));
}

#[test]
fn a_partial_frame_asks_for_more_and_a_huge_one_is_refused() {
    let frame = encode(&FromWorker::Drained).unwrap();
    for cut in 0..frame.len() {
        assert!(
            decode::<FromWorker>(&frame[..cut]).unwrap().is_none(),
            "{cut}"
        );
    }
    let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
    assert_eq!(
        decode::<FromWorker>(&huge),
        Err(CodecError::TooLong(MAX_FRAME + 1))
    );
}

#[test]
fn two_frames_in_one_buffer_come_out_in_order() {
    let mut buf = encode(&FromWorker::Ready).unwrap();
    buf.extend(encode(&FromWorker::Prepared).unwrap());
    let (a, used): (FromWorker, _) = decode(&buf).unwrap().unwrap();
    let (b, _): (FromWorker, _) = decode(&buf[used..]).unwrap().unwrap();
    assert_eq!((a, b), (FromWorker::Ready, FromWorker::Prepared));
}

proptest! {
    #[test]
    fn decode_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode::<ToWorker>(&bytes);
        let _ = decode::<FromWorker>(&bytes);
    }

    #[test]
    fn a_valid_prefix_with_any_body_is_total(body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut buf = (body.len() as u32).to_be_bytes().to_vec();
        buf.extend(&body);
        match decode::<FromWorker>(&buf) {
            Ok(Some((_, used))) => prop_assert_eq!(used, buf.len()),
            Ok(None) => prop_assert!(false, "a whole frame asked for more"),
            Err(_) => {}
        }
    }

    #[test]
    fn failures_round_trip(message in ".{0,40}", generation in any::<u64>()) {
        let typed = FromWorker::failed(WorkerError::Other(message.clone()));
        let untyped = FromWorker::Failed { message, error: None };
        let committed = FromWorker::Committed { generation, keeps: generation % 2 == 0 };
        for reply in [typed, untyped, committed] {
            let frame = encode(&reply).unwrap();
            prop_assert_eq!(decode::<FromWorker>(&frame).unwrap().unwrap().0, reply);
        }
    }
}
