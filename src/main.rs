//! The `tcpmap` binary: parse the command line, set up logging, run, map the outcome to an
//! exit code (check: 0 valid, 1 invalid; run: 1 on a startup error).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use tcpmap::cli::{Cli, Command, LogFormat};
use tcpmap::logwriter::{LineFormat, LogWriter};

/// Logs to stderr through the buffered writer (`tcpmap::logwriter`); the returned handle
/// flushes what is left before the process exits.
fn init_tracing(format: LogFormat, default_level: &str) -> LogWriter {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let writer = LogWriter::stderr(match format {
        LogFormat::Text => LineFormat::Text,
        LogFormat::Json => LineFormat::Json,
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.clone())
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (never here) would fail; ignoring it keeps logging best-effort. The
    // subscriber is set without tracing-log's bridge: tcpmap's own one rate-limits the rustls
    // warnings a client can trigger.
    let set = match format {
        LogFormat::Text => tracing::subscriber::set_global_default(builder.finish()),
        LogFormat::Json => {
            tracing::subscriber::set_global_default(builder.json().flatten_event(true).finish())
        }
    };
    if set.is_ok() {
        tcpmap::daemon::forward_log_records();
    }
    writer
}

/// Writes to stdout; a closed stdout (e.g. `| head`) must not turn a verdict into a panic.
fn print(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => {
            let log = init_tracing(LogFormat::Text, "warn");
            let report = tcpmap::cli::check_as(&args.config.input(), args.output);
            print(report.text.as_bytes());
            log.flush();
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Worker(args) => {
            let log = init_tracing(args.log_format, "info");
            let outcome = tcpmap::daemon::run_worker();
            // A worker's last lines (its drain) go out before it exits.
            log.flush();
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tcpmap worker: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Completions(args) => {
            print(&tcpmap::cli::completions(args.shell));
            ExitCode::SUCCESS
        }
        Command::Man => match tcpmap::cli::man_page() {
            Ok(page) => {
                print(&page);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tcpmap: cannot render the man page: {e}");
                ExitCode::from(1)
            }
        },
        Command::Run(args) => {
            let log = init_tracing(args.log_format, "info");
            let outcome = tcpmap::daemon::run(args);
            // Every line logged before the drain ended goes out before the exit.
            log.flush();
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tcpmap: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
