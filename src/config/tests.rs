use super::*;
use crate::config::testutil::write_secret;
use crate::route::{OriginationMode, ServiceHost};

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

const TERM: &str = "---
apiVersion: ambassador/v1
kind: TLSContext
name: my-context
hosts: [my-host-1, my-host-2]
secret: supersecret
---
apiVersion: ambassador/v1
kind: TLSContext
name: origination-context
secret: othersecret
ca_secret: othersecret
sni: upstream.internal
---
apiVersion: ambassador/v1
kind: TCPMapping
name: one
port: 2222
host: my-host-1
tls: true
service: upstream-host-1:9999
---
apiVersion: ambassador/v1
kind: TCPMapping
name: two
port: 2222
host: my-host-2
tls: origination-context
service: upstream-host-2
---
apiVersion: ambassador/v1
kind: TCPMapping
name: raw
port: 2222
service: fallback
";

fn secrets() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_secret(dir.path(), "supersecret", &["my-host-1", "my-host-2"]);
    write_secret(dir.path(), "othersecret", &["client"]);
    dir
}

#[test]
fn termination_and_origination_build_the_route_table() {
    let dir = secrets();
    let l = load(&input(TERM, Some(dir.path()))).unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert_eq!(l.table.generation(), 0);
    let listener = l
        .table
        .listeners()
        .get(&"0.0.0.0:2222".parse().unwrap())
        .unwrap();
    assert!(listener.needs_peek());
    let plain = listener.plain.as_ref().unwrap();
    assert_eq!(plain.upstreams[0].port, 80);
    let g1 = listener.by_sni("MY-HOST-1").unwrap();
    let g2 = listener.by_sni("my-host-2").unwrap();
    let (t1, t2) = (&g1.termination().unwrap(), g2.termination().unwrap());
    assert_eq!(t1.source, "TLSContext my-context");
    assert!(
        Arc::ptr_eq(&t1.config, &t2.config),
        "one ServerConfig per certificate source"
    );
    let o1 = g1.group.origination.as_ref().unwrap();
    assert_eq!(
        (o1.mode.clone(), o1.verify, o1.sni.clone()),
        (OriginationMode::Insecure, false, None)
    );
    let o2 = g2.group.origination.as_ref().unwrap();
    assert_eq!(
        o2.mode,
        OriginationMode::Context("origination-context".into())
    );
    assert_eq!(
        (o2.verify, o2.sni.as_deref()),
        (true, Some("upstream.internal"))
    );
    assert_eq!(
        g2.group.upstreams[0].port, 443,
        "default port when originating"
    );
    let text = l.table.render_text();
    assert!(text.contains("0.0.0.0:2222 my-host-1 terminate(TLSContext my-context)+originate(insecure) -> upstream-host-1:9999 (100%)"), "{text}");
    assert!(
        text.contains("0.0.0.0:2222 * raw -> fallback:80 (100%)"),
        "{text}"
    );
}

