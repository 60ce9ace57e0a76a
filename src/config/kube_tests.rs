//! What `kubectl get ... -o yaml` prints, through the whole pipeline: `kind: List`, `kind:
//! Secret` documents as a secret source, and the warning for a config without TCPMapping.

use std::path::Path;

use base64::Engine as _;

use super::*;
use crate::route::Termination;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A self-signed certificate and key for `host`.
fn cert(host: &str) -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
    (ck.cert.pem(), ck.key_pair.serialize_pem())
}

/// A kubectl-style TLS Secret as a List item (two-space indented under `- `).
fn secret_item(name: &str, ns: &str, crt: &str, key: &str) -> String {
    format!(
        "- apiVersion: v1\n  data:\n    tls.crt: {}\n    tls.key: {}\n  kind: Secret\n  metadata:\n    name: {name}\n    namespace: {ns}\n  type: kubernetes.io/tls\n",
        b64(crt),
        b64(key)
    )
}

fn context_item(name: &str, ns: &str, extra: &str) -> String {
    format!(
        "- apiVersion: getambassador.io/v3alpha1\n  kind: TLSContext\n  metadata:\n    name: {name}\n    namespace: {ns}\n  spec:\n    hosts: [db.example.com]\n{extra}"
    )
}

fn mapping_item(name: &str, ns: &str, port: u16) -> String {
    format!(
        "- apiVersion: getambassador.io/v3alpha1\n  kind: TCPMapping\n  metadata:\n    name: {name}\n    namespace: {ns}\n  spec:\n    port: {port}\n    host: db.example.com\n    service: db:5432\n"
    )
}

fn list(items: &[String]) -> String {
    format!(
        "apiVersion: v1\nitems:\n{}kind: List\nmetadata:\n  resourceVersion: \"\"\n",
        items.concat()
    )
}

fn inline(yaml: &str) -> ConfigInput {
    ConfigInput {
        inline: vec![("all.yaml".into(), yaml.into())],
        ..ConfigInput::default()
    }
}

fn termination(loaded: &Loaded) -> &Termination {
    let l = loaded
        .table
        .listeners()
        .values()
        .next()
        .expect("a listener");
    let (_, g) = l.host_groups().next().expect("a host group");
    g.termination().expect("a terminating group")
}

