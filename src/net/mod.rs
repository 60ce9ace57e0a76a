//! I/O helpers the actors call: sockets and protocols on the wire, no routing policy.

pub(crate) mod dns;
