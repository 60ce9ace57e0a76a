//! tcpmap: a layer-4 TCP/TLS proxy serving Ambassador `TCPMapping` configs.
#![allow(missing_docs)]

pub mod close;
pub mod config;
// Integrator: drop the dead_code allowances once the ConnectionActor calls the resolver.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod dns;
pub mod route;
pub(crate) mod rt;

#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod actors;
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod net;

pub use actors::resolver::{ResolveError, ResolverConfig};
