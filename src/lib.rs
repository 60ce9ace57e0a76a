//! tcpmap: a layer-4 TCP/TLS proxy that serves Ambassador `TCPMapping` configs, as a daemon
//! (`tcpmap run`) and as a library ([`ProxyBuilder`] → [`ProxyHandle`]).
//!
//! ```text
//!  YAML files / inline YAML ──▶ config (pure: parse, validate, build) ──▶ route::RouteTable
//!                                                                              │ Apply
//!  ConfigActor ──▶ Supervisor ──▶ ListenerActor (per address:port) ──▶ ConnectionActor (per socket)
//!                                                                       │ resolve      │ relay
//!                                                                  ResolverActor    net::copy / splice
//! ```
//!
//! Pure core (values in, values out; unit- and fuzz-tested): [`config`], `route`, [`sni`],
//! [`proxy_protocol`], [`postgres`], [`metrics`], [`close`]. I/O shell: `actors`, `net`, `admin`, `daemon`. Only `rt` names
//! the runtime crates (async-std, async-io), the channel crate (flume) and the signal crate
//! (signal-hook).
//!
//! The public interface is: [`ProxyBuilder`], [`ProxyHandle`], [`Error`], [`ConfigError`],
//! the read-only [`Routes`] view and [`check`].

// Everything in the library may see peer or config input: no unchecked indexing (tests,
// benches and examples are exempt; clippy.toml allows it in #[cfg(test)] code).
#![deny(clippy::indexing_slicing)]
#![deny(unsafe_code)]

// pure core
pub mod close;
pub mod config;
pub(crate) mod dns;
pub(crate) mod hostname;
pub mod metrics;
pub mod postgres;
pub mod proxy_protocol;
pub(crate) mod route;
pub mod sni;

// I/O shell
#[cfg(feature = "actix")]
pub mod actix;
pub(crate) mod actors;
pub(crate) mod admin;
mod api;
#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod daemon;
mod error;
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub mod fault;
#[doc(hidden)]
pub mod logwriter;
pub(crate) mod net;
pub(crate) mod rt;
pub(crate) mod state;
#[cfg(feature = "testkit")]
#[doc(hidden)]
pub mod testkit;
pub(crate) mod workers;

pub use actors::config::ReloadReport;
pub use actors::supervisor::ApplyReport;
pub use api::{ProxyBuilder, ProxyHandle, block_on};
pub use cli::check;
pub use config::{ConfigError, ConfigInput};
pub use error::{Error, Result};

/// Doors into the config internals (and the workers' control-channel codec) for the fuzz
/// targets and the test-PKI self-test only:
/// not part of the API, no stability promised.
#[doc(hidden)]
pub mod internals {
    pub use crate::config::tls::{
        CertKey, TlsParams, client_config, parse_cert_chain, parse_cert_key, server_config,
    };
    pub use crate::config::validate::service::{ParsedService, parse_service};
    pub use crate::workers::codec::decode_all as decode_control_frames;
}
/// The TLS 1.3 record path driven by a hostile client, for the `tls13_records` fuzz target
/// (feature `testkit`): not part of the API.
#[cfg(feature = "testkit")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::actors::connection::tls_fuzz::{DEADLINE, tls13_session};
}
pub use metrics::MetricsSnapshot;
pub use route::Routes;
