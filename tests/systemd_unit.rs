//! deploy/systemd/tcpmap.service: what it promises (reload by SIGHUP, drain on SIGTERM within
//! the stop timeout, a dynamic user with only CAP_NET_BIND_SERVICE), command lines that the
//! binary accepts, and systemd's own verdict: `systemd-analyze verify` without warnings and
//! `systemd-analyze security --offline` at exposure 2.0 or better.
//!
//! systemd-analyze comes with Debian's `systemd` package, which scripts/test installs when it is
//! missing; a machine without it (a minimal container) may skip with
//! `TCPMAP_SKIP_SYSTEMD_ANALYZE=1`, because the unit file is then only checked by the first test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/tcpmap.service")
}

/// `[Section] Key=value` entries (repeated keys keep every value), comments and
/// continuation-free lines only, as the unit is written.
fn entries(text: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not Key=value: {line}"));
        assert!(
            !v.ends_with('\\'),
            "continuation lines are not used: {line}"
        );
        out.entry((section.clone(), k.to_string()))
            .or_default()
            .push(v.to_string());
    }
    out
}

fn one<'a>(e: &'a BTreeMap<(String, String), Vec<String>>, key: &str) -> &'a str {
    let v = e
        .get(&("Service".to_string(), key.to_string()))
        .unwrap_or_else(|| panic!("no {key}="));
    assert_eq!(v.len(), 1, "{key}= given {} times", v.len());
    &v[0]
}

#[test]
fn the_unit_reloads_drains_and_runs_unprivileged() {
    let e = entries(&std::fs::read_to_string(unit_path()).unwrap());
    assert_eq!(one(&e, "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one(&e, "KillSignal"), "SIGTERM");
    assert_eq!(one(&e, "DynamicUser"), "yes");
    assert!(one(&e, "AmbientCapabilities").contains("CAP_NET_BIND_SERVICE"));
    assert_eq!(one(&e, "CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");
    assert_eq!(one(&e, "ProtectSystem"), "strict");

    // The command lines are ones the binary accepts, and the stop timeout outlasts the drain.
    let argv = |key: &str| -> Vec<String> {
        let line = one(&e, key);
        let mut words: Vec<String> = line.split_whitespace().map(String::from).collect();
        assert_eq!(words[0], "/usr/local/bin/tcpmap", "{key}");
        words[0] = "tcpmap".into();
        words
    };
    let run = argv("ExecStart");
    let cli = tcpmap::cli::Cli::try_parse_from(&run).unwrap();
    let tcpmap::cli::Command::Run(args) = cli.command else {
        panic!("ExecStart is not `tcpmap run`")
    };
    let stop: u64 = one(&e, "TimeoutStopSec").parse().unwrap();
    assert!(
        stop > args.drain_timeout,
        "TimeoutStopSec={stop} must exceed --drain-timeout {}",
        args.drain_timeout
    );
    let check = argv("ExecStartPre");
    let cli = tcpmap::cli::Cli::try_parse_from(&check).unwrap();
    let tcpmap::cli::Command::Check(c) = cli.command else {
        panic!("ExecStartPre is not `tcpmap check`")
    };
    assert_eq!(
        c.config.config, args.config.config,
        "check and run read the same config"
    );
    assert_eq!(c.config.secrets_dir, args.config.secrets_dir);
}

/// The unit with the binary path pointing at the built binary (verify checks it exists).
fn unit_for_this_build(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(unit_path()).unwrap();
    let path = dir.join("tcpmap.service");
    std::fs::write(
        &path,
        text.replace("/usr/local/bin/tcpmap", common::daemon::binary()),
    )
    .unwrap();
    path
}

fn analyze(args: &[&str], unit: &Path) -> Option<std::process::Output> {
    match Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
    {
        Ok(out) => Some(out),
        Err(e) => {
            common::env::missing(
                "SYSTEMD_ANALYZE",
                &format!("systemd-analyze cannot run: {e}"),
            );
            None
        }
    }
}

#[test]
fn systemd_analyze_verifies_the_unit_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    // --man=no: the man page is `tcpmap man`'s output, installed by the admin.
    let Some(out) = analyze(&["verify", "--man=no"], &unit) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warns:\n{stderr}"
    );
}

#[test]
fn systemd_analyze_security_rates_the_unit_ok() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    // Exposure on systemd's 0..10 scale; --threshold is in tenths.
    let Some(out) = analyze(&["security", "--offline=yes", "--threshold=20"], &unit) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let level = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level:\n{stdout}"));
    assert!(out.status.success(), "exposure above 2.0: {level}");
}
