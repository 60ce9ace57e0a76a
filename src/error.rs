//! The library's public error type.

use std::net::SocketAddr;

use crate::config::ConfigError;

/// Everything that can go wrong when starting, reloading or talking to a proxy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; every problem is listed.
    #[error("invalid configuration ({} problem(s)):\n{}", .0.len(), join(.0))]
    Config(Vec<ConfigError>),
    /// A listener (or the admin endpoint) could not bind.
    #[error("cannot bind {addr}")]
    Bind {
        /// The address that failed.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another I/O failure.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A worker process could not apply the config; every worker keeps the old one.
    #[error("a worker could not apply the config: {0}")]
    Workers(String),
    /// An actor is gone (the proxy has shut down).
    #[error("the proxy is not running (actor gone)")]
    ActorGone,
}

fn join(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
