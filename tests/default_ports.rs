//! Default upstream ports: 80 without origination, 443 with it (the seed's guesses).
//! Binding ports below 1024 needs privileges: the test skips with a printed reason without them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{SocketAddr, TcpListener};

use common::net::{self, free_port};
use common::proxy;

/// Binds a privileged port on a loopback address of its own, or says why not.
fn privileged(ip: [u8; 4], port: u16) -> Option<TcpListener> {
    match TcpListener::bind(SocketAddr::from((ip, port))) {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("skipped: cannot bind {ip:?}:{port} here ({e})");
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
    let port = free_port();
    let yaml = format!(
        "---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: p80\naddress: 127.0.0.1\nport: {port}\nservice: 127.0.0.80\n"
    );
    let _p = proxy::start(&yaml, None);
    let mut s = net::connect(SocketAddr::from(([127, 0, 0, 1], port)));
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
    let port = free_port();
    let yaml = format!(
        "---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: p443\naddress: 127.0.0.1\nport: {port}\ntls: true\nservice: 127.0.0.43\n"
    );
    let _p = proxy::start(&yaml, None);
    let mut s = net::connect(SocketAddr::from(([127, 0, 0, 1], port)));
    assert!(net::read_line(&mut s).starts_with("port-443"));
    assert_eq!(up.port(), 443);
}
