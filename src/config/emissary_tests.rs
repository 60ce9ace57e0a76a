//! SPEC section 13 through the whole pipeline: resources no TCPMapping uses cannot fail the
//! config, what Emissary's CRDs accept is accepted, a Host's TLS settings apply.

use std::path::Path;

use super::*;
use crate::config::testutil::write_secret;
use crate::route::Termination;

fn input(yaml: &str, secrets: &Path) -> ConfigInput {
    ConfigInput {
        inline: vec![("e.yaml".into(), yaml.into())],
        secrets_dir: Some(secrets.to_path_buf()),
        ..ConfigInput::default()
    }
}

fn lines(problems: &[ConfigError]) -> Vec<String> {
    problems.iter().map(ToString::to_string).collect()
}

/// HTTP-only resources of an export, each broken in a way Emissary tolerates or that only
/// its HTTP side would notice.
const UNUSED: &str = "---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {name: no-hostname, namespace: web}
spec:
  tlsSecret: {name: not-exported}
---
apiVersion: getambassador.io/v3alpha1
kind: TLSContext
metadata: {name: legacy, namespace: web}
spec:
  hosts: [legacy.example.com]
  secret: not-exported-either
  min_tls_version: v1.0
  cipher_suites: [ECDHE-RSA-AES128-SHA]
---
apiVersion: getambassador.io/v3alpha1
kind: Module
metadata: {name: ambassador}
spec:
  config:
    load_balancer: {policy: ring_hash, cookie: {name: sticky}}
";

const DB: &str = "---
apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata: {name: db}
spec:
  port: 5432
  service: db:5432
  idle_timeout_ms: \"30000\"
";

#[test]
fn unused_resources_only_warn_and_the_mappings_load() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!("{UNUSED}{DB}");
    let l = load(&input(&yaml, dir.path())).unwrap_or_else(|e| panic!("{:#?}", lines(&e)));
    let w = lines(&l.warnings);
    assert!(
        w.iter().all(|l| l.starts_with("warning: e.yaml:")),
        "{w:#?}"
    );
    for (line, text) in [
        (6, "Host no-hostname: cannot read "),
        (13, "TLSContext legacy: cannot read "),
        (14, "TLSContext legacy: min_tls_version v1.0"),
        (
            15,
            "TLSContext legacy: cipher suite \"ECDHE-RSA-AES128-SHA\" is not offered",
        ),
        (
            22,
            "Module ambassador: config.load_balancer hashes on `cookie`",
        ),
    ] {
        let want = format!("warning: e.yaml:{line}: {text}");
        assert!(w.iter().any(|l| l.starts_with(&want)), "{want}\n{w:#?}");
    }
    assert!(
        w.iter()
            .filter(|l| l.contains("not-exported"))
            .all(|l| l.contains("no TCPMapping uses this")),
        "{w:#?}"
    );
    let g = l
        .table
        .listeners()
        .values()
        .next()
        .unwrap()
        .plain
        .clone()
        .unwrap();
    assert_eq!(
        g.idle_timeout,
        Some(std::time::Duration::from_millis(30000))
    );
}

#[test]
fn the_same_problems_in_a_used_resource_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{UNUSED}---
apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata: {{name: legacy-db, namespace: web}}
spec: {{port: 5432, host: legacy.example.com, service: db}}
"
    );
    let e = lines(&load(&input(&yaml, dir.path())).unwrap_err());
    assert!(
        e.iter()
            .any(|l| l.starts_with("e.yaml:13: TLSContext legacy: cannot read ")),
        "{e:#?}"
    );
    // The version and suite are still only warnings: TLS 1.2+ with the suites left is servable.
    assert!(
        e.iter()
            .any(|l| l.starts_with("warning: e.yaml:14: TLSContext legacy: min_tls_version")),
        "{e:#?}"
    );
}

