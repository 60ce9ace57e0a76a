//! The Kubernetes manifests under deploy/ are checked for real, offline: every one validates
//! against the Kubernetes schemas (PyPI `kubernetes-validate`, strict: unknown fields are
//! errors) for the oldest and newest version it ships, `kubectl kustomize deploy/kubernetes`
//! renders them (no cluster is involved), the rendering validates too, and the rendered
//! ConfigMap's config still passes `tcpmap check`.
//!
//! Tools: scripts/test installs `kubernetes-validate` into the venv `target/k8s-venv` and Debian's
//! `kubernetes-client` (kubectl) when missing. A missing tool fails the test unless
//! `TCPMAP_SKIP_KUBERNETES_VALIDATE=1` / `TCPMAP_SKIP_KUBECTL=1` (tests/common/env.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::Deserialize;
use serde_yaml_ng::Value;

/// The oldest and the newest Kubernetes versions kubernetes-validate 1.37 ships schemas for.
const VERSIONS: [&str; 2] = ["1.25.0", "1.37.0"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `kubernetes-validate`: `$TCPMAP_KUBERNETES_VALIDATE`, the venv scripts/test makes, or PATH.
fn validator() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("TCPMAP_KUBERNETES_VALIDATE").map(PathBuf::from),
        Some(root().join("target/k8s-venv/bin/kubernetes-validate")),
        Some(PathBuf::from("kubernetes-validate")),
    ];
    for c in candidates.into_iter().flatten() {
        let ok = Command::new(&c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(c);
        }
    }
    common::env::missing(
        "KUBERNETES_VALIDATE",
        "kubernetes-validate not found (python3 -m venv target/k8s-venv && target/k8s-venv/bin/pip install kubernetes-validate)",
    );
    None
}

/// Runs `kubernetes-validate --strict -k VERSION` on `files` (or stdin `input` with `-`);
/// panics with its output unless every resource passed without a warning.
fn validate(tool: &Path, version: &str, files: &[PathBuf], input: Option<&str>) {
    let mut cmd = Command::new(tool);
    cmd.args(["--strict", "-k", version]);
    if input.is_some() {
        cmd.arg("-");
    }
    cmd.args(files)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.unwrap_or("").as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate {version}:\n{text}"
    );
    let passed = text
        .lines()
        .filter(|l| l.contains(" passed for resource "))
        .count();
    assert!(passed >= 1, "{text}");
    assert!(
        !text.contains("WARN") && !text.contains("ERROR"),
        "kubernetes-validate {version}:\n{text}"
    );
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// Every YAML manifest under deploy/ (recursively) that is a Kubernetes resource; a
/// Kustomization is kustomize's, rendered below rather than schema-checked.
fn manifests() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("deploy"), &mut files);
    files.sort();
    files.retain(|f| {
        let text = std::fs::read_to_string(f).unwrap();
        documents(&text)
            .iter()
            .all(|d| d["kind"] != "Kustomization")
    });
    assert!(files.len() >= 4, "{files:?}");
    files
}

fn kubectl(args: &[&str]) -> Option<Output> {
    match Command::new("kubectl")
        .args(args)
        .current_dir(root())
        .output()
    {
        Ok(out) => Some(out),
        Err(e) => {
            common::env::missing("KUBECTL", &format!("kubectl cannot run: {e}"));
            None
        }
    }
}

#[test]
fn every_manifest_validates_against_the_kubernetes_schemas() {
    let Some(tool) = validator() else { return };
    let files = manifests();
    for version in VERSIONS {
        validate(&tool, version, &files, None);
    }
}

