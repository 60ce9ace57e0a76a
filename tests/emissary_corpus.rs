//! The Emissary corpus (tests/fixtures/emissary/): `tcpmap check` on each fixture prints what
//! is checked in next to it (`*.expected`: the exit code, then stdout); every fixture
//! validates against Emissary's own CRD schemas (crds/, strict); the `kubectl get … -o yaml`
//! export serves its TCPMappings end to end.
//!
//! The schema check runs crds/validate.py with the Python of `target/k8s-venv` (what scripts/test
//! builds for tests/manifests.rs) or `python3`; it needs `jsonschema` and `yaml`. Missing,
//! the test fails unless `TCPMAP_SKIP_JSONSCHEMA=1` (tests/common/env.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_yaml_ng::Value;

use common::net;
use common::proxy;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const EXPORT: &str = "tests/fixtures/emissary/export.yaml";
const DOCS: &str = "tests/fixtures/emissary/docs-examples.yaml";

/// The fixtures and the `check` arguments each runs with.
fn fixtures() -> [(&'static str, Vec<&'static str>); 2] {
    [
        (EXPORT, vec!["--config", EXPORT]),
        (
            DOCS,
            vec!["--config", DOCS, "--secrets-dir", "examples/config/secrets"],
        ),
    ]
}

/// Git keeps no modes beyond the executable bit: files holding private keys are made private
/// first, else `check` rightly warns about them.
fn private_keys() {
    use std::os::unix::fs::PermissionsExt;
    let private = std::fs::Permissions::from_mode(0o600);
    std::fs::set_permissions(root().join(EXPORT), private.clone()).unwrap();
    for s in ["supersecret", "othersecret"] {
        let key = root()
            .join("examples/config/secrets")
            .join(s)
            .join("tls.key");
        std::fs::set_permissions(key, private.clone()).unwrap();
    }
}

#[test]
fn check_prints_the_checked_in_expectation_for_each_fixture() {
    private_keys();
    for (fixture, args) in fixtures() {
        let out = Command::new(env!("CARGO_BIN_EXE_tcpmap"))
            .current_dir(root())
            .arg("check")
            .args(&args)
            .env_remove("AMBASSADOR_NAMESPACE")
            .env_remove("AMBASSADOR_ID")
            .output()
            .unwrap();
        let got = format!(
            "exit {}\n{}",
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap()
        );
        let expected_path = root().join(fixture.replace(".yaml", ".expected"));
        let expected = std::fs::read_to_string(&expected_path).unwrap();
        assert_eq!(got, expected, "{fixture} (expected in {expected_path:?})");
        // An export exits 0; its warnings are only about what Emissary would not serve
        // over TCP either (HTTP-only resources and settings rustls lacks).
        assert!(got.starts_with("exit 0\n"), "{got}");
    }
}

/// A Python with `jsonschema` and `yaml`: the manifests venv, else `python3`.
fn python() -> Option<PathBuf> {
    let candidates = [root().join("target/k8s-venv/bin/python3"), "python3".into()];
    for c in candidates {
        let ok = Command::new(&c)
            .args(["-c", "import jsonschema, yaml"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(c);
        }
    }
    common::env::missing(
        "JSONSCHEMA",
        "no python3 with jsonschema and yaml (target/k8s-venv/bin/pip install jsonschema pyyaml)",
    );
    None
}

#[test]
fn every_fixture_validates_against_emissarys_crd_schemas() {
    let Some(py) = python() else { return };
    let out = Command::new(py)
        .current_dir(root())
        .arg("tests/fixtures/emissary/crds/validate.py")
        .args([EXPORT, DOCS])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // 13 resources in each fixture: nothing was skipped by mistake.
    assert!(text.ends_with("validated 26 resources\n"), "{text}");
}

#[test]
fn the_validator_rejects_what_emissary_would() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(root().join(EXPORT))
        .unwrap()
        .replace(
            "    idle_timeout_ms: \"300000\"\n",
            "    idle_timeout_ms: 300000\n    hostz: typo\n",
        );
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(py)
        .current_dir(root())
        .arg("tests/fixtures/emissary/crds/validate.py")
        .arg(&bad)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("'hostz' was unexpected"), "{text}");
    assert!(text.contains("300000 is not of type 'string'"), "{text}");
}

/// The PEM of Secret `name`'s `tls.crt` in the export.
fn export_cert(export: &Value, name: &str) -> String {
    let items = export.get("items").and_then(Value::as_sequence).unwrap();
    let secret = items
        .iter()
        .find(|i| {
            i.get("kind").and_then(Value::as_str) == Some("Secret")
                && i.get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(Value::as_str)
                    == Some(name)
        })
        .unwrap();
    let b64 = secret["data"]["tls.crt"].as_str().unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    String::from_utf8(der).unwrap()
}

#[test]
fn the_export_serves_its_tcp_mappings_end_to_end() {
    let text = std::fs::read_to_string(root().join(EXPORT)).unwrap();
    let export: Value = serde_yaml_ng::from_str(&text).unwrap();
    let redis = net::echo("127.0.0.1:0");
    let app = net::banner("127.0.0.1:0", "app");
    let db = net::banner("127.0.0.1:0", "postgres");
    let ssh = net::banner("127.0.0.1:0", "ssh-bastion");
    // The cluster's ports and service names, replaced by free local ones.
    let (_p, [tcp, tls, bastion]) = proxy::start_ports(
        None,
        |[tcp, tls, bastion]| {
            let here =
                |port: u16, indent: &str| format!("port: {port}\n{indent}address: 127.0.0.1\n");
            text.replace("port: 6379\n", &here(tcp, "    "))
                .replace("redis.data:6379", &redis.addr.to_string())
                .replace(
                    "port: 9443\n    service",
                    &format!("{}    service", here(tls, "    ")),
                )
                .replace("port: 9443\n", &format!("port: {tls}\n"))
                .replace(
                    "service: postgres:5432",
                    &format!("service: \"{}\"", db.addr),
                )
                .replace("service: app:8080", &format!("service: \"{}\"", app.addr))
                .replace("port: 2222\n", &here(bastion, "        "))
                .replace("ssh-bastion:22", &ssh.addr.to_string())
        },
        |b| b,
    );
    let mut r = net::connect(net::local(tcp));
    net::roundtrip(&mut r, b"PING\r\n");
    for (sni, secret, banner) in [
        ("app.example.com", "app-example-com", "app"),
        ("db.example.com", "db-cert", "postgres"),
    ] {
        let cfg = net::tls_client_config(&export_cert(&export, secret), None);
        let mut c = net::tls_connect(net::local(tls), sni, cfg).unwrap();
        assert_eq!(net::read_line(&mut c), banner, "{sni}");
    }
    let mut b = net::connect(net::local(bastion));
    assert_eq!(net::read_line(&mut b), "ssh-bastion");
    assert_eq!(
        (redis.connections(), app.connections(), db.connections()),
        (1, 1, 1)
    );
}
