//! Faults that must not spread: an upstream reset ends one connection; a dead nameserver
//! delays only its lookups; unreadable secrets or a taken port reject a reload while the old
//! config keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::net;
use common::pki::{Ca, write_secret};
use common::proxy;
use common::yaml::{mapping, mapping_with, tls_context};

/// An upstream that echoes, except that a message starting with `RST` makes it reset the
/// connection (SO_LINGER 0, then close).
fn resetting_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if buf[..n].starts_with(b"RST") {
                        socket2::SockRef::from(&s)
                            .set_linger(Some(Duration::ZERO))
                            .unwrap();
                        return; // dropped with linger 0: RST
                    }
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn upstream_reset_mid_stream_ends_only_that_connection() {
    let up = resetting_echo();
    let (proxy, port) = proxy::start_port(None, |port| mapping("rst", port, up));
    let mut victim = net::connect(net::local(port));
    let mut bystander = net::connect(net::local(port));
    net::roundtrip(&mut victim, b"before");
    net::roundtrip(&mut bystander, b"before");
    victim.write_all(b"RST now").unwrap();
    assert!(
        net::closed_within(&mut victim, Duration::from_secs(3)),
        "the reset connection stayed open"
    );
    for i in 0..10u8 {
        net::roundtrip(&mut bystander, &[i; 512]);
    }
    let mut later = net::connect(net::local(port));
    net::roundtrip(&mut later, b"a new connection");
    assert!(proxy.ready());
}

#[test]
fn dead_nameserver_bounds_the_failure_to_the_lookup_timeout() {
    // A nameserver that never answers: a bound UDP socket that only reads the queries (to
    // know when a lookup is in flight) and never replies.
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        format!(
            "nameserver {}\noptions timeout:1 attempts:1\n",
            dead.local_addr().unwrap()
        ),
    )
    .unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let up = net::echo("127.0.0.1:0");
    let (proxy, [dns_port, ip_port]) = proxy::start_ports(
        None,
        |[dns_port, ip_port]| {
            mapping("by-name", dns_port, "upstream.tcpmap-test.example:9")
                + &mapping("by-ip", ip_port, up.addr)
        },
        |b| {
            b.resolv_conf(&resolv)
                .hosts_file(&hosts)
                .lookup_timeout(Duration::from_millis(500))
        },
    );

    let t0 = Instant::now();
    let stuck = std::thread::spawn(move || {
        let mut c = net::connect(net::local(dns_port));
        let _ = c.write_all(b"anyone?");
        let closed = net::closed_within(&mut c, Duration::from_secs(5));
        (closed, t0.elapsed())
    });
    // Wait (bounded) until the proxy's query reaches the dead nameserver: the lookup is then
    // in flight, and stays so, since nothing ever answers.
    dead.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut query = [0u8; 512];
    let (n, _) = dead
        .recv_from(&mut query)
        .expect("no DNS query reached the dead nameserver within 3 s");
    assert!(n >= 12, "a DNS query has a 12-byte header, got {n} bytes");
    // While that lookup hangs, the IP-literal mapping answers at once.
    let t1 = Instant::now();
    let mut c = net::connect(net::local(ip_port));
    net::roundtrip(&mut c, b"fast path");
    assert!(
        t1.elapsed() < Duration::from_millis(300),
        "IP mapping took {:?}",
        t1.elapsed()
    );
    let (closed, took) = stuck.join().unwrap();
    assert!(
        closed,
        "the connection to the unresolvable name stayed open"
    );
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(2000),
        "closed after {took:?}, expected about the 500 ms lookup timeout"
    );
    assert!(proxy.metrics().dns_failures >= 1);
    // And again: bounded every time (no stuck waiter left behind).
    let t2 = Instant::now();
    let mut c = net::connect(net::local(dns_port));
    assert!(net::closed_within(&mut c, Duration::from_secs(3)));
    assert!(t2.elapsed() < Duration::from_millis(2000));
    drop(dead);
}

/// A terminating mapping for `my-host-1` from secret `s1` in `dir`.
fn tls_yaml(port: u16, up: SocketAddr) -> String {
    tls_context("ctx", "hosts: [my-host-1]\nsecret: s1\n")
        + &mapping_with("term", port, up, "host: my-host-1\n")
}

fn served_cert(port: u16, client: std::sync::Arc<rustls::ClientConfig>) -> Vec<u8> {
    let mut tls = net::tls_connect(net::local(port), "my-host-1", client).unwrap();
    net::roundtrip(&mut tls, b"tls works");
    tls.conn.peer_certificates().unwrap()[0].to_vec()
}

#[test]
fn unreadable_secret_at_reload_is_rejected_and_the_old_certificate_keeps_serving() {
    let ca = Ca::new("faults CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf(&["my-host-1"]);
    write_secret(dir.path(), "s1", &cert, &key);
    let up = net::echo("127.0.0.1:0");
    let (proxy, port) = proxy::start_port(Some(dir.path()), |port| tls_yaml(port, up.addr));
    let client = net::tls_client_config(&ca.cert_pem(), None);
    let old = served_cert(port, client.clone());

    // A new certificate whose key cannot be read (the key path is now a directory: root
    // reads any file whatever its mode, so a mode change would prove nothing here).
    let (new_cert, _) = ca.leaf(&["my-host-1", "other"]);
    let secret = dir.path().join("s1");
    std::fs::write(secret.join("tls.crt"), new_cert).unwrap();
    std::fs::remove_file(secret.join("tls.key")).unwrap();
    std::fs::create_dir(secret.join("tls.key")).unwrap();
    let err = proxy::block_on(proxy.reload()).expect_err("reload with an unreadable key applied");
    assert!(err.to_string().contains("tls.key"), "{err}");
    assert_eq!(served_cert(port, client.clone()), old);

    // Missing altogether: rejected as well.
    std::fs::remove_dir(secret.join("tls.key")).unwrap();
    assert!(proxy::block_on(proxy.reload()).is_err());
    assert_eq!(served_cert(port, client), old);
    assert!(proxy.metrics().reloads_error >= 2);
}

#[test]
fn port_taken_at_reload_is_rejected_and_the_old_config_keeps_serving() {
    let up = net::echo("127.0.0.1:0");
    let (proxy, port) = proxy::start_port(None, |port| mapping("one", port, up.addr));
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    let yaml = mapping("one", port, up.addr) + &mapping("two", taken, up.addr);
    let err = proxy::block_on(proxy.apply(yaml)).expect_err("reload onto a taken port applied");
    assert!(err.to_string().contains(&taken.to_string()), "{err}");
    let mut c = net::connect(net::local(port));
    net::roundtrip(&mut c, b"old config serves");
    let routes = proxy::block_on(proxy.routes()).unwrap();
    assert!(
        routes.listeners().iter().all(|a| a.port() != taken),
        "the rejected listener is in the active table"
    );
    // The squatter still owns its port: nobody else accepted there.
    squatter.set_nonblocking(true).unwrap();
    let _probe = TcpStream::connect(net::local(taken)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(squatter.accept().is_ok());
}
