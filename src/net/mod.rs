//! I/O helpers the actors call: sockets, the PROXY protocol header and ClientHello reads, the
//! byte relay (buffered and zero-copy), DNS queries. No routing policy lives here; callers decide what to connect and
//! when to close.

mod buffered;
pub(crate) mod copy;
pub(crate) mod dns;
pub(crate) mod peek;
pub(crate) mod prefixed;
pub(crate) mod proxy_header;
pub(crate) mod socket;
pub(crate) mod splice;
pub(crate) mod tls_record;
pub(crate) mod tls_stream;

#[cfg(test)]
mod relay_bench;
#[cfg(test)]
mod relay_tests;
#[cfg(test)]
mod relay_tls_tests;
