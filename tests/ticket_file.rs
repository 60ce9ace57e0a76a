//! `--session-ticket-keys FILE` (SPEC section 15): two tcpmap processes given the same key
//! file resume each other's TLS sessions, processes with different files do not, a rotated
//! file (new key first, old key second) still opens the old tickets and seals new ones with
//! its first line, and a bad file stops the start but only warns on a reload (the old keys
//! keep working). At 1 and 2 workers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::daemon::{Daemon, write_atomic};
use common::net;
use common::pki::{Ca, TlsSecret};
use common::yaml::{mapping_with, tls_context};
use rustls::HandshakeKind;
use rustls::client::ClientSessionMemoryCache;

/// A fresh key line, made as docs/operations.md says (`openssl rand 80 | base64 -w0`).
fn key_line() -> String {
    let out = std::process::Command::new("sh")
        .args(["-c", "openssl rand 80 | base64 -w0"])
        .output()
        .expect("openssl");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// One certificate (tickets are bound to the served chain) and one upstream for every daemon.
struct Site {
    secret: TlsSecret,
    up: net::Upstream,
}

impl Site {
    fn new() -> Site {
        Site {
            secret: TlsSecret::new("tcpmap key file CA", "tsecret", &["t.example"]),
            up: net::banner("127.0.0.1:0", "tls-upstream"),
        }
    }

    fn dir(&self) -> &Path {
        self.secret.dir.path()
    }

    /// A daemon at `workers` workers with `keys` as its key file.
    fn daemon(&self, name: &str, workers: &str, keys: &Path) -> (Daemon, u16) {
        let cfg = self.dir().join(format!("{name}.yaml"));
        let secrets = self.dir().to_str().unwrap().to_string();
        let addr = self.up.addr;
        let (d, [port]) = Daemon::run_yaml(
            &cfg,
            |[port]| {
                format!(
                    "{}{}",
                    tls_context("ctx", "hosts: [t.example]\nsecret: tsecret\n"),
                    mapping_with("tls", port, addr, "host: t.example\n"),
                )
            },
            &[
                "--workers",
                workers,
                "--secrets-dir",
                &secrets,
                "--session-ticket-keys",
                keys.to_str().unwrap(),
            ],
        );
        (d, port)
    }

    fn keys(&self, name: &str, lines: &[&str]) -> PathBuf {
        let path = self.dir().join(name);
        write_atomic(&path, &format!("{}\n", lines.join("\n")));
        path
    }
}

/// A TLS 1.3 client keeping its tickets in `cache` (each ticket is used once; every handshake
/// leaves one, since the banner read takes in the ticket sent after it).
fn client(ca: &Ca, cache: Arc<ClientSessionMemoryCache>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::store(cache);
    Arc::new(cfg)
}

/// One connection: how its handshake went.
fn visit(port: u16, cfg: &Arc<rustls::ClientConfig>) -> HandshakeKind {
    let mut s: rustls::StreamOwned<rustls::ClientConnection, TcpStream> =
        net::tls_connect(net::local(port), "t.example", cfg.clone()).unwrap();
    assert_eq!(net::read_line(&mut s), "tls-upstream");
    s.conn.handshake_kind().unwrap()
}

/// A client whose one ticket came from a full handshake on `port`.
fn ticket_from(ca: &Ca, port: u16) -> Arc<rustls::ClientConfig> {
    let cfg = client(ca, Arc::new(ClientSessionMemoryCache::new(1)));
    assert_eq!(visit(port, &cfg), HandshakeKind::Full);
    cfg
}

fn same_file_resumes_across_processes(workers: &str) {
    let site = Site::new();
    let shared = site.keys("shared.keys", &[&key_line()]);
    let other = site.keys("other.keys", &[&key_line()]);
    let (_a, pa) = site.daemon("a", workers, &shared);
    let (_b, pb) = site.daemon("b", workers, &shared);
    let (_c, pc) = site.daemon("c", workers, &other);
    let ca = &site.secret.ca;
    // Ticket from A resumes on B, B's new ticket on A, and so on: every hop resumes.
    let cfg = ticket_from(ca, pa);
    for (i, port) in [pb, pa, pb, pa, pb].into_iter().enumerate() {
        assert_eq!(visit(port, &cfg), HandshakeKind::Resumed, "hop {i}");
    }
    // C has another file: A's ticket does not resume there, nor C's on A.
    let cfg = ticket_from(ca, pa);
    assert_eq!(visit(pc, &cfg), HandshakeKind::Full, "A's ticket on C");
    assert_eq!(visit(pa, &cfg), HandshakeKind::Full, "C's ticket on A");
}

#[test]
fn one_file_resumes_across_processes_and_another_does_not() {
    same_file_resumes_across_processes("1");
}

#[test]
fn one_file_resumes_across_processes_with_workers() {
    same_file_resumes_across_processes("2");
}

/// Waits until process `d` uses the file it was told to read again (with workers: until the
/// pool gave them the keys).
fn reloaded(d: &Daemon, from: usize, workers: &str) {
    d.wait_for(from, "session-ticket keys changed", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("keys not re-read:\n{}", d.log()));
    if workers != "1" {
        d.wait_for(from, "session-ticket keys rotated", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("keys not sent to the workers:\n{}", d.log()));
    }
}

fn rotation_keeps_old_tickets(workers: &str) {
    let site = Site::new();
    let (old, new) = (key_line(), key_line());
    let file = site.keys("rotating.keys", &[&old]);
    let (a, pa) = site.daemon("a", workers, &file);
    let ca = &site.secret.ca;
    let before = ticket_from(ca, pa);
    let second = ticket_from(ca, pa);
    // The rotation recipe: the new key on top, the old one below it; SIGHUP.
    let mark = a.mark();
    site.keys("rotating.keys", &[&new, &old]);
    a.signal(libc::SIGHUP);
    reloaded(&a, mark, workers);
    assert_eq!(visit(pa, &before), HandshakeKind::Resumed, "old ticket");
    // The ticket A sealed now is under the new key: B, given only the new key, resumes it.
    let only_new = site.keys("new-only.keys", &[&new]);
    let (_b, pb) = site.daemon("b", workers, &only_new);
    assert_eq!(
        visit(pb, &before),
        HandshakeKind::Resumed,
        "new ticket on B"
    );
    // The old key dropped from the file (a file change, no signal): old tickets stop.
    let mark = a.mark();
    site.keys("rotating.keys", &[&new]);
    reloaded(&a, mark, workers);
    assert_eq!(visit(pa, &second), HandshakeKind::Full, "retired key");
    // A bad file later is refused and the keys in use stay.
    let mark = a.mark();
    site.keys("rotating.keys", &["bm90IGEga2V5"]);
    a.signal(libc::SIGHUP);
    let warning = a
        .wait_for(
            mark,
            "session-ticket keys not reloaded",
            Duration::from_secs(10),
        )
        .unwrap_or_else(|| panic!("no warning:\n{}", a.log()));
    assert!(warning.contains("line 1: 9 bytes"), "{warning}");
    assert!(
        !warning.contains("bm90IGEga2V5"),
        "the key text logged: {warning}"
    );
    let cfg = ticket_from(ca, pb);
    assert_eq!(
        visit(pa, &cfg),
        HandshakeKind::Resumed,
        "after a bad reload"
    );
}

#[test]
fn a_rotated_file_opens_old_tickets_from_its_second_line() {
    rotation_keeps_old_tickets("1");
}

#[test]
fn a_rotated_file_opens_old_tickets_from_its_second_line_with_workers() {
    rotation_keeps_old_tickets("2");
}

#[test]
fn a_bad_key_file_stops_the_start_without_showing_the_key() {
    let site = Site::new();
    let short = "c2hvcnQga2V5IGJ5dGVz";
    let file = site.keys("bad.keys", &[&key_line(), short]);
    let cfg = site.dir().join("c.yaml");
    std::fs::write(&cfg, mapping_with("x", net::free_port(), site.up.addr, "")).unwrap();
    for path in [file, site.dir().join("missing.keys")] {
        let mut d = Daemon::spawn(&[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--workers",
            "1",
            "--session-ticket-keys",
            path.to_str().unwrap(),
        ]);
        let status = d.wait_exit(Duration::from_secs(10)).expect("exits");
        assert!(!status.success());
        let log = d.log();
        assert!(log.contains("session-ticket keys"), "{log}");
        assert!(
            !log.contains(short) && !log.contains("tcpmap running"),
            "{log}"
        );
    }
}
