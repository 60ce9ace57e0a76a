//! The descriptor limit and the default `--max-connections` derived from it (issue 24, item
//! 5): at start the soft `RLIMIT_NOFILE` is raised to the hard one, and without
//! `--max-connections` the connection limit is what the descriptors allow, so a flood of
//! connections is refused at once (`end=limit`) instead of running the process out of
//! descriptors (accepts backing off, normal clients waiting for timeouts).

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// The hard limit taken when the kernel says "unlimited".
const UNLIMITED: u64 = 1 << 20;

/// Descriptors kept for everything but proxied connections: listeners, the admin endpoint,
/// DNS and health-check sockets, config and certificate files, worker channels, splice pipes.
/// A quarter of the limit when that is smaller (a tiny limit still serves some connections).
pub(crate) fn reserve(nofile: u64) -> u64 {
    256.min(nofile / 4)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; the soft limit in force afterwards
/// (`None` when it cannot be read: unlimited).
pub(crate) fn raise() -> Option<u64> {
    let now = getrlimit(Resource::Nofile);
    let hard = now.maximum.unwrap_or(UNLIMITED);
    if now.current.is_some_and(|soft| soft < hard) {
        let raised = Rlimit {
            current: Some(hard),
            maximum: now.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the descriptor limit (RLIMIT_NOFILE) to its hard limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// The default `--max-connections` for a descriptor limit of `nofile`: each proxied
/// connection holds two descriptors (client and upstream), after the [`reserve`].
pub(crate) fn default_max_connections(nofile: u64) -> usize {
    usize::try_from((nofile.saturating_sub(reserve(nofile)) / 2).max(1)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_descriptors_a_connection_after_the_reserve() {
        assert_eq!(default_max_connections(1024), (1024 - 256) / 2);
        assert_eq!(default_max_connections(1_048_576), (1_048_576 - 256) / 2);
        assert_eq!(default_max_connections(64), (64 - 16) / 2);
        assert_eq!(default_max_connections(1), 1);
    }

    #[test]
    fn raising_keeps_the_soft_limit_at_most_the_hard_one() {
        let soft = raise();
        let hard = getrlimit(Resource::Nofile).maximum;
        if let (Some(s), Some(h)) = (soft, hard) {
            assert_eq!(s, h);
        }
    }
}
