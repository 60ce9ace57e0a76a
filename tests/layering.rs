//! The crate's layering, checked on its source: the runtime crates (async-std, async-io, flume,
//! signal-hook) are named only under `src/rt/`, so swapping the runtime is a change in that
//! directory alone; the pure core (`route/`, `sni`, `proxy_protocol`, `dns/`, the deadline queue
//! `rt/timer/queue.rs`, and `config/` apart from its readers) does no I/O of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(file relative to the crate, line number, line)` for every non-comment line of `dir`.
fn code_lines(dir: &str) -> Vec<(String, usize, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    let base = root.join(dir);
    if base.is_dir() {
        rust_files(&base, &mut files);
    } else {
        files.push(base.with_extension("rs"));
    }
    let mut out = Vec::new();
    for f in files {
        let rel = f.strip_prefix(root).unwrap().display().to_string();
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            out.push((rel.clone(), i + 1, line.to_string()));
        }
    }
    out
}

/// Test-only files may do what they like (they build fixtures on disk, start servers).
fn is_test_file(rel: &str) -> bool {
    rel.ends_with("tests.rs") || rel.contains("test_pki") || rel.contains("testutil")
}

#[test]
fn only_rt_names_the_runtime_the_channels_and_the_signal_crate() {
    let mut offenders = Vec::new();
    for (file, n, line) in code_lines("src") {
        if file.starts_with("src/rt/") {
            continue;
        }
        // `signal_hook` also covers `signal_hook_async_std`.
        for name in ["async_std", "async_io", "flume", "signal_hook"] {
            if line.contains(&format!("{name}::"))
                || line.contains(&format!("use {name}"))
                || line.contains(&format!("{name}_"))
            {
                offenders.push(format!("{file}:{n}: {}", line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "name these through crate::rt instead:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_pure_core_does_no_io() {
    // The config readers are the only I/O in config/: `source` reads the YAML files and
    // `secrets::Files` every certificate, key and CA they name (with the key's mode), before
    // validation, which then works on memory alone.
    const READERS: [&str; 2] = ["src/config/source.rs", "src/config/secrets.rs"];
    const IO: [&str; 9] = [
        "std::fs",
        "std::net::TcpStream",
        "std::net::TcpListener",
        "std::net::UdpSocket",
        "std::process",
        "std::thread",
        "async_io",
        "crate::rt",
        "crate::actors",
    ];
    let mut offenders = Vec::new();
    for dir in [
        "src/config",
        "src/route",
        "src/sni",
        "src/sni.rs",
        "src/proxy_protocol",
        "src/proxy_protocol.rs",
        "src/dns",
        "src/rt/timer/queue.rs",
    ] {
        for (file, n, line) in code_lines(dir) {
            if READERS.contains(&file.as_str()) || is_test_file(&file) {
                continue;
            }
            if let Some(what) = IO.iter().find(|io| line.contains(*io)) {
                offenders.push(format!("{file}:{n}: {what}: {}", line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "I/O in the pure core:\n{}",
        offenders.join("\n")
    );
}
