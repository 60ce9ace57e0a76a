//! Shared helpers for the integration tests (`mod common;` in each tests/*.rs file).
//! Test-only code: never linked into the tcpmap library or binary.
// Helpers are `pub` for the test files that include this module; each file is its own crate.
#![allow(unreachable_pub)]

pub mod pki;
