//! PROXY protocol against a real peer, HAProxy (Debian package `haproxy`), in both directions:
//! HAProxy in front of tcpmap sending `send-proxy` / `send-proxy-v2` (tcpmap's access log shows
//! the client HAProxy saw), and HAProxy behind tcpmap with `accept-proxy`, logging the client
//! address (and the v2 authority) it received from tcpmap's `send_proxy_proto`.
//!
//! A missing `haproxy` binary fails these tests unless `TCPMAP_SKIP_HAPROXY=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::daemon::Daemon;
use common::net::{self, free_port, local};
use common::pki::TlsSecret;
use common::wait::eventually;
use common::yaml::{mapping_with, tls_context};

/// A running `haproxy -db` with its stdout and stderr lines collected; killed on drop.
struct Haproxy {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

fn haproxy_binary() -> Option<&'static str> {
    [
        "/usr/sbin/haproxy",
        "/usr/local/sbin/haproxy",
        "/usr/bin/haproxy",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
}

impl Haproxy {
    /// Starts HAProxy on `sections` (frontends and backends) after a global section that logs
    /// to stdout; waits until `port` accepts. `None` when the binary is missing and the skip
    /// is allowed.
    fn start(sections: &str, port: u16) -> Option<Haproxy> {
        let Some(bin) = haproxy_binary() else {
            common::env::missing(
                "HAPROXY",
                "haproxy is not installed (apt-get install haproxy)",
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "global\n    log stdout format raw local0 info\n\
                 defaults\n    mode tcp\n    log global\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
                 {sections}"
            ),
        )
        .unwrap();
        let mut child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn haproxy");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if std::env::var_os("TCPMAP_TEST_ECHO").is_some() {
                        eprintln!("[haproxy] {line}");
                    }
                    sink.lock().unwrap().push(line);
                }
            });
        }
        let h = Haproxy {
            child,
            lines,
            _dir: dir,
        };
        assert!(
            eventually(Duration::from_secs(10), || TcpStream::connect(local(port))
                .is_ok()),
            "haproxy did not listen on {port}:\n{}",
            h.log()
        );
        Some(h)
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits for a line containing `needle`.
    fn wait_for(&self, needle: &str) -> String {
        let mut found = None;
        let ok = eventually(Duration::from_secs(10), || {
            found = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
                .cloned();
            found.is_some()
        });
        assert!(ok, "haproxy never logged {needle:?}:\n{}", self.log());
        found.unwrap()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects, round-trips `msg` through the chain, closes; returns the client's own address.
fn exchange(addr: SocketAddr, msg: &[u8]) -> SocketAddr {
    let mut s = net::connect(addr);
    let me = s.local_addr().unwrap();
    net::roundtrip(&mut s, msg);
    s.shutdown(Shutdown::Write).unwrap();
    assert!(net::closed_within(&mut s, Duration::from_secs(5)));
    me
}

/// The access line of the connection whose client is `client` (HAProxy's readiness probe
/// makes lines of its own).
fn access_line(d: &Daemon, client: SocketAddr) -> serde_json::Value {
    let needle = format!("\"client\":\"{client}\"");
    let line = d
        .wait_line(0, Duration::from_secs(5), |l| {
            l.contains("tcpmap::access") && l.contains(&needle)
        })
        .unwrap_or_else(|| panic!("no access line for {client}:\n{}", d.log()));
    serde_json::from_str(&line).unwrap()
}

#[test]
fn haproxy_in_front_sends_v1_and_v2_and_tcpmap_logs_its_client() {
    let echo = net::echo("127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let (d, [pp_port]) = Daemon::run_yaml(
        &dir.path().join("config.yaml"),
        |[p]| mapping_with("behind-haproxy", p, echo.addr, "use_proxy_proto: true\n"),
        &["--log-format", "json"],
    );
    let (v1_port, v2_port) = (free_port(), free_port());
    let Some(h) = Haproxy::start(
        &format!(
            "frontend v1\n    bind 127.0.0.1:{v1_port}\n    default_backend tcpmap_v1\n\
             frontend v2\n    bind 127.0.0.1:{v2_port}\n    unique-id-format lb-%ci-%cp\n    \
             default_backend tcpmap_v2\n\
             backend tcpmap_v1\n    server t 127.0.0.1:{pp_port} send-proxy\n\
             backend tcpmap_v2\n    \
             server t 127.0.0.1:{pp_port} send-proxy-v2 proxy-v2-options crc32c,unique-id\n"
        ),
        v2_port,
    ) else {
        return;
    };
    for port in [v1_port, v2_port] {
        let me = exchange(local(port), b"through haproxy");
        let a = access_line(&d, me);
        assert_eq!(a["client"], me.to_string(), "{a}\n{}", h.log());
        // The socket's peer is HAProxy's own outgoing connection, not the client.
        assert_ne!(a["peer"], me.to_string(), "{a}");
        assert_eq!(a["end"], "client_closed", "{a}");
        assert_eq!(a["bytes_in"], 15);
    }
}

#[test]
fn haproxy_behind_accepts_what_tcpmap_sends() {
    let TlsSecret { ca, dir: secrets } = TlsSecret::new("haproxy interop CA", "sec", &["my-host"]);
    let echo = net::echo("127.0.0.1:0");
    let hp = free_port();
    let Some(h) = Haproxy::start(
        &format!(
            "frontend from_tcpmap\n    bind 127.0.0.1:{hp} accept-proxy\n    \
             log-format \"haproxy-saw client=%ci:%cp dst=%fi:%fp authority=%[fc_pp_authority]\"\n    \
             default_backend echo\n\
             backend echo\n    server e {}\n",
            echo.addr
        ),
        hp,
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let secrets_arg = secrets.path().to_str().unwrap().to_string();
    let (_d, [p1, p2, p3, p4]) = Daemon::run_yaml(
        &dir.path().join("config.yaml"),
        |[p1, p2, p3, p4]| {
            let up = format!("127.0.0.1:{hp}");
            tls_context("ctx", "hosts: [my-host]\nsecret: sec\n")
                + &mapping_with("v1-out", p1, &up, "send_proxy_proto: v1\n")
                + &mapping_with("v2-out", p2, &up, "send_proxy_proto: v2\n")
                + &mapping_with(
                    "relay",
                    p3,
                    &up,
                    "use_proxy_proto: true\nsend_proxy_proto: v2\n",
                )
                + &mapping_with("tls-v2", p4, &up, "host: my-host\nsend_proxy_proto: v2\n")
        },
        &["--secrets-dir", &secrets_arg],
    );

    // Plain client, v1 and v2: HAProxy sees the client's own address and the listener.
    for port in [p1, p2] {
        let me = exchange(local(port), b"hello haproxy");
        h.wait_for(&format!("haproxy-saw client={me} dst=127.0.0.1:{port} "));
    }

    // A client behind a balancer (a v1 header into tcpmap): HAProxy sees that client.
    let mut s = net::connect(local(p3));
    s.write_all(b"PROXY TCP4 203.0.113.9 198.51.100.1 4444 443\r\n")
        .unwrap();
    net::roundtrip(&mut s, b"relayed");
    s.shutdown(Shutdown::Write).unwrap();
    assert!(net::closed_within(&mut s, Duration::from_secs(5)));
    h.wait_for("haproxy-saw client=203.0.113.9:4444 dst=198.51.100.1:443 ");

    // Terminated TLS: the v2 header carries the SNI as PP2_TYPE_AUTHORITY.
    let client = net::tls_client_config(&ca.cert_pem(), None);
    let mut t = net::tls_connect(local(p4), "my-host", client).unwrap();
    let me = t.sock.local_addr().unwrap();
    net::roundtrip(&mut t, b"secret");
    t.conn.send_close_notify();
    let _ = t.conn.complete_io(&mut t.sock);
    drop(t);
    h.wait_for(&format!(
        "haproxy-saw client={me} dst=127.0.0.1:{p4} authority=my-host"
    ));
}
