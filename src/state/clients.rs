//! Per-client counts shared with other processes: the interface the endpoint sets count
//! `max_connections_per_ip` through when a mapping's clients are counted over every worker.
//!
//! The shared-memory table that implements it lives with the workers (`workers/shm/`, the
//! crate's only `unsafe`); the endpoint sets here see only this trait, so shared state never
//! names the process layer above it.

use std::net::IpAddr;

/// What [`ClientCounts::take`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// A slot was taken in entry `.0`; give it back with [`ClientCounts::give`].
    Taken(usize),
    /// `max` connections of this key are open.
    Refused,
    /// The key's set is full of other keys' open connections (or its lock was not free in
    /// time): the caller counts in its own process.
    Full,
}

/// Client counts kept outside this process (a table every worker maps).
pub(crate) trait ClientCounts: Send + Sync + std::fmt::Debug {
    /// Takes one of `max` slots of client `ip` under the mapping of shared index `index`.
    fn take(&self, index: u32, ip: IpAddr, max: u32) -> Take;
    /// Gives back the slot [`Self::take`] took in entry `entry`.
    fn give(&self, entry: usize);
}
