//! What a new user copies from the repository works: every example config passes
//! `tcpmap check`, the Kubernetes manifests parse and agree with each other (the ConfigMap's
//! TCPMapping YAML passes `tcpmap check`, the Deployment's arguments are a valid command line),
//! and the README's commands exist as written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clap::Parser;
use serde::Deserialize;
use serde_yaml_ng::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML in {dir}");
    files
}

/// Every `---` document of a file, parsed; empty documents (comments only) are skipped.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn tcpmap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tcpmap"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `chmod 600` the README asks for on the example keys: git does not keep file modes, so
/// on a fresh clone they are 644 and `check` warns about them. Every test that runs `check` on
/// the examples does it first (tests run in parallel, in any order).
fn chmod_example_keys() {
    use std::os::unix::fs::PermissionsExt;
    for dir in std::fs::read_dir(root().join("examples/config/secrets")).unwrap() {
        let key = dir.unwrap().path().join("tls.key");
        if key.exists() {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

#[test]
fn every_example_config_parses_and_passes_check() {
    chmod_example_keys();
    for file in yaml_files("examples/config") {
        assert!(!documents(&file).is_empty(), "{}", file.display());
        let path = file.to_str().unwrap();
        let out = tcpmap(&[
            "check",
            "--config",
            path,
            "--secrets-dir",
            "examples/config/secrets",
        ]);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{path}:\n{stdout}{}",
            text(&out.stderr)
        );
        assert!(!stdout.contains("warning:"), "{path}:\n{stdout}");
        assert!(
            stdout.contains(" -> "),
            "no route table for {path}:\n{stdout}"
        );
    }
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} manifest"))
}

fn ports(list: &Value, key: &str) -> BTreeSet<u64> {
    let seq = list.as_sequence().unwrap();
    seq.iter().filter_map(|p| p[key].as_u64()).collect()
}

#[test]
fn kubernetes_manifests_parse_and_agree() {
    let mut docs = Vec::new();
    for file in yaml_files("deploy/kubernetes") {
        for doc in documents(&file) {
            assert!(doc["apiVersion"].is_string(), "{}: {doc:?}", file.display());
            assert!(doc["kind"].is_string(), "{}: {doc:?}", file.display());
            docs.push(doc);
        }
    }

    // The ConfigMap's TCPMapping YAML passes the real config pipeline.
    let configmap = find(&docs, "ConfigMap");
    let mappings = configmap["data"]["mappings.yaml"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mappings.yaml");
    std::fs::write(&config, mappings).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["db.example.com".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let secret = dir.path().join("secrets/tcpmap-tls");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(secret.join("tls.key"), key.serialize_pem()).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(secret.join("tls.key"), mode).unwrap();
    }
    let secrets = dir.path().join("secrets");
    let out = tcpmap(&[
        "check",
        "--config",
        config.to_str().unwrap(),
        "--secrets-dir",
        secrets.to_str().unwrap(),
    ]);
    let table = text(&out.stdout);
    assert!(out.status.success(), "{table}{}", text(&out.stderr));
    assert!(!table.contains("warning:"), "{table}");
    assert!(table.contains("db.example.com terminate"), "{table}");

    // The mapping ports are the ones the Deployment and the Service expose.
    let mapping_ports: BTreeSet<u64> = serde_yaml_ng::Deserializer::from_str(mappings)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|d| d["kind"].as_str() == Some("TCPMapping"))
        .map(|d| d["port"].as_u64().unwrap())
        .collect();
    let deployment = find(&docs, "Deployment");
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut container_ports = ports(&container["ports"], "containerPort");
    assert!(container_ports.remove(&8877), "admin port");
    assert_eq!(container_ports, mapping_ports);
    let service = find(&docs, "Service");
    assert_eq!(ports(&service["spec"]["ports"], "port"), mapping_ports);

    // The Deployment runs a valid command line, the documented one.
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let joined = args.join(" ");
    assert!(
        joined.starts_with(
            "run --config /etc/tcpmap --secrets-dir /etc/tcpmap-secrets --admin 0.0.0.0:8877"
        ),
        "{joined}"
    );
    let argv = std::iter::once("tcpmap").chain(args.iter().copied());
    tcpmap::cli::Cli::try_parse_from(argv).unwrap();
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/ambassador/v0/check_alive")
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/ambassador/v0/check_ready")
    );
    let mounts: Vec<&str> = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert_eq!(mounts, ["/etc/tcpmap", "/etc/tcpmap-secrets/tcpmap-tls"]);

    // The Secret is a placeholder: no key material in the repository.
    let secret = find(&docs, "Secret");
    let data = format!("{:?}", secret["stringData"]);
    assert!(!data.contains("BEGIN"), "{data}");

    // kustomization.yaml lists files that exist.
    let kustomization = find(&docs, "Kustomization");
    for r in kustomization["resources"].as_sequence().unwrap() {
        let path = root().join("deploy/kubernetes").join(r.as_str().unwrap());
        assert!(path.is_file(), "{}", path.display());
    }
}

#[test]
fn readme_commands_exist_as_written() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    // Command one: the scenario runner is an example of that name.
    assert!(readme.contains("```sh\ncargo run --release --example scenarios\n```"));
    assert!(root().join("examples/scenarios/main.rs").is_file());
    // Command two: the set-up-and-test script, which is exactly what CI runs after its lints,
    // and which itself runs `cargo test`.
    assert!(readme.contains("```sh\nscripts/test\n```"));
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(ci.lines().any(|l| l == "scripts/test"), "{ci}");
    let script = std::fs::read_to_string(root().join("scripts/test")).unwrap();
    assert!(
        script.lines().any(|l| l.starts_with("cargo test --locked")),
        "{script}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root().join("scripts/test"))
            .unwrap()
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "scripts/test is not executable");
    }

    // The README's `tcpmap check` lines print what the README says they print, after the
    // `chmod 600` the README asks for.
    chmod_example_keys();
    let lines: Vec<&str> = readme.lines().collect();
    let mut checked = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some(args) = line.strip_prefix("tcpmap check ") else {
            continue;
        };
        let args: Vec<&str> = std::iter::once("check")
            .chain(args.split_whitespace())
            .collect();
        let out = tcpmap(&args);
        assert!(out.status.success(), "{line}: {}", text(&out.stderr));
        let expected: Vec<&str> = lines[i + 1..]
            .iter()
            .map_while(|l| l.strip_prefix("# "))
            .collect();
        let got = text(&out.stdout);
        assert_eq!(got.lines().collect::<Vec<_>>(), expected, "{line}");
        checked += 1;
    }
    assert!(checked >= 1);

    // Every local link of the README points at a file or directory.
    for part in readme.split("](").skip(1) {
        let target = part.split(')').next().unwrap();
        if target.starts_with("http") {
            continue;
        }
        let path = target.split('#').next().unwrap();
        assert!(root().join(path).exists(), "README links to missing {path}");
    }
}

#[test]
fn readme_lists_every_run_flag() {
    use clap::CommandFactory;
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let cli = tcpmap::cli::Cli::command();
    let run = cli.find_subcommand("run").expect("run subcommand");
    let mut missing = Vec::new();
    for arg in run.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" {
            continue;
        }
        // One table row per flag: "| `--flag ...` | meaning |".
        let row = format!("| `--{long}");
        if !readme.lines().any(|l| l.starts_with(&row)) {
            missing.push(long.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "README's `run` flag table lacks {missing:?}"
    );
}
