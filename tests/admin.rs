//! The `--admin` endpoints of the real binary: liveness, readiness (200 serving, 503 while
//! draining), Prometheus `/metrics` that move with traffic per mapping, `/config` JSON, 404,
//! and a stalled admin client does not stall the data plane or other admin clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::daemon::{Daemon, http_get};
use common::metrics::{check_format, metric};
use common::net;
use common::yaml::mapping;

#[test]
fn admin_endpoints_report_what_the_proxy_does() {
    let (a, b) = (net::echo("127.0.0.1:0"), net::echo("127.0.0.1:0"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let (mut d, [p1, p2]) = Daemon::run_yaml(
        &cfg,
        |[p1, p2]| mapping("busy", p1, a.addr) + &mapping("idle", p2, b.addr),
        &["--admin", "127.0.0.1:0", "--drain-timeout", "5"],
    );
    let admin = d.admin_addr();

    assert_eq!(http_get(admin, "/ambassador/v0/check_alive").0, 200);
    assert_eq!(http_get(admin, "/ambassador/v0/check_ready").0, 200);
    assert_eq!(http_get(admin, "/nope").0, 404);

    // /config: JSON with the generation and the active table.
    let (status, body) = http_get(admin, "/config");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["generation"].as_u64(), Some(1), "{json}");
    assert_eq!(json["last_reload"]["ok"], true, "{json}");
    assert!(body.contains("busy") && body.contains("idle"), "{body}");

    // /metrics before and after traffic on `busy` only.
    let before = http_get(admin, "/metrics").1;
    assert!(check_format(&before) > 0);
    let busy = [("mapping", "busy")];
    let idle = [("mapping", "idle")];
    let acc = "tcpmap_connections_accepted_total";
    let bytes = "tcpmap_bytes_total";
    for i in 0..5 {
        let mut s = net::connect(net::local(p1));
        net::roundtrip(&mut s, format!("hello {i:03}").as_bytes());
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(net::closed_within(&mut s, Duration::from_secs(3)));
    }
    let after = common::wait::eventually(Duration::from_secs(3), || {
        let t = http_get(admin, "/metrics").1;
        metric(&t, acc, &busy) >= 5.0
            && metric(
                &t,
                bytes,
                &[("mapping", "busy"), ("direction", "client_to_upstream")],
            ) >= 45.0
    });
    let text = http_get(admin, "/metrics").1;
    assert!(after, "busy counters did not rise:\n{text}");
    check_format(&text);
    assert_eq!(metric(&text, acc, &busy) - metric(&before, acc, &busy), 5.0);
    let up = [("mapping", "busy"), ("direction", "client_to_upstream")];
    let down = [("mapping", "busy"), ("direction", "upstream_to_client")];
    assert_eq!(metric(&text, bytes, &up), 45.0, "{text}");
    assert_eq!(metric(&text, bytes, &down), 45.0, "{text}");
    assert_eq!(
        metric(&text, acc, &idle),
        0.0,
        "idle mapping moved:\n{text}"
    );
    assert_eq!(metric(&text, bytes, &[("mapping", "idle")]), 0.0);
    assert_eq!(metric(&text, "tcpmap_config_generation", &[]), 1.0);
    assert_eq!(
        metric(&text, "tcpmap_config_reloads_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(metric(&text, "tcpmap_connections_active", &busy), 0.0);

    // A stalled admin client (half a request, then silence) stalls neither the data plane
    // nor other admin clients.
    let mut stalled = TcpStream::connect(admin).unwrap();
    stalled.write_all(b"GET /metrics HTTP/1.1\r\nHo").unwrap();
    let mut s = net::connect(net::local(p2));
    net::roundtrip(&mut s, b"data plane is fine");
    assert_eq!(http_get(admin, "/ambassador/v0/check_alive").0, 200);

    // During a drain: alive, not ready.
    let mark = d.mark();
    d.signal(libc::SIGTERM);
    d.wait_for(mark, "shutting down graceful=", Duration::from_secs(5))
        .unwrap();
    assert_eq!(http_get(admin, "/ambassador/v0/check_ready").0, 503);
    assert_eq!(http_get(admin, "/ambassador/v0/check_alive").0, 200);
    drop(s);
    assert_eq!(d.wait_exit(Duration::from_secs(5)).unwrap().code(), Some(0));
    drop(stalled);
}

/// Readiness through the library: not ready (503) while draining but still alive; once
/// `shutdown` returns, the admin port is closed too (connections refused, address free).
#[test]
fn library_ready_follows_the_listeners() {
    let up = net::echo("127.0.0.1:0");
    let (proxy, [port]) = common::proxy::start_ports(
        None,
        |[port]| mapping("m", port, up.addr),
        |b| {
            b.admin("127.0.0.1:0".parse().unwrap())
                .drain_timeout(Duration::from_secs(10))
        },
    );
    let admin = proxy.admin_addr().unwrap();
    assert!(proxy.ready());
    assert_eq!(http_get(admin, "/ambassador/v0/check_ready").0, 200);

    // An open connection keeps the drain going while we probe.
    let mut s = net::connect(net::local(port));
    net::roundtrip(&mut s, b"hold the drain open");
    let draining = proxy.clone();
    let shutdown = std::thread::spawn(move || {
        common::proxy::block_on(draining.shutdown(true)).unwrap();
    });
    assert!(common::proxy::eventually(Duration::from_secs(5), || {
        !proxy.ready()
    }));
    assert_eq!(http_get(admin, "/ambassador/v0/check_ready").0, 503);
    assert_eq!(http_get(admin, "/ambassador/v0/check_alive").0, 200);
    assert!(
        !shutdown.is_finished(),
        "the drain ended with a connection open"
    );

    drop(s);
    shutdown.join().unwrap();
    assert_admin_closed(admin);
}

/// `ProxyHandle::shutdown` (and `wait`) return only once the admin listener is closed: a
/// connect is refused and the address can be bound again at once.
#[test]
fn library_shutdown_closes_the_admin_port() {
    for graceful in [true, false] {
        let up = net::echo("127.0.0.1:0");
        let (proxy, [_port]) = common::proxy::start_ports(
            None,
            |[port]| mapping("m", port, up.addr),
            |b| {
                b.admin("127.0.0.1:0".parse().unwrap())
                    .drain_timeout(Duration::from_secs(1))
            },
        );
        let admin = proxy.admin_addr().unwrap();
        assert_eq!(http_get(admin, "/ambassador/v0/check_alive").0, 200);
        common::proxy::block_on(proxy.shutdown(graceful)).unwrap();
        common::proxy::block_on(proxy.wait());
        assert_admin_closed(admin);
        // A second shutdown is harmless.
        common::proxy::block_on(proxy.shutdown(graceful)).unwrap();
    }
}

fn assert_admin_closed(admin: SocketAddr) {
    match TcpStream::connect_timeout(&admin, Duration::from_secs(2)) {
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "admin {admin}: {e}"
        ),
        Ok(_) => panic!("admin {admin} still accepts connections after shutdown"),
    }
    std::net::TcpListener::bind(admin)
        .unwrap_or_else(|e| panic!("admin address {admin} not free after shutdown: {e}"));
}
