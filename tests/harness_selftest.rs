//! The test harness checks itself: a port taken between the registry's probe and the proxy's
//! bind makes the start retry with fresh ports (embedded and binary), the registry never hands
//! out a port twice, and the Prometheus parser reads what the proxy writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::cell::RefCell;
use std::collections::HashSet;
use std::net::TcpListener;

use common::daemon::Daemon;
use common::metrics::{check_format, metric, samples};
use common::net;
use common::proxy;
use common::yaml::mapping;

#[test]
fn the_registry_never_hands_out_a_port_twice() {
    let ports: Vec<u16> = (0..200).map(|_| net::free_port()).collect();
    let unique: HashSet<_> = ports.iter().collect();
    assert_eq!(unique.len(), ports.len());
    assert!(
        ports.iter().all(|p| (20_000..32_000).contains(p)),
        "{ports:?}"
    );
}

/// Takes the first port offered, before the proxy can bind it, as another process would.
/// When another process on the machine already holds it (a test run in another checkout
/// uses the same range), that process is the squatter: the port is just as taken.
fn squat_first(squatters: &RefCell<Vec<(u16, Option<TcpListener>)>>, port: u16) {
    if squatters.borrow().is_empty() {
        let held = match TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => Some(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => None,
            Err(e) => panic!("cannot squat on port {port}: {e}"),
        };
        squatters.borrow_mut().push((port, held));
    }
}

#[test]
fn an_embedded_start_retries_when_its_port_was_taken() {
    let up = net::echo("127.0.0.1:0");
    let squatters = RefCell::new(Vec::new());
    let (_p, [port]) = proxy::start_ports(
        None,
        |[port]| {
            squat_first(&squatters, port);
            mapping("retry", port, up.addr)
        },
        |b| b,
    );
    let taken = squatters.borrow()[0].0;
    assert_ne!(port, taken, "the proxy cannot listen on the squatted port");
    let mut s = net::connect(net::local(port));
    net::roundtrip(&mut s, b"after a retry");
}

#[test]
fn a_daemon_start_retries_when_its_port_was_taken() {
    let up = net::echo("127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let squatters = RefCell::new(Vec::new());
    let (_d, [port]) = Daemon::run_yaml(
        &cfg,
        |[port]| {
            squat_first(&squatters, port);
            mapping("retry", port, up.addr)
        },
        &[],
    );
    let taken = squatters.borrow()[0].0;
    assert_ne!(port, taken);
    let mut s = net::connect(net::local(port));
    net::roundtrip(&mut s, b"after a retry");
}

#[test]
fn the_metrics_parser_reads_names_labels_and_values() {
    let text = "# HELP tcpmap_x a counter\n# TYPE tcpmap_x counter\n\
                tcpmap_x{mapping=\"a\",direction=\"up\"} 3\ntcpmap_x{mapping=\"b\"} 4\ntcpmap_y 1.5\n";
    assert_eq!(check_format(text), 3);
    assert_eq!(samples(text).count(), 3);
    assert_eq!(
        metric(text, "tcpmap_x", &[("mapping", "a"), ("direction", "up")]),
        3.0
    );
    assert_eq!(metric(text, "tcpmap_x", &[("mapping", "b")]), 4.0);
    assert_eq!(metric(text, "tcpmap_y", &[]), 1.5);
    assert_eq!(metric(text, "tcpmap_x", &[("mapping", "c")]), 0.0);
    assert_eq!(metric(text, "tcpmap", &[]), 0.0, "names match whole");
}
