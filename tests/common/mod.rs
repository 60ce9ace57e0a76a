//! Shared test harness: loopback upstreams and clients, the test PKI, starting a proxy.
#![allow(dead_code)]

pub mod net;
pub mod pki;
pub mod proxy;
