//! Upstreams that refuse or do not resolve: the client is closed promptly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::net::{self, free_port};
use common::proxy;
use common::yaml::mapping;

#[test]
fn refused_upstream_closes_the_client_within_a_second() {
    let dead = free_port(); // nothing listens there
    let (_p, port) = proxy::start_port(None, |port| {
        mapping("refused", port, format!("127.0.0.1:{dead}"))
    });
    let t = Instant::now();
    let mut s = net::connect(net::local(port));
    assert!(net::closed_within(&mut s, Duration::from_secs(2)));
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn unresolvable_name_closes_within_the_lookup_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // A resolver that knows nothing: no nameserver answers (a bound UDP socket that stays silent).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let conf = dir.path().join("resolv.conf");
    std::fs::write(
        &conf,
        format!("nameserver {}\n", silent.local_addr().unwrap()),
    )
    .unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let (_p, [port]) = proxy::start_ports(
        None,
        |[port]| mapping("nowhere", port, "no-such-service.invalid:80"),
        |b| {
            b.resolv_conf(&conf)
                .hosts_file(&hosts)
                .lookup_timeout(Duration::from_millis(500))
        },
    );
    let t = Instant::now();
    let mut s = net::connect(net::local(port));
    assert!(net::closed_within(&mut s, Duration::from_secs(3)));
    let took = t.elapsed();
    assert!(took < Duration::from_millis(1500), "took {took:?}");
}
