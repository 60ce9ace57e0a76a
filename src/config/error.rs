//! One configuration problem (or warning), with the place it came from.
//!
//! `Display` is the contract's line format: `FILE:LINE: KIND NAME: message`.

use std::fmt;
use std::path::PathBuf;

/// Whether a problem rejects the config or only informs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Severity {
    /// The config is rejected.
    Error,
    /// The config is accepted; the user should look.
    Warning,
}

/// A configuration problem located at `file:line` in resource `kind name`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigError {
    /// Error or warning.
    pub severity: Severity,
    /// The file the document came from (`<inline>` for in-memory configs).
    pub file: PathBuf,
    /// 1-based line of the offending attribute, else of the document's first line.
    pub line: usize,
    /// The resource kind (`TCPMapping`, `TLSContext`, …; `YAML` for syntax errors).
    pub kind: String,
    /// The resource name (`-` when it has none).
    pub name: String,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl ConfigError {
    /// An error at `file:line` about `kind name`.
    pub fn error(
        file: impl Into<PathBuf>,
        line: usize,
        kind: impl Into<String>,
        name: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Error,
            file: file.into(),
            line,
            kind: kind.into(),
            name: name.into(),
            message: message.into(),
        }
    }

    /// A warning at `file:line` about `kind name`.
    pub fn warning(
        file: impl Into<PathBuf>,
        line: usize,
        kind: impl Into<String>,
        name: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(file, line, kind, name, message)
        }
    }

    /// True for errors (not warnings).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        write!(
            f,
            "{}:{}: {} {}: {}",
            self.file.display(),
            self.line,
            self.kind,
            self.name,
            self.message
        )
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_contract_line_format() {
        let e = ConfigError::error("a.yaml", 7, "TCPMapping", "ssh", "port is required");
        assert_eq!(e.to_string(), "a.yaml:7: TCPMapping ssh: port is required");
        let w = ConfigError::warning("a.yaml", 3, "TLSContext", "c", "unknown attribute `hostz`");
        assert_eq!(
            w.to_string(),
            "warning: a.yaml:3: TLSContext c: unknown attribute `hostz`"
        );
    }
}
