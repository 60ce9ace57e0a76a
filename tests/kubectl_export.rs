//! The migration path of docs/migrating-from-emissary.md, end to end: what `kubectl get
//! tcpmappings,tlscontexts,...,secrets -A -o yaml` prints (one `kind: List`, the TLS Secret with
//! base64 `data`, made here by a real `kubectl create secret tls --dry-run=client`, offline) →
//! `tcpmap check` → `tcpmap run` → a TLS client is served the Secret's certificate; rotating the
//! Secret in the file (the file watch reloads) gives new handshakes the new certificate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::daemon::{Daemon, write_atomic};
use common::net;
use common::pki::Ca;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The Secret as `kubectl` prints it, from a certificate and key; `None` when kubectl is
/// missing and `TCPMAP_SKIP_KUBECTL=1` allows that (scripts/test installs kubernetes-client).
fn kubectl_tls_secret(dir: &Path, name: &str, ns: &str, crt: &str, key: &str) -> Option<String> {
    let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&c, crt).unwrap();
    std::fs::write(&k, key).unwrap();
    let out = Command::new("kubectl")
        .args([
            "create",
            "secret",
            "tls",
            name,
            "-n",
            ns,
            "--dry-run=client",
            "-o",
            "yaml",
        ])
        .arg(format!("--cert={}", c.display()))
        .arg(format!("--key={}", k.display()))
        .output();
    match out {
        Ok(out) if out.status.success() => Some(String::from_utf8(out.stdout).unwrap()),
        Ok(out) => panic!("kubectl failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => {
            common::env::missing("KUBECTL", &format!("kubectl cannot run: {e}"));
            None
        }
    }
}

