//! Command line: `tcpmap run`, `tcpmap check`, `tcpmap completions` and `tcpmap man`
//! (README.md "The binary", docs/operations.md), and the `check` report.
//!
//! Owns: flag definitions, turning them into a [`ConfigInput`], what `check` prints (text or
//! JSON), and the shell completions and man page generated from these definitions.
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
    /// Print a shell completion script (e.g. `tcpmap completions bash > /etc/bash_completion.d/tcpmap`).
    Completions(CompletionsArgs),
    /// Print the man page (roff; e.g. `tcpmap man > /usr/share/man/man1/tcpmap.1`).
    Man,
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

/// `tcpmap completions` arguments.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Where the config comes from (shared by `run` and `check`).
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// A YAML file (one or many `---` documents) or a directory of `*.yaml`/`*.yml`; repeatable.
    #[arg(long = "config", value_name = "PATH", required = true)]
    pub config: Vec<PathBuf>,
    /// Directory of mounted TLS secrets: `<dir>/NAME/tls.crt` + `tls.key` (looked in after the
    /// `kind: Secret` documents of the config paths).
    #[arg(long, value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// The proxy's own namespace (services without a dot in other namespaces get `.NS`).
    #[arg(long, env = "AMBASSADOR_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Only resources naming this `ambassador_id` apply.
    #[arg(long, env = "AMBASSADOR_ID", default_value = "default")]
    pub ambassador_id: String,
    /// Serve the Gateway API Gateways whose `spec.gatewayClassName` is NAME (and the routes
    /// bound to them); other Gateways are skipped.
    #[arg(
        long,
        env = "TCPMAP_GATEWAY_CLASS",
        default_value = "tcpmap",
        value_name = "NAME"
    )]
    pub gateway_class: String,
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
            gateway_class: self.gateway_class.clone(),
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

/// `--drain-strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum DrainStrategy {
    /// Open connections run until the drain timeout, then the rest are closed.
    #[default]
    Wait,
    /// Closes spread evenly over the drain timeout.
    Spread,
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
    /// How a drain closes open connections: `wait` lets them run until --drain-timeout;
    /// `spread` closes the idle ones after a second and each other one at its own random
    /// instant spread evenly over --drain-timeout (TLS clients get a close_notify first).
    #[arg(long, value_enum, value_name = "wait|spread", default_value_t = DrainStrategy::Wait)]
    pub drain_strategy: DrainStrategy,
    /// Overall limit of concurrent connections (extra ones are closed at once). Default: what
    /// the descriptor limit allows: (RLIMIT_NOFILE, whose soft limit is raised to the hard one
    /// at start, less a reserve of 256 or a quarter) / 2, logged at start.
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
    /// Write no access line for a connection whose client sent no byte (HAProxy's
    /// `dontlognull`; such connections are still counted in the metrics).
    #[arg(long)]
    pub dont_log_null: bool,
    /// Session-ticket keys shared with other tcpmap processes: one base64 line of 80 random
    /// bytes per key (`openssl rand 80 | base64 -w0`), the first seals new tickets, every one
    /// opens them. Re-read on SIGHUP and when the file changes; a bad file is an error at start
    /// and a rejected reload later (the old keys stay). Without it the process keeps its own
    /// keys, rotated every 6 hours.
    #[arg(long, value_name = "FILE")]
    pub session_ticket_keys: Option<PathBuf>,
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
    /// What to print: problem lines and the route table, or one JSON document of both.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `check --output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// `FILE:LINE: KIND NAME: message` lines, the Gateway API status lines, then the route table.
    #[default]
    Text,
    /// One JSON document: `{ok, routes, warnings, problems, status}`.
    Json,
}

/// What `check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// True when the config is valid (warnings allowed).
    pub ok: bool,
    /// The text to print: problems one a line, then (when valid) the route table.
    pub text: String,
}

/// Validates the config and renders the report as text (no DNS lookups, secrets are read).
pub fn check(input: &ConfigInput) -> CheckReport {
    check_as(input, OutputFormat::Text)
}

