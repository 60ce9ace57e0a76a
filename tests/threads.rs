//! The embedding library's data plane runs on N threads (`ProxyBuilder::workers`): connections
//! are taken by more than one thread, a reload reaches every thread, a rejected one none, and
//! a shutdown stops every thread (the port refuses, held connections end at the drain
//! timeout). Which thread holds a connection is read from the admin `/config` view
//! (`threads`: each thread's name and the connections open on it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::daemon::http_get;
use common::net::{self, banner, read_line};
use common::yaml::mapping;

/// Each data-plane thread's name and open connections, from `/config`.
fn threads(admin: SocketAddr) -> Vec<(String, u64)> {
    let (status, body) = http_get(admin, "/config");
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["threads"]
        .as_array()
        .unwrap_or_else(|| panic!("no threads in /config: {json}"))
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["connections"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A connection through the proxy that its upstream greeted with `NAME` (so the proxy has
/// accepted it, routed it and connected it): returns the greeting.
fn open(port: u16) -> (TcpStream, String) {
    let mut s = net::connect(net::local(port));
    let name = read_line(&mut s);
    (s, name)
}

/// Opens connections in rounds of 16 until every thread holds one (up to 256): the
/// threads race for each connection, so the split is not fixed, but a thread that never
/// wins one in 256 is not serving. Returns the connections (held open).
fn spread(admin: SocketAddr, port: u16, expect: &str) -> Vec<TcpStream> {
    let base = threads(admin);
    let mut held = Vec::new();
    while held.len() < 256 {
        let round: Vec<_> = (0..16)
            .map(|_| std::thread::spawn(move || open(port)))
            .collect();
        for t in round {
            let (s, name) = t.join().unwrap();
            assert_eq!(name, expect, "answered by the wrong upstream");
            held.push(s);
        }
        let view = threads(admin);
        if view.iter().zip(&base).all(|(now, was)| now.1 > was.1) {
            return held;
        }
    }
    panic!(
        "after {} connections not every thread took one: {:?}",
        held.len(),
        threads(admin)
    );
}

fn start(yaml: String, workers: usize) -> tcpmap::ProxyHandle {
    tcpmap::ProxyBuilder::new()
        .config_yaml("threads.yaml", yaml)
        .admin("127.0.0.1:0".parse().unwrap())
        .workers(workers)
        .drain_timeout(Duration::from_secs(1))
        .start_blocking()
        .unwrap()
}

#[test]
fn connections_are_served_by_every_thread() {
    let up = banner("127.0.0.1:0", "up");
    let port = net::free_port();
    let proxy = start(mapping("spread", port, up.addr), 2);
    let admin = proxy.admin_addr().unwrap();
    let view = threads(admin);
    assert_eq!(view.len(), 2, "{view:?}");
    assert_ne!(view[0].0, view[1].0, "two threads, two names");
    let mut held = spread(admin, port, "up");
    // Every connection relays both ways, whichever thread holds it.
    for s in &mut held {
        net::roundtrip(s, b"ping");
    }
    drop(held);
    // Closed connections leave their thread's count.
    assert!(
        common::wait::eventually(Duration::from_secs(5), || threads(admin)
            .iter()
            .all(|t| t.1 == 0)),
        "{:?}",
        threads(admin)
    );
    tcpmap::block_on(proxy.shutdown(true)).unwrap();
}

#[test]
fn one_thread_serves_everything_with_workers_1() {
    let up = banner("127.0.0.1:0", "solo");
    let port = net::free_port();
    let proxy = start(mapping("solo", port, up.addr), 1);
    let admin = proxy.admin_addr().unwrap();
    let held: Vec<_> = (0..8).map(|_| open(port)).collect();
    assert!(held.iter().all(|(_, name)| name == "solo"));
    let view = threads(admin);
    assert_eq!(view.len(), 1, "{view:?}");
    assert_eq!(view[0].1, 8, "{view:?}");
    drop(held);
    tcpmap::block_on(proxy.shutdown(false)).unwrap();
}

#[test]
fn a_reload_reaches_every_thread_and_a_rejected_one_none() {
    let (a, b) = (banner("127.0.0.1:0", "a"), banner("127.0.0.1:0", "b"));
    let (port, second) = (net::free_port(), net::free_port());
    let proxy = start(mapping("m", port, a.addr), 2);
    let admin = proxy.admin_addr().unwrap();
    let before = spread(admin, port, "a");
    // Retarget the listener to b and add a second one: on every thread, new connections on
    // the kept port reach b (those open stay with a), and the new port is served.
    let yaml = mapping("m", port, b.addr) + &mapping("n", second, b.addr);
    tcpmap::block_on(proxy.apply(yaml)).unwrap();
    let after = spread(admin, port, "b");
    let on_second = spread(admin, second, "b");
    for mut s in before {
        net::roundtrip(&mut s, b"still a");
    }
    // A reload that cannot bind (a port in use) changes nothing on any thread.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let yaml = mapping("m", port, a.addr) + &mapping("z", busy_port, a.addr);
    assert!(tcpmap::block_on(proxy.apply(yaml)).is_err());
    let still = spread(admin, port, "b");
    assert!(TcpStream::connect(net::local(second)).is_ok());
    drop((after, on_second, still));
    tcpmap::block_on(proxy.shutdown(false)).unwrap();
}

#[test]
fn shutdown_stops_every_thread() {
    let up = banner("127.0.0.1:0", "up");
    let port = net::free_port();
    let proxy = start(mapping("drain", port, up.addr), 2);
    let admin = proxy.admin_addr().unwrap();
    let mut held = spread(admin, port, "up");
    let started = Instant::now();
    // Graceful, with connections held open on both threads: they end at the drain timeout.
    tcpmap::block_on(proxy.shutdown(true)).unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "shutdown took {took:?}"
    );
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 1];
        let _ = s.write_all(b"x");
        assert!(
            matches!(s.read(&mut b), Ok(0) | Err(_)),
            "a connection outlived the drain"
        );
    }
    assert!(
        TcpStream::connect(net::local(port)).is_err(),
        "the port still accepts after shutdown"
    );
}
