//! Shared test harness: loopback upstreams and clients, the test PKI, starting a proxy,
//! the one YAML builder, the one Prometheus parser, the one `eventually`, and the rule for
//! environment skips.
#![allow(dead_code, unreachable_pub)]

pub mod daemon;
pub mod dns;
pub mod env;
pub mod hello;
pub mod metrics;
pub mod net;
pub mod pki;
pub mod proxy;
pub mod wait;
pub mod yaml;
