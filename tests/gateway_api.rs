//! Gateway API (SPEC section 14) through the binary: `tcpmap check` on the fixtures in
//! tests/fixtures/gateway-api/ prints what is checked in next to them, and a running tcpmap
//! (`--gateway-class`, dnsmasq resolving `name.namespace`) serves a Gateway's TCP listeners
//! (TCPRoute: bytes reach the right backend, relative weights), a Passthrough listener (the
//! backend's own certificate, chosen by SNI) and a Terminate listener (the Secret's
//! certificate, cleartext to the backend).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;

use common::daemon::Daemon;
use common::dns::Dnsmasq;
use common::net;
use common::pki::Ca;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const FIXTURES: [&str; 3] = [
    "tests/fixtures/gateway-api/standard.yaml",
    "tests/fixtures/gateway-api/export.yaml",
    "tests/fixtures/gateway-api/status.yaml",
];

#[test]
fn check_prints_the_checked_in_expectation_for_each_fixture() {
    use std::os::unix::fs::PermissionsExt;
    for fixture in FIXTURES {
        // They hold private keys (test-only, self-signed): git keeps no modes, `check` warns
        // about a readable key.
        std::fs::set_permissions(root().join(fixture), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_tcpmap"))
            .current_dir(root())
            .args(["check", "--config", fixture])
            .env_remove("AMBASSADOR_NAMESPACE")
            .env_remove("TCPMAP_GATEWAY_CLASS")
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
    }
}

#[test]
fn check_serves_only_the_selected_gateway_class() {
    let fixture = FIXTURES[0];
    let run = |args: &[&str], env: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tcpmap"));
        cmd.current_dir(root())
            .args(["check", "--config", fixture])
            .args(args)
            .env_remove("TCPMAP_GATEWAY_CLASS");
        if let Some(class) = env {
            cmd.env("TCPMAP_GATEWAY_CLASS", class);
        }
        String::from_utf8(cmd.output().unwrap().stdout).unwrap()
    };
    // The other controller's Gateway (port 9000) is served only under its class name, by the
    // flag or by the environment; then tcpmap's own Gateways are the skipped ones.
    for out in [
        run(&["--gateway-class", "example-gateway-class"], None),
        run(&[], Some("example-gateway-class")),
    ] {
        assert!(
            out.contains("0.0.0.0:9000 * raw -> elsewhere-svc.default:9000 (100%) [elsewhere]"),
            "{out}"
        );
        assert!(!out.contains(":8080"), "{out}");
    }
    assert!(!run(&[], None).contains(":9000"));
    // `--output json` carries the status of the served Gateways and their routes only.
    let json: serde_json::Value = serde_json::from_str(&run(&["--output", "json"], None)).unwrap();
    let status = json["status"].as_array().unwrap();
    let names: Vec<&str> = status.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"my-tcp-gateway"), "{names:?}");
    assert!(names.contains(&"tcp-app-1"), "{names:?}");
    assert!(!names.contains(&"elsewhere"), "{names:?}");
    let route = status.iter().find(|s| s["name"] == "tcp-app-1").unwrap();
    let accepted = &route["status"]["parents"][0]["conditions"][0];
    assert_eq!(
        (&accepted["type"], &accepted["status"]),
        (&"Accepted".into(), &"True".into())
    );
}

