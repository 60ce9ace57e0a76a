//! Address families through the resolver: with both enabled IPv6 is preferred; IPv4 only
//! never tries IPv6.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{SocketAddr, TcpListener};

use common::net::{self, free_port};
use common::proxy;

/// A port free on both [::1] and 127.0.0.1, with a banner upstream on each.
fn dual_stack() -> Option<(u16, net::Upstream, net::Upstream)> {
    for _ in 0..20 {
        let Ok(v6) = TcpListener::bind("[::1]:0") else {
            eprintln!("skipped: no IPv6 loopback here");
            return None;
        };
        let port = v6.local_addr().unwrap().port();
        drop(v6);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            let a = net::banner(&format!("[::1]:{port}"), "via-ipv6");
            let b = net::banner(&format!("127.0.0.1:{port}"), "via-ipv4");
            return Some((port, a, b));
        }
    }
    None
}

fn run(families: &str) -> String {
    let Some((up_port, _v6, _v4)) = dual_stack() else {
        return "skipped".into();
    };
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 dual.test\n::1 dual.test\n").unwrap();
    let port = free_port();
    let yaml = format!(
        "---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: dual\naddress: 127.0.0.1\nport: {port}\nservice: dual.test:{up_port}\n{families}"
    );
    let _p = proxy::start_with(&yaml, None, |b| b.hosts_file(&hosts));
    let mut s = net::connect(SocketAddr::from(([127, 0, 0, 1], port)));
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
