//! Shared test harness: loopback upstreams and clients, starting a proxy, the one YAML
//! builder; and, from the crate's `testkit` (shared with the unit tests), the dnsmasq
//! launcher, the ClientHello builder, the test PKI and TLS secret setup, the one Prometheus
//! parser, the one `eventually`, and the rule for environment skips.
#![allow(dead_code, unreachable_pub)]

pub mod daemon;
pub mod net;
pub mod proxy;
pub mod yaml;

// Each test crate uses a different subset.
#[allow(unused_imports)]
pub use tcpmap::testkit::{dns, env, hello, metrics, pki, wait};
