//! tcpmap: a layer-4 TCP/TLS proxy serving Ambassador `TCPMapping` configs.
#![allow(missing_docs)]

pub mod close;
pub mod config;
pub(crate) mod net;
pub mod route;
pub(crate) mod rt;
