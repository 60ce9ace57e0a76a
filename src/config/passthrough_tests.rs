//! `tls_passthrough` and `match_alpn`: what they build, and their config errors.

use super::*;
use crate::config::testutil::write_secret;
use crate::route::HostTls;

fn input(yaml: &str, secrets: Option<&Path>) -> ConfigInput {
    ConfigInput {
        inline: vec![("t.yaml".into(), yaml.into())],
        secrets_dir: secrets.map(Path::to_path_buf),
        ..ConfigInput::default()
    }
}

fn errors(yaml: &str, secrets: Option<&Path>) -> Vec<String> {
    match load(&input(yaml, secrets)) {
        Ok(l) => panic!("expected errors, got\n{}", l.table),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

fn mapping(name: &str, extra: &str) -> String {
    format!("---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: {name}\nport: 443\n{extra}")
}

fn secrets() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_secret(dir.path(), "cert", &["term.example", "acme.example"]);
    dir
}

const CONTEXT: &str = "---
apiVersion: ambassador/v1
kind: TLSContext
name: ctx
hosts: [term.example, acme.example]
secret: cert
";

#[test]
fn a_passthrough_port_mixes_with_terminating_and_hostless_groups() {
    let dir = secrets();
    let yaml = [
        CONTEXT.to_string(),
        mapping(
            "pass",
            "host: pass.example\ntls_passthrough: true\nservice: backend\n",
        ),
        mapping(
            "wild",
            "host: '*.pass.example'\ntls_passthrough: true\nservice: wild:8443\n",
        ),
        mapping("term", "host: term.example\nservice: term\n"),
        mapping("raw", "service: raw\n"),
    ]
    .concat();
    // No certificate for the passthrough hosts, and none needed.
    let l = load(&input(&yaml, Some(dir.path()))).unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let listener = l.table.listeners().values().next().unwrap();
    let pass = listener.by_sni("pass.example").unwrap();
    assert!(matches!(pass.tls, HostTls::Passthrough));
    // The default upstream port of a passthrough mapping is 443.
    assert_eq!(pass.group.upstreams[0].port, 443);
    let wild = listener.by_sni("a.pass.example").unwrap();
    assert!(wild.passthrough());
    assert_eq!(wild.group.upstreams[0].port, 8443);
    let term = listener.by_sni("term.example").unwrap();
    assert_eq!(term.termination().unwrap().source, "TLSContext ctx");
    assert!(listener.by_sni("other.example").is_none());
    assert!(listener.plain.is_some());
    let text = l.table.render_text();
    for line in [
        "0.0.0.0:443 * raw -> raw:80 (100%) [raw]",
        "0.0.0.0:443 pass.example passthrough -> backend:443 (100%) [pass]",
        "0.0.0.0:443 *.pass.example passthrough -> wild:8443 (100%) [wild]",
        "0.0.0.0:443 term.example terminate(TLSContext ctx) -> term:80 (100%) [term]",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    let json = l.table.to_json();
    let groups = json["listeners"][0]["groups"].as_array().unwrap();
    let pass = groups.iter().find(|g| g["host"] == "pass.example").unwrap();
    assert_eq!(pass["tls"], "passthrough");
    assert_eq!(pass["passthrough"], true);
    assert_eq!(pass["termination"], serde_json::Value::Null);
}

#[test]
fn the_catch_all_may_pass_through() {
    let yaml = mapping(
        "any",
        "host: '*'\ntls_passthrough: true\nservice: backend\n",
    );
    let l = load(&input(&yaml, None)).unwrap();
    let listener = l.table.listeners().values().next().unwrap();
    assert!(
        listener
            .by_hello(None, std::iter::empty())
            .unwrap()
            .passthrough()
    );
    assert!(listener.by_sni("whatever.example").unwrap().passthrough());
    assert!(
        l.table
            .render_text()
            .contains("*(catch-all) passthrough -> backend:443"),
        "{}",
        l.table
    );
}

#[test]
fn passthrough_errors_name_the_attribute_and_both_mappings() {
    let e = errors(&mapping("a", "tls_passthrough: true\nservice: b\n"), None);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("t.yaml:6: TCPMapping a: `tls_passthrough` needs `host`"),
        "{e:?}"
    );
    let e = errors(
        &mapping(
            "a",
            "host: x.example\ntls: true\ntls_passthrough: true\nservice: b\n",
        ),
        None,
    );
    assert!(
        e[0].starts_with("t.yaml:7: TCPMapping a: `tls: true` (or an `https://` service) together with `tls_passthrough`"),
        "{e:?}"
    );
    let e = errors(
        &mapping(
            "a",
            "host: x.example\ntls_passthrough: true\nservice: https://b\n",
        ),
        None,
    );
    assert!(e[0].contains("together with `tls_passthrough`"), "{e:?}");
    // One (listener, host) group: the terminating member needs a certificate too.
    let dir = secrets();
    let yaml = [
        CONTEXT.to_string(),
        mapping("first", "host: term.example\nservice: a\n"),
        mapping(
            "second",
            "host: term.example\ntls_passthrough: true\nservice: b\n",
        ),
    ]
    .concat();
    let e = errors(&yaml, Some(dir.path()));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("TCPMapping second: `tls_passthrough` is true here but false in TCPMapping first (t.yaml:8)"),
        "{e:?}"
    );
    // `tls_passthrough: false` is the default and changes nothing.
    let l = load(&input(
        &[
            CONTEXT.to_string(),
            mapping(
                "t",
                "host: term.example\ntls_passthrough: false\nservice: a\n",
            ),
        ]
        .concat(),
        Some(dir.path()),
    ))
    .unwrap();
    assert!(l.table.render_text().contains("terminate(TLSContext ctx)"));
}

