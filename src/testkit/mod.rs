//! Test fixtures shared by the unit tests (`crate::testkit`) and the integration tests
//! (`tcpmap::testkit`, re-exported by `tests/common`): a real DNS server (dnsmasq), ClientHellos
//! built byte by byte, the test PKI and the one-call TLS secret setup, the Prometheus text
//! parser, the one `eventually` and the rule for environment skips.
//!
//! Dev-only: compiled with the `testkit` feature, which the crate's own dev-dependency on
//! itself turns on for its tests, examples and benches (`Cargo.toml`); a plain build or a
//! dependent crate never sees it. Not part of the API, no stability promised.
//!
//! It must not reach into the proxy: fixtures talk to it over sockets and files like a user.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod dns;
pub mod env;
pub mod hello;
pub mod metrics;
pub mod pki;
pub mod wait;