#[test]
fn kustomize_renders_the_manifests_and_the_rendered_config_passes_check() {
    let Some(out) = kubectl(&["kustomize", "deploy/kubernetes"]) else {
        return;
    };
    let rendered = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = documents(&rendered);
    let mut kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, ["ConfigMap", "Deployment", "Service"], "{rendered}");
    if let Some(tool) = validator() {
        for version in VERSIONS {
            validate(&tool, version, &[], Some(&rendered));
        }
    }

    // The rendered ConfigMap, as the Deployment mounts it, passes `tcpmap check` with a
    // secrets dir laid out as the Deployment mounts the Secret.
    let configmap = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == configmap["metadata"]["name"])
        .expect("the Deployment mounts the ConfigMap");
    assert!(volume["name"].is_string());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    for (name, text) in configmap["data"].as_mapping().unwrap() {
        std::fs::write(config.join(name.as_str().unwrap()), text.as_str().unwrap()).unwrap();
    }
    let secrets = dir.path().join("secrets");
    let (crt, key) = common::pki::self_signed(&["db.example.com"]);
    common::pki::write_secret(&secrets, "tcpmap-tls", &crt, &key);
    {
        use std::os::unix::fs::PermissionsExt;
        let key = secrets.join("tcpmap-tls/tls.key");
        std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = Command::new(common::daemon::binary())
        .args(["check", "--config"])
        .arg(&config)
        .arg("--secrets-dir")
        .arg(&secrets)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(!table.contains("warning:"), "{table}");
    assert!(table.contains("db.example.com terminate"), "{table}");
}

const GATEWAY_VARIANT: &str = "deploy/kubernetes/gateway-api";