/// A Python with `jsonschema` and `yaml`: the manifests venv, else `python3`.
fn python() -> Option<PathBuf> {
    let candidates = [root().join("target/k8s-venv/bin/python3"), "python3".into()];
    for c in candidates {
        let ok = Command::new(&c)
            .args(["-c", "import jsonschema, yaml"])
            .output()
            .is_ok_and(|o| o.status.success());
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

const VALIDATE: &str = "tests/fixtures/gateway-api/crds/validate.py";

#[test]
fn every_fixture_validates_against_the_gateway_api_crd_schemas() {
    let Some(py) = python() else { return };
    let out = Command::new(py)
        .current_dir(root())
        .arg(VALIDATE)
        .args(FIXTURES)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // 10 + 6 + 18 resources, each against every channel serving its version (the standard
    // channel serves no v1alpha2/v1alpha3 routes).
    assert!(
        text.ends_with("validated 34 resources (standard 27, experimental 34)\n"),
        "{text}"
    );
}

#[test]
fn the_validator_rejects_what_the_api_server_would() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(root().join(FIXTURES[0]))
        .unwrap()
        .replace("    sectionName: foo\n", "    sectionNam: foo\n")
        .replace("      port: 443\n", "      port: \"443\"\n");
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(py)
        .current_dir(root())
        .arg(VALIDATE)
        .arg(&bad)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("'sectionNam' was unexpected"), "{text}");
    assert!(text.contains("'443' is not of type 'integer'"), "{text}");
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The first line an upstream sends through `port`.
fn banner(port: u16) -> String {
    let mut s = net::connect(net::local(port));
    net::read_line(&mut s)
}

/// True when `port` refuses connections or closes them without a byte.
fn refused(port: u16) -> bool {
    match TcpStream::connect(net::local(port)) {
        Err(e) => e.kind() == ErrorKind::ConnectionRefused,
        Ok(mut s) => {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            matches!(s.read(&mut [0u8; 1]), Ok(0) | Err(_))
        }
    }
}

#[test]
fn a_running_tcpmap_serves_tcp_passthrough_and_terminate_listeners() {
    // Backends, named as the cluster would: `name.namespace` through dnsmasq.
    let alpha = net::banner("127.0.0.1:0", "alpha");
    let beta = net::banner("127.0.0.1:0", "beta");
    let upstream_ca = Ca::new("upstream CA");
    let (foo_crt, foo_key) = upstream_ca.leaf(&["foo.example.test"]);
    let (baz_crt, baz_key) = upstream_ca.leaf(&["deep.baz.example.test"]);
    let foo = net::tls_banner(
        "127.0.0.1:0",
        "foo-upstream",
        net::tls_server_config(&foo_crt, &foo_key, None),
    );
    let baz = net::tls_banner(
        "127.0.0.1:0",
        "baz-upstream",
        net::tls_server_config(&baz_crt, &baz_key, None),
    );
    let bar = net::banner("127.0.0.1:0", "bar-cleartext");
    let names = [
        "alpha.apps",
        "beta.apps",
        "foo-svc.apps",
        "baz-svc.apps",
        "bar-svc.apps",
        // Resolvable, so a share that tcpmap wrongly connected would answer `beta`.
        "beta.elsewhere",
    ];
    let records: Vec<(&str, &str)> = names.iter().map(|n| ("127.0.0.1", *n)).collect();
    let Some(dns) = Dnsmasq::start(&records, 60) else {
        return;
    };
    // The Terminate listener's Secret, a document of the config.
    let gateway_ca = Ca::new("gateway CA");
    let (bar_crt, bar_key) = gateway_ca.leaf(&["bar.example.test"]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    let yaml = |[tcp, weighted, pass, term, other, half]: [u16; 6]| {
        format!(
            r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: apps}}
spec:
  gatewayClassName: e2e
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners:
  - {{name: tcp, protocol: TCP, port: {tcp}}}
  - {{name: weighted, protocol: TCP, port: {weighted}}}
  - {{name: half, protocol: TCP, port: {half}}}
  - {{name: pass, protocol: TLS, port: {pass}, tls: {{mode: Passthrough}}}}
  - name: term
    protocol: TLS
    port: {term}
    tls:
      mode: Terminate
      certificateRefs: [{{name: bar-cert}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: not-ours, namespace: apps}}
spec:
  gatewayClassName: tcpmap
  addresses: [{{value: 127.0.0.1}}]
  listeners: [{{name: tcp, protocol: TCP, port: {other}}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: bar-cert, namespace: apps}}
type: kubernetes.io/tls
data: {{tls.crt: {crt}, tls.key: {key}}}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: to-alpha, namespace: apps}}
spec:
  parentRefs: [{{name: edge, sectionName: tcp}}, {{name: not-ours}}]
  rules: [{{backendRefs: [{{name: alpha, port: {alpha}}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {{name: split, namespace: apps}}
spec:
  parentRefs: [{{name: edge, port: {weighted}}}]
  rules:
  - backendRefs:
    - {{name: alpha, port: {alpha}, weight: 3}}
    - {{name: beta, port: {beta}, weight: 1}}
    - {{name: never, port: 1, weight: 0}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {{name: half, namespace: apps}}
spec:
  parentRefs: [{{name: edge, sectionName: half}}]
  rules:
  - backendRefs:
    - {{name: alpha, port: {alpha}}}
    - {{name: beta, namespace: elsewhere, port: {beta}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: foo, namespace: apps}}
spec:
  parentRefs: [{{name: edge, sectionName: pass}}]
  hostnames: [foo.example.test]
  rules: [{{backendRefs: [{{name: foo-svc, port: {foo}}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha3
kind: TLSRoute
metadata: {{name: baz, namespace: apps}}
spec:
  parentRefs: [{{name: edge, sectionName: pass}}]
  hostnames: ["*.example.test"]
  rules: [{{backendRefs: [{{name: baz-svc, port: {baz}}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: bar, namespace: apps}}
spec:
  parentRefs: [{{name: edge, sectionName: term}}]
  hostnames: [bar.example.test]
  rules: [{{backendRefs: [{{name: bar-svc, port: {bar}}}]}}]
"#,
            crt = b64(&bar_crt),
            key = b64(&bar_key),
            alpha = alpha.port(),
            beta = beta.port(),
            foo = foo.port(),
            baz = baz.port(),
            bar = bar.port(),
        )
    };
    let resolv = dns.resolv_conf();
    let (d, [tcp, weighted, pass, term, other, half]) = Daemon::run_yaml(
        &config,
        yaml,
        &[
            "--gateway-class",
            "e2e",
            "--admin",
            "127.0.0.1:0",
            "--resolv-conf",
            resolv.to_str().unwrap(),
        ],
    );

    // TCPRoute: bytes reach the backend it names, both ways.
    let mut s = net::connect(net::local(tcp));
    assert_eq!(net::read_line(&mut s), "alpha");
    net::roundtrip(&mut s, b"through the gateway\n");
    // The Gateway of class tcpmap is not served under --gateway-class e2e.
    assert!(refused(other), "port {other} of a Gateway of another class");

    // Relative weights 3:1 (and 0: never) over 200 connections. Each worker process picks by
    // its own exact 100-slot sequence, within 1.25 connections of 75% at any count: with up
    // to 8 workers, alpha gets 150 ± 10.
    let mut got = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..200 {
        *got.entry(banner(weighted)).or_default() += 1;
    }
    let (a, b) = (got["alpha"], got["beta"]);
    assert_eq!(a + b, 200, "{got:?}");
    assert!(
        (130..=170).contains(&a),
        "3:1 should give about 150 of 200: {got:?}"
    );

    // A backend in another namespace without a ReferenceGrant: its share (1 of 2) is refused,
    // never connected (beta would answer), each refusal closed with an access line.
    let mark = d.mark();
    let mut got = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..100 {
        *got.entry(banner(half)).or_default() += 1;
    }
    let refused_count = got.get("").copied().unwrap_or(0);
    assert_eq!(got.get("beta"), None, "{got:?}");
    assert_eq!(
        got.get("alpha").copied().unwrap_or(0) + refused_count,
        100,
        "{got:?}"
    );
    assert!((45..=55).contains(&refused_count), "half refused: {got:?}");
    // One access line per refused connection, saying why.
    let refusals = || {
        d.lines()
            .iter()
            .skip(mark)
            .filter(|l| {
                l.contains("connection closed")
                    && l.contains("half refused:RefNotPermitted")
                    && l.contains("end=\"no_route\"")
                    && l.contains("detail=\"backendRef refused: RefNotPermitted\"")
            })
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while refusals() < refused_count && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(refusals(), refused_count, "{}", d.log());

    // Passthrough: the backend's own certificate (tcpmap holds none for these names), chosen
    // by SNI: the exact hostname first, then the wildcard route.
    let upstream_trust = net::tls_client_config(&upstream_ca.cert_pem(), None);
    for (sni, want) in [
        ("foo.example.test", "foo-upstream"),
        ("deep.baz.example.test", "baz-upstream"),
    ] {
        let mut c = net::tls_connect(net::local(pass), sni, upstream_trust.clone()).unwrap();
        let line = net::read_line(&mut c);
        assert_eq!(line, format!("{want} client-cert=none sni={sni}"), "{sni}");
    }

    // Terminate: the Secret's certificate (verified against its CA for the name), and the
    // backend gets cleartext.
    let gateway_trust = net::tls_client_config(&gateway_ca.cert_pem(), None);
    let mut c = net::tls_connect(net::local(term), "bar.example.test", gateway_trust).unwrap();
    let served = c.conn.peer_certificates().unwrap().first().unwrap().clone();
    assert_eq!(net::common_name(&served), "bar.example.test");
    assert_eq!(net::read_line(&mut c), "bar-cleartext");
    net::roundtrip(&mut c, b"decrypted\n");
    // The upstream CA does not vouch for the Terminate listener: it is not the backend's.
    let wrong = net::tls_client_config(&upstream_ca.cert_pem(), None);
    assert!(net::tls_connect(net::local(term), "bar.example.test", wrong).is_err());

    // `/config` carries the status a controller would write: the half-refused route is
    // accepted with ResolvedRefs False (RefNotPermitted), the pass listener has 2 routes.
    let (code, body) = common::daemon::http_get(d.admin_addr(), "/config");
    assert_eq!(code, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let status = json["status"].as_array().unwrap();
    let half = status.iter().find(|s| s["name"] == "half").unwrap();
    let conditions = &half["status"]["parents"][0]["conditions"];
    assert_eq!(conditions[0]["type"], "Accepted");
    assert_eq!(conditions[0]["status"], "True");
    assert_eq!(conditions[1]["type"], "ResolvedRefs");
    assert_eq!(conditions[1]["status"], "False");
    assert_eq!(conditions[1]["reason"], "RefNotPermitted");
    let edge = status.iter().find(|s| s["kind"] == "Gateway").unwrap();
    let pass_listener = edge["status"]["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "pass")
        .unwrap();
    assert_eq!(pass_listener["attachedRoutes"], 2);
    assert!(
        status.iter().all(|s| s["name"] != "not-ours"),
        "a Gateway of another class has no status here: {status:?}"
    );
}

#[test]
fn several_certificate_refs_are_chosen_by_sni_and_a_listener_without_one_does_not_block_readiness()
{
    let backend = net::banner("127.0.0.1:0", "web");
    let Some(dns) = Dnsmasq::start(&[("127.0.0.1", "web.apps")], 60) else {
        return;
    };
    let ca = Ca::new("gateway CA");
    let (a_crt, a_key) = ca.leaf(&["a.example.test"]);
    let (b_crt, b_key) = ca.leaf(&["b.example.test"]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    let yaml = |[tls, broken]: [u16; 2]| {
        format!(
            r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: apps}}
spec:
  gatewayClassName: tcpmap
  addresses: [{{value: 127.0.0.1}}]
  listeners:
  - name: tls
    protocol: TLS
    port: {tls}
    tls: {{certificateRefs: [{{name: a-cert}}, {{name: b-cert}}]}}
  - name: broken
    protocol: TLS
    port: {broken}
    tls: {{certificateRefs: [{{name: no-such-secret}}]}}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Secret
  metadata: {{name: a-cert, namespace: apps}}
  type: kubernetes.io/tls
  data: {{tls.crt: {a_crt}, tls.key: {a_key}}}
- apiVersion: v1
  kind: Secret
  metadata: {{name: b-cert, namespace: apps}}
  type: kubernetes.io/tls
  data: {{tls.crt: {b_crt}, tls.key: {b_key}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: web, namespace: apps}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [a.example.test, b.example.test, c.example.test]
  rules: [{{backendRefs: [{{name: web, port: {port}}}]}}]
"#,
            a_crt = b64(&a_crt),
            a_key = b64(&a_key),
            b_crt = b64(&b_crt),
            b_key = b64(&b_key),
            port = backend.port(),
        )
    };
    let resolv = dns.resolv_conf();
    let (d, [tls, broken]) = Daemon::run_yaml(
        &config,
        yaml,
        &[
            "--admin",
            "127.0.0.1:0",
            "--resolv-conf",
            resolv.to_str().unwrap(),
        ],
    );
    // Each name gets the certificate made for it, and the backend answers behind each.
    let trust = net::tls_client_config(&ca.cert_pem(), None);
    for sni in ["a.example.test", "b.example.test"] {
        let mut c = net::tls_connect(net::local(tls), sni, trust.clone()).unwrap();
        let served = c.conn.peer_certificates().unwrap().first().unwrap().clone();
        assert_eq!(net::common_name(&served), sni);
        assert_eq!(net::read_line(&mut c), "web", "{sni}");
    }
    // A name no certificate covers gets the first (a-cert): the client sees a certificate
    // for a.example.test and refuses it for c.example.test.
    let Err(err) = net::tls_connect(net::local(tls), "c.example.test", trust) else {
        panic!("a.example.test's certificate is not valid for c.example.test");
    };
    assert!(err.to_string().contains("a.example.test"), "{err}");
    // The listener whose Secret is missing is not programmed: nothing listens on its port,
    // and readiness counts the programmed listeners only.
    assert!(
        refused(broken),
        "port {broken} of the listener without a certificate"
    );
    let (code, body) = common::daemon::http_get(d.admin_addr(), "/ambassador/v0/check_ready");
    assert_eq!(code, 200, "{body}");
}