#[test]
fn certificate_source_is_the_most_specific_host_before_context_on_ties() {
    let dir = secrets();
    write_secret(dir.path(), "wild", &["*.example.com"]);
    let yaml = "---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {name: wild-host}
spec: {hostname: \"*.example.com\", tlsSecret: {name: wild}}
---
apiVersion: ambassador/v1
kind: TLSContext
name: ctx
hosts: [a.example.com]
secret: supersecret
---
apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata: {name: a}
spec: {port: 443, host: a.example.com, service: a}
---
apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata: {name: b}
spec: {port: 443, host: b.example.com, service: b}
";
    let l = load(&input(yaml, Some(dir.path()))).unwrap();
    let listener = l.table.listeners().values().next().unwrap();
    // The exact TLSContext entry is more specific than the Host's wildcard.
    let g = listener.by_sni("a.example.com").unwrap();
    assert_eq!(g.termination().unwrap().source, "TLSContext ctx");
    let g = listener.by_sni("b.example.com").unwrap();
    assert_eq!(g.termination().unwrap().source, "Host wild-host");
}

#[test]
fn a_catch_all_host_takes_unknown_and_missing_names_last() {
    let dir = secrets();
    write_secret(dir.path(), "default-cert", &["default.example"]);
    let yaml = "---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {name: fallback}
spec: {hostname: \"*\", tlsSecret: {name: default-cert}}
---
apiVersion: ambassador/v1
kind: TLSContext
name: my-context
hosts: [my-host-1]
secret: supersecret
---
apiVersion: ambassador/v1
kind: TCPMapping
name: named
port: 443
host: my-host-1
service: named
---
apiVersion: ambassador/v1
kind: TCPMapping
name: any
port: 443
host: \"*\"
service: any
";
    let l = load(&input(yaml, Some(dir.path()))).unwrap();
    let listener = l.table.listeners().values().next().unwrap();
    let name = |g: Option<&Arc<crate::route::HostGroup>>| {
        g.map(|g| g.group.upstreams[0].mapping.name.clone())
    };
    assert_eq!(name(listener.by_sni("my-host-1")).as_deref(), Some("named"));
    assert_eq!(
        name(listener.by_sni("stranger.example")).as_deref(),
        Some("any")
    );
    assert_eq!(
        name(listener.by_hello(None, std::iter::empty())).as_deref(),
        Some("any")
    );
    // `Host` certificates come before TLSContexts, and the `*` Host matches every name.
    let any = listener.by_hello(None, std::iter::empty()).unwrap();
    assert_eq!(any.termination().unwrap().source, "Host fallback");
    let text = l.table.render_text();
    assert!(
        text.contains("0.0.0.0:443 *(catch-all) terminate(Host fallback) -> any:80 (100%)"),
        "{text}"
    );
    assert_eq!(l.table.to_json()["listeners"][0]["groups"][1]["host"], "*");

    // A TLSContext listing `*` serves it too; without either it is an error like any host.
    let ctx = "---
apiVersion: ambassador/v1
kind: TLSContext
name: any-context
hosts: [\"*\"]
secret: supersecret
---
apiVersion: ambassador/v1
kind: TCPMapping
name: any
port: 443
host: \"*\"
service: any
";
    let l = load(&input(ctx, Some(dir.path()))).unwrap();
    let listener = l.table.listeners().values().next().unwrap();
    assert_eq!(
        listener
            .by_hello(None, std::iter::empty())
            .unwrap()
            .termination()
            .unwrap()
            .source,
        "TLSContext any-context"
    );
    let e = errors(
        "apiVersion: ambassador/v1\nkind: TCPMapping\nname: a\nport: 1\nhost: '*'\nservice: a\n",
        None,
    );
    assert!(
        e[0].starts_with("t.yaml:5: TCPMapping a: no certificate for host `*`"),
        "{e:?}"
    );
}

#[test]
fn an_ip_address_host_is_an_error_that_says_why() {
    let e = errors(
        "apiVersion: ambassador/v1\nkind: TCPMapping\nname: a\nport: 1\nhost: 127.0.0.1\nservice: a\n",
        None,
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("t.yaml:5: TCPMapping a: host `127.0.0.1` is an IP address"),
        "{e:?}"
    );
    assert!(e[0].contains("RFC 6066"), "{e:?}");
}

#[test]
fn weights_become_shares_in_config_order() {
    let yaml = "---
apiVersion: ambassador/v1
kind: TCPMapping
name: a
port: 1
service: a
weight: 70
---
apiVersion: ambassador/v1
kind: TCPMapping
name: b
port: 1
service: b
---
apiVersion: ambassador/v1
kind: TCPMapping
name: c
port: 1
service: c
";
    let l = load(&input(yaml, None)).unwrap();
    let g = l
        .table
        .listeners()
        .values()
        .next()
        .unwrap()
        .plain
        .clone()
        .unwrap();
    let shares: Vec<u8> = g.upstreams.iter().map(|u| u.share).collect();
    assert_eq!(shares, [70, 15, 15]);
    let mut hits = [0; 3];
    for _ in 0..100 {
        let u = g.choose().unwrap();
        hits[(u.mapping.name.as_bytes()[0] - b'a') as usize] += 1;
    }
    assert_eq!(hits, [70, 15, 15]);
}

#[test]
fn weight_sum_over_100_is_one_error() {
    let e = errors(
        "---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: a\nport: 1\nservice: a\nweight: 70\n---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: b\nport: 1\nservice: b\nweight: 40\n",
        None,
    );
    assert_eq!(
        e,
        ["t.yaml:14: TCPMapping b: the weights of this group add up to 110, over 100"]
    );
}

#[test]
fn module_sets_family_defaults() {
    let yaml = "---\napiVersion: getambassador.io/v2\nkind: Module\nname: ambassador\nconfig: {enable_ipv6: true}\n---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: a\nport: 1\nservice: a\n";
    let l = load(&input(yaml, None)).unwrap();
    let g = l
        .table
        .listeners()
        .values()
        .next()
        .unwrap()
        .plain
        .clone()
        .unwrap();
    assert!(g.families.ipv4() && g.families.ipv6());
    // Both off: Emissary falls back to IPv4; so does tcpmap, with a warning.
    let l = load(&input(
        "apiVersion: getambassador.io/v2\nkind: Module\nname: ambassador\nconfig:\n  enable_ipv4: \"false\"\n---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: a\nport: 1\nservice: a\n",
        None,
    ))
    .unwrap();
    let g = l
        .table
        .listeners()
        .values()
        .next()
        .unwrap()
        .plain
        .clone()
        .unwrap();
    assert!(g.families.ipv4() && !g.families.ipv6());
    let w: Vec<String> = l.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        [
            "warning: t.yaml:5: Module ambassador: `config.enable_ipv4` is the string \"false\"; read as a boolean",
            "warning: t.yaml:5: Module ambassador: enable_ipv4 and enable_ipv6 are both false: IPv4 is used (as Emissary does)",
        ]
    );
}

#[test]
fn duplicate_mapping_names_are_kept_with_a_warning() {
    let yaml = "---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: test_mapping\nport: 1\nservice: a\n---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: test_mapping\nport: 2\nservice: b\n";
    let l = load(&input(yaml, None)).unwrap();
    assert_eq!(l.table.listeners().len(), 2);
    assert_eq!(l.warnings.len(), 1);
    assert_eq!(
        l.warnings[0].to_string(),
        "warning: t.yaml:8: TCPMapping test_mapping: TCPMapping `test_mapping` is also defined at t.yaml:2; both are kept (names should be unique)"
    );
}

#[test]
fn unknown_host_certificate_and_context_are_errors() {
    let e = errors(
        "apiVersion: ambassador/v1\nkind: TCPMapping\nname: a\nport: 1\nhost: h.example\ntls: ghost\nservice: a\n",
        None,
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("t.yaml:6: TCPMapping a: tls: unknown TLSContext `ghost`"));
    let e = errors(
        "apiVersion: ambassador/v1\nkind: TCPMapping\nname: a\nport: 1\nhost: h.example\nservice: a\n",
        None,
    );
    assert!(
        e[0].starts_with("t.yaml:5: TCPMapping a: no certificate for host `h.example`"),
        "{e:?}"
    );
}

#[test]
fn broken_secret_is_reported_once_not_again_per_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let e = errors(TERM, Some(dir.path()));
    assert_eq!(e.len(), 3, "secret, secret, ca_secret: {e:#?}");
    assert!(e[0].starts_with("t.yaml:6: TLSContext my-context: cannot read "));
    assert!(e[2].starts_with("t.yaml:12: TLSContext origination-context: cannot read "));
    assert!(!e.iter().any(|l| l.contains("TCPMapping")), "{e:#?}");
}

#[test]
fn namespace_and_ambassador_id_come_from_the_input() {
    let yaml = "apiVersion: ambassador/v1\nkind: TCPMapping\nname: a\nnamespace: web\nport: 1\nservice: svc:8080\nambassador_id: edge\n";
    let mut i = input(yaml, None);
    i.ambassador_id = "edge".into();
    i.namespace = "proxy".into();
    let l = load(&i).unwrap();
    let g = l
        .table
        .listeners()
        .values()
        .next()
        .unwrap()
        .plain
        .clone()
        .unwrap();
    assert_eq!(g.upstreams[0].host, ServiceHost::Dns("svc.web".into()));
    i.ambassador_id = "default".into();
    assert!(load(&i).unwrap().table.listeners().is_empty());
}

#[test]
fn problems_are_sorted_by_file_then_line_and_keep_warnings() {
    let yaml = "---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: a\nport: 0\nservice: a\nbogus: 1\n---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: b\nservice: b\n";
    let e = errors(yaml, None);
    assert_eq!(
        e,
        [
            "t.yaml:5: TCPMapping a: port 0 is out of range (1-65535)",
            "warning: t.yaml:7: TCPMapping a: unknown attribute `bogus` (ignored)",
            "t.yaml:9: TCPMapping b: `port` is required",
        ]
    );
}

#[test]
fn cert_chain_files_resolve_relative_to_the_config_file() {
    let dir = secrets();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, "apiVersion: ambassador/v1\nkind: TLSContext\nname: f\nhosts: [my-host-1]\ncert_chain_file: supersecret/tls.crt\nprivate_key_file: supersecret/tls.key\n---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: a\nport: 1\nhost: my-host-1\nservice: a\n").unwrap();
    let i = ConfigInput {
        paths: vec![cfg],
        ..ConfigInput::default()
    };
    let l = load(&i).unwrap();
    assert_eq!(
        l.table.to_json()["listeners"][0]["groups"][0]["termination"]["source"],
        "TLSContext f"
    );
}

