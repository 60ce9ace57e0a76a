//! The one rule for what may fail a config (SPEC section 13): a TLSContext or Host is
//! validated in [`Mode::Used`] when a TCPMapping terminates or originates through it, else in
//! [`Mode::Unused`], where every problem it has is a warning. An exported Emissary cluster
//! holds many resources only its HTTP side reads; they must not stop the TCPMappings.
//!
//! Owns: which resources are used, and how a problem is judged in each mode. Must not: know
//! any per-field rule (those report errors as if used; this module decides what they become).

use std::collections::BTreeSet;

use crate::config::ConfigError;
use crate::config::error::Severity;
use crate::config::model::CertSource;

/// How a resource's problems count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A TCPMapping depends on it: its errors reject the config.
    Used,
    /// Nothing served depends on it: its errors are warnings and it serves nothing.
    Unused,
}

/// The problems of one resource as they count in `mode`: in [`Mode::Unused`], errors become
/// warnings that say why they do not reject the config.
pub(crate) fn judge(mode: Mode, problems: Vec<ConfigError>) -> Vec<ConfigError> {
    match mode {
        Mode::Used => problems,
        Mode::Unused => as_warnings(problems, |kind| {
            format!("no TCPMapping uses this {kind}, so it is not served")
        }),
    }
}

/// The certificate problems of a TLSContext only a Host's settings use, as warnings.
pub(crate) fn judge_unserved_certificate(problems: Vec<ConfigError>) -> Vec<ConfigError> {
    as_warnings(problems, |kind| {
        format!("a Host takes only this {kind}'s settings, so its certificate is not served")
    })
}

/// Errors become warnings ending in `(why(kind))`; warnings stay.
fn as_warnings(problems: Vec<ConfigError>, why: impl Fn(&str) -> String) -> Vec<ConfigError> {
    problems
        .into_iter()
        .map(|p| {
            if p.is_error() {
                ConfigError {
                    severity: Severity::Warning,
                    message: format!("{} ({})", p.message, why(&p.kind)),
                    ..p
                }
            } else {
                p
            }
        })
        .collect()
}

/// Which declared TLSContexts and Hosts (indexes into the declared lists) the mappings use.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    contexts: BTreeSet<usize>,
    /// TLSContexts whose settings (not certificate) a used Host takes.
    settings: BTreeSet<usize>,
    hosts: BTreeSet<usize>,
}

impl Usage {
    /// Records a certificate source chosen for a mapping's host.
    pub(crate) fn cert(&mut self, src: CertSource) {
        match src {
            CertSource::Host(i) => self.hosts.insert(i),
            CertSource::Context(i) => self.contexts.insert(i),
        };
    }

    /// Records a TLSContext used by name (`tls: CONTEXT`, a used Host's settings).
    pub(crate) fn context(&mut self, i: usize) {
        self.contexts.insert(i);
    }

    /// Records a TLSContext whose settings a used Host takes (its certificate is the Host's).
    pub(crate) fn settings(&mut self, i: usize) {
        self.settings.insert(i);
    }

    /// True when only a Host's settings use TLSContext `i`: its certificate is not served, so
    /// its settings are judged as used and its certificate's problems as unused.
    pub(crate) fn settings_only(&self, i: usize) -> bool {
        self.settings.contains(&i) && !self.contexts.contains(&i)
    }

    /// The mode of declared TLSContext `i` (for one used only for settings: see
    /// [`Usage::settings_only`]).
    pub(crate) fn context_mode(&self, i: usize) -> Mode {
        if self.contexts.contains(&i) {
            Mode::Used
        } else {
            Mode::Unused
        }
    }

    /// The mode of declared Host `i`.
    pub(crate) fn host_mode(&self, i: usize) -> Mode {
        if self.hosts.contains(&i) {
            Mode::Used
        } else {
            Mode::Unused
        }
    }

    /// The used Hosts.
    pub(crate) fn hosts(&self) -> impl Iterator<Item = usize> + '_ {
        self.hosts.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_errors_become_warnings_used_ones_stay() {
        let e = ConfigError::error("a.yaml", 3, "TLSContext", "c", "secret `x` is missing");
        let w = ConfigError::warning("a.yaml", 4, "TLSContext", "c", "unknown attribute `y`");
        let used = judge(Mode::Used, vec![e.clone(), w.clone()]);
        assert_eq!(used, vec![e.clone(), w.clone()]);
        let unused = judge(Mode::Unused, vec![e, w.clone()]);
        assert!(unused.iter().all(|p| !p.is_error()));
        assert_eq!(
            unused[0].to_string(),
            "warning: a.yaml:3: TLSContext c: secret `x` is missing (no TCPMapping uses this \
             TLSContext, so it is not served)"
        );
        assert_eq!(unused[1], w);
    }
}
