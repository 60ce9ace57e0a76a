//! The Supervisor's listening sockets: bound here (or taken from a hot upgrade's old binary)
//! and handed to the data plane, with a copy of each kept for the next hot upgrade.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener};

use super::ApplyError;
use crate::net::socket;

/// The sockets a hot upgrade handed over (used instead of binding their address) and a
/// copy of every listening socket of the active table (for the next hot upgrade; dropped at
/// shutdown before the listeners stop, so the ports then refuse).
#[derive(Debug, Default)]
pub(crate) struct Sockets {
    inherited: HashMap<SocketAddr, TcpListener>,
    copies: BTreeMap<SocketAddr, TcpListener>,
}

impl Sockets {
    /// Sockets starting with those a hot upgrade handed over.
    pub(crate) fn new(inherited: HashMap<SocketAddr, TcpListener>) -> Self {
        Sockets {
            inherited,
            copies: BTreeMap::new(),
        }
    }

    /// A socket for each of `addrs` (an inherited one, else freshly bound); the first
    /// failure rejects them all (those just bound close). `first`: the proxy's first config
    /// (the log then says nothing started).
    pub(crate) fn bind(
        &mut self,
        addrs: &[SocketAddr],
        first: bool,
    ) -> Result<Vec<(SocketAddr, TcpListener)>, ApplyError> {
        let mut bound = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let socket = match self.inherited.remove(addr) {
                Some(s) => Ok(s),
                // Registered with the reactor by the bind, unregistered here: the plane
                // registers it where its listener runs (twice per new listener per reload).
                None => socket::bind(*addr).and_then(|s| s.into_inner()),
            };
            match socket {
                Ok(s) => bound.push((*addr, s)),
                Err(e) => {
                    if first {
                        tracing::error!(listener = %addr, error = %e, "cannot bind; nothing started");
                    } else {
                        tracing::warn!(listener = %addr, error = %e, "cannot bind; reload rejected");
                    }
                    return Err(ApplyError::Bind(*addr, e));
                }
            }
        }
        Ok(bound)
    }

    /// Copies of `bound`, to keep once the apply succeeded ([`Self::keep`]).
    pub(crate) fn copies(bound: &[(SocketAddr, TcpListener)]) -> Vec<(SocketAddr, TcpListener)> {
        let mut copies = Vec::with_capacity(bound.len());
        for (addr, s) in bound {
            match s.try_clone() {
                Ok(c) => copies.push((*addr, c)),
                Err(e) => tracing::warn!(listener = %addr, error = %e, "no copy for a hot upgrade"),
            }
        }
        copies
    }

    /// After an apply: the copies of `stopped` go, `copies` come.
    pub(crate) fn keep(&mut self, stopped: &[SocketAddr], copies: Vec<(SocketAddr, TcpListener)>) {
        for addr in stopped {
            self.copies.remove(addr);
        }
        self.copies.extend(copies);
    }

    /// Copies of every listening socket of the active config (for a hot upgrade).
    pub(crate) fn handover(&self) -> std::io::Result<Vec<(SocketAddr, TcpListener)>> {
        self.copies
            .iter()
            .map(|(addr, s)| s.try_clone().map(|s| (*addr, s)))
            .collect()
    }

    /// Drops every copy (shutting down: once the listeners stop, nothing holds a port open).
    pub(crate) fn clear(&mut self) {
        self.copies.clear();
    }
}
