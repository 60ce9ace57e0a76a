//! TLS session resumption across reloads: a ticket issued by one config generation resumes on
//! the next (TLS 1.3 and TLS 1.2), unless the reload changed the certificate or client-auth
//! policy the ticket was issued under. Plus an ignored measurement of what TLS 1.3 tickets cost
//! the server per full handshake (see docs/benchmarks.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use common::net::{self, free_port};
use common::pki::{Ca, TlsSecret, write_ca_secret, write_secret};
use common::proxy;
use rustls::HandshakeKind;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A TLSContext for `my-host` on `port`, routed to `service`, with extra context lines.
fn yaml(port: u16, service: SocketAddr, extra_ctx: &str) -> String {
    format!(
        r#"---
apiVersion: ambassador/v1
kind: TLSContext
name: ctx
hosts:
- my-host
secret: server
{extra_ctx}
---
apiVersion: ambassador/v1
kind: TCPMapping
name: m
address: 127.0.0.1
port: {port}
host: my-host
service: {service}
"#
    )
}

/// A client trusting `ca` limited to `versions`, with the default in-memory session store.
fn client(
    ca: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(cfg)
}

/// Connects, reads the upstream's banner line (which also takes in any TLS 1.3 ticket sent
/// after the handshake), returns the banner and how the handshake went.
fn visit(port: u16, cfg: &Arc<rustls::ClientConfig>) -> (String, Option<HandshakeKind>) {
    let mut s = net::tls_connect(addr(port), "my-host", cfg.clone()).unwrap();
    let banner = net::read_line(&mut s);
    (banner, s.conn.handshake_kind())
}

fn apply(p: &tcpmap::ProxyHandle, yaml: String) {
    proxy::block_on(p.apply(yaml)).unwrap_or_else(|e| panic!("reload failed: {e}"));
}

struct Setup {
    ca: Ca,
    dir: tempfile::TempDir,
    port: u16,
    up1: net::Upstream,
    up2: net::Upstream,
    proxy: tcpmap::ProxyHandle,
}

fn setup() -> Setup {
    let TlsSecret { ca, dir } = TlsSecret::new("tcpmap ticket CA", "server", &["my-host"]);
    let up1 = net::banner("127.0.0.1:0", "upstream-1");
    let up2 = net::banner("127.0.0.1:0", "upstream-2");
    let port = free_port();
    let proxy = proxy::start(&yaml(port, up1.addr, ""), Some(dir.path()));
    Setup {
        ca,
        dir,
        port,
        up1,
        up2,
        proxy,
    }
}

