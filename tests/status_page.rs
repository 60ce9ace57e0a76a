//! The status page of the real binary (SPEC 16): `/status.json` against a running daemon with
//! one and two workers (real upstreams; connections through the proxy move its counters,
//! summed over the workers), and `/` rendered by a real browser — Debian's `chromium`,
//! headless — whose DOM, after the page's script ran and refreshed once, names the listener
//! and the mappings (a hostile mapping name shown as text, not markup), shows a counter that
//! moved and an endpoint's state change after that endpoint died. Killing both worker
//! processes one after the other leaves the totals where they were. The browser's screenshot
//! is kept in `CARGO_TARGET_TMPDIR/status-page.png`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use common::daemon::{Daemon, http_get, kill, pid_alive};
use common::pki::TlsSecret;
use common::wait::eventually;
use common::yaml::{mapping_with, tls_context};
use common::{env, net};
use serde_json::Value;

/// A mapping name that would be markup (and end the page's script) if pasted raw.
const HOSTILE: &str = "</script><img src=x onerror=alert(1)>";

/// An echo upstream that can be stopped: its listening socket closes, so connects (and
/// health checks) to its address are refused from then on.
struct Stoppable {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Stoppable {
    fn start() -> Stoppable {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        std::thread::spawn(move || echo(s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Stoppable {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Closes the listening socket (returns once it is closed).
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn echo(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = s.read(&mut buf) {
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
    let _ = s.shutdown(Shutdown::Write);
}

/// A daemon with `workers`: a raw listener whose one mapping has the hostile name, and a TLS
/// listener terminating `db.example` for mapping `db` (actively health-checked every 100 ms).
struct Setup {
    daemon: Daemon,
    admin: SocketAddr,
    raw: u16,
    tls: u16,
    db: Stoppable,
    echo_up: net::Upstream,
    _dirs: (tempfile::TempDir, TlsSecret),
}

fn setup(workers: &str) -> Setup {
    let echo = net::echo("127.0.0.1:0");
    let db = Stoppable::start();
    let secret = TlsSecret::new("status CA", "db", &["db.example"]);
    let dir = tempfile::tempdir().unwrap();
    let hc = "health_check: {interval_ms: 100, timeout_ms: 100, unhealthy_threshold: 1, healthy_threshold: 1}\n";
    let (daemon, [raw, tls]) = Daemon::run_yaml(
        &dir.path().join("config.yaml"),
        |[raw, tls]| {
            mapping_with(&format!("'{HOSTILE}'"), raw, echo.addr, "")
                + &tls_context("db", "hosts: [db.example]\nsecret: db\n")
                + &mapping_with("db", tls, db.addr, &format!("host: db.example\n{hc}"))
        },
        &[
            "--admin",
            "127.0.0.1:0",
            "--workers",
            workers,
            "--secrets-dir",
            secret.path().to_str().unwrap(),
        ],
    );
    let admin = daemon.admin_addr();
    Setup {
        daemon,
        admin,
        raw,
        tls,
        db,
        echo_up: echo,
        _dirs: (dir, secret),
    }
}

fn status(admin: SocketAddr) -> Value {
    let (code, body) = http_get(admin, "/status.json");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The totals of mapping `name` in `/status.json`.
fn totals<'a>(s: &'a Value, name: &str) -> &'a Value {
    let list = s["mappings"].as_array().unwrap();
    list.iter()
        .find(|m| m["mapping"] == name)
        .unwrap_or_else(|| panic!("no mapping {name}: {s}"))
}

/// The one endpoint of mapping `name` (under its listener and group).
fn endpoint(s: &Value, name: &str) -> Value {
    for l in s["listeners"].as_array().unwrap() {
        for g in l["groups"].as_array().unwrap() {
            for u in g["upstreams"].as_array().unwrap() {
                if u["mapping"] == name {
                    return u["endpoints"][0].clone();
                }
            }
        }
    }
    panic!("no mapping {name}: {s}")
}

/// Three echoed connections through the raw listener (100 bytes each way), one held open.
fn traffic(raw: u16) -> TcpStream {
    for _ in 0..3 {
        let mut c = net::connect(net::local(raw));
        net::roundtrip(&mut c, &[7u8; 100]);
        c.shutdown(Shutdown::Write).unwrap();
        assert!(net::closed_within(&mut c, Duration::from_secs(3)));
    }
    let mut held = net::connect(net::local(raw));
    net::roundtrip(&mut held, b"held");
    held
}

/// `/status.json` against a running daemon: the config's shape, the certificate, and the
/// counters that connections moved, with one worker (threads of one process) and with two
/// worker processes (totals summed over both).
#[test]
fn status_json_shows_the_config_and_counts_over_one_and_two_workers() {
    for (workers, mode, count) in [("1", "threads", None), ("2", "processes", Some(2))] {
        let s = setup(workers);
        let before = status(s.admin);
        assert_eq!(before["workers"]["mode"], mode, "{before}");
        if let Some(n) = count {
            assert_eq!(before["workers"]["count"], n);
            assert_eq!(before["workers"]["processes"].as_array().unwrap().len(), n);
        }
        assert_eq!(before["generation"], 1);
        assert_eq!(before["last_reload"]["ok"], true);
        assert!(before["uptime_s"].is_u64());
        // One entry per listener, in address order.
        let listener = |port: u16| {
            let list = before["listeners"].as_array().unwrap();
            assert_eq!(list.len(), 2, "{before}");
            list.iter()
                .find(|l| l["address"] == net::local(port).to_string())
                .unwrap_or_else(|| panic!("no listener on {port}: {before}"))
                .clone()
        };
        let raw_group = &listener(s.raw)["groups"][0];
        assert_eq!(raw_group["tls_mode"], "raw");
        assert_eq!(raw_group["upstreams"][0]["mapping"], HOSTILE);
        assert_eq!(raw_group["upstreams"][0]["weight"], 100);
        let tls_group = &listener(s.tls)["groups"][0];
        assert_eq!(tls_group["host"], "db.example");
        assert_eq!(tls_group["tls_mode"], "terminate");
        assert_eq!(tls_group["upstreams"][0]["mapping"], "db");
        let cert = &before["certificates"][0];
        assert_eq!(cert["source"], "TLSContext db");
        assert_eq!(cert["subject"], "CN=db.example");
        assert_eq!(cert["names"], serde_json::json!(["db.example"]));
        assert_eq!(cert["expiring"], false, "{cert}");
        assert!(cert["days_left"].as_i64().unwrap() > 14, "{cert}");
        assert_eq!(totals(&before, HOSTILE)["accepted"], 0);

        let held = traffic(s.raw);
        let moved = eventually(Duration::from_secs(5), || {
            let now = status(s.admin);
            let t = totals(&now, HOSTILE);
            t["accepted"] == 4 && t["ended"]["client_closed"] == 3 && t["active"] == 1
        });
        let now = status(s.admin);
        assert!(moved, "workers {workers}: counters did not move: {now}");
        let t = totals(&now, HOSTILE);
        assert_eq!(t["bytes_client_to_upstream"], 304, "{t}");
        assert_eq!(t["bytes_upstream_to_client"], 304, "{t}");
        let ep = endpoint(&now, HOSTILE);
        assert_eq!(ep["address"], s.echo_up.addr.to_string());
        assert_eq!(ep["state"], "healthy");
        assert_eq!(
            ep["active"], 1,
            "the held connection, on whichever worker: {ep}"
        );
        assert_eq!(ep["last_check"], Value::Null, "no health check configured");
        // The health checker's first round comes within a second of the start.
        let checked = eventually(Duration::from_secs(5), || {
            let db = endpoint(&status(s.admin), "db");
            db["state"] == "healthy" && db["last_check"]["ok"] == true
        });
        assert!(checked, "{}", endpoint(&status(s.admin), "db"));
        drop(held);
        drop(s);
    }
}

/// The pids of the worker processes, by slot.
fn pids(s: &Value) -> Vec<u64> {
    let list = s["workers"]["processes"].as_array().unwrap();
    list.iter().map(|w| w["pid"].as_u64().unwrap()).collect()
}

/// With two workers, each SIGKILLed in turn (and replaced): the page's counters of the
/// connections they served stay (what each dead worker counted is kept), and the connection
/// the killed worker held no longer counts as open.
#[test]
fn a_killed_workers_counts_stay_on_the_page() {
    let s = setup("2");
    let held = traffic(s.raw);
    let counted = eventually(Duration::from_secs(5), || {
        let t = totals(&status(s.admin), HOSTILE).clone();
        t["accepted"] == 4 && t["ended"]["client_closed"] == 3 && t["active"] == 1
    });
    let before = status(s.admin);
    assert!(counted, "{before}");
    for slot in 0..2 {
        let victim = pids(&status(s.admin))[slot];
        kill(victim, libc::SIGKILL);
        assert!(eventually(Duration::from_secs(5), || !pid_alive(victim)));
        let replaced = eventually(Duration::from_secs(10), || {
            let now = pids(&status(s.admin));
            now.len() == 2 && !now.contains(&victim)
        });
        assert!(replaced, "no replacement for {victim}: {}", status(s.admin));
    }
    let now = status(s.admin);
    let (t, was) = (totals(&now, HOSTILE), totals(&before, HOSTILE));
    assert_eq!(t["accepted"], 4, "{t}");
    assert_eq!(t["ended"]["client_closed"], 3, "{t}");
    assert_eq!(
        t["active"], 0,
        "the held connection died with its worker: {t}"
    );
    for way in ["bytes_client_to_upstream", "bytes_upstream_to_client"] {
        assert!(
            t[way].as_u64() >= was[way].as_u64(),
            "{way}: {t} after {was}"
        );
        assert!(t[way].as_u64() >= Some(300), "{way}: {t}");
    }
    drop(held);
}

/// Runs `chromium --headless` with `args` on `url`; its stdout.
fn chromium(args: &[&str], url: &str) -> String {
    // A profile of its own: runs in parallel (or a browser of the user) share nothing.
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            // Containers often have a small /dev/shm.
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        // The page refreshes after 2 s: let that much virtual time pass before the dump.
        .arg("--virtual-time-budget=2500")
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn have_chromium() -> bool {
    Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The page in a real browser: the DOM after the script ran (and refreshed once from
/// `/status.json`) shows the listener, the hostile mapping name as text, a counter that
/// moved, and the endpoint that died as unhealthy.
#[test]
fn headless_chromium_renders_the_page_and_its_refresh() {
    if !have_chromium() {
        return env::missing(
            "CHROMIUM",
            "`chromium` (Debian package chromium) runs the status page; scripts/test installs it",
        );
    }
    let mut s = setup("2");
    let url = format!("http://{}/", s.admin);
    let _held = traffic(s.raw);
    assert!(eventually(Duration::from_secs(5), || totals(
        &status(s.admin),
        HOSTILE
    )["accepted"]
        == 4));
    let dom = chromium(&["--dump-dom"], &url);
    // The script rendered the inlined snapshot, then the one it fetched 2 s later.
    assert!(dom.contains("sample 2"), "{dom}");
    assert!(
        dom.contains(&format!("<h3>{}</h3>", net::local(s.raw))),
        "{dom}"
    );
    assert!(
        dom.contains(&format!("<h3>{}</h3>", net::local(s.tls))),
        "{dom}"
    );
    // The hostile name is text in a cell (and in the mappings table with port, no host and
    // 4 accepted connections), never an element.
    let escaped = "default/&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;";
    let row = format!(
        "<td>{escaped}</td><td class=\"n\">{}</td><td>—</td><td class=\"n\">4</td>",
        s.raw
    );
    assert!(dom.contains(&row), "no row {row} in {dom}");
    assert!(!dom.contains("<img"), "{dom}");
    assert!(dom.contains("<td class=\"healthy\">healthy</td>"), "{dom}");
    assert!(!dom.contains("unhealthy</td>"), "{dom}");
    assert!(dom.contains("<td>CN=db.example</td>"), "{dom}");

    // The endpoint of `db` dies: its health check fails, and the page says so.
    s.db.stop();
    assert!(
        eventually(Duration::from_secs(5), || endpoint(&status(s.admin), "db")
            ["state"]
            == "unhealthy"),
        "{}",
        status(s.admin)
    );
    let dom = chromium(&["--dump-dom"], &url);
    assert!(
        dom.contains("<td>default/db</td><td>")
            && dom.contains("<td class=\"unhealthy\">unhealthy</td>"),
        "{dom}"
    );
    assert!(dom.contains(">failed "), "the last check failed: {dom}");

    // A screenshot, kept as the test's artifact.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &[
            "--window-size=1100,900",
            &format!("--screenshot={}", shot.display()),
        ],
        &url,
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    eprintln!("screenshot: {} ({} bytes)", shot.display(), png.len());
    drop(s.daemon);
}