/// The kubectl sidecar variant: it renders and validates, its ClusterRole only reads the
/// kinds tcpmap serves, and tcpmap reads the file its feed writes.
#[test]
fn the_gateway_api_variant_renders_and_its_role_only_reads_what_tcpmap_serves() {
    let Some(out) = kubectl(&["kustomize", GATEWAY_VARIANT]) else {
        return;
    };
    let rendered = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = documents(&rendered);
    let mut kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "Service",
            "ServiceAccount"
        ],
        "{rendered}"
    );
    if let Some(tool) = validator() {
        for version in VERSIONS {
            validate(&tool, version, &[], Some(&rendered));
        }
    }
    let find = |kind: &str| docs.iter().find(|d| d["kind"] == kind).unwrap();
    // Read-only, and every kind the feed asks for is readable.
    let role = find("ClusterRole");
    let mut readable = Vec::new();
    for rule in role["rules"].as_sequence().unwrap() {
        let verbs: Vec<&str> = rule["verbs"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(verbs, ["get", "list", "watch"], "{rule:?}");
        let group = rule["apiGroups"][0].as_str().unwrap();
        for r in rule["resources"].as_sequence().unwrap() {
            let r = r.as_str().unwrap();
            readable.push(if group.is_empty() {
                r.to_string()
            } else {
                format!("{r}.{group}")
            });
        }
    }
    let script = std::fs::read_to_string(root().join(GATEWAY_VARIANT).join("feed.sh")).unwrap();
    for kind in script
        .lines()
        .map(str::trim)
        .filter(|l| l.contains(".gateway.networking.k8s.io") || l.contains(".getambassador.io"))
        .chain(["namespaces", "services", "secrets"])
    {
        assert!(
            readable.iter().any(|r| r == kind),
            "{kind} not in {readable:?}"
        );
    }
    let binding = find("ClusterRoleBinding");
    let account = find("ServiceAccount");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["name"], account["metadata"]["name"]);
    // tcpmap reads the file the feed writes, in the volume they share; both feed containers
    // run the generated ConfigMap's script.
    let deployment = find("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    let tcpmap = pod["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tcpmap")
        .unwrap();
    let args: Vec<&str> = tcpmap["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let argv = std::iter::once("tcpmap").chain(args.iter().copied());
    <tcpmap::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
    let config = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    let configmap = find("ConfigMap");
    let feeds: Vec<&Value> = pod["initContainers"]
        .as_sequence()
        .unwrap()
        .iter()
        .chain(pod["containers"].as_sequence().unwrap())
        .filter(|c| c["name"] != "tcpmap")
        .collect();
    assert_eq!(feeds.len(), 2);
    for c in feeds {
        let dir = c["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "FEED_DIR")
            .unwrap()["value"]
            .as_str()
            .unwrap();
        assert_eq!(format!("{dir}/cluster.yaml"), config);
        let command = c["command"].as_sequence().unwrap();
        assert_eq!(command[1], "/etc/tcpmap-feed/feed.sh");
        let volume = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["configMap"]["name"] == configmap["metadata"]["name"])
            .unwrap();
        let mounted = c["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|m| m["name"] == volume["name"] && m["mountPath"] == "/etc/tcpmap-feed");
        assert!(mounted, "{c:?}");
    }
}

/// feed.sh with a stand-in kubectl: it writes what `kubectl get` prints to cluster.yaml
/// (0600: it holds keys), skips kinds the cluster does not serve, rewrites only on a change,
/// keeps the last file when kubectl fails, and tcpmap serves the result.
#[test]
fn the_feed_script_writes_a_config_tcpmap_serves_and_keeps_it_on_failure() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let (answers, feed) = (dir.path().join("answers"), dir.path().join("feed"));
    std::fs::create_dir_all(&answers).unwrap();
    std::fs::create_dir_all(&feed).unwrap();
    // The stand-in answers `get KIND …` from answers/KIND.yaml; KIND.missing: not served;
    // FAIL: every call fails; anything else: an empty List.
    let fake = dir.path().join("kubectl");
    std::fs::write(
        &fake,
        "#!/bin/bash\nset -u\na=\"$(dirname \"$0\")/answers\"\n\
         echo \"$*\" >> \"$a/calls\"\n\
         if [ -e \"$a/FAIL\" ]; then echo 'error: connection refused' >&2; exit 1; fi\n\
         if [ -e \"$a/$2.missing\" ]; then echo \"error: the server doesn't have a resource type \\\"$2\\\"\" >&2; exit 1; fi\n\
         if [ -e \"$a/$2.yaml\" ]; then cat \"$a/$2.yaml\"; exit 0; fi\n\
         printf 'apiVersion: v1\\nitems: []\\nkind: List\\nmetadata:\\n  resourceVersion: \"\"\\n'\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let export =
        std::fs::read_to_string(root().join("tests/fixtures/gateway-api/export.yaml")).unwrap();
    std::fs::write(
        answers.join("gateways.gateway.networking.k8s.io.yaml"),
        &export,
    )
    .unwrap();
    std::fs::write(
        answers.join("tcproutes.gateway.networking.k8s.io.missing"),
        "",
    )
    .unwrap();
    let run = || {
        Command::new("bash")
            .arg(root().join(GATEWAY_VARIANT).join("feed.sh"))
            .arg("once")
            .env("FEED_DIR", &feed)
            .env("KUBECTL", &fake)
            .output()
            .unwrap()
    };
    let out = run();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("tcproutes.gateway.networking.k8s.io: not served"),
        "{log}"
    );
    let file = feed.join("cluster.yaml");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    let calls = std::fs::read_to_string(answers.join("calls")).unwrap();
    assert!(
        calls.contains(
            "get secrets --all-namespaces --field-selector type=kubernetes.io/tls -o yaml"
        ),
        "{calls}"
    );
    // tcpmap serves what the feed wrote: the export's routes, as `check` prints them.
    let out = Command::new(common::daemon::binary())
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains("127.0.0.1:6379 * raw -> redis.data:6379 (100%) [redis]"),
        "{table}"
    );
    // Unchanged: not rewritten (the same inode, so the file watch sees nothing).
    assert!(run().status.success());
    assert_eq!(std::fs::metadata(&file).unwrap().ino(), meta.ino());
    // kubectl failing: the run fails and the last file stays.
    std::fs::write(answers.join("FAIL"), "").unwrap();
    let out = run();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("connection refused"));
    assert!(std::fs::read_to_string(&file).unwrap().contains("redis"));
}