fn resumes_across_reload(versions: &[&'static rustls::SupportedProtocolVersion]) {
    let s = setup();
    let cfg = client(&s.ca.cert_pem(), versions);
    assert_eq!(
        visit(s.port, &cfg),
        ("upstream-1".to_owned(), Some(HandshakeKind::Full))
    );
    // Same generation: resumes (the baseline).
    assert_eq!(
        visit(s.port, &cfg),
        ("upstream-1".to_owned(), Some(HandshakeKind::Resumed))
    );
    // A reload that moves the mapping to another upstream: a new config generation.
    apply(&s.proxy, yaml(s.port, s.up2.addr, ""));
    assert_eq!(
        visit(s.port, &cfg),
        ("upstream-2".to_owned(), Some(HandshakeKind::Resumed)),
        "a ticket from before the reload must resume after it"
    );
    // A reload that re-reads the same files.
    proxy::block_on(s.proxy.reload()).unwrap();
    assert_eq!(visit(s.port, &cfg).1, Some(HandshakeKind::Resumed));
    proxy::block_on(s.proxy.shutdown(false)).unwrap();
}

#[test]
fn tls13_ticket_resumes_after_reload() {
    resumes_across_reload(&[&rustls::version::TLS13]);
}

#[test]
fn tls12_ticket_resumes_after_reload() {
    resumes_across_reload(&[&rustls::version::TLS12]);
}

/// A reload that changes the certificate, or starts requiring client certificates, must not
/// let an old ticket skip the new checks (rustls does not compare either on resumption).
#[test]
fn ticket_does_not_resume_when_cert_or_client_auth_changes() {
    let s = setup();
    for versions in [&[&rustls::version::TLS13], &[&rustls::version::TLS12]] {
        let cfg = client(&s.ca.cert_pem(), versions);
        // Requiring client certificates: an old ticket (no client cert) must not get in.
        assert_eq!(visit(s.port, &cfg).1, Some(HandshakeKind::Full));
        let client_ca = Ca::new("tcpmap client CA");
        write_ca_secret(s.dir.path(), "clients", &client_ca.cert_pem());
        apply(
            &s.proxy,
            yaml(
                s.port,
                s.up1.addr,
                "ca_secret: clients\ncert_required: true",
            ),
        );
        let mut tls = net::tls_connect(addr(s.port), "my-host", cfg.clone());
        if let Ok(t) = &mut tls {
            // TLS 1.3 reports a missing client certificate after the client's handshake ends.
            let mut b = [0u8; 1];
            let read = std::io::Read::read(t, &mut b);
            assert!(
                read.is_err() || read.is_ok_and(|n| n == 0),
                "a resumed session skipped the client-certificate requirement"
            );
        }
        // Back to the first policy; this visit (resumed or not, depending on whether the refused
        // attempt spent the ticket) leaves a ticket for the current certificate.
        apply(&s.proxy, yaml(s.port, s.up1.addr, ""));
        assert_eq!(visit(s.port, &cfg).0, "upstream-1");
        // A new certificate: a ticket from the old one is not used.
        rotate_cert(&s.ca, s.dir.path());
        proxy::block_on(s.proxy.reload()).unwrap();
        assert_eq!(visit(s.port, &cfg).1, Some(HandshakeKind::Full));
        assert_eq!(visit(s.port, &cfg).1, Some(HandshakeKind::Resumed));
    }
    proxy::block_on(s.proxy.shutdown(false)).unwrap();
}

fn rotate_cert(ca: &Ca, dir: &Path) {
    let (cert, key) = ca.leaf(&["my-host"]);
    write_secret(dir, "server", &cert, &key);
}

/// Server time per full TLS 1.3 handshake (ECDSA P-256, in memory, no resumption) with 0, 1 and
/// 2 tickets sent. Run with
/// `cargo test --release --test tls_tickets -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, not a check"]
fn measure_tls13_ticket_cost() {
    use std::time::{Duration, Instant};
    let ca = Ca::new("bench CA");
    let (cert, key) = ca.leaf(&["my-host"]);
    let mut client_cfg = (*client(&ca.cert_pem(), &[&rustls::version::TLS13])).clone();
    client_cfg.resumption = rustls::client::Resumption::disabled();
    let client_cfg = Arc::new(client_cfg);
    // Resumes every time: each handshake's ticket refills the store.
    let resuming_cfg = client(&ca.cert_pem(), &[&rustls::version::TLS13]);
    let base = net::tls_server_config(&cert, &key, None);
    let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().unwrap();
    let configs: Vec<(String, Arc<rustls::ClientConfig>, Arc<rustls::ServerConfig>)> = (0..=3)
        .map(|n| {
            let mut c = (*base).clone();
            c.ticketer = ticketer.clone();
            c.send_tls13_tickets = n;
            if n == 3 {
                c.send_tls13_tickets = 1;
                return (
                    "resumed, 1 ticket".to_owned(),
                    resuming_cfg.clone(),
                    Arc::new(c),
                );
            }
            (
                format!("full, {n} tickets"),
                client_cfg.clone(),
                Arc::new(c),
            )
        })
        .collect();
    // One full handshake; returns the time spent in server-side calls only.
    let handshake = |client_cfg: &Arc<rustls::ClientConfig>,
                     server_cfg: &Arc<rustls::ServerConfig>|
     -> (Duration, bool) {
        let name = rustls::pki_types::ServerName::try_from("my-host").unwrap();
        let mut c = rustls::ClientConnection::new(client_cfg.clone(), name).unwrap();
        let mut server_time = Duration::ZERO;
        let t = Instant::now();
        let mut s = rustls::ServerConnection::new(server_cfg.clone()).unwrap();
        server_time += t.elapsed();
        let mut buf = Vec::new();
        for _ in 0..10 {
            buf.clear();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            let t = Instant::now();
            let mut rd = buf.as_slice();
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
            }
            s.process_new_packets().unwrap();
            buf.clear();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            server_time += t.elapsed();
            let mut rd = buf.as_slice();
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
            }
            c.process_new_packets().unwrap();
            if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() {
                break;
            }
        }
        assert!(!s.is_handshaking());
        let resumed = c.handshake_kind() == Some(HandshakeKind::Resumed);
        (server_time, resumed)
    };
    const N: usize = 400;
    const RUNS: usize = 7;
    for (_, client_cfg, cfg) in &configs {
        for _ in 0..50 {
            handshake(client_cfg, cfg);
        }
    }
    let mut medians: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    for _ in 0..RUNS {
        // Interleave the variants so drift in machine load hits all of them alike.
        for (i, (_, client_cfg, cfg)) in configs.iter().enumerate() {
            let mut per: Vec<f64> = (0..N)
                .map(|_| {
                    let (t, resumed) = handshake(client_cfg, cfg);
                    assert_eq!(resumed, Arc::ptr_eq(client_cfg, &resuming_cfg));
                    t.as_secs_f64() * 1e6
                })
                .collect();
            per.sort_by(f64::total_cmp);
            medians[i].push(per[N / 2]);
        }
    }
    for (i, (n, _, _)) in configs.iter().enumerate() {
        let mut m = medians[i].clone();
        m.sort_by(f64::total_cmp);
        println!(
            "{n}: server µs per handshake, median of {RUNS} run medians {:.1} (runs min {:.1} max {:.1})",
            m[RUNS / 2],
            m[0],
            m[RUNS - 1]
        );
    }
}
