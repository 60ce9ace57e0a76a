//! Endpoints (SPEC section 10) against a real DNS server: dnsmasq on loopback gives one
//! name three addresses (127.0.0.11-13), each with a banner upstream on the same port that
//! writes its name, so the client sees which endpoint served it. Round robin, failover and
//! ejection of a dead endpoint, ring_hash stickiness, least_request, active health checks
//! and `max_connections_per_ip`, as a user sees them: in the bytes, `/config` and metrics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::daemon::http_get;
use common::dns::Dnsmasq;
use common::metrics::metric;
use common::net::{free_port, local};
use common::proxy::start_ports;
use common::wait::eventually;
use common::yaml::mapping_with;
use tcpmap::ProxyHandle;

const IPS: [&str; 3] = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];
const NAMES: [&str; 3] = ["A", "B", "C"];

/// A banner upstream that can be stopped (its port then refuses connections).
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    fn start(listener: TcpListener, name: &'static str) -> Server {
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        thread::spawn(move || serve(s, name));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Server {
            stop,
            thread: Some(thread),
        }
    }

    /// Closes the listening socket: connects are refused from now on.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(mut s: TcpStream, name: &str) {
    let _ = s.set_nonblocking(false);
    if s.write_all(format!("{name}\n").as_bytes()).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 || s.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = s.shutdown(Shutdown::Write);
}

/// Banner upstreams on `IPS[i]:port` for every `i` in `up` (the others stay closed), all on
/// one port free on the three addresses.
fn upstreams(up: &[usize]) -> (u16, Vec<Server>) {
    for _ in 0..50 {
        let port = free_port();
        let bound: Vec<_> = IPS
            .iter()
            .map(|ip| TcpListener::bind((*ip, port)))
            .collect();
        if bound.iter().all(Result::is_ok) {
            let servers = bound
                .into_iter()
                .enumerate()
                .filter(|(i, _)| up.contains(i))
                .map(|(i, l)| Server::start(l.unwrap(), NAMES[i]))
                .collect();
            return (port, servers);
        }
    }
    panic!("no port free on {IPS:?}");
}

/// dnsmasq with `svc.test` → the three addresses.
fn dns() -> Option<Dnsmasq> {
    let records: Vec<(&str, &str)> = IPS.iter().map(|ip| (*ip, "svc.test")).collect();
    Dnsmasq::start(&records, 60)
}

/// A proxy with mapping `svc` → `svc.test:port` plus `extra`; its listener and admin.
fn proxy(dns: &Dnsmasq, port: u16, extra: &str) -> (ProxyHandle, SocketAddr, SocketAddr) {
    let (p, [listen]) = start_ports(
        None,
        |[l]| mapping_with("svc", l, format!("svc.test:{port}"), extra),
        |b| {
            b.resolv_conf(dns.resolv_conf())
                .hosts_file(dns.hosts_file())
                .admin(local(0))
        },
    );
    let admin = p.admin_addr().unwrap();
    (p, local(listen), admin)
}

/// Connects (from `from` when given) and returns the stream and the banner it got (`None`
/// when the proxy closed the connection first).
fn hello_from(to: SocketAddr, from: Option<IpAddr>) -> (TcpStream, Option<String>) {
    let s = match from {
        None => TcpStream::connect(to).unwrap(),
        Some(ip) => {
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sock.bind(&SocketAddr::new(ip, 0).into()).unwrap();
            sock.connect(&to.into()).unwrap();
            sock.into()
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    let mut r = &s;
    loop {
        match r.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) => line.push(byte[0]),
            _ => return (s, None),
        }
    }
    (s, Some(String::from_utf8(line).unwrap()))
}

fn hello(to: SocketAddr) -> Option<String> {
    hello_from(to, None).1
}

