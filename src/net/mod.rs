//! Network I/O helpers the actors call: the byte relay (buffered and zero-copy).
//! No routing policy lives here; callers decide what to connect and when to close.

// The connection actor (integration pending) is the first caller outside tests.
#![cfg_attr(not(test), allow(dead_code))]

mod buffered;
pub(crate) mod copy;
pub(crate) mod splice;

#[cfg(all(test, target_os = "linux"))]
mod relay_bench;
#[cfg(test)]
mod relay_tests;
#[cfg(test)]
mod relay_tls_tests;