#[test]
fn match_alpn_groups_win_for_their_protocols_and_others_fall_back() {
    let dir = secrets();
    let yaml = [
        CONTEXT.to_string(),
        mapping(
            "solver",
            "host: acme.example\nmatch_alpn: [acme-tls/1]\ntls_passthrough: true\nservice: solver:8443\n",
        ),
        mapping("site", "host: acme.example\nservice: site\n"),
        mapping("h2", "host: acme.example\nmatch_alpn: 'h2, h2'\nservice: h2site\n"),
        // A host with only a match_alpn group: other clients go on to the wildcard.
        mapping(
            "only",
            "host: only.example\nmatch_alpn: [x-special]\ntls_passthrough: true\nservice: special\n",
        ),
        mapping("wild", "host: '*.example'\ntls_passthrough: true\nservice: wild\n"),
    ]
    .concat();
    let l = load(&input(&yaml, Some(dir.path()))).unwrap();
    let listener = l.table.listeners().values().next().unwrap();
    let name = |sni: &str, alpn: &[&str]| {
        listener
            .by_hello(Some(sni), alpn.iter().map(|p| p.as_bytes()))
            .map(|g| g.group.upstreams[0].mapping.name.clone())
    };
    assert_eq!(
        name("acme.example", &["acme-tls/1"]).as_deref(),
        Some("solver")
    );
    assert_eq!(name("acme.example", &[]).as_deref(), Some("site"));
    assert_eq!(name("acme.example", &["http/1.1"]).as_deref(), Some("site"));
    assert_eq!(
        name("acme.example", &["h2", "acme-tls/1"]).as_deref(),
        Some("h2")
    );
    assert_eq!(
        name("acme.example", &["acme-tls/1", "h2"]).as_deref(),
        Some("solver")
    );
    // ALPN names are bytes: case matters.
    assert_eq!(
        name("ACME.example", &["ACME-TLS/1"]).as_deref(),
        Some("site")
    );
    assert_eq!(
        name("only.example", &["x-special"]).as_deref(),
        Some("only")
    );
    assert_eq!(name("only.example", &["h2"]).as_deref(), Some("wild"));
    let solver = listener
        .by_hello(Some("acme.example"), [&b"acme-tls/1"[..]].into_iter())
        .unwrap();
    assert!(solver.passthrough());
    assert_eq!(solver.match_alpn, ["acme-tls/1"]);
    let text = l.table.render_text();
    for line in [
        "0.0.0.0:443 acme.example(alpn=acme-tls/1) passthrough -> solver:8443 (100%) [solver]",
        "0.0.0.0:443 acme.example(alpn=h2) terminate(TLSContext ctx) -> h2site:80 (100%) [h2]",
        "0.0.0.0:443 acme.example terminate(TLSContext ctx) -> site:80 (100%) [site]",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    let json = l.table.to_json();
    let groups = json["listeners"][0]["groups"].as_array().unwrap();
    let solver = groups
        .iter()
        .find(|g| g["upstreams"][0]["mapping"] == "solver")
        .unwrap();
    assert_eq!(solver["match_alpn"], serde_json::json!(["acme-tls/1"]));
    let site = groups
        .iter()
        .find(|g| g["upstreams"][0]["mapping"] == "site")
        .unwrap();
    assert_eq!(site["match_alpn"], serde_json::json!([]));
}

#[test]
fn mappings_with_one_match_alpn_list_share_a_group() {
    let yaml = [
        mapping(
            "a",
            "host: x.example\nmatch_alpn: [h2, acme-tls/1]\ntls_passthrough: true\nservice: a\nweight: 30\n",
        ),
        mapping(
            "b",
            "host: x.example\nmatch_alpn: [acme-tls/1, h2]\ntls_passthrough: true\nservice: b\n",
        ),
    ]
    .concat();
    let l = load(&input(&yaml, None)).unwrap();
    let text = l.table.render_text();
    assert!(
        text.contains(
            "x.example(alpn=acme-tls/1,h2) passthrough -> a:443 (30%) [a], b:443 (70%) [b]"
        ),
        "{text}"
    );
}

#[test]
fn match_alpn_errors() {
    let e = errors(&mapping("a", "match_alpn: [h2]\nservice: b\n"), None);
    assert!(
        e[0].starts_with("t.yaml:6: TCPMapping a: `match_alpn` needs `host`"),
        "{e:?}"
    );
    let e = errors(
        &mapping(
            "a",
            "host: x.example\ntls_passthrough: true\nmatch_alpn: []\nservice: b\n",
        ),
        None,
    );
    assert!(e[0].contains("must list at least one protocol"), "{e:?}");
    let long = "x".repeat(256);
    let e = errors(
        &mapping(
            "a",
            &format!("host: x.example\ntls_passthrough: true\nmatch_alpn: [{long}]\nservice: b\n"),
        ),
        None,
    );
    assert!(e[0].contains("must be 1 to 255 bytes long"), "{e:?}");
    // Two groups of one host listing one protocol: ambiguous.
    let yaml = [
        mapping(
            "a",
            "host: x.example\ntls_passthrough: true\nmatch_alpn: [h2, acme-tls/1]\nservice: a\n",
        ),
        mapping(
            "b",
            "host: x.example\ntls_passthrough: true\nmatch_alpn: [acme-tls/1]\nservice: b\n",
        ),
    ]
    .concat();
    let e = errors(&yaml, None);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(
            "t.yaml:17: TCPMapping b: `match_alpn` protocol `acme-tls/1` is also listed by TCPMapping a (t.yaml:2)"
        ),
        "{e:?}"
    );
}
