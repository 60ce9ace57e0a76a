//! tcpmap: a layer-4 TCP/TLS proxy serving Ambassador `TCPMapping` configs.
#![allow(missing_docs)]

pub mod cli;
pub mod close;
pub mod config;
pub mod daemon;
pub mod route;
pub(crate) mod rt;
