//! `tls_passthrough` and `match_alpn` with real peers: `openssl s_client` and rustls clients
//! through the proxy, rustls TLS servers behind it. The proxy holds no certificate for the
//! passthrough hosts: what a client verifies is the upstream's own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::daemon::Daemon;
use common::metrics::metric;
use common::net;
use common::pki::{Ca, write_secret};
use common::proxy;
use common::yaml::{mapping, mapping_with, tls_context};

fn need_openssl() {
    if Command::new("openssl").arg("version").output().is_err() {
        panic!("openssl is required for this test (scripts/test installs it)");
    }
}

/// `openssl s_client` to `port` with `args`, verifying against `ca_file`: sends `line`, returns
/// the first line it reads back and s_client's stderr (the chain it verified).
fn s_client(port: u16, args: &[&str], ca_file: &std::path::Path, line: &str) -> (String, String) {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(args)
        .arg("-CAfile")
        .arg(ca_file)
        .args(["-verify_return_error", "-quiet", "-no_ign_eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(line.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (first, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn openssl_through_passthrough_sees_the_upstreams_certificate_and_the_upstream_its_sni() {
    need_openssl();
    let upstream_ca = Ca::new("upstream CA");
    let (cert, key) = upstream_ca.leaf(&["pass.test"]);
    let up = net::tls_banner(
        "127.0.0.1:0",
        "pass-upstream",
        net::tls_server_config(&cert, &key, None),
    );
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_file, upstream_ca.cert_pem()).unwrap();
    // No secrets at all: a passthrough mapping needs no certificate.
    let (p, port) = proxy::start_port(None, |port| {
        mapping_with(
            "pass",
            port,
            up.addr,
            "host: pass.test\ntls_passthrough: true\n",
        )
    });
    let (line, stderr) = s_client(port, &["-servername", "pass.test"], &ca_file, "hi\n");
    // The upstream terminated: it saw the client's SNI, and the chain verified is its own.
    assert_eq!(
        line, "pass-upstream client-cert=none sni=pass.test\n",
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("verify return:1") && !stderr.contains("verify error"),
        "{stderr}"
    );
    assert!(stderr.contains("CN = pass.test"), "{stderr}");
    assert_eq!(up.connections(), 1);
    let routes = proxy::block_on(p.routes()).unwrap();
    assert!(routes.render_text().contains("pass.test passthrough"));
    let text = p.metrics_text();
    assert_eq!(
        metric(
            &text,
            "tcpmap_tls_routed_connections_total",
            &[("tls", "passthrough"), ("host", "pass.test")]
        ),
        1.0,
        "{text}"
    );
}

#[test]
fn a_mixed_port_routes_each_host_in_its_mode_and_logs_it() {
    let proxy_ca = Ca::new("proxy CA");
    let upstream_ca = Ca::new("upstream CA 2");
    let secrets = tempfile::tempdir().unwrap();
    let (cert, key) = proxy_ca.leaf(&["term.test"]);
    write_secret(secrets.path(), "term", &cert, &key);
    let (ucert, ukey) = upstream_ca.leaf(&["pass.test", "any.test"]);
    let term_up = net::banner("127.0.0.1:0", "terminated-upstream");
    let pass_up = net::tls_banner(
        "127.0.0.1:0",
        "pass-upstream",
        net::tls_server_config(&ucert, &ukey, None),
    );
    let raw_up = net::echo("127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let secrets_arg = secrets.path().to_str().unwrap().to_string();
    let (d, [port]) = Daemon::run_yaml(
        &cfg,
        |[port]| {
            tls_context("term", "hosts: [term.test]\nsecret: term\n")
                + &mapping_with("term", port, term_up.addr, "host: term.test\n")
                + &mapping_with(
                    "pass",
                    port,
                    pass_up.addr,
                    "host: pass.test\ntls_passthrough: true\n",
                )
                + &mapping("raw", port, raw_up.addr)
        },
        &["--secrets-dir", &secrets_arg, "--log-format", "json"],
    );
    let a = net::local(port);
    let mut t = net::tls_connect(
        a,
        "term.test",
        net::tls_client_config(&proxy_ca.cert_pem(), None),
    )
    .unwrap();
    assert_eq!(net::read_line(&mut t), "terminated-upstream");
    net::roundtrip(&mut t, b"terminated");
    drop(t);
    let mut pt = net::tls_connect(
        a,
        "pass.test",
        net::tls_client_config(&upstream_ca.cert_pem(), None),
    )
    .unwrap();
    assert_eq!(
        net::read_line(&mut pt),
        "pass-upstream client-cert=none sni=pass.test"
    );
    net::roundtrip(&mut pt, b"end to end");
    pt.conn.send_close_notify();
    let _ = pt.conn.complete_io(&mut pt.sock);
    drop(pt);
    // Plain bytes and unknown names go raw to the host-less group.
    let mut s = net::connect(a);
    net::roundtrip(&mut s, b"plain bytes");
    drop(s);
    assert_eq!(
        (
            term_up.connections(),
            pass_up.connections(),
            raw_up.connections()
        ),
        (1, 1, 1)
    );

    let line = d
        .wait_line(0, Duration::from_secs(5), |l| {
            l.contains("tcpmap::access") && l.contains("\"mapping\":\"pass\"")
        })
        .unwrap_or_else(|| panic!("no access line for pass:\n{}", d.log()));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["tls"], "passthrough", "{v}");
    assert_eq!(v["sni"], "pass.test", "{v}");
    assert_eq!(v["upstream"], pass_up.addr.to_string(), "{v}");
    // The ClientHello was relayed too: more bytes went in than the 10 of the payload.
    assert!(v["bytes_in"].as_u64().unwrap() > 200, "{v}");
    let term = d
        .wait_line(0, Duration::from_secs(5), |l| {
            l.contains("tcpmap::access") && l.contains("\"mapping\":\"term\"")
        })
        .unwrap();
    assert!(term.contains("\"tls\":\"terminate\""), "{term}");
}

#[test]
fn acme_tls_alpn_reaches_its_solver_while_plain_clients_of_the_host_terminate() {
    need_openssl();
    let proxy_ca = Ca::new("site CA");
    let solver_ca = Ca::new("solver CA");
    let secrets = tempfile::tempdir().unwrap();
    let (cert, key) = proxy_ca.leaf(&["site.test"]);
    write_secret(secrets.path(), "site", &cert, &key);
    let (scert, skey) = solver_ca.leaf(&["site.test"]);
    let mut solver_cfg = (*net::tls_server_config(&scert, &skey, None)).clone();
    solver_cfg.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let solver = net::tls_banner("127.0.0.1:0", "solver", std::sync::Arc::new(solver_cfg));
    let site = net::banner("127.0.0.1:0", "site-upstream");
    let (_p, port) = proxy::start_port(Some(secrets.path()), |port| {
        tls_context("site", "hosts: [site.test]\nsecret: site\n")
            + &mapping_with("site", port, site.addr, "host: site.test\n")
            + &mapping_with(
                "solver",
                port,
                solver.addr,
                "host: site.test\ntls_passthrough: true\nmatch_alpn: [acme-tls/1]\n",
            )
    });
    let dir = tempfile::tempdir().unwrap();
    let solver_ca_file = dir.path().join("solver-ca.pem");
    std::fs::write(&solver_ca_file, solver_ca.cert_pem()).unwrap();
    let (line, stderr) = s_client(
        port,
        &["-servername", "site.test", "-alpn", "acme-tls/1"],
        &solver_ca_file,
        "challenge\n",
    );
    assert_eq!(line, "solver client-cert=none sni=site.test\n", "{stderr}");
    assert!(stderr.contains("verify return:1"), "{stderr}");
    // The same host without that protocol: terminated with the proxy's certificate.
    let site_ca_file = dir.path().join("site-ca.pem");
    std::fs::write(&site_ca_file, proxy_ca.cert_pem()).unwrap();
    let (line, stderr) = s_client(
        port,
        &["-servername", "site.test", "-alpn", "h2,http/1.1"],
        &site_ca_file,
        "page\n",
    );
    assert_eq!(line, "site-upstream\n", "{stderr}");
    let mut t = net::tls_connect(
        net::local(port),
        "site.test",
        net::tls_client_config(&proxy_ca.cert_pem(), None),
    )
    .unwrap();
    assert_eq!(net::read_line(&mut t), "site-upstream");
    assert_eq!((solver.connections(), site.connections()), (1, 2));
}

/// Waits for EOF or reset (reading and dropping an alert on the way); false if still open.
fn closes(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let t0 = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < within {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn a_passthrough_port_fed_random_bytes_closes_like_a_terminating_one() {
    let upstream_ca = Ca::new("upstream CA 3");
    let (cert, key) = upstream_ca.leaf(&["pass.test"]);
    let up = net::tls_banner(
        "127.0.0.1:0",
        "pass-upstream",
        net::tls_server_config(&cert, &key, None),
    );
    let (p, port) = proxy::start_port(None, |port| {
        mapping_with(
            "pass",
            port,
            up.addr,
            "host: pass.test\ntls_passthrough: true\n",
        )
    });
    let a = net::local(port);
    let mut rng = fastrand::Rng::with_seed(13);
    for prefix in [
        &[][..],
        &[0x16, 0x03, 0x01][..],
        &[0x16, 0x03, 0x03, 0x40, 0x00, 0x01][..],
    ] {
        let mut garbage = prefix.to_vec();
        garbage.extend((0..16 * 1024).map(|_| rng.u8(..)));
        let mut c = TcpStream::connect(a).unwrap();
        let _ = c.write_all(&garbage);
        assert!(
            closes(&mut c, Duration::from_secs(4)),
            "garbage (prefix {prefix:?}) was not closed"
        );
    }
    // Nothing reached the upstream, and the listener keeps serving.
    assert_eq!(up.connections(), 0);
    let mut t = net::tls_connect(
        a,
        "pass.test",
        net::tls_client_config(&upstream_ca.cert_pem(), None),
    )
    .unwrap();
    assert!(net::read_line(&mut t).starts_with("pass-upstream"));
    // The malformed hellos were counted as handshake failures, as on a terminating port.
    let text = p.metrics_text();
    let failures: f64 = ["malformed_hello", "bad_sni", "timeout_or_eof"]
        .iter()
        .map(|r| {
            metric(
                &text,
                "tcpmap_tls_handshake_failures_total",
                &[("side", "client"), ("reason", r)],
            )
        })
        .sum();
    assert!(failures >= 2.0, "{text}");
    assert!(p.ready());
}

/// The bytes of a real ClientHello for `sni` offering `alpn`, as a client sends them.
fn client_hello(sni: &str, alpn: &[&[u8]]) -> Vec<u8> {
    let ca = Ca::new("unused");
    let mut cfg = (*net::tls_client_config(&ca.cert_pem(), None)).clone();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

#[test]
fn passthrough_replays_the_hello_verbatim_after_a_v2_header_naming_the_sni() {
    let up = net::proxy_reporter("127.0.0.1:0");
    let (_p, port) = proxy::start_port(None, |port| {
        mapping_with(
            "pass",
            port,
            up.addr,
            "host: '*.pass.test'\ntls_passthrough: true\nsend_proxy_proto: v2\n",
        )
    });
    let hello = client_hello("a.pass.test", &[b"h2", b"http/1.1"]);
    let mut s = net::connect(net::local(port));
    s.write_all(&hello).unwrap();
    let line = net::read_line(&mut s);
    // The SNI as PP2_TYPE_AUTHORITY; no ALPN and no SSL TLV: nothing was negotiated or
    // terminated here.
    assert!(
        line.contains("authority=a.pass.test alpn=- tls=- version=v2"),
        "{line}"
    );
    assert!(line.starts_with("client=127.0.0.1:"), "{line}");
    // What follows the header is the ClientHello, byte for byte.
    let mut back = vec![0u8; hello.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, hello);
}
