//! State that connections share, below both the actors and the worker processes: neither
//! `crate::actors` nor `crate::workers` is named here (checked by `tests/layering.rs`).
//!
//! - `admission`: one connection's claim on the limits and its mapping's metrics;
//! - `endpoints/`: each upstream's endpoint set (health, loads, per-client counts), across
//!   generations;
//! - `clients`: the interface of per-client counts kept in shared memory (implemented by
//!   `workers/shm/clients.rs`);
//! - `ratelimit`: connection rate limits' token buckets (a bounded table, own or shared);
//! - `ratelog`: rate limits for log lines peers can trigger;
//! - `ticket_keys` / `tickets`: the process's session-ticket key ring (a global, the system
//!   RNG, the clock, `TCPMAP_TICKET_ROTATION_SECS`), which every TLS server config of the
//!   process uses and the workers' Supervisor hands out; `ticket_file`: the keys of
//!   `--session-ticket-keys FILE`;
//! - this file: the open-connection [`Count`] (own or in shared memory) and the [`Limits`].

pub(crate) mod admission;
pub(crate) mod clients;
pub(crate) mod endpoints;
pub(crate) mod ratelimit;
pub(crate) mod ratelog;
pub(crate) mod ticket_file;
pub(crate) mod ticket_keys;
pub(crate) mod tickets;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// An open-connection count: this process's own, or the total in memory every worker maps
/// (`crate::workers`) plus this worker's share of it (so a dead worker's share can be taken
/// back). Derefs to the count the limit is checked against.
#[derive(Debug)]
pub(crate) enum Count {
    /// Counted here.
    Own(AtomicUsize),
    /// Counted in shared memory.
    Shared {
        /// Over all workers.
        total: &'static AtomicUsize,
        /// This worker's share.
        mine: &'static AtomicUsize,
    },
}

impl Default for Count {
    fn default() -> Self {
        Count::Own(AtomicUsize::new(0))
    }
}

impl Count {
    /// One more open connection; the count before it.
    pub(crate) fn up(&self) -> usize {
        if let Count::Shared { mine, .. } = self {
            // The share first: a death in between leaves the total short, never leaked.
            mine.fetch_add(1, Ordering::AcqRel);
        }
        (**self).fetch_add(1, Ordering::AcqRel)
    }

    /// One fewer.
    pub(crate) fn down(&self) {
        (**self).fetch_sub(1, Ordering::AcqRel);
        if let Count::Shared { mine, .. } = self {
            mine.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl std::ops::Deref for Count {
    type Target = AtomicUsize;
    fn deref(&self) -> &AtomicUsize {
        match self {
            Count::Own(n) => n,
            Count::Shared { total, .. } => total,
        }
    }
}

/// Limits on what peers can make tcpmap hold, and how its relay moves bytes.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// `--max-connections`: open connections allowed overall.
    pub(crate) max_connections: Option<usize>,
    /// Deadline for the SNI peek and each TLS handshake.
    pub(crate) handshake_timeout: Duration,
    /// This proxy's zero-copy setting: plain↔plain relays use splice(2) (Linux) when true
    /// (`ProxyBuilder::zero_copy`, off as well under `TCPMAP_NO_SPLICE=1`).
    pub(crate) zero_copy: bool,
    /// `--drain-strategy spread`: a graceful drain closes connections over its timeout.
    pub(crate) drain_spread: bool,
    /// `--dont-log-null`: no access line for a connection whose client sent no byte.
    pub(crate) dont_log_null: bool,
}