#[test]
fn ambassador_id_alias_and_string_booleans() {
    let dir = tempfile::tempdir().unwrap();
    write_secret(dir.path(), "other", &["db.example.com"]);
    write_secret(dir.path(), "ours", &["db.example.com"]);
    // A Host for another Emissary (`ambassadorId`, the v2/v3 spelling) is not ours.
    let yaml = "---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {name: theirs}
spec: {hostname: db.example.com, ambassadorId: [other], tlsSecret: {name: other}}
---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {name: mine}
spec: {hostname: \"*.example.com\", ambassadorId: [default], tlsSecret: {name: ours}}
---
apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata: {name: db}
spec: {port: 5432, host: db.example.com, service: db, enable_ipv6: \"true\"}
";
    let l = load(&input(yaml, dir.path())).unwrap_or_else(|e| panic!("{:#?}", lines(&e)));
    let g = l
        .table
        .listeners()
        .values()
        .next()
        .unwrap()
        .by_sni("db.example.com")
        .unwrap();
    assert_eq!(g.termination().unwrap().source, "Host mine");
    assert!(g.group.families.ipv6());
    assert_eq!(
        lines(&l.warnings),
        [
            "warning: e.yaml:15: TCPMapping db: `enable_ipv6` is the string \"true\"; read as the boolean true"
        ]
    );
}

/// The termination of the only host group.
fn only_termination(l: &Loaded, sni: &str) -> Termination {
    let listener = l.table.listeners().values().next().unwrap();
    listener.by_sni(sni).unwrap().termination().unwrap().clone()
}

#[test]
fn a_host_takes_tls_settings_inline_then_named_then_covering() {
    let dir = tempfile::tempdir().unwrap();
    write_secret(dir.path(), "db", &["db.example.com"]);
    write_secret(dir.path(), "ca", &["ca"]);
    let mapping = "---
apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata: {name: db}
spec: {port: 5432, host: db.example.com, service: db}
";
    let ctx = "---
apiVersion: getambassador.io/v3alpha1
kind: TLSContext
metadata: {name: mtls}
spec: {hosts: [db.example.com], secret: db, ca_secret: ca, cert_required: true}
";
    let host = |extra: &str| {
        format!(
            "---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {{name: db-host}}
spec:
  hostname: db.example.com
  tlsSecret: {{name: db}}
{extra}"
        )
    };
    // Covering: the TLSContext lists the Host's hostname.
    let l = load(&input(&format!("{}{ctx}{mapping}", host("")), dir.path())).unwrap();
    let t = only_termination(&l, "db.example.com");
    assert_eq!(t.source, "Host db-host with TLSContext mtls");
    assert!(t.client_auth);
    // Named, although it lists no hosts.
    let named = ctx.replace("hosts: [db.example.com], ", "");
    let yaml = format!("{}{named}{mapping}", host("  tlsContext: {name: mtls}\n"));
    let t = only_termination(&load(&input(&yaml, dir.path())).unwrap(), "db.example.com");
    assert!(t.client_auth, "{}", t.source);
    // Inline first: it says no client certificate.
    let inline = "  tls: {min_tls_version: v1.3}\n  tlsContext: {name: mtls}\n";
    let yaml = format!("{}{ctx}{mapping}", host(inline));
    let t = only_termination(&load(&input(&yaml, dir.path())).unwrap(), "db.example.com");
    assert_eq!(t.source, "Host db-host with its `tls:` block");
    assert!(!t.client_auth);
    // A named TLSContext that does not exist fails the used Host.
    let yaml = format!("{}{mapping}", host("  tlsContext: {name: nope}\n"));
    let e = lines(&load(&input(&yaml, dir.path())).unwrap_err());
    assert!(
        e.iter()
            .any(|l| l.contains("Host db-host: tlsContext: unknown TLSContext `nope`")),
        "{e:#?}"
    );
}

fn load_ok(yaml: &str, dir: &Path) -> Loaded {
    load(&input(yaml, dir)).unwrap_or_else(|e| panic!("{:#?}", lines(&e)))
}

fn listener_doc(port: u16, stack: &str) -> String {
    format!(
        "---
apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {{name: l{port}}}
spec: {{port: {port}, protocolStack: {stack}, securityModel: XFP, hostBinding: {{namespace: {{from: ALL}}}}}}
"
    )
}

#[test]
fn a_proxy_listener_requires_the_header_on_its_port_and_must_agree_with_mappings() {
    use crate::proxy_protocol::Accept;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!("{}{DB}", listener_doc(5432, "[PROXY, TCP]"));
    let l = load_ok(&yaml, dir.path());
    assert!(l.warnings.is_empty(), "{:#?}", lines(&l.warnings));
    let listener = l.table.listeners().values().next().unwrap();
    assert_eq!(listener.proxy_protocol, Accept::Required);
    // A Listener without PROXY on another port changes nothing here.
    let yaml = format!("{}{DB}", listener_doc(8080, "[HTTP, TCP]"));
    let l = load_ok(&yaml, dir.path());
    assert_eq!(
        l.table.listeners().values().next().unwrap().proxy_protocol,
        Accept::Off
    );
    // Disagreement: an error naming both.
    let yaml = format!(
        "{}{}",
        listener_doc(5432, "[TCP]"),
        DB.replace(
            "  service: db:5432\n",
            "  service: db:5432\n  use_proxy_proto: true\n"
        )
    );
    let e = lines(&load(&input(&yaml, dir.path())).unwrap_err());
    assert!(
        e.iter().any(|l| l.contains("TCPMapping db: `use_proxy_proto` is true here but Listener l5432 (e.yaml:2) on port 5432 says false")),
        "{e:#?}"
    );
}

#[test]
fn module_circuit_breakers_namespace_resolution_and_keepalive() {
    let dir = tempfile::tempdir().unwrap();
    let module = "---
apiVersion: getambassador.io/v3alpha1
kind: Module
metadata: {name: ambassador}
spec:
  config:
    circuit_breakers: [{max_connections: 7}]
    use_ambassador_namespace_for_service_resolution: true
    keepalive: {time: 60, interval: 10, probes: 4}
";
    let mapping = "---
apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata: {name: db, namespace: data}
spec: {port: 5432, service: db}
";
    let l = load_ok(&format!("{module}{mapping}"), dir.path());
    let g = l
        .table
        .listeners()
        .values()
        .next()
        .unwrap()
        .plain
        .clone()
        .unwrap();
    let u = &g.upstreams[0];
    assert_eq!(u.max_connections, Some(7));
    assert_eq!(u.host, crate::route::ServiceHost::Dns("db".into()));
    let k = u.endpoints.keepalive.unwrap();
    assert_eq!(k.time, Some(std::time::Duration::from_secs(60)));
    assert_eq!(k.interval, Some(std::time::Duration::from_secs(10)));
    assert_eq!(k.probes, Some(4));
    // Without the Module: qualified, no limit, kernel keepalive.
    let l = load_ok(mapping, dir.path());
    let g = l
        .table
        .listeners()
        .values()
        .next()
        .unwrap()
        .plain
        .clone()
        .unwrap();
    assert_eq!(
        g.upstreams[0].host,
        crate::route::ServiceHost::Dns("db.data".into())
    );
    assert_eq!(g.upstreams[0].max_connections, None);
    assert!(g.upstreams[0].endpoints.keepalive.is_none());
    // A mapping's own circuit_breakers beat the Module's.
    let own = mapping.replace(
        "service: db}",
        "service: db, circuit_breakers: [{max_connections: 2}]}",
    );
    let l = load_ok(&format!("{module}{own}"), dir.path());
    let g = l
        .table
        .listeners()
        .values()
        .next()
        .unwrap()
        .plain
        .clone()
        .unwrap();
    assert_eq!(g.upstreams[0].max_connections, Some(2));
}

#[test]
fn service_annotations_contribute_mappings_in_the_services_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "---
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: data
  annotations:
    getambassador.io/config: |
      ---
      apiVersion: getambassador.io/v2
      kind: TCPMapping
      name: db-annotated
      port: 5432
      service: db:5432
      stats_name: db
spec:
  ports: [{port: 5432}]
";
    let l = load_ok(yaml, dir.path());
    assert_eq!(
        l.render_text().trim(),
        "0.0.0.0:5432 * raw -> db.data:5432 (100%) [db-annotated]"
    );
    assert_eq!(
        lines(&l.warnings),
        [
            "warning: e.yaml:15: TCPMapping db-annotated: `stats_name` is not applied: metrics name a mapping by its name, port and host"
        ]
    );
}

#[test]
fn istio_and_opaque_secrets_serve_in_documents_and_in_the_secrets_dir() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["db.example.com".to_string()]).unwrap();
    let (crt, key) = (ck.cert.pem(), ck.key_pair.serialize_pem());
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mapping = "---
apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata: {name: db}
spec: {port: 5432, host: db.example.com, service: db}
---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {name: db-host}
spec: {hostname: db.example.com, tlsSecret: {name: db-cert}}
";
    let istio_doc = format!(
        "---
apiVersion: v1
kind: Secret
metadata: {{name: db-cert, namespace: default}}
type: istio.io/key-and-cert
data:
  cert-chain.pem: {}
  key.pem: {}
",
        b64(&crt),
        b64(&key)
    );
    let l = load_ok(&format!("{mapping}{istio_doc}"), dir.path());
    assert!(
        l.render_text().contains("terminate(Host db-host)"),
        "{}",
        l.render_text()
    );
    // The same keys mounted by --secrets-dir.
    let folder = dir.path().join("db-cert");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("cert-chain.pem"), &crt).unwrap();
    std::fs::write(folder.join("key.pem"), &key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        folder.join("key.pem"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let l = load_ok(mapping, dir.path());
    assert!(l.render_text().contains("terminate(Host db-host)"));
}

#[test]
fn a_tls_context_used_only_for_a_hosts_settings_needs_no_certificate_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    write_secret(dir.path(), "db", &["db.example.com"]);
    write_secret(dir.path(), "ca", &["ca"]);
    let yaml = |extra: &str| {
        format!(
            "---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {{name: db-host}}
spec: {{hostname: db.example.com, tlsSecret: {{name: db}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: TLSContext
metadata: {{name: mtls}}
spec: {{hosts: [db.example.com], secret: not-exported, ca_secret: ca, cert_required: true{extra}}}
---
apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata: {{name: db}}
spec: {{port: 5432, host: db.example.com, service: db}}
"
        )
    };
    let l = load_ok(&yaml(""), dir.path());
    let t = only_termination(&l, "db.example.com");
    assert_eq!(t.source, "Host db-host with TLSContext mtls");
    assert!(t.client_auth);
    let w = lines(&l.warnings);
    assert!(
        w.iter().any(|l| l.starts_with("warning: e.yaml:10: TLSContext mtls: cannot read ")
            && l.ends_with("(a Host takes only this TLSContext's settings, so its certificate is not served)")),
        "{w:#?}"
    );
    // Its settings still must be valid: they are served.
    let e = lines(&load(&input(&yaml(", ecdh_curves: [P-521]"), dir.path())).unwrap_err());
    assert!(
        e.iter()
            .any(|l| l.starts_with("e.yaml:10: TLSContext mtls: unknown ecdh_curves entry")),
        "{e:#?}"
    );
}