/// The `/config` endpoints of mapping `svc`: address → (state, active).
fn endpoint_states(admin: SocketAddr) -> BTreeMap<String, (String, u64)> {
    let (status, body) = http_get(admin, "/config");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let set = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["mapping"] == "svc")
        .cloned()
        .unwrap();
    set["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["address"].as_str().unwrap().to_string(),
                (
                    e["state"].as_str().unwrap().to_string(),
                    e["active"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

fn m(p: &ProxyHandle, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut l = vec![("mapping", "svc")];
    l.extend_from_slice(labels);
    metric(&p.metrics_text(), name, &l)
}

#[test]
fn round_robin_spreads_connections_evenly() {
    let Some(dns) = dns() else { return };
    let (port, _servers) = upstreams(&[0, 1, 2]);
    let (p, listen, _) = proxy(&dns, port, "");
    let mut counts: BTreeMap<String, i32> = BTreeMap::new();
    for _ in 0..300 {
        *counts.entry(hello(listen).expect("served")).or_default() += 1;
    }
    eprintln!("round robin over 300 connections: {counts:?}");
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (name, n) in &counts {
        assert!((n - 100).abs() <= 25, "{name} got {n} of 300: {counts:?}");
    }
    assert_eq!(
        m(&p, "tcpmap_upstream_endpoints", &[("state", "healthy")]),
        3.0
    );
}

#[test]
fn a_dead_endpoint_costs_no_connection_and_is_ejected() {
    let Some(dns) = dns() else { return };
    let (port, _servers) = upstreams(&[0, 1]);
    let (p, listen, admin) = proxy(&dns, port, "");
    let mut counts: BTreeMap<String, i32> = BTreeMap::new();
    for i in 0..60 {
        let got = hello(listen).unwrap_or_else(|| panic!("connection {i} failed"));
        *counts.entry(got).or_default() += 1;
    }
    eprintln!("with C down: {counts:?}");
    assert!(!counts.contains_key("C"));
    let dead = format!("127.0.0.13:{port}");
    let states = endpoint_states(admin);
    assert_eq!(states[&dead].0, "ejected", "{states:?}");
    assert_eq!(states[&format!("127.0.0.11:{port}")].0, "healthy");
    assert_eq!(m(&p, "tcpmap_upstream_ejections_total", &[]), 1.0);
    assert_eq!(
        m(&p, "tcpmap_upstream_endpoints", &[("state", "ejected")]),
        1.0
    );
    let retries = m(&p, "tcpmap_upstream_connect_retries_total", &[]);
    eprintln!("retries before the ejection: {retries}");
    assert!(retries >= 5.0, "five failures, each retried: {retries}");
    let attempts = m(&p, "tcpmap_upstream_connect_attempts_total", &[]);
    assert_eq!(attempts, 60.0 + retries);
    // Once ejected, the dead endpoint is not tried again.
    for _ in 0..30 {
        hello(listen).unwrap();
    }
    assert_eq!(m(&p, "tcpmap_upstream_connect_retries_total", &[]), retries);
}

#[test]
fn ring_hash_keeps_a_client_on_one_endpoint_and_spreads_clients() {
    let Some(dns) = dns() else { return };
    let (port, _servers) = upstreams(&[0, 1, 2]);
    let (_p, listen, _) = proxy(
        &dns,
        port,
        "load_balancer: {policy: ring_hash, source_ip: true}\n",
    );
    let client: IpAddr = "127.0.0.50".parse().unwrap();
    let seen: BTreeSet<String> = (0..30)
        .map(|_| hello_from(listen, Some(client)).1.unwrap())
        .collect();
    assert_eq!(seen.len(), 1, "one client, one endpoint: {seen:?}");
    let mut spread: BTreeMap<String, usize> = BTreeMap::new();
    for i in 60..80u8 {
        let ip = IpAddr::from([127, 0, 0, i]);
        let first = hello_from(listen, Some(ip)).1.unwrap();
        assert_eq!(hello_from(listen, Some(ip)).1.unwrap(), first, "{ip} moved");
        *spread.entry(first).or_default() += 1;
    }
    eprintln!("ring_hash: 20 clients over the endpoints: {spread:?}");
    assert!(spread.len() >= 2, "{spread:?}");
}

#[test]
fn least_request_avoids_an_endpoint_holding_open_connections() {
    let Some(dns) = dns() else { return };
    let (port, _servers) = upstreams(&[0, 1, 2]);
    let (_p, listen, admin) = proxy(&dns, port, "load_balancer: {policy: least_request}\n");
    // Three open connections land on three endpoints (each pick takes the least loaded).
    let held: Vec<(TcpStream, String)> = (0..3)
        .map(|_| {
            let (s, name) = hello_from(listen, None);
            (s, name.unwrap())
        })
        .collect();
    let names: BTreeSet<&str> = held.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    // Keep one open, close the others.
    let mut held = held.into_iter();
    let (_busy_stream, busy) = held.next().unwrap();
    drop(held);
    let busy_ip = IPS[NAMES.iter().position(|n| *n == busy).unwrap()];
    let busy_addr = format!("{busy_ip}:{port}");
    let settled = |want_total: u64| {
        eventually(Duration::from_secs(5), || {
            let s = endpoint_states(admin);
            s[&busy_addr].1 == 1 && s.values().map(|v| v.1).sum::<u64>() == want_total
        })
    };
    assert!(settled(1), "{:?}", endpoint_states(admin));
    for _ in 0..20 {
        let (s, name) = hello_from(listen, None);
        assert_ne!(name.unwrap(), busy, "least_request chose the busy endpoint");
        drop(s);
        assert!(settled(1), "{:?}", endpoint_states(admin));
    }
}

#[test]
fn an_active_health_check_marks_a_stopped_endpoint_unhealthy_and_sends_it_nothing() {
    let Some(dns) = dns() else { return };
    let (port, mut servers) = upstreams(&[0, 1, 2]);
    let (interval_ms, threshold) = (100u64, 2u64);
    let (p, listen, admin) = proxy(
        &dns,
        port,
        &format!(
            "health_check: {{interval_ms: {interval_ms}, timeout_ms: 100, unhealthy_threshold: {threshold}, healthy_threshold: 1}}\n"
        ),
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            let s = endpoint_states(admin);
            s.len() == 3 && s.values().all(|v| v.0 == "healthy")
        }),
        "the health checker resolved and probed: {:?}",
        endpoint_states(admin)
    );
    let stopped = format!("127.0.0.13:{port}");
    servers[2].stop();
    let t0 = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || endpoint_states(admin)[&stopped]
            .0
            == "unhealthy"),
        "{:?}",
        endpoint_states(admin)
    );
    let took = t0.elapsed();
    eprintln!(
        "unhealthy after {} ms (interval {interval_ms} ms × threshold {threshold} = {} ms)",
        took.as_millis(),
        interval_ms * threshold
    );
    // A loaded machine delays the probe rounds; the bound is interval × threshold plus a
    // generous allowance for scheduling, not a speed measurement.
    assert!(took < Duration::from_millis(interval_ms * threshold) + Duration::from_secs(2));
    assert!(eventually(Duration::from_secs(2), || m(
        &p,
        "tcpmap_upstream_endpoints",
        &[("state", "unhealthy")]
    ) == 1.0));
    let attempts = m(&p, "tcpmap_upstream_connect_attempts_total", &[]);
    let retries = m(&p, "tcpmap_upstream_connect_retries_total", &[]);
    for _ in 0..30 {
        assert_ne!(hello(listen).expect("served"), "C");
    }
    assert_eq!(
        m(&p, "tcpmap_upstream_connect_attempts_total", &[]),
        attempts + 30.0,
        "one attempt per connection: none went to the stopped endpoint"
    );
    assert_eq!(m(&p, "tcpmap_upstream_connect_retries_total", &[]), retries);
}

#[test]
fn max_connections_per_ip_refuses_the_fourth_from_one_address_only() {
    let Some(dns) = dns() else { return };
    let (port, _servers) = upstreams(&[0, 1, 2]);
    let (p, listen, _) = proxy(&dns, port, "max_connections_per_ip: 3\n");
    let one: IpAddr = "127.0.0.50".parse().unwrap();
    let other: IpAddr = "127.0.0.51".parse().unwrap();
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let (s, name) = hello_from(listen, Some(one));
            assert!(name.is_some());
            s
        })
        .collect();
    let (_refused, name) = hello_from(listen, Some(one));
    assert_eq!(
        name, None,
        "the fourth connection from {one} is closed at once"
    );
    let (_served, name) = hello_from(listen, Some(other));
    assert!(name.is_some(), "{other} is served");
    assert_eq!(m(&p, "tcpmap_connections_refused_per_ip_total", &[]), 1.0);
    assert!(m(&p, "tcpmap_connections_ended_total", &[("reason", "limit")]) >= 1.0);
    // A closed connection gives its slot back.
    held.pop();
    assert!(eventually(Duration::from_secs(5), || {
        hello_from(listen, Some(one)).1.is_some()
    }));
}
