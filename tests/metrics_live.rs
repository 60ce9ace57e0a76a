//! Byte counters move while a long connection runs, not only when it ends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::metrics::metric;
use common::net;
use common::proxy;
use common::wait::eventually;

#[test]
fn bytes_are_counted_while_the_connection_is_open() {
    let up = net::echo("127.0.0.1:0");
    let (p, port) = proxy::start_port(None, |port| common::yaml::mapping("live", port, up.addr));
    let mut s = net::connect(net::local(port));
    net::roundtrip(&mut s, &[7u8; 1000]);
    let labels = [("mapping", "live"), ("direction", "client_to_upstream")];
    let counted = eventually(Duration::from_secs(2), || {
        metric(&p.metrics_text(), "tcpmap_bytes_total", &labels) == 1000.0
    });
    assert!(counted, "{}", p.metrics_text());
    // Still open: the connection was not ended to get there.
    net::roundtrip(&mut s, b"still open");
}
