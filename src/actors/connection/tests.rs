//! A whole connection through `serve`: told to close by a close order, or past its maximum
//! age, it closes at its time with its own reason.
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

/// A connection through `serve` to an echo upstream, on a mapping with `extra` attributes:
/// the shared state, the client's socket and the connection's future.
fn one_connection(extra: &str) -> (Arc<Shared>, TcpStream, impl Future<Output = ()>) {
    let up = echo();
    let front = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = front.local_addr().unwrap().port();
    let yaml = format!(
        "---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: m\naddress: 127.0.0.1\nport: {port}\nservice: {up}\n{extra}"
    );
    let input = crate::config::ConfigInput {
        inline: vec![("t.yaml".into(), yaml)],
        ..Default::default()
    };
    let table = Arc::new(crate::config::load(&input).unwrap().table);
    let listener = *table.listeners().keys().next().unwrap();
    let shared = Shared::for_tests(None);
    let generation = Arc::new(Generation::new(table, &shared.metrics, &shared.endpoints));
    let client = TcpStream::connect(front.local_addr().unwrap()).unwrap();
    let (accepted, peer) = front.accept().unwrap();
    let stream = crate::rt::Async::new(accepted).unwrap();
    let admission = Admission::enter(shared.clone()).unwrap();
    let conn = super::serve(stream, peer, listener, generation, admission);
    (shared, client, conn)
}

/// Echoes a ping through the relay, then waits for the close: (bytes read, time from the
/// ping's answer to the close).
fn ping_then_wait(client: &mut TcpStream) -> (usize, Duration) {
    client.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    let answered = Instant::now();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = client.read(&mut buf).unwrap_or(usize::MAX);
    (n, answered.elapsed())
}

#[test]
fn a_connection_past_its_maximum_age_closes_as_max_duration_within_its_jitter() {
    let started = Instant::now();
    let (shared, mut client, conn) = one_connection("max_connection_duration_ms: 1000\n");
    let peer_side = std::thread::spawn(move || {
        let (n, _) = ping_then_wait(&mut client);
        (n, started.elapsed())
    });
    crate::rt::block_on(conn);
    let (n, age) = peer_side.join().unwrap();
    assert_eq!(n, 0, "the client sees the close as EOF");
    // Up to 10 % early (and a coarse-clock tick): never before 0.88 s. Late only by what a
    // loaded machine adds, so the upper bound is loose: it tells "closed for its age" apart
    // from never closing, not how punctual the close was.
    assert!(
        age >= Duration::from_millis(880) && age < Duration::from_secs(10),
        "closed at the age of {age:?}; the maximum is 1 s"
    );
    let text = shared.metrics.render();
    assert!(text.contains("reason=\"max_duration\"} 1"), "{text}");
}

#[test]
fn a_spread_order_closes_an_idle_connection_after_its_first_second() {
    let (shared, mut client, conn) = one_connection("");
    let given = Instant::now() + Duration::from_millis(200);
    let orders = shared.clone();
    let peer_side = std::thread::spawn(move || {
        client.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).unwrap();
        orders.close.give(Order {
            accepted_before: Instant::now(),
            at: Instant::now(),
            spread: Duration::from_secs(30),
            close_idle: true,
        });
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = client.read(&mut buf).unwrap_or(usize::MAX);
        (n, Instant::now())
    });
    crate::rt::block_on(conn);
    let (n, closed) = peer_side.join().unwrap();
    assert_eq!(n, 0);
    let after = closed.saturating_duration_since(given);
    // Idle from the order on: closed at its first second, not somewhere in the 30 s.
    assert!(
        after < Duration::from_secs(3),
        "closed {after:?} after the order"
    );
    assert!(shared.metrics.render().contains("reason=\"retired\"} 1"));
}

#[test]
fn a_connection_given_a_close_order_closes_as_retired_at_the_ordered_time() {
    let (shared, mut client, conn) = one_connection("");
    let orders = shared.clone();
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
            spread: Duration::ZERO,
            close_idle: false,
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
