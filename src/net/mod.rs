//! I/O helpers the actors call: sockets, the ClientHello read, the byte relay. No routing
//! policy in here.

pub(crate) mod copy;
pub(crate) mod dns;
pub(crate) mod peek;
pub(crate) mod prefixed;
pub(crate) mod socket;
pub(crate) mod splice;
