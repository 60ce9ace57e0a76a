//! `tcpmap check`: exit codes and the `FILE:LINE: KIND NAME: message` lines, on the built binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

struct Out {
    code: i32,
    stdout: String,
}

/// Git does not keep file modes beyond the executable bit, so a checkout leaves the example
/// keys group/other-readable, which `check` rightly warns about: make them private first.
fn private_example_keys() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config/secrets");
    for entry in std::fs::read_dir(dir).unwrap() {
        let key = entry.unwrap().path().join("tls.key");
        if key.exists() {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

fn check(args: &[&str]) -> Out {
    private_example_keys();
    let out = Command::new(env!("CARGO_BIN_EXE_tcpmap"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("check")
        .args(args)
        .env_remove("AMBASSADOR_NAMESPACE")
        .env_remove("AMBASSADOR_ID")
        .output()
        .expect("run tcpmap");
    Out {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).expect("utf-8"),
    }
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn every_example_config_passes() {
    let mut n = 0;
    for entry in
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config")).unwrap()
    {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let rel = format!(
                "examples/config/{}",
                path.file_name().unwrap().to_string_lossy()
            );
            let out = check(&["--config", &rel, "--secrets-dir", "examples/config/secrets"]);
            assert_eq!(out.code, 0, "{rel}:\n{}", out.stdout);
            assert!(!out.stdout.contains("warning:"), "{rel}:\n{}", out.stdout);
            n += 1;
        }
    }
    assert!(n >= 6, "only {n} examples");
}

#[test]
fn example_directory_prints_the_route_table() {
    let out = check(&[
        "--config",
        "examples/config/termination-origination.yaml",
        "--secrets-dir",
        "examples/config/secrets",
    ]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(
        lines(&out.stdout),
        [
            "0.0.0.0:2222 my-host-1 terminate(TLSContext my-context)+originate(insecure) -> upstream-host-1:9999 (100%) [test_mapping]",
            "0.0.0.0:2222 my-host-2 terminate(TLSContext my-context)+originate(TLSContext origination-context) -> upstream-host-2:9999 (100%) [test_mapping_2]",
        ]
    );
}

#[test]
fn proxy_protocol_example_shows_the_listener_and_send_settings() {
    let out = check(&[
        "--config",
        "examples/config/proxy-protocol.yaml",
        "--secrets-dir",
        "examples/config/secrets",
    ]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(
        lines(&out.stdout),
        [
            "0.0.0.0:2222 proxy_protocol=optional * raw -> bastion:22 (100%) [ssh-bastion, send_proxy_proto=v1]",
            "0.0.0.0:8443 proxy_protocol=required my-host-1 terminate(TLSContext my-context) -> web-backend:8080 (100%) [web-behind-lb, send_proxy_proto=v2]",
        ]
    );
}

#[test]
fn passthrough_and_alpn_examples_show_their_modes() {
    let check_file = |f: &str| {
        let out = check(&["--config", f, "--secrets-dir", "examples/config/secrets"]);
        assert_eq!(out.code, 0, "{}", out.stdout);
        lines(&out.stdout)
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<String>>()
    };
    assert_eq!(
        check_file("examples/config/passthrough.yaml"),
        [
            "0.0.0.0:8443 * raw -> fallback:9000 (100%) [everything-else]",
            "0.0.0.0:8443 db.example.com passthrough -> db-backend:443 (100%) [db-passthrough]",
            "0.0.0.0:8443 my-host-1 terminate(TLSContext my-context) -> site-backend:8080 (100%) [site-terminated]",
            "0.0.0.0:8443 *.apps.example.com passthrough -> apps-ingress:8443 (100%) [apps-passthrough, send_proxy_proto=v2]",
        ]
    );
    assert_eq!(
        check_file("examples/config/acme-alpn.yaml"),
        [
            "0.0.0.0:443 my-host-1(alpn=acme-tls/1) passthrough -> acme-solver:8443 (100%) [acme-solver]",
            "0.0.0.0:443 my-host-1 terminate(TLSContext my-context) -> site-backend:8080 (100%) [site]",
        ]
    );
}

#[test]
fn five_mistakes_give_five_lines() {
    let out = check(&["--config", "tests/fixtures/check/five-mistakes.yaml"]);
    assert_eq!(out.code, 1);
    let f = "tests/fixtures/check/five-mistakes.yaml";
    let got = lines(&out.stdout);
    assert_eq!(got.len(), 5, "{}", out.stdout);
    for (line, prefix) in [
        (0, format!("{f}:3: TCPMapping no_port: ")),
        (1, format!("{f}:12: TCPMapping bad_scheme: ")),
        (2, format!("{f}:18: TCPMapping unknown_context: ")),
        (3, format!("{f}:25: TCPMapping heavy: ")),
        (4, format!("{f}:31: TCPMapping named_address: ")),
    ] {
        assert!(
            got[line].starts_with(&prefix),
            "{} does not start with {prefix}",
            got[line]
        );
    }
}

#[test]
fn warnings_do_not_change_the_exit_code() {
    let out = check(&["--config", "tests/fixtures/check/warnings.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let f = "tests/fixtures/check/warnings.yaml";
    let got = lines(&out.stdout);
    assert!(
        got[0].starts_with(&format!(
            "warning: {f}:8: TCPMapping test_mapping: unknown attribute `idle_timout_ms`"
        )),
        "{}",
        out.stdout
    );
    assert!(
        got[1].starts_with(&format!("warning: {f}:10: TCPMapping test_mapping: "))
            && got[1].contains(&format!("{f}:3")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("0.0.0.0:7001 * raw -> upstream-a:9000 (100%)")
    );
    assert!(
        out.stdout
            .contains("0.0.0.0:7002 * raw -> upstream-b:9000 (100%)")
    );
}

#[test]
fn yaml_syntax_error_names_file_and_line() {
    let out = check(&["--config", "tests/fixtures/check/syntax.yaml"]);
    assert_eq!(out.code, 1);
    let got = lines(&out.stdout);
    assert_eq!(got.len(), 1, "{}", out.stdout);
    assert!(
        got[0].starts_with("tests/fixtures/check/syntax.yaml:12: YAML -: syntax error"),
        "{}",
        out.stdout
    );
}

#[test]
fn group_disagreement_names_both_mappings() {
    let out = check(&["--config", "tests/fixtures/check/disagree.yaml"]);
    assert_eq!(out.code, 1);
    let f = "tests/fixtures/check/disagree.yaml";
    let got = lines(&out.stdout);
    assert_eq!(got.len(), 2, "{}", out.stdout);
    assert!(
        got[0].starts_with(&format!(
            "{f}:19: TCPMapping second: `tls` is true here but false in TCPMapping first ({f}:3)"
        )),
        "{}",
        out.stdout
    );
    assert!(
        got[1].starts_with(&format!("{f}:20: TCPMapping second: `idle_timeout_ms`")),
        "{}",
        out.stdout
    );
}

#[test]
fn missing_secret_names_the_context_and_file() {
    let out = check(&[
        "--config",
        "tests/fixtures/check/bad-secret.yaml",
        "--secrets-dir",
        "examples/config/secrets",
    ]);
    assert_eq!(out.code, 1);
    let got = lines(&out.stdout);
    assert_eq!(got.len(), 1, "{}", out.stdout);
    assert!(got[0].starts_with("tests/fixtures/check/bad-secret.yaml:6: TLSContext my-context: cannot read examples/config/secrets/does-not-exist/tls.crt"), "{}", out.stdout);
}

#[test]
fn secret_without_secrets_dir_is_an_error() {
    let out = check(&["--config", "examples/config/termination.yaml"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout
            .contains("TLSContext my-context: secret `supersecret` is not a Secret in the config and needs --secrets-dir"),
        "{}",
        out.stdout
    );
}

#[test]
fn weighted_split_shows_percentages() {
    let out = check(&["--config", "tests/fixtures/check/weighted.yaml"]);
    assert_eq!(out.code, 0);
    assert_eq!(
        lines(&out.stdout),
        ["0.0.0.0:7007 * raw -> stable:80 (70%) [stable], canary:80 (30%) [canary]"]
    );
}

#[test]
fn configmap_directory_is_read_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("..2025_01_01_00_00_00.1");
    std::fs::create_dir(&data).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config/ssh.yaml"),
        data.join("b-ssh.yaml"),
    )
    .unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config/quickstart.yaml"),
        data.join("a-quick.yml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(data.file_name().unwrap(), dir.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/b-ssh.yaml", dir.path().join("b-ssh.yaml")).unwrap();
    std::os::unix::fs::symlink("..data/a-quick.yml", dir.path().join("a-quick.yml")).unwrap();
    let out = check(&["--config", dir.path().to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(lines(&out.stdout).len(), 2, "{}", out.stdout);
}

#[test]
fn ambassador_id_flag_filters() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("x.yaml");
    std::fs::write(&cfg, "apiVersion: ambassador/v1\nkind: TCPMapping\nname: a\nport: 7008\nservice: a\nambassador_id: edge\n").unwrap();
    let p = cfg.to_str().unwrap();
    // Not ours: no route, and a warning saying why the table is empty.
    assert_eq!(
        check(&["--config", p]).stdout,
        format!(
            "warning: {p}:1: Config -: no TCPMapping for ambassador_id `default` (found: TCPMapping 1)\n"
        )
    );
    let out = check(&["--config", p, "--ambassador-id", "edge"]);
    assert!(out.stdout.contains("0.0.0.0:7008"), "{}", out.stdout);
}

#[test]
fn missing_config_path_exits_1() {
    let out = check(&["--config", "tests/fixtures/check/nope.yaml"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout
            .starts_with("tests/fixtures/check/nope.yaml:1: File -: cannot read"),
        "{}",
        out.stdout
    );
}

#[test]
fn group_readable_private_key_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secrets = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config/secrets/supersecret");
    let key = dir.path().join("k.pem");
    std::fs::copy(secrets.join("tls.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "apiVersion: ambassador/v1\nkind: TLSContext\nname: leaky\nhosts: [my-host-1]\ncert_chain_file: {}\nprivate_key_file: {}\n",
            secrets.join("tls.crt").display(),
            key.display()
        ),
    )
    .unwrap();
    let out = check(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let warning = out
        .stdout
        .lines()
        .find(|l| l.starts_with("warning:") && l.contains("private key"))
        .unwrap_or_else(|| panic!("no warning in:\n{}", out.stdout));
    assert!(warning.contains("TLSContext leaky"), "{warning}");
    assert!(warning.contains("k.pem"), "{warning}");
    assert!(warning.contains("644"), "{warning}");
    // Group read only: a warning unless root owns the key (Kubernetes' fsGroup mounts).
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let root_owned = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&key).unwrap()) == 0;
    let out = check(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(
        out.stdout.contains("private key"),
        !root_owned,
        "root-owned: {root_owned}\n{}",
        out.stdout
    );
    // Private again: no warning.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = check(&["--config", cfg.to_str().unwrap()]);
    assert!(!out.stdout.contains("private key"), "{}", out.stdout);
}

/// `check --output json`: one JSON document whose verdict, problems, warnings and route lines
/// are exactly the text form's, with the same exit code.
#[test]
fn json_output_matches_the_text_form() {
    let cases: [&[&str]; 4] = [
        &["--config", "tests/fixtures/check/five-mistakes.yaml"],
        &["--config", "tests/fixtures/check/warnings.yaml"],
        &[
            "--config",
            "examples/config/termination-origination.yaml",
            "--secrets-dir",
            "examples/config/secrets",
        ],
        &["--config", "examples/config/termination.yaml"],
    ];
    for args in cases {
        let text = check(args);
        let mut json_args = args.to_vec();
        json_args.extend(["--output", "json"]);
        let json = check(&json_args);
        assert_eq!(json.code, text.code, "{args:?}");
        let doc: serde_json::Value = serde_json::from_str(&json.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}\n{}", json.stdout));
        assert_eq!(doc["ok"], text.code == 0, "{args:?}");
        let texts = |key: &str| -> Vec<String> {
            doc[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["text"].as_str().unwrap().to_string())
                .collect()
        };
        let mut expected: Vec<String> = texts("warnings");
        expected.extend(texts("problems"));
        if text.code == 0 {
            let routes = doc["routes"]["lines"].as_array().unwrap();
            expected.extend(routes.iter().map(|l| l.as_str().unwrap().to_string()));
            let groups: usize = doc["routes"]["listeners"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["groups"].as_array().unwrap().len())
                .sum();
            assert_eq!(groups, routes.len(), "{args:?}");
        } else {
            assert!(doc["routes"].is_null());
            assert!(doc["problems"].as_array().unwrap().iter().all(|p| {
                p["severity"] == "error" && p["file"].is_string() && p["line"].is_u64()
            }));
        }
        let mut got: Vec<String> = lines(&text.stdout).into_iter().map(String::from).collect();
        // Problems and warnings are sorted together in the text; compare as sets of lines.
        got.sort();
        expected.sort();
        assert_eq!(got, expected, "{args:?}");
    }
}

#[test]
fn fleet_settings_show_on_each_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("fleet.yaml");
    std::fs::write(
        &cfg,
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Module\nmetadata:\n  name: ambassador\nspec:\n  config:\n    max_connection_duration_ms: 600000\n\
         ---\napiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata:\n  name: pool\nspec:\n  port: 5432\n  service: db:5432\n\
         ---\napiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata:\n  name: api\nspec:\n  port: 7000\n  service: api:7000\n  max_connection_duration_ms: 3600000\n  connection_rate_limit: {rate: 20, burst: 40, per: client_ip, dry_run: true}\n",
    )
    .unwrap();
    let out = check(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(
        lines(&out.stdout),
        [
            "0.0.0.0:5432 * raw -> db:5432 (100%) [pool] max_duration=600000ms",
            "0.0.0.0:7000 * raw -> api:7000 (100%) [api] max_duration=3600000ms rate_limit=20/s,burst=40,per=client_ip,dry_run",
        ]
    );
}
