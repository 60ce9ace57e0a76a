//! A whole connection through `serve`: told to close by its generation, it closes at the
//! ordered time with its own reason.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::close::Order;
use crate::actors::Admission;
use crate::actors::{Generation, Shared};

/// An upstream that echoes every connection until its EOF.
fn echo() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = s.read(&mut buf) {
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_connection_given_a_close_order_closes_as_retired_at_the_ordered_time() {
    let up = echo();
    let front = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = front.local_addr().unwrap().port();
    let yaml = format!(
        "---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: m\naddress: 127.0.0.1\nport: {port}\nservice: {up}\n"
    );
    let input = crate::config::ConfigInput {
        inline: vec![("t.yaml".into(), yaml)],
        ..Default::default()
    };
    let table = Arc::new(crate::config::load(&input).unwrap().table);
    let listener = *table.listeners().keys().next().unwrap();
    let shared = Shared::for_tests(None);
    let generation = Arc::new(Generation::new(table, &shared.metrics, &shared.endpoints));

    let mut client = TcpStream::connect(front.local_addr().unwrap()).unwrap();
    let (accepted, peer) = front.accept().unwrap();
    let stream = crate::rt::Async::new(accepted).unwrap();
    let admission = Admission::enter(shared.clone()).unwrap();
    let conn = super::serve(stream, peer, listener, generation.clone(), admission);

    let orders = generation.clone();
    let peer_side = std::thread::spawn(move || {
        // The relay is up and moving bytes before the order.
        client.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        let given = Instant::now();
        orders.close.give(Order {
            accepted_before: given,
            at: given + Duration::from_millis(300),
        });
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = client.read(&mut buf).unwrap_or(usize::MAX);
        (n, given.elapsed())
    });
    crate::rt::block_on(conn);
    let (n, took) = peer_side.join().unwrap();
    assert_eq!(n, 0, "the client sees the close as EOF");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "closed {took:?} after the order, which said 300 ms"
    );
    let text = shared.metrics.render();
    assert!(text.contains("reason=\"retired\"} 1"), "{text}");
    assert!(!text.contains("reason=\"shutdown\"} 1"), "{text}");
}
