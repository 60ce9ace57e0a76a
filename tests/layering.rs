//! The crate's layering, checked on its source: the runtime crates (async-std, async-io, flume,
//! signal-hook) are named only under `src/rt/`, so swapping the runtime is a change in that
//! directory alone; the pure core (`route/`, `sni`, `proxy_protocol`, `postgres`, `dns/`, the deadline queue
//! `rt/timer/queue.rs`, and `config/` apart from its readers) does no I/O of its own; and the
//! layers point one way: `state/` (what connections share) names neither `actors/` nor
//! `workers/`, `actors/` never names `workers/`, and `config/` and `route/` name no I/O layer.
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
        "src/postgres.rs",
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

/// Lines of `dirs` (test files skipped) that name any of `names`, as `file:line: name: code`.
fn naming(dirs: &[&str], names: &[&str], skip: &[&str]) -> Vec<String> {
    let mut offenders = Vec::new();
    for dir in dirs {
        for (file, n, line) in code_lines(dir) {
            if is_test_file(&file) || skip.contains(&file.as_str()) {
                continue;
            }
            if let Some(what) = names.iter().find(|name| line.contains(*name)) {
                offenders.push(format!("{file}:{n}: {what}: {}", line.trim()));
            }
        }
    }
    offenders
}

#[test]
fn the_layers_point_one_way() {
    // actors/ drive the data plane through its interface; the worker processes sit above them.
    let actors = naming(&["src/actors"], &["crate::workers", "workers::"], &[]);
    assert!(
        actors.is_empty(),
        "actors/ names the worker processes:\n{}",
        actors.join("\n")
    );
    // The worker processes name the actors only where they run them: the worker runs a
    // LocalPlane (and its resolver and health checks), the pool is a DataPlane.
    let workers = naming(
        &["src/workers"],
        &["crate::actors", "actors::"],
        &["src/workers/worker.rs", "src/workers/plane.rs"],
    );
    assert!(
        workers.is_empty(),
        "workers/ names the actors outside worker.rs and plane.rs:\n{}",
        workers.join("\n")
    );
    // State that connections share sits below both.
    let state = naming(
        &["src/state"],
        &["crate::actors", "crate::workers", "actors::", "workers::"],
        &[],
    );
    assert!(
        state.is_empty(),
        "state/ names a layer above it:\n{}",
        state.join("\n")
    );
    // The config pipeline and the route table name no I/O layer.
    let pure = naming(
        &["src/config", "src/route"],
        &[
            "crate::actors",
            "crate::workers",
            "crate::net",
            "crate::rt",
            "actors::",
            "workers::",
        ],
        &[],
    );
    assert!(
        pure.is_empty(),
        "config/ or route/ names an I/O layer:\n{}",
        pure.join("\n")
    );
}

#[test]
fn actors_holds_only_actors() {
    // The Supervisor, ConfigActor, ListenerActor, ConnectionActor, ResolverActor and
    // HealthActor (with their own submodules); shared state lives in state/.
    const ACTORS: [&str; 6] = [
        "config",
        "connection",
        "health",
        "listener",
        "resolver",
        "supervisor",
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/actors");
    let mut others = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        if stem != "mod" && !ACTORS.contains(&stem.as_str()) {
            others.push(stem);
        }
    }
    assert!(others.is_empty(), "not an actor: {others:?}");
}
