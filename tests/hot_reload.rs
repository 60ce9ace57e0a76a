//! Hot reload of the real binary with SIGHUP: a new mapping serves, a changed service takes
//! new connections while an open one keeps its upstream, a removed port refuses new
//! connections while its open one continues.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::daemon::{Daemon, http_get, write_atomic};
use common::metrics::metric;
use common::net::{self, free_port};
use common::wait::eventually;
use common::yaml::mapping;

/// Writes `yaml`, sends SIGHUP, waits for the SIGHUP-triggered reload to be applied.
fn sighup_reload(d: &Daemon, path: &Path, yaml: &str) {
    write_atomic(path, yaml);
    let mark = d.mark();
    d.signal(libc::SIGHUP);
    d.wait_line(mark, Duration::from_secs(5), |l| {
        l.contains("reload applied") && l.contains("trigger=\"sighup\"")
            || l.contains("reload applied") && l.contains("trigger=sighup")
    })
    .unwrap_or_else(|| panic!("no SIGHUP reload applied:\n{}", d.log()));
}

/// A new connection's banner (the upstream's name).
fn banner_of(port: u16) -> String {
    let mut s = net::connect(net::local(port));
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    net::read_line(&mut s)
}

#[test]
fn sighup_adds_retargets_and_removes_without_cutting_open_connections() {
    let ups = [
        net::banner("127.0.0.1:0", "A"),
        net::banner("127.0.0.1:0", "B"),
        net::banner("127.0.0.1:0", "C"),
    ];
    let p2 = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let (d, [p1]) = Daemon::run_yaml(
        &cfg,
        |[p1]| mapping("one", p1, ups[0].addr),
        &["--admin", "127.0.0.1:0"],
    );

    // A connection opened before any reload.
    let mut held = net::connect(net::local(p1));
    held.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    assert_eq!(net::read_line(&mut held), "A");
    net::roundtrip(&mut held, b"before");

    // 1. Add a mapping on a new port: it serves.
    let two = mapping("two", p2, ups[1].addr);
    sighup_reload(
        &d,
        &cfg,
        &format!("{}{two}", mapping("one", p1, ups[0].addr)),
    );
    assert_eq!(banner_of(p2), "B");
    net::roundtrip(&mut held, b"after add");

    // 2. Change mapping one's service three times: new connections follow, `held` stays.
    for (i, up) in [2usize, 1, 2].into_iter().enumerate() {
        sighup_reload(
            &d,
            &cfg,
            &format!("{}{two}", mapping("one", p1, ups[up].addr)),
        );
        let want = ["A", "B", "C"][up];
        assert_eq!(banner_of(p1), want, "reload {i}: new connection");
        net::roundtrip(&mut held, format!("still A after reload {i}").as_bytes());
    }
    // Only the first connection ever reached A.
    assert_eq!(ups[0].connections(), 1);

    // 3. Remove mapping one: its port refuses, `held` continues both ways.
    sighup_reload(&d, &cfg, &two);
    assert!(
        TcpStream::connect_timeout(&net::local(p1), Duration::from_secs(1)).is_err(),
        "removed port still accepts"
    );
    net::roundtrip(&mut held, b"after remove");
    assert_eq!(banner_of(p2), "B");

    // SIGHUP reloads are counted (initial load + 5 reloads; the file watch may add more).
    let admin = d.admin_addr();
    let ok = || {
        let (_, body) = http_get(admin, "/metrics");
        metric(&body, "tcpmap_config_reloads_total", &[("result", "ok")])
    };
    assert!(
        eventually(Duration::from_secs(2), || ok() >= 6.0),
        "reloads ok = {}",
        ok()
    );
    held.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(net::closed_within(&mut held, Duration::from_secs(3)));
}
