//! Shared test harness: loopback upstreams and clients, the test PKI, starting a proxy.
#![allow(dead_code, unreachable_pub)]

pub mod daemon;
pub mod net;
pub mod pki;
pub mod proxy;