/// A `kubectl get ... -o yaml` export: a List of a TCPMapping, a TLSContext and `secret`
/// (a printed Secret document, indented as a list item).
fn export(port: u16, upstream: std::net::SocketAddr, secret: &str) -> String {
    let mut item = String::new();
    for (i, line) in secret.lines().enumerate() {
        item.push_str(if i == 0 { "- " } else { "  " });
        item.push_str(line);
        item.push('\n');
    }
    format!(
        r#"apiVersion: v1
items:
- apiVersion: getambassador.io/v3alpha1
  kind: TCPMapping
  metadata:
    creationTimestamp: "2026-01-05T10:00:00Z"
    generation: 1
    name: db
    namespace: prod
    resourceVersion: "4711"
    uid: 0b5a3a3e-7d7e-4c1e-9a55-1f0c8a7e2a11
  spec:
    host: db.example.com
    port: {port}
    service: {upstream}
- apiVersion: getambassador.io/v3alpha1
  kind: TLSContext
  metadata:
    name: db-tls
    namespace: prod
  spec:
    hosts:
    - db.example.com
    secret: db-cert
{item}kind: List
metadata:
  resourceVersion: ""
"#
    )
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

fn private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn a_kubectl_export_with_a_tls_secret_checks_runs_and_serves_the_secrets_certificate() {
    let ca = Ca::new("export CA");
    let work = tempfile::tempdir().unwrap();
    let (crt1, key1) = ca.leaf(&["db.example.com"]);
    let Some(secret1) = kubectl_tls_secret(work.path(), "db-cert", "prod", &crt1, &key1) else {
        return;
    };
    assert!(secret1.contains("type: kubernetes.io/tls") && secret1.contains("tls.key: "));
    let up = net::banner("127.0.0.1:0", "DB");
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.yaml");

    // check: exit 0, no warning, the route table shows termination with the Secret's context.
    std::fs::write(&all, export(15432, up.addr, &secret1)).unwrap();
    private(&all);
    let out = Command::new(common::daemon::binary())
        .args(["check", "--config"])
        .arg(&all)
        .env_remove("AMBASSADOR_NAMESPACE")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert_eq!(
        stdout,
        format!(
            "0.0.0.0:15432 db.example.com terminate(TLSContext db-tls) -> {} (100%) [db]\n",
            up.addr
        )
    );

    // run: a TLS client asking for db.example.com gets the Secret's certificate.
    let (d, [port]) = Daemon::run_ports(
        |[port]| {
            std::fs::write(&all, export(port, up.addr, &secret1)).unwrap();
            private(&all);
            all.clone()
        },
        &[],
    );
    assert!(!d.log().contains("WARN"), "warnings at start:\n{}", d.log());
    let client = net::tls_client_config(&ca.cert_pem(), None);
    let addr = net::local(port);
    let mut held = net::tls_connect(addr, "db.example.com", client.clone()).unwrap();
    assert_eq!(net::read_line(&mut held), "DB");
    assert_eq!(
        held.conn.peer_certificates().unwrap()[0].to_vec(),
        der(&crt1)
    );

    // Rotate the Secret in the file: the watch reloads, new handshakes get the new one.
    let (crt2, key2) = ca.leaf(&["db.example.com"]);
    let secret2 = kubectl_tls_secret(work.path(), "db-cert", "prod", &crt2, &key2).unwrap();
    let mark = d.mark();
    write_atomic(&all, &export(port, up.addr, &secret2));
    private(&all);
    d.wait_line(mark, Duration::from_secs(10), |l| {
        l.contains("trigger=\"watch\"") && l.contains("reload applied")
    })
    .unwrap_or_else(|| panic!("no watch reload:\n{}", d.log()));
    let mut fresh = net::tls_connect(addr, "db.example.com", client).unwrap();
    assert_eq!(net::read_line(&mut fresh), "DB");
    assert_eq!(
        fresh.conn.peer_certificates().unwrap()[0].to_vec(),
        der(&crt2),
        "a new handshake after the rotation got the old certificate"
    );
    // The connection opened before the rotation keeps working.
    net::roundtrip(&mut held, b"still open");
}

#[test]
fn an_export_without_tcpmapping_is_served_empty_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.yaml");
    let yaml = "apiVersion: v1\nitems:\n- apiVersion: getambassador.io/v3alpha1\n  kind: Mapping\n  metadata:\n    name: web\n  spec:\n    prefix: /\n    service: web\nkind: List\nmetadata:\n  resourceVersion: \"\"\n";
    std::fs::write(&all, yaml).unwrap();
    let path = all.to_str().unwrap();
    let out = Command::new(common::daemon::binary())
        .args(["check", "--config", path])
        .output()
        .unwrap();
    assert!(out.status.success());
    let expected =
        format!("warning: {path}:1: Config -: no TCPMapping (found: List 1, Mapping 1)\n");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
    let d = Daemon::run(&all, &[]);
    assert!(
        d.log().contains(&expected[..expected.len() - 1]),
        "run does not warn:\n{}",
        d.log()
    );
}

/// A hand-written config: `---` documents (no List), a Host whose `tlsSecret` is a `kind:
/// Secret` document with `stringData` in the same file; no `--secrets-dir`.
#[test]
fn an_inline_secret_document_with_string_data_serves_its_certificate() {
    let ca = Ca::new("inline CA");
    let (crt, key) = ca.leaf(&["*.example.com"]);
    let indent = |pem: &str| -> String { pem.lines().map(|l| format!("    {l}\n")).collect() };
    let up = net::banner("127.0.0.1:0", "WEB");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("web.yaml");
    let (_d, [port]) = Daemon::run_ports(
        |[port]| {
            let yaml = format!(
                "apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata:\n  name: wild\n  namespace: web\nspec:\n  hostname: \"*.example.com\"\n  tlsSecret:\n    name: wild-cert\n---\napiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata:\n  name: web\n  namespace: web\nspec:\n  port: {port}\n  host: www.example.com\n  service: {}\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: wild-cert\n  namespace: web\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
                up.addr,
                indent(&crt),
                indent(&key)
            );
            std::fs::write(&cfg, yaml).unwrap();
            private(&cfg);
            cfg.clone()
        },
        &[],
    );
    let client = net::tls_client_config(&ca.cert_pem(), None);
    let mut tls = net::tls_connect(net::local(port), "www.example.com", client).unwrap();
    assert_eq!(net::read_line(&mut tls), "WEB");
    assert_eq!(tls.conn.peer_certificates().unwrap()[0].to_vec(), der(&crt));
}
