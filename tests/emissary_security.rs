//! Emissary's TLS security settings are honoured on real handshakes (SPEC section 13): a
//! Host's settings from its TLSContext (named or covering) and its inline `tls:` block,
//! `crl_secret` (a revoked client certificate gets `certificate_revoked`) and `ecdh_curves`
//! (a client offering only another group is refused).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

use common::net;
use common::pki::{Ca, write_ca_secret, write_secret};
use common::proxy;

/// What a client sees: the upstream's first line, or the error that ended the connection
/// (handshake or first read: TLS 1.3 reports a refused client certificate there).
fn outcome(addr: SocketAddr, sni: &str, cfg: Arc<rustls::ClientConfig>) -> Result<String, String> {
    let mut tls = net::tls_connect(addr, sni, cfg).map_err(|e| e.to_string())?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match tls.read(&mut byte) {
            Ok(0) => return Err(format!("eof after {line:?}")),
            Ok(_) if byte[0] == b'\n' => return Ok(String::from_utf8_lossy(&line).into_owned()),
            Ok(_) => line.push(byte[0]),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// A v3 Host `db-host` for `db.example.test` with the secret `srv`, with `extra` spec lines
/// (two-space indented), and a TCPMapping for that name on `port`.
fn host_and_mapping(port: u16, upstream: SocketAddr, extra: &str) -> String {
    format!(
        "---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {{name: db-host}}
spec:
  hostname: db.example.test
  tlsSecret: {{name: srv}}
{extra}---
apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata: {{name: db}}
spec: {{address: 127.0.0.1, port: {port}, host: db.example.test, service: \"{upstream}\"}}
"
    )
}

struct Pki {
    server_ca: Ca,
    client_ca: Ca,
    dir: tempfile::TempDir,
}

fn pki() -> Pki {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = server_ca.leaf(&["db.example.test"]);
    write_secret(dir.path(), "srv", &cert, &key);
    write_ca_secret(dir.path(), "clients", &client_ca.cert_pem());
    Pki {
        server_ca,
        client_ca,
        dir,
    }
}

#[test]
fn cert_required_through_a_hosts_tls_context_refuses_a_client_without_certificate() {
    let p = pki();
    let up = net::banner("127.0.0.1:0", "db-upstream");
    // Covering (the TLSContext lists the Host's hostname) and named (`tlsContext`) alike.
    let covering = "---
apiVersion: getambassador.io/v3alpha1
kind: TLSContext
metadata: {name: mtls}
spec: {hosts: [db.example.test], secret: srv, ca_secret: clients, cert_required: true}
";
    let named = "---
apiVersion: getambassador.io/v3alpha1
kind: TLSContext
metadata: {name: mtls}
spec: {secret: srv, ca_secret: clients, cert_required: true}
";
    for (ctx, extra) in [
        (covering, ""),
        (named, "  tlsContext: {name: mtls}\n"),
        // Inline: the Host's own `tls:` block.
        ("", "  tls: {ca_secret: clients, cert_required: true}\n"),
    ] {
        let (_p, port) = proxy::start_port(Some(p.dir.path()), |port| {
            format!("{ctx}{}", host_and_mapping(port, up.addr, extra))
        });
        let none = net::tls_client_config(&p.server_ca.cert_pem(), None);
        let refused = outcome(net::local(port), "db.example.test", none);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("CertificateRequired")),
            "{extra:?}: {refused:?}"
        );
        let (cc, ck) = p.client_ca.leaf(&["client"]);
        let good = net::tls_client_config(&p.server_ca.cert_pem(), Some((&cc, &ck)));
        assert_eq!(
            outcome(net::local(port), "db.example.test", good),
            Ok("db-upstream".to_string()),
            "{extra:?}"
        );
    }
    assert_eq!(up.connections(), 3);
}

#[test]
fn a_revoked_client_certificate_gets_certificate_revoked() {
    let p = pki();
    std::fs::write(p.dir.path().join("clients/crl.pem"), p.client_ca.crl(&[66])).unwrap();
    let up = net::banner("127.0.0.1:0", "db-upstream");
    let (_p, port) = proxy::start_port(Some(p.dir.path()), |port| {
        host_and_mapping(
            port,
            up.addr,
            "  tls: {ca_secret: clients, crl_secret: clients, cert_required: true}\n",
        )
    });
    let (rc, rk) = p.client_ca.leaf_with_serial(&["revoked"], 66);
    let revoked = net::tls_client_config(&p.server_ca.cert_pem(), Some((&rc, &rk)));
    let got = outcome(net::local(port), "db.example.test", revoked);
    assert!(
        got.as_ref()
            .is_err_and(|e| e.contains("CertificateRevoked")),
        "{got:?}"
    );
    let (gc, gk) = p.client_ca.leaf_with_serial(&["good"], 67);
    let good = net::tls_client_config(&p.server_ca.cert_pem(), Some((&gc, &gk)));
    assert_eq!(
        outcome(net::local(port), "db.example.test", good),
        Ok("db-upstream".to_string())
    );
    assert_eq!(up.connections(), 1);
}

/// A client that offers only the key-exchange group `group`.
fn client_with_group(
    ca_pem: &str,
    group: &'static dyn rustls::crypto::SupportedKxGroup,
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = rustls::crypto::CryptoProvider {
        kx_groups: vec![group],
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(cfg)
}

#[test]
fn ecdh_curves_refuse_a_client_offering_only_another_group() {
    use rustls::crypto::aws_lc_rs::kx_group;
    let p = pki();
    let up = net::banner("127.0.0.1:0", "db-upstream");
    let (_p, port) = proxy::start_port(Some(p.dir.path()), |port| {
        host_and_mapping(port, up.addr, "  tls: {ecdh_curves: [secp384r1]}\n")
    });
    let ca = p.server_ca.cert_pem();
    let x25519 = outcome(
        net::local(port),
        "db.example.test",
        client_with_group(&ca, kx_group::X25519),
    );
    assert!(
        x25519
            .as_ref()
            .is_err_and(|e| e.contains("HandshakeFailure")),
        "{x25519:?}"
    );
    assert_eq!(
        outcome(
            net::local(port),
            "db.example.test",
            client_with_group(&ca, kx_group::SECP384R1)
        ),
        Ok("db-upstream".to_string())
    );
    assert_eq!(up.connections(), 1);
}

#[test]
fn openssl_s_client_with_a_revoked_certificate_is_refused() {
    let p = pki();
    std::fs::write(p.dir.path().join("clients/crl.pem"), p.client_ca.crl(&[99])).unwrap();
    let up = net::banner("127.0.0.1:0", "db-upstream");
    let ctx = "---
apiVersion: getambassador.io/v3alpha1
kind: TLSContext
metadata: {name: mtls}
spec: {secret: srv, ca_secret: clients, crl_secret: clients, cert_required: true, ecdh_curves: [P-256]}
";
    let (_p, port) = proxy::start_port(Some(p.dir.path()), |port| {
        format!(
            "{ctx}{}",
            host_and_mapping(port, up.addr, "  tlsContext: {name: mtls}\n")
        )
    });
    let (rc, rk) = p.client_ca.leaf_with_serial(&["revoked"], 99);
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = (files.path().join("c.pem"), files.path().join("k.pem"));
    std::fs::write(&cert, rc).unwrap();
    std::fs::write(&key, rk).unwrap();
    // TLS 1.2: the client certificate is judged inside the handshake, so an s_client with
    // nothing to send still reads the server's alert (in 1.3 it may close first).
    let s_client = |groups: &str| {
        let out = std::process::Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args([
                "-servername",
                "db.example.test",
                "-groups",
                groups,
                "-tls1_2",
            ])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let out = s_client("P-256");
    assert!(out.contains("certificate revoked"), "{out}");
    // Only X25519 offered: no common group with [P-256].
    let out = s_client("X25519");
    assert!(out.contains("handshake failure"), "{out}");
    assert_eq!(up.connections(), 0);
}

/// A client limited to TLS 1.2.
fn tls12_client(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(cfg)
}

#[test]
fn versions_and_alpn_from_a_hosts_tls_context_apply() {
    let p = pki();
    let up = net::banner("127.0.0.1:0", "db-upstream");
    let ctx = "---
apiVersion: getambassador.io/v3alpha1
kind: TLSContext
metadata: {name: strict}
spec: {hosts: [db.example.test], secret: srv, min_tls_version: v1.3, alpn_protocols: postgresql}
";
    let (_p, port) = proxy::start_port(Some(p.dir.path()), |port| {
        format!("{ctx}{}", host_and_mapping(port, up.addr, ""))
    });
    let ca = p.server_ca.cert_pem();
    let old = outcome(net::local(port), "db.example.test", tls12_client(&ca));
    assert!(
        old.as_ref().is_err_and(|e| e.contains("ProtocolVersion")),
        "{old:?}"
    );
    // A client offering only another ALPN protocol is refused; one offering it passes.
    let mut other = (*net::tls_client_config(&ca, None)).clone();
    other.alpn_protocols = vec![b"h2".to_vec()];
    let got = outcome(net::local(port), "db.example.test", Arc::new(other));
    assert!(
        got.as_ref()
            .is_err_and(|e| e.contains("NoApplicationProtocol")),
        "{got:?}"
    );
    let mut pg = (*net::tls_client_config(&ca, None)).clone();
    pg.alpn_protocols = vec![b"postgresql".to_vec()];
    assert_eq!(
        outcome(net::local(port), "db.example.test", Arc::new(pg)),
        Ok("db-upstream".to_string())
    );
    assert_eq!(up.connections(), 1);
}