fn messages(r: Result<Loaded, Vec<ConfigError>>) -> Vec<String> {
    match r {
        Ok(l) => l.warnings.iter().map(ToString::to_string).collect(),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_kubectl_list_with_a_tls_secret_serves_without_a_secrets_dir() {
    let (crt, key) = cert("db.example.com");
    let yaml = list(&[
        mapping_item("db", "prod", 5432),
        context_item("db-tls", "prod", "    secret: db-cert\n"),
        secret_item("db-cert", "prod", &crt, &key),
    ]);
    let loaded = load(&inline(&yaml)).unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(termination(&loaded).source, "TLSContext db-tls");
    assert!(
        loaded
            .table
            .render_text()
            .contains("db.example.com terminate")
    );
}

#[test]
fn list_items_are_located_at_their_own_lines() {
    let yaml = list(&[
        mapping_item("ok", "default", 2222),
        // The second item starts at line 12; its port is on line 18.
        mapping_item("bad", "default", 0),
    ]);
    let errs = messages(load(&inline(&yaml)));
    let port = errs
        .iter()
        .find(|e| e.contains("TCPMapping bad"))
        .unwrap_or_else(|| panic!("{errs:?}"));
    assert!(port.starts_with("all.yaml:18: TCPMapping bad: "), "{port}");
}

#[test]
fn a_nested_list_is_an_error_at_its_item() {
    let yaml = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: List\n  items: []\n";
    let errs = messages(load(&inline(yaml)));
    assert!(
        errs.iter()
            .any(|e| e.starts_with("all.yaml:4: List -: a List inside a List")),
        "{errs:?}"
    );
}

#[test]
fn secrets_are_found_in_the_resources_namespace_or_by_name_dot_namespace() {
    let (crt, key) = cert("db.example.com");
    let (_, other_key) = cert("other");
    // Same name in two namespaces; the one in `dev` is broken (its key does not match), so
    // a load that picks it fails.
    let base = [
        mapping_item("db", "prod", 5432),
        secret_item("db-cert", "dev", &crt, &other_key),
        secret_item("db-cert", "prod", &crt, &key),
    ];
    for (ctx, ok) in [
        (context_item("c", "prod", "    secret: db-cert\n"), true),
        (
            context_item("c", "prod", "    secret: db-cert.dev\n"),
            false,
        ),
        (context_item("c", "dev", "    secret: db-cert.prod\n"), true),
        (context_item("c", "dev", "    secret: db-cert\n"), false),
    ] {
        let mut items = base.to_vec();
        items.push(ctx.clone());
        let r = load(&inline(&list(&items)));
        assert_eq!(r.is_ok(), ok, "{ctx}: {:?}", messages(r));
    }
    // Not in the context's namespace and no secrets dir: an error saying both.
    let mut items = base.to_vec();
    items.push(context_item("c", "web", "    secret: db-cert\n"));
    let errs = messages(load(&inline(&list(&items))));
    assert!(
        errs.iter().any(|e| e.contains(
            "TLSContext c: secret `db-cert` is not a Secret in the config and needs --secrets-dir"
        )),
        "{errs:?}"
    );
}

#[test]
fn string_data_and_ca_crt_serve_a_client_certificate_context() {
    let (crt, key) = cert("db.example.com");
    let (ca, _) = cert("client ca");
    let indent = |s: &str| {
        s.lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    };
    let secret = format!(
        "- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: db-cert\n    namespace: prod\n  type: kubernetes.io/tls\n  stringData:\n    tls.crt: |\n{}    tls.key: |\n{}    ca.crt: |\n{}",
        indent(&crt),
        indent(&key),
        indent(&ca)
    );
    let ctx = context_item(
        "c",
        "prod",
        "    secret: db-cert\n    ca_secret: db-cert\n    cert_required: true\n",
    );
    let yaml = list(&[mapping_item("db", "prod", 5432), ctx, secret]);
    let loaded = load(&inline(&yaml)).unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(termination(&loaded).client_auth);
}

#[test]
fn bad_base64_and_unknown_types_are_errors_naming_the_secret() {
    let (crt, key) = cert("db.example.com");
    let broken = secret_item("db-cert", "prod", &crt, &key).replace(&b64(&crt), "not*base64");
    let yaml = list(&[
        mapping_item("db", "prod", 5432),
        context_item("c", "prod", "    secret: db-cert\n"),
        broken,
    ]);
    let errs = messages(load(&inline(&yaml)));
    // The Secret item starts at line 20; its `tls.crt` is on line 22.
    assert!(
        errs.iter().any(|e| e.contains("TLSContext c:")
            && e.contains("all.yaml:22: Secret prod/db-cert: `data.tls.crt` is not valid base64")),
        "{errs:?}"
    );

    let odd = secret_item("db-cert", "prod", &crt, &key)
        .replace("kubernetes.io/tls", "kubernetes.io/dockerconfigjson");
    let yaml = list(&[
        mapping_item("db", "prod", 5432),
        context_item("c", "prod", "    secret: db-cert\n"),
        odd,
    ]);
    let errs = messages(load(&inline(&yaml)));
    assert!(
        errs.iter().any(|e| e.contains(
            "TLSContext c: Secret prod/db-cert at all.yaml:20 has type `kubernetes.io/dockerconfigjson`, not kubernetes.io/tls"
        )),
        "{errs:?}"
    );
    // Opaque (kubectl create secret generic, External Secrets) serves like kubernetes.io/tls.
    let opaque = secret_item("db-cert", "prod", &crt, &key).replace("kubernetes.io/tls", "Opaque");
    let yaml = list(&[
        mapping_item("db", "prod", 5432),
        context_item("c", "prod", "    secret: db-cert\n"),
        opaque,
    ]);
    load(&inline(&yaml)).unwrap_or_else(|e| panic!("{e:#?}"));
}

#[test]
fn a_host_finds_its_tls_secret_document() {
    let (crt, key) = cert("*.example.com");
    let host = "- apiVersion: getambassador.io/v3alpha1\n  kind: Host\n  metadata:\n    name: wild\n    namespace: prod\n  spec:\n    hostname: \"*.example.com\"\n    tlsSecret:\n      name: wild-cert\n".to_string();
    let yaml = list(&[
        mapping_item("db", "prod", 5432),
        host,
        secret_item("wild-cert", "prod", &crt, &key),
    ]);
    let loaded = load(&inline(&yaml)).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(termination(&loaded).source, "Host wild");
}

#[test]
fn a_group_readable_config_file_holding_a_key_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let (crt, key) = cert("db.example.com");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.yaml");
    let yaml = list(&[
        mapping_item("db", "prod", 5432),
        context_item("c", "prod", "    secret: db-cert\n"),
        secret_item("db-cert", "prod", &crt, &key),
        secret_item("other", "prod", &crt, &key),
    ]);
    std::fs::write(&file, yaml).unwrap();
    let input = |mode| {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        ConfigInput {
            paths: vec![file.clone()],
            ..ConfigInput::default()
        }
    };
    let warnings = messages(load(&input(0o644)));
    assert_eq!(warnings.len(), 1, "one warning per file: {warnings:?}");
    let expected = format!(
        "warning: {}:23: Secret db-cert: config file {} holds a private key and is readable by group or others (mode 644); make it 0600",
        file.display(),
        file.display()
    );
    assert_eq!(warnings[0], expected);
    assert!(messages(load(&input(0o600))).is_empty());
}

#[test]
fn a_config_without_tcpmapping_says_what_it_found() {
    let yaml = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: getambassador.io/v3alpha1\n  kind: Mapping\n  metadata: {name: a}\n- apiVersion: getambassador.io/v3alpha1\n  kind: Mapping\n  metadata: {name: b}\n---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: c}\n";
    let loaded = load(&inline(yaml)).unwrap_or_else(|e| panic!("{e:#?}"));
    let w: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        ["warning: all.yaml:1: Config -: no TCPMapping (found: List 1, Mapping 3)"]
    );
    assert!(loaded.table.listeners().is_empty());
    // No sources at all (a library that applies YAML later): nothing to warn about.
    assert!(load(&ConfigInput::default()).unwrap().warnings.is_empty());
    let _ = Path::new("");
}
