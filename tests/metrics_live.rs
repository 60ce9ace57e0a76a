//! Byte counters move while a long connection runs, not only when it ends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::net::{self, free_port};
use common::proxy;

#[test]
fn bytes_are_counted_while_the_connection_is_open() {
    let up = net::echo("127.0.0.1:0");
    let port = free_port();
    let yaml = format!(
        "---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: live\naddress: 127.0.0.1\nport: {port}\nservice: {}\n",
        up.addr
    );
    let p = proxy::start(&yaml, None);
    let mut s = net::connect(SocketAddr::from(([127, 0, 0, 1], port)));
    net::roundtrip(&mut s, &[7u8; 1000]);
    let counted = proxy::eventually(Duration::from_secs(2), || {
        p.metrics_text().lines().any(|l| {
            l.starts_with("tcpmap_bytes_total{mapping=\"live\"")
                && l.contains("direction=\"client_to_upstream\"")
                && l.ends_with(" 1000")
        })
    });
    assert!(counted, "{}", p.metrics_text());
    // Still open: the connection was not ended to get there.
    net::roundtrip(&mut s, b"still open");
}
