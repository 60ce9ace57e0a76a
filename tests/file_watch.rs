//! The file watch reloads without a signal: an in-place rewrite, an editor's rename-over, and
//! a Kubernetes ConfigMap `..data` symlink swap (as a file path and as a directory path).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, http_get, write_atomic};
use common::metrics::metric;
use common::net::{self, free_port};
use common::yaml::mapping;

fn banner_of(port: u16) -> String {
    let mut s = net::connect(net::local(port));
    net::read_line(&mut s)
}

/// Runs `change`, then waits (at most 2 s) for a watch-triggered reload to be applied.
fn applies_by_watch(d: &Daemon, change: impl FnOnce()) -> Duration {
    let mark = d.mark();
    let t = Instant::now();
    change();
    d.wait_line(mark, Duration::from_secs(2), |l| {
        l.contains("reload applied") && l.contains("trigger=\"watch\"")
    })
    .unwrap_or_else(|| panic!("no watch reload within 2 s:\n{}", d.log()));
    t.elapsed()
}

#[test]
fn in_place_rewrite_and_rename_over_apply_without_a_signal() {
    let (a, b) = (
        net::banner("127.0.0.1:0", "A"),
        net::banner("127.0.0.1:0", "B"),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let (d, [port]) = Daemon::run_yaml(
        &cfg,
        |[port]| mapping("one", port, a.addr),
        &["--admin", "127.0.0.1:0"],
    );
    assert_eq!(banner_of(port), "A");

    // In place: truncate and write the same inode.
    let took = applies_by_watch(&d, || {
        std::fs::write(&cfg, mapping("one", port, b.addr)).unwrap()
    });
    assert_eq!(banner_of(port), "B", "in-place rewrite not applied");
    eprintln!("in-place rewrite applied after {took:?}");

    // Rename over: write a temp file, rename it onto the config.
    let took = applies_by_watch(&d, || write_atomic(&cfg, &mapping("one", port, a.addr)));
    assert_eq!(banner_of(port), "A", "rename-over not applied");
    eprintln!("rename-over applied after {took:?}");

    // Watch-triggered reloads are counted like the others (initial load + 2).
    let (_, text) = http_get(d.admin_addr(), "/metrics");
    let ok = metric(&text, "tcpmap_config_reloads_total", &[("result", "ok")]);
    assert!(
        ok >= 3.0,
        "tcpmap_config_reloads_total{{result=\"ok\"}} = {ok}"
    );
}

/// Builds `dir/..TS/config.yaml`, `dir/..data -> ..TS`, `dir/config.yaml -> ..data/config.yaml`.
fn configmap(dir: &Path, ts: &str, yaml: &str) {
    let data = dir.join(ts);
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("config.yaml"), yaml).unwrap();
    symlink(ts, dir.join("..data")).unwrap();
    symlink("..data/config.yaml", dir.join("config.yaml")).unwrap();
}

/// What the kubelet does: a new timestamped dir, a temp symlink to it renamed over `..data`,
/// then the old dir removed.
fn configmap_swap(dir: &Path, old_ts: &str, ts: &str, yaml: &str) {
    let data = dir.join(ts);
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("config.yaml"), yaml).unwrap();
    symlink(ts, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join(old_ts)).unwrap();
}

fn configmap_swap_applies(use_dir: bool) {
    let (a, b) = (
        net::banner("127.0.0.1:0", "A"),
        net::banner("127.0.0.1:0", "B"),
    );
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    configmap(dir.path(), "..2026_01", &mapping("one", port, a.addr));
    let path = if use_dir {
        dir.path().to_path_buf()
    } else {
        dir.path().join("config.yaml")
    };
    let d = Daemon::run(&path, &[]);
    assert_eq!(banner_of(port), "A");
    let took = applies_by_watch(&d, || {
        configmap_swap(
            dir.path(),
            "..2026_01",
            "..2026_02",
            &mapping("one", port, b.addr),
        )
    });
    assert_eq!(banner_of(port), "B", "..data swap not applied");
    eprintln!("..data swap applied after {took:?}");
    // And a second swap (the watch survives the first).
    applies_by_watch(&d, || {
        configmap_swap(
            dir.path(),
            "..2026_02",
            "..2026_03",
            &mapping("one", port, a.addr),
        )
    });
    assert_eq!(banner_of(port), "A", "second ..data swap not applied");
    // Only one mapping even though the directory holds `..data/` and `..2026_*/` too.
    let line = d
        .lines()
        .into_iter()
        .rev()
        .find(|l| l.contains("config applied"));
    assert!(line.unwrap().contains("retargeted=1"));
}

#[test]
fn configmap_data_swap_applies_when_the_file_is_named() {
    configmap_swap_applies(false);
}

#[test]
fn configmap_data_swap_applies_when_the_directory_is_named() {
    configmap_swap_applies(true);
}
