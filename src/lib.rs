//! tcpmap: a layer-4 TCP/TLS proxy serving Ambassador `TCPMapping` configs.
#![allow(missing_docs)]

pub(crate) mod admin;
pub mod close;
pub mod config;
pub mod metrics;
pub mod route;
pub(crate) mod rt;
