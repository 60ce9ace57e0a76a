//! Test-only fault hooks (cargo feature `fault-injection`, off by default).
//!
//! They let tests/fault_injection.rs prove that a panic inside one actor stays there: a
//! connection routed to a mapping named [`PANIC_MAPPING`] panics after routing; arming
//! [`PANIC_NEXT_ACCEPT`] makes the next listener loop turn that accepts a socket panic; arming
//! [`PANIC_NEXT_RESOLVE`] makes the ResolverActor panic on its next request.
//!
//! Must not: exist in a default build (the module is compiled only with the feature), or
//! be reachable from config or peer input in such a build.
#![allow(clippy::panic)] // Panicking on purpose is this module's whole job.

use std::sync::atomic::{AtomicBool, Ordering};

/// A connection routed to a mapping with this name panics inside its ConnectionActor.
pub const PANIC_MAPPING: &str = "__panic_connection__";

/// A worker process other than worker 0 refuses (`Failed`) to prepare a config holding a
/// mapping with this name: a worker that cannot apply what the Supervisor accepted.
pub const FAIL_PREPARE_MAPPING: &str = "__fail_worker_prepare__";

/// Called by a worker process on `Prepare` with the mapping names of the built table.
pub(crate) fn on_prepare<'a>(worker: u32, mut mappings: impl Iterator<Item = &'a str>) -> bool {
    worker != 0 && mappings.any(|m| m == FAIL_PREPARE_MAPPING)
}

/// When set, the next accepted socket makes the listener loop panic (then it is cleared).
pub static PANIC_NEXT_ACCEPT: AtomicBool = AtomicBool::new(false);

/// When set, the ResolverActor panics on its next `Resolve` message (then it is cleared).
pub static PANIC_NEXT_RESOLVE: AtomicBool = AtomicBool::new(false);

/// Called by the ConnectionActor once the mapping is chosen.
pub(crate) fn on_routed(mapping: &str) {
    if mapping == PANIC_MAPPING {
        panic!("fault injection: connection routed to {PANIC_MAPPING}");
    }
}

/// Called by the listener loop after an accept.
pub(crate) fn on_accept() {
    if PANIC_NEXT_ACCEPT.swap(false, Ordering::SeqCst) {
        panic!("fault injection: listener loop");
    }
}

/// Called by the ResolverActor for each `Resolve` message.
pub(crate) fn on_resolve() {
    if PANIC_NEXT_RESOLVE.swap(false, Ordering::SeqCst) {
        panic!("fault injection: resolver actor");
    }
}
