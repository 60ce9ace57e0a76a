//! Address families through the resolver: with both enabled IPv6 is preferred; IPv4 only
//! never tries IPv6. Without an IPv6 loopback the tests fail, unless `TCPMAP_SKIP_IPV6=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpListener;

use common::net;
use common::proxy;
use common::yaml::mapping_with;

/// A port free on both [::1] and 127.0.0.1, with a banner upstream on each; `None` only when
/// there is no IPv6 loopback and `TCPMAP_SKIP_IPV6=1` allows the skip.
fn dual_stack() -> Option<(u16, net::Upstream, net::Upstream)> {
    for _ in 0..20 {
        let v6 = match TcpListener::bind("[::1]:0") {
            Ok(l) => l,
            Err(e) => {
                common::env::missing("IPV6", &format!("no IPv6 loopback here ({e})"));
                return None;
            }
        };
        let port = v6.local_addr().unwrap().port();
        drop(v6);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            let a = net::banner(&format!("[::1]:{port}"), "via-ipv6");
            let b = net::banner(&format!("127.0.0.1:{port}"), "via-ipv4");
            return Some((port, a, b));
        }
    }
    panic!("no port free on both [::1] and 127.0.0.1 in 20 tries");
}

fn run(families: &str) -> String {
    let Some((up_port, _v6, _v4)) = dual_stack() else {
        return "skipped".into();
    };
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 dual.test\n::1 dual.test\n").unwrap();
    let service = format!("dual.test:{up_port}");
    let (_p, [port]) = proxy::start_ports(
        None,
        |[port]| mapping_with("dual", port, &service, families),
        |b| b.hosts_file(&hosts),
    );
    let mut s = net::connect(net::local(port));
    net::read_line(&mut s)
}
#[test]
fn both_families_prefer_ipv6() {
    let got = run("enable_ipv4: true\nenable_ipv6: true\n");
    assert!(got == "via-ipv6" || got == "skipped", "{got}");
}

#[test]
fn ipv4_only_by_default() {
    let got = run("");
    assert!(got == "via-ipv4" || got == "skipped", "{got}");
}

#[test]
fn ipv6_only() {
    let got = run("enable_ipv4: false\nenable_ipv6: true\n");
    assert!(got == "via-ipv6" || got == "skipped", "{got}");
}