/// Validates the config and renders the report in `format`. The JSON form is one document:
/// `ok`; `routes`, the route table as `/config` shows it (`null` when invalid) plus `lines`,
/// the text form's route lines; `warnings` and `problems` (the errors), each entry with the
/// fields of a [`config::ConfigError`] and `text`, its line in the text form; `status`, the
/// Gateway API status of each served Gateway and bound route (`null` when invalid). The text
/// form prints the problems, the status lines (`FILE:LINE: KIND NAME: status: …`), then the
/// route table.
pub fn check_as(input: &ConfigInput, format: OutputFormat) -> CheckReport {
    let (ok, table, found) = match config::load(input) {
        Ok(loaded) => (true, Some(loaded.table), loaded.warnings),
        Err(problems) => (false, None, problems),
    };
    let text = match format {
        OutputFormat::Text => {
            let mut text: String = found.iter().map(|p| format!("{p}\n")).collect();
            text.extend(table.as_ref().map(|t| t.status().text.clone()));
            text.extend(table.as_ref().map(|t| t.render_text()));
            text
        }
        OutputFormat::Json => {
            let entry = |p: &config::ConfigError| {
                let mut v = serde_json::to_value(p).unwrap_or_default();
                if let Some(m) = v.as_object_mut() {
                    m.insert("text".into(), p.to_string().into());
                }
                v
            };
            let (errors, warnings): (Vec<_>, Vec<_>) = found.iter().partition(|p| p.is_error());
            let routes = table.as_ref().map(|t| {
                let mut v = t.to_json();
                if let Some(m) = v.as_object_mut() {
                    let text = t.render_text();
                    let lines: Vec<&str> = text.lines().collect();
                    m.insert("lines".into(), lines.into());
                }
                v
            });
            let doc = serde_json::json!({
                "ok": ok,
                "routes": routes,
                "warnings": warnings.into_iter().map(entry).collect::<Vec<_>>(),
                "problems": errors.into_iter().map(entry).collect::<Vec<_>>(),
                "status": table.as_ref().map(|t| t.status().json.clone()),
            });
            format!("{doc:#}\n")
        }
    };
    CheckReport { ok, text }
}

/// The completion script for `shell`, generated from these definitions.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    use clap::CommandFactory;
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "tcpmap", &mut out);
    out
}

/// The man page (roff), generated from these definitions: `tcpmap(1)` with every
/// subcommand's options in its own section.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    let subs: Vec<&clap::Command> = cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help")
        .collect();
    // The subcommands live on this one page (no tcpmap-run(1) pages): a list, then a
    // section each with its description, synopsis and options.
    out.extend_from_slice(b".SH SUBCOMMANDS\n");
    for sub in &subs {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        let item = format!(
            ".TP\n\\fBtcpmap {}\\fR\n{} (section TCPMAP {}).\n",
            sub.get_name(),
            roff_text(about.trim_end_matches('.')),
            sub.get_name().to_uppercase()
        );
        out.extend_from_slice(item.as_bytes());
    }
    for sub in subs {
        let title = format!(".SH \"TCPMAP {}\"\n", sub.get_name().to_uppercase());
        out.extend_from_slice(title.as_bytes());
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            out.extend_from_slice(format!("{}\n", roff_text(&about.to_string())).as_bytes());
        }
        let sub = sub.clone().bin_name(format!("tcpmap {}", sub.get_name()));
        let page = clap_mangen::Man::new(sub);
        page.render_synopsis_section(&mut out)?;
        page.render_options_section(&mut out)?;
    }
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// `s` as roff text: backslashes and dashes escaped, no line read as a request.
fn roff_text(s: &str) -> String {
    s.lines()
        .map(|l| {
            let l = l.replace('\\', "\\e").replace('-', "\\-");
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
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
    fn check_output_defaults_to_text_and_takes_json() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["tcpmap", "check", "--config", "x"];
            argv.extend_from_slice(extra);
            match Cli::try_parse_from(argv).map(|c| c.command) {
                Ok(Command::Check(a)) => Ok(a.output),
                Ok(_) => panic!("not check"),
                Err(e) => Err(e),
            }
        };
        assert_eq!(parse(&[]).unwrap(), OutputFormat::Text);
        assert_eq!(parse(&["--output", "json"]).unwrap(), OutputFormat::Json);
        assert!(parse(&["--output", "yaml"]).is_err());
    }

    #[test]
    fn json_report_of_an_invalid_config_has_its_problems() {
        let input = ConfigInput {
            inline: vec![(
                "t.yaml".into(),
                "apiVersion: ambassador/v1\nkind: TCPMapping\nname: a\nservice: b\n".into(),
            )],
            ..ConfigInput::default()
        };
        let report = check_as(&input, OutputFormat::Json);
        assert!(!report.ok);
        let doc: serde_json::Value = serde_json::from_str(&report.text).unwrap();
        assert_eq!(doc["ok"], false);
        assert!(doc["routes"].is_null());
        let p = &doc["problems"][0];
        assert_eq!(
            (p["file"].as_str(), p["line"].as_u64()),
            (Some("t.yaml"), Some(1))
        );
        assert_eq!(p["kind"], "TCPMapping");
        assert_eq!(p["text"], check(&input).text.trim_end());
    }

    #[test]
    fn roff_text_escapes_requests_dashes_and_backslashes() {
        assert_eq!(roff_text("a-b\\c\n.x\n'y"), "a\\-b\\ec\n\\&.x\n\\&'y");
    }

    #[test]
    fn bad_log_format_is_rejected() {
        assert!(
            Cli::try_parse_from(["tcpmap", "run", "--config", "x", "--log-format", "xml"]).is_err()
        );
    }
}
