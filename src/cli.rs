//! Command line: `tcpmap run` and `tcpmap check` (README.md "The binary", docs/operations.md),
//! and the `check` report.
//!
//! Owns: flag definitions, turning them into a [`ConfigInput`], the text `check` prints.
//! Must not: run the proxy itself (that is `daemon`), exit the process (that is `main`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{self, ConfigInput};

/// tcpmap: a layer-4 TCP/TLS proxy serving Ambassador `TCPMapping` configs.
#[derive(Debug, Parser)]
#[command(name = "tcpmap", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy in the foreground.
    Run(RunArgs),
    /// Validate the config (and its secrets) and print the route table; no DNS lookups.
    Check(CheckArgs),
    /// A worker process of `tcpmap run --workers N` (started by tcpmap itself).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// `tcpmap worker` arguments (set by the Supervisor that starts it).
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How many worker processes `tcpmap run` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Workers {
    /// The CPUs this process may run on (affinity mask and cgroup CPU quota, rounded up).
    #[default]
    Auto,
    /// Exactly this many (1: one process, no workers).
    Count(usize),
}

impl Workers {
    /// The number of worker processes this means here (at least 1).
    pub fn resolve(self) -> usize {
        match self {
            Workers::Auto => crate::workers::cpus::available(),
            Workers::Count(n) => n.max(1),
        }
    }
}

/// `auto` or a whole number from 1 to 1024.
fn parse_workers(s: &str) -> Result<Workers, String> {
    if s == "auto" {
        return Ok(Workers::Auto);
    }
    match s.parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(Workers::Count(n)),
        _ => Err(format!(
            "`{s}` is not `auto` or a number of workers from 1 to 1024"
        )),
    }
}

/// Where the config comes from (shared by `run` and `check`).
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// A YAML file (one or many `---` documents) or a directory of `*.yaml`/`*.yml`; repeatable.
    #[arg(long = "config", value_name = "PATH", required = true)]
    pub config: Vec<PathBuf>,
    /// Directory of mounted TLS secrets: `<dir>/NAME/tls.crt` + `tls.key`.
    #[arg(long, value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// The proxy's own namespace (services without a dot in other namespaces get `.NS`).
    #[arg(long, env = "AMBASSADOR_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Only resources naming this `ambassador_id` apply.
    #[arg(long, env = "AMBASSADOR_ID", default_value = "default")]
    pub ambassador_id: String,
}

impl ConfigArgs {
    /// The config pipeline's input.
    pub fn input(&self) -> ConfigInput {
        ConfigInput {
            paths: self.config.clone(),
            inline: Vec::new(),
            secrets_dir: self.secrets_dir.clone(),
            namespace: self.namespace.clone(),
            ambassador_id: self.ambassador_id.clone(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `tcpmap run` arguments.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Config sources and identity.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Admin HTTP address (e.g. `127.0.0.1:8877`); off when absent.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Seconds open connections may take to finish on SIGTERM/SIGINT.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub drain_timeout: u64,
    /// Overall limit of concurrent connections (extra ones are closed at once).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<u32>,
    /// Seconds a client has to send its ClientHello (SNI peek) and to finish each TLS
    /// handshake; slower connections are closed.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_secs)]
    pub handshake_timeout: f64,
    /// resolv.conf to read nameservers, search domains and ndots from.
    #[arg(long, value_name = "PATH", default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Worker processes serving the listeners: `auto` (the CPUs this process may use) or a
    /// number; 1 runs everything in one process.
    #[arg(long, env = "TCPMAP_WORKERS", value_name = "N|auto", default_value = "auto", value_parser = parse_workers)]
    pub workers: Workers,
}

/// A positive, finite number of seconds.
fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!(
            "`{s}` is not a number of seconds between 0 and 86400"
        )),
    }
}

/// `tcpmap check` arguments.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Config sources and identity.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// What `check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// True when the config is valid (warnings allowed).
    pub ok: bool,
    /// The text to print: problems one a line, then (when valid) the route table.
    pub text: String,
}

/// Validates the config and renders the report (no DNS lookups, secrets are read).
pub fn check(input: &ConfigInput) -> CheckReport {
    match config::load(input) {
        Ok(loaded) => {
            let mut text = String::new();
            for w in &loaded.warnings {
                text.push_str(&format!("{w}\n"));
            }
            text.push_str(&loaded.table.render_text());
            CheckReport { ok: true, text }
        }
        Err(problems) => {
            let text = problems.iter().map(|p| format!("{p}\n")).collect();
            CheckReport { ok: false, text }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_flags_parse_with_defaults() {
        let cli =
            Cli::try_parse_from(["tcpmap", "run", "--config", "a.yaml", "--config", "d/"]).unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        assert_eq!(a.config.config.len(), 2);
        assert_eq!(a.drain_timeout, 30);
        assert_eq!(a.handshake_timeout, 10.0);
        assert_eq!(a.log_format, LogFormat::Text);
        assert!(a.admin.is_none());
    }

    #[test]
    fn check_requires_config() {
        assert!(Cli::try_parse_from(["tcpmap", "check"]).is_err());
        let cli = Cli::try_parse_from([
            "tcpmap",
            "check",
            "--config",
            "x",
            "--secrets-dir",
            "s",
            "--namespace",
            "ns",
            "--ambassador-id",
            "id",
        ])
        .unwrap();
        let Command::Check(a) = cli.command else {
            panic!("not check")
        };
        let input = a.config.input();
        assert_eq!(input.namespace, "ns");
        assert_eq!(input.ambassador_id, "id");
    }

    #[test]
    fn handshake_timeout_flag() {
        let cli = Cli::try_parse_from([
            "tcpmap",
            "run",
            "--config",
            "x",
            "--handshake-timeout",
            "2.5",
        ])
        .unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        assert_eq!(a.handshake_timeout, 2.5);
        for bad in ["0", "-1", "nan", "abc"] {
            assert!(
                Cli::try_parse_from(["tcpmap", "run", "--config", "x", "--handshake-timeout", bad])
                    .is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn workers_flag() {
        let parse = |v: &str| {
            Cli::try_parse_from(["tcpmap", "run", "--config", "x", "--workers", v]).map(|c| match c
                .command
            {
                Command::Run(a) => a.workers,
                _ => panic!("not run"),
            })
        };
        assert_eq!(parse("auto").unwrap(), Workers::Auto);
        assert_eq!(parse("3").unwrap(), Workers::Count(3));
        for bad in ["0", "-1", "x", "1025"] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(Workers::Count(1).resolve(), 1);
        assert!(Workers::Auto.resolve() >= 1);
    }

    #[test]
    fn bad_log_format_is_rejected() {
        assert!(
            Cli::try_parse_from(["tcpmap", "run", "--config", "x", "--log-format", "xml"]).is_err()
        );
    }
}