fn mapping_doc(name: &str, port: u16, extra: &str) -> String {
    format!(
        "---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: {name}\naddress: 127.0.0.1\nport: {port}\nservice: a\n{extra}"
    )
}

#[test]
fn proxy_protocol_settings_reach_listeners_and_upstreams() {
    use crate::proxy_protocol::{Accept, Version};
    use std::net::SocketAddr;
    let module = "---\napiVersion: getambassador.io/v2\nkind: Module\nname: ambassador\nconfig: {use_proxy_proto: true}\n";
    let yaml = module.to_string()
        + &mapping_doc("a", 1, "send_proxy_proto: v2\n")
        + &mapping_doc("b", 2, "use_proxy_proto: optional\n")
        + &mapping_doc("c", 3, "use_proxy_proto: false\nsend_proxy_proto: v1\n")
        // Unset on a listener whose other mapping says `optional`: the listener's value.
        + &mapping_doc("d", 2, "");
    let l = load(&input(&yaml, None)).unwrap();
    let at = |p: u16| &l.table.listeners()[&SocketAddr::from(([127, 0, 0, 1], p))];
    assert_eq!(at(1).proxy_protocol, Accept::Required);
    assert_eq!(at(2).proxy_protocol, Accept::Optional);
    assert_eq!(at(3).proxy_protocol, Accept::Off);
    let up = |p: u16| at(p).plain.as_ref().unwrap().upstreams[0].send_proxy;
    assert_eq!(up(1), Some(Version::V2));
    assert_eq!(up(2), None);
    assert_eq!(up(3), Some(Version::V1));
    let text = l.table.render_text();
    assert!(
        text.contains(
            "127.0.0.1:1 proxy_protocol=required * raw -> a:80 (100%) [a, send_proxy_proto=v2]"
        ),
        "{text}"
    );
    assert!(
        text.contains("127.0.0.1:3 * raw -> a:80 (100%) [c, send_proxy_proto=v1]"),
        "{text}"
    );
    let json = l.table.to_json();
    assert_eq!(json["listeners"][1]["proxy_protocol"], "optional");
    assert_eq!(
        json["listeners"][0]["groups"][0]["upstreams"][0]["send_proxy_proto"],
        "v2"
    );
}

#[test]
fn proxy_protocol_config_errors() {
    let yaml = mapping_doc("a", 1, "use_proxy_proto: true\n")
        + &mapping_doc("b", 1, "use_proxy_proto: optional\n")
        + &mapping_doc("c", 2, "use_proxy_proto: maybe\n")
        + &mapping_doc("d", 3, "send_proxy_proto: v3\n");
    assert_eq!(
        errors(&yaml, None),
        [
            "t.yaml:16: TCPMapping b: `use_proxy_proto` is optional here but true in TCPMapping a (t.yaml:2); mappings on listener 127.0.0.1:1 must agree",
            "t.yaml:24: TCPMapping c: `use_proxy_proto` must be true, false or optional",
            "t.yaml:32: TCPMapping d: send_proxy_proto `v3` must be v1 or v2",
        ]
    );
}
