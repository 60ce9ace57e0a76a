//! `tcpmap completions SHELL` and `tcpmap man`: generated from the clap definitions, so they
//! know every subcommand and flag; the bash script is valid bash, and the man page renders.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use clap::CommandFactory;

fn tcpmap(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tcpmap"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every `--flag` of every subcommand.
fn all_flags() -> Vec<String> {
    let cli = tcpmap::cli::Cli::command();
    let mut flags = Vec::new();
    for sub in cli.get_subcommands() {
        for arg in sub.get_arguments() {
            if let Some(long) = arg.get_long() {
                flags.push(format!("--{long}"));
            }
        }
    }
    assert!(flags.iter().any(|f| f == "--output"));
    flags
}

#[test]
fn completions_know_every_subcommand_and_flag() {
    for shell in ["bash", "zsh", "fish"] {
        let script = tcpmap(&["completions", shell]);
        for sub in ["run", "check", "completions", "man"] {
            assert!(script.contains(sub), "{shell}: no {sub}");
        }
        for flag in all_flags() {
            // fish writes `-l flag`, the others `--flag`.
            let name = flag.trim_start_matches('-');
            assert!(
                script.contains(&flag) || script.contains(&format!("-l {name}")),
                "{shell} completion lacks {flag}"
            );
        }
    }
    // The bash script parses (bash is on every machine that runs these tests).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tcpmap.bash");
    std::fs::write(&path, tcpmap(&["completions", "bash"])).unwrap();
    let status = Command::new("bash").arg("-n").arg(&path).status().unwrap();
    assert!(status.success(), "bash -n rejects the completion script");
    let bad = Command::new(env!("CARGO_BIN_EXE_tcpmap"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn man_page_lists_every_subcommand_and_flag_and_renders() {
    let page = tcpmap(&["man"]);
    assert!(page.contains(".TH tcpmap 1"), "{page}");
    for sub in ["RUN", "CHECK", "COMPLETIONS", "MAN"] {
        assert!(
            page.contains(&format!(".SH \"TCPMAP {sub}\"")),
            "no {sub} section"
        );
    }
    for flag in all_flags() {
        // roff escapes the dashes: `\-\-config`.
        let escaped = flag.replace('-', "\\-");
        assert!(page.contains(&escaped), "man page lacks {flag}");
    }
    // groff (man-db's renderer; scripts/test installs groff-base) renders it without warnings.
    let rendered = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(page.as_bytes())?;
            child.wait_with_output()
        });
    match rendered {
        Ok(out) => {
            assert!(out.status.success());
            let warnings = String::from_utf8_lossy(&out.stderr);
            assert!(warnings.trim().is_empty(), "groff: {warnings}");
        }
        Err(e) => common::env::missing("GROFF", &format!("groff cannot run: {e}")),
    }
}
