//! Default upstream ports: 80 without origination, 443 with it (the seed's guesses).
//! Binding ports below 1024 needs privileges: without them the tests fail, unless
//! `TCPMAP_SKIP_PRIVILEGED=1` allows the skip (CI runs as root).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{SocketAddr, TcpListener};

use common::net;
use common::proxy;
use common::yaml::{mapping, mapping_with};

/// Binds a privileged port on a loopback address of its own; `None` only when that fails and
/// `TCPMAP_SKIP_PRIVILEGED=1` allows the skip.
fn privileged(ip: [u8; 4], port: u16) -> Option<TcpListener> {
    match TcpListener::bind(SocketAddr::from((ip, port))) {
        Ok(l) => Some(l),
        Err(e) => {
            common::env::missing(
                "PRIVILEGED",
                &format!("cannot bind {ip:?}:{port} here ({e})"),
            );
            None
        }
    }
}

#[test]
fn plain_relay_defaults_to_port_80() {
    let Some(probe) = privileged([127, 0, 0, 80], 80) else {
        return;
    };
    drop(probe);
    let up = net::banner("127.0.0.80:80", "port-80");
    let (_p, port) = proxy::start_port(None, |port| mapping("p80", port, "127.0.0.80"));
    let mut s = net::connect(net::local(port));
    assert_eq!(net::read_line(&mut s), "port-80");
    assert_eq!(up.port(), 80);
}

#[test]
fn origination_defaults_to_port_443() {
    let Some(probe) = privileged([127, 0, 0, 43], 443) else {
        return;
    };
    drop(probe);
    let (cert, key) = common::pki::self_signed(&["127.0.0.43"]);
    let up = net::tls_banner(
        "127.0.0.43:443",
        "port-443",
        net::tls_server_config(&cert, &key, None),
    );
    let (_p, port) = proxy::start_port(None, |port| {
        mapping_with("p443", port, "127.0.0.43", "tls: true\n")
    });
    let mut s = net::connect(net::local(port));
    assert!(net::read_line(&mut s).starts_with("port-443"));
    assert_eq!(up.port(), 443);
}
