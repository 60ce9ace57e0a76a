//! STUB (replaced by the integrator): foreground wiring of `tcpmap run` — signals, file
//! watch, admin endpoint, supervisor.

use crate::cli::RunArgs;

/// Runs the proxy until a termination signal; errors when the initial config is invalid
/// or a listener cannot bind.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("`tcpmap run` is not implemented yet")
}
