//! Panics injected inside actors stay inside them (needs `--features fault-injection`):
//! a panicking connection ends alone, the listener loop restarts, the resolver restarts and
//! its caller gets an error instead of hanging.
#![cfg(feature = "fault-injection")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::net::{self, free_port};
use common::proxy;
use tcpmap::fault;

/// The hooks are process-wide: run these tests one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn plain(name: &str, port: u16, service: &str) -> String {
    format!(
        "---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: {name}\naddress: 127.0.0.1\nport: {port}\nservice: {service}\n"
    )
}

/// The value of the Prometheus sample `line_prefix` (0 when absent).
fn sample(text: &str, line_prefix: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

#[test]
fn a_panicking_connection_ends_alone() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let up = net::echo("127.0.0.1:0");
    let (bad, good) = (free_port(), free_port());
    let yaml = plain(fault::PANIC_MAPPING, bad, &up.addr.to_string())
        + &plain("good", good, &up.addr.to_string());
    let proxy = proxy::start(&yaml, None);
    let mut bystander = net::connect(local(good));
    net::roundtrip(&mut bystander, b"before");

    let mut victim = net::connect(local(bad));
    assert!(
        net::closed_within(&mut victim, Duration::from_secs(3)),
        "the panicking connection stayed open"
    );
    // The socket closes while the task unwinds; the catch that counts it runs just after.
    let counted = proxy::eventually(Duration::from_secs(2), || {
        sample(
            &proxy.metrics_text(),
            "tcpmap_internal_errors_total{what=\"connection\"}",
        ) == 1
    });
    assert!(counted, "{}", proxy.metrics_text());
    // The panic came after routing, so the connection had been counted for its mapping:
    // the unwinding gives that back (active to 0) and ends it as `internal`, once.
    let text = proxy.metrics_text();
    let series = format!(
        "{{mapping=\"{}\",namespace=\"default\",port=\"{bad}\",host=\"\"}}",
        fault::PANIC_MAPPING
    );
    assert_eq!(
        sample(&text, &format!("tcpmap_connections_accepted_total{series}")),
        1,
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("tcpmap_connections_active{series}")),
        0,
        "{text}"
    );
    let ended = format!(
        "tcpmap_connections_ended_total{{mapping=\"{}\",namespace=\"default\",port=\"{bad}\",host=\"\",reason=\"internal\"}}",
        fault::PANIC_MAPPING
    );
    assert_eq!(sample(&text, &ended), 1, "{text}");
    net::roundtrip(&mut bystander, b"after");
    let mut fresh = net::connect(local(good));
    net::roundtrip(&mut fresh, b"new connection");
    assert!(proxy.ready());
}

#[test]
fn the_listener_loop_restarts_after_a_panic() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let up = net::echo("127.0.0.1:0");
    let port = free_port();
    let proxy = proxy::start(&plain("plain", port, &up.addr.to_string()), None);
    let mut open = net::connect(local(port));
    net::roundtrip(&mut open, b"open before");

    fault::PANIC_NEXT_ACCEPT.store(true, Ordering::SeqCst);
    // The accepted socket is lost with the panic; the loop comes back on the same socket.
    let mut lost = net::connect(local(port));
    assert!(net::closed_within(&mut lost, Duration::from_secs(3)));
    assert!(!fault::PANIC_NEXT_ACCEPT.load(Ordering::SeqCst));
    let restarted = proxy::eventually(Duration::from_secs(3), || {
        sample(
            &proxy.metrics_text(),
            "tcpmap_actor_restarts_total{actor=\"listener\"}",
        ) == 1
    });
    assert!(restarted, "{}", proxy.metrics_text());
    let mut after = net::connect(local(port));
    net::roundtrip(&mut after, b"served after the restart");
    net::roundtrip(&mut open, b"the open one too");
}

#[test]
fn the_resolver_restarts_and_its_caller_does_not_hang() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // A name only DNS can answer; the nameserver is a loopback port nobody reads.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        format!("nameserver {}\n", dead.local_addr().unwrap()),
    )
    .unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "").unwrap();
    let up = net::echo("127.0.0.1:0");
    let (by_name, by_ip) = (free_port(), free_port());
    let yaml = plain("by-name", by_name, "upstream.fault-test.example:9")
        + &plain("by-ip", by_ip, &up.addr.to_string());
    let proxy = proxy::start_with(&yaml, None, |b| {
        b.resolv_conf(&resolv)
            .hosts_file(&hosts)
            .lookup_timeout(Duration::from_millis(300))
    });

    fault::PANIC_NEXT_RESOLVE.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    let mut c = net::connect(local(by_name));
    assert!(net::closed_within(&mut c, Duration::from_secs(5)));
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "the caller waited {:?}",
        t0.elapsed()
    );
    assert!(!fault::PANIC_NEXT_RESOLVE.load(Ordering::SeqCst));
    let restarted = proxy::eventually(Duration::from_secs(3), || {
        sample(
            &proxy.metrics_text(),
            "tcpmap_actor_restarts_total{actor=\"resolver\"}",
        ) == 1
    });
    assert!(restarted, "{}", proxy.metrics_text());
    // The new resolver task answers (here: a bounded timeout, then close).
    let t1 = Instant::now();
    let mut c = net::connect(local(by_name));
    assert!(net::closed_within(&mut c, Duration::from_secs(5)));
    assert!(t1.elapsed() < Duration::from_secs(2));
    let mut ok = net::connect(local(by_ip));
    net::roundtrip(&mut ok, b"ip literal still served");
    assert!(proxy.metrics().dns_lookups >= 2);
}

/// A reload that one worker cannot apply fails whole: every worker keeps the old config, the
/// port it would have added is not served, and the next good reload applies.
#[test]
fn a_reload_one_worker_cannot_apply_changes_no_worker() {
    use common::daemon::{Daemon, http_get, write_atomic};
    let a = net::banner("127.0.0.1:0", "A");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let (d, [port]) = Daemon::run_yaml(
        &cfg,
        |[port]| plain("m", port, &a.addr.to_string()),
        &["--workers", "2", "--admin", "127.0.0.1:0"],
    );
    let generations = || -> Vec<u64> {
        let (_, body) = http_get(d.admin_addr(), "/config");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["generation"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(generations(), vec![1, 1]);
    let extra = free_port();
    write_atomic(
        &cfg,
        &(plain("m", port, &a.addr.to_string())
            + &plain(fault::FAIL_PREPARE_MAPPING, extra, &a.addr.to_string())),
    );
    let mark = d.mark();
    d.signal(libc::SIGHUP);
    let line = d
        .wait_for(mark, "reload rejected", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("not rejected:\n{}", d.log()));
    assert!(line.contains("could not apply"), "{line}");
    assert_eq!(generations(), vec![1, 1]);
    assert!(
        std::net::TcpStream::connect(local(extra)).is_err(),
        "the rejected config's port is served"
    );
    let mut s = net::connect(local(port));
    assert_eq!(net::read_line(&mut s), "A");
    // The next good reload reaches both.
    write_atomic(&cfg, &plain("m", port, &a.addr.to_string()));
    let mark = d.mark();
    d.signal(libc::SIGHUP);
    d.wait_for(mark, "reload applied", Duration::from_secs(10))
        .unwrap();
    assert_eq!(generations(), vec![2, 2]);
}
