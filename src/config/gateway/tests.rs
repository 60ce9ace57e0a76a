//! Unit tests of the Gateway API reading and translation, through the whole pipeline (YAML →
//! route table), with the class fixed per test (the process-wide selection is not used).

use base64::Engine as _;

use super::backends::percents;
use super::translate::intersect;
use crate::config::{ConfigError, ConfigInput, Loaded, build_bundle, read};

/// Loads `yaml` (file `gw.yaml`) serving Gateways of class `tcpmap`.
fn load(yaml: &str) -> Result<Loaded, Vec<ConfigError>> {
    load_class(yaml, "tcpmap")
}

fn load_class(yaml: &str, class: &str) -> Result<Loaded, Vec<ConfigError>> {
    let input = ConfigInput {
        inline: vec![("gw.yaml".into(), yaml.into())],
        ..ConfigInput::default()
    };
    let (mut bundle, problems) = read(&input);
    bundle.gateway_class = class.into();
    build_bundle(&bundle, problems)
}

/// The route lines and warnings of a valid config.
fn check(yaml: &str) -> (String, Vec<String>) {
    match load(yaml) {
        Ok(l) => (
            l.render_text(),
            l.warnings.iter().map(ToString::to_string).collect(),
        ),
        Err(e) => panic!("expected a valid config, got {e:#?}"),
    }
}

fn gateway(listeners: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: gw\n  namespace: infra\nspec:\n  gatewayClassName: tcpmap\n  listeners:\n{listeners}"
    )
}

const TCP_LISTENER: &str = "  - name: foo\n    protocol: TCP\n    port: 8080\n";

fn tcp_route(name: &str, ns: &str, parent: &str, backends: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  parentRefs:\n{parent}  rules:\n  - backendRefs:\n{backends}"
    )
}

fn tls_route(name: &str, hostnames: &str, parent: &str, backends: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata:\n  name: {name}\n  namespace: infra\nspec:\n  parentRefs:\n{parent}  hostnames: {hostnames}\n  rules:\n  - backendRefs:\n{backends}"
    )
}

const PARENT: &str = "  - name: gw\n    namespace: infra\n";

#[test]
fn tcp_listener_and_tcproute_become_a_raw_relay_to_name_namespace_port() {
    let yaml = gateway(TCP_LISTENER)
        + &tcp_route(
            "app",
            "infra",
            PARENT,
            "    - name: foo-svc\n      port: 6000\n",
        );
    let (routes, warnings) = check(&yaml);
    assert_eq!(
        routes,
        "0.0.0.0:8080 * raw -> foo-svc.infra:6000 (100%) [app]\n"
    );
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn weights_are_relative_and_zero_gets_nothing() {
    let backends = "    - name: a\n      port: 1\n      weight: 1\n    - name: b\n      port: 1\n      weight: 3\n    - name: c\n      port: 1\n      weight: 0\n";
    let (routes, _) = check(&(gateway(TCP_LISTENER) + &tcp_route("r", "infra", PARENT, backends)));
    assert_eq!(
        routes,
        "0.0.0.0:8080 * raw -> a.infra:1 (25%) [r], b.infra:1 (75%) [r]\n"
    );
    // Large weights (the API allows up to 1,000,000) are scaled, not rejected.
    let big = "    - name: a\n      port: 1\n      weight: 800000\n    - name: b\n      port: 1\n      weight: 200000\n";
    let (routes, _) = check(&(gateway(TCP_LISTENER) + &tcp_route("r", "infra", PARENT, big)));
    assert!(
        routes.contains("a.infra:1 (80%) [r], b.infra:1 (20%) [r]"),
        "{routes}"
    );
}

#[test]
fn percents_sum_to_100() {
    assert_eq!(percents(&[1, 1, 1]), [34, 33, 33]);
    assert_eq!(percents(&[0, 5]), [0, 100]);
    assert_eq!(percents(&[1_000_000, 1]), [100, 0]);
    assert_eq!(percents(&[]), Vec::<u8>::new());
}

#[test]
fn passthrough_listener_routes_tlsroute_hostnames_by_sni() {
    let l = "  - name: tls\n    protocol: TLS\n    port: 443\n    tls:\n      mode: Passthrough\n";
    let yaml = gateway(l)
        + &tls_route(
            "foo",
            "[foo.example.com, \"*.wild.example.com\"]",
            "  - name: gw\n    sectionName: tls\n",
            "    - name: foo-svc\n      port: 443\n",
        );
    let (routes, warnings) = check(&yaml);
    assert_eq!(
        routes,
        "0.0.0.0:443 foo.example.com passthrough -> foo-svc.infra:443 (100%) [foo]\n\
         0.0.0.0:443 *.wild.example.com passthrough -> foo-svc.infra:443 (100%) [foo]\n"
    );
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn listener_hostname_narrows_route_hostnames() {
    assert_eq!(
        intersect(
            Some("*.example.com"),
            &["a.example.com".into(), "b.other.com".into()]
        ),
        ["a.example.com"]
    );
    assert_eq!(
        intersect(Some("a.example.com"), &["*.example.com".into()]),
        ["a.example.com"]
    );
    assert_eq!(
        intersect(Some("*.example.com"), &["*.a.example.com".into()]),
        ["*.a.example.com"]
    );
    assert_eq!(
        intersect(Some("*.a.example.com"), &["*.example.com".into()]),
        ["*.a.example.com"]
    );
    assert_eq!(intersect(None, &[]), ["*"]);
    assert_eq!(intersect(Some("x.test"), &[]), ["x.test"]);
    assert!(intersect(Some("x.test"), &["y.test".into()]).is_empty());
    // A TLSRoute whose hostnames all miss the listener's is not accepted, with the reason.
    let l = "  - name: tls\n    protocol: TLS\n    port: 443\n    hostname: \"*.example.com\"\n    tls:\n      mode: Passthrough\n";
    let yaml = gateway(l)
        + &tls_route(
            "off",
            "[db.other.org]",
            PARENT,
            "    - name: s\n      port: 1\n",
        );
    let (routes, warnings) = check(&yaml);
    assert_eq!(routes, "");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("TLSRoute off: not accepted")
                && w.contains("NoMatchingListenerHostname")),
        "{warnings:?}"
    );
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn secret(name: &str, ns: &str) -> String {
    let ck = rcgen::generate_simple_self_signed(vec!["bar.example.com".to_string()]).unwrap();
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(&ck.cert.pem()),
        b64(&ck.key_pair.serialize_pem())
    )
}

const TERMINATE: &str = "  - name: tls-terminate\n    protocol: TLS\n    port: 8443\n    tls:\n      mode: Terminate\n      certificateRefs:\n      - name: cert\n        namespace: certs\n";

fn terminate_config(grant: &str) -> String {
    gateway(TERMINATE)
        + &secret("cert", "certs")
        + grant
        + &tls_route(
            "bar",
            "[bar.example.com]",
            PARENT,
            "    - name: bar-svc\n      port: 8080\n",
        )
}

const SECRET_GRANT: &str = "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata:\n  name: certs-for-infra\n  namespace: certs\nspec:\n  from:\n  - group: gateway.networking.k8s.io\n    kind: Gateway\n    namespace: infra\n  to:\n  - group: \"\"\n    kind: Secret\n";

#[test]
fn terminate_listener_serves_its_secret_across_namespaces_with_a_grant() {
    let (routes, warnings) = check(&terminate_config(SECRET_GRANT));
    assert_eq!(
        routes,
        "0.0.0.0:8443 bar.example.com terminate(Gateway gw/tls-terminate) -> bar-svc.infra:8080 (100%) [bar]\n"
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    // Without the grant the listener is not programmed (ResolvedRefs False with
    // RefNotPermitted, as the Gateway API asks for a ref that is not allowed); the config
    // stays valid.
    let (routes, warnings) = check(&terminate_config(""));
    assert_eq!(routes, "");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("not programmed (ResolvedRefs False, RefNotPermitted)")),
        "{warnings:?}"
    );
}

#[test]
fn cross_namespace_backend_needs_a_reference_grant() {
    let backends = "    - name: db\n      namespace: data\n      port: 5432\n    - name: local\n      port: 5432\n";
    let yaml = gateway(TCP_LISTENER) + &tcp_route("r", "infra", PARENT, backends);
    // Without a grant the backend keeps its share, and that share is refused: an upstream
    // marked with the reason (its connections are closed, never connected), named by it.
    let loaded = load(&yaml).unwrap();
    assert_eq!(
        loaded.render_text(),
        "0.0.0.0:8080 * raw -> db.data:5432 (50%) [r refused:RefNotPermitted], local.infra:5432 (50%) [r]\n"
    );
    let listener = loaded.table.listeners().values().next().unwrap();
    let group = listener.plain.as_ref().unwrap();
    let refused: Vec<Option<&str>> = group.upstreams.iter().map(|u| u.refused).collect();
    assert_eq!(refused, [Some("RefNotPermitted"), None]);
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.to_string().contains("backendRef db")
                && w.message.contains("RefNotPermitted")
                && w.message.contains("its share of connections is refused")),
        "{:?}",
        loaded.warnings
    );
    let grant = "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata:\n  name: g\n  namespace: data\nspec:\n  from:\n  - group: gateway.networking.k8s.io\n    kind: TCPRoute\n    namespace: infra\n  to:\n  - group: \"\"\n    kind: Service\n    name: db\n";
    let (routes, _) = check(&(yaml + grant));
    assert_eq!(
        routes,
        "0.0.0.0:8080 * raw -> db.data:5432 (50%) [r], local.infra:5432 (50%) [r]\n"
    );
}

#[test]
fn allowed_routes_namespaces_same_all_and_selector() {
    let other = tcp_route("r", "apps", PARENT, "    - name: s\n      port: 1\n");
    // Same (the default): a route from another namespace is not allowed.
    let (routes, warnings) = check(&(gateway(TCP_LISTENER) + &other));
    assert_eq!(routes, "");
    assert!(
        warnings.iter().any(|w| w.contains("NotAllowedByListeners")),
        "{warnings:?}"
    );
    let all = format!("{TCP_LISTENER}    allowedRoutes:\n      namespaces:\n        from: All\n");
    let (routes, _) = check(&(gateway(&all) + &other));
    assert_eq!(routes, "0.0.0.0:8080 * raw -> s.apps:1 (100%) [r]\n");
    let sel = format!(
        "{TCP_LISTENER}    allowedRoutes:\n      namespaces:\n        from: Selector\n        selector:\n          matchLabels:\n            team: apps\n"
    );
    let ns = "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n  labels:\n    team: apps\n";
    let (routes, _) = check(&(gateway(&sel) + &other + ns));
    assert_eq!(routes, "0.0.0.0:8080 * raw -> s.apps:1 (100%) [r]\n");
    let (routes, _) = check(&(gateway(&sel) + &other));
    assert_eq!(routes, "", "no Namespace document: no labels to match");
}

#[test]
fn allowed_kinds_and_protocols_decide_what_attaches() {
    // A TCPRoute does not attach to a TLS listener.
    let l = "  - name: tls\n    protocol: TLS\n    port: 443\n    tls:\n      mode: Passthrough\n";
    let yaml = gateway(l) + &tcp_route("r", "infra", PARENT, "    - name: s\n      port: 1\n");
    let (routes, warnings) = check(&yaml);
    assert_eq!(routes, "");
    assert!(warnings.iter().any(|w| w.contains("NotAllowedByListeners")));
    let kinds = format!("{TCP_LISTENER}    allowedRoutes:\n      kinds:\n      - kind: TLSRoute\n");
    let yaml = gateway(&kinds) + &tcp_route("r", "infra", PARENT, "    - name: s\n      port: 1\n");
    assert_eq!(check(&yaml).0, "");
}

#[test]
fn parent_refs_select_listeners_by_section_name_and_port() {
    let two = "  - name: foo\n    protocol: TCP\n    port: 8080\n  - name: bar\n    protocol: TCP\n    port: 8090\n";
    let by_port = "  - name: gw\n    port: 8090\n";
    let (routes, _) = check(
        &(gateway(two) + &tcp_route("r", "infra", by_port, "    - name: s\n      port: 1\n")),
    );
    assert_eq!(routes, "0.0.0.0:8090 * raw -> s.infra:1 (100%) [r]\n");
    let missing = "  - name: gw\n    sectionName: nope\n";
    let (routes, warnings) = check(
        &(gateway(two) + &tcp_route("r", "infra", missing, "    - name: s\n      port: 1\n")),
    );
    assert_eq!(routes, "");
    assert!(
        warnings.iter().any(|w| w.contains("NoMatchingParent")),
        "{warnings:?}"
    );
}

#[test]
fn the_oldest_tcproute_wins_a_listener() {
    let newer = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: TCPRoute\nmetadata:\n  name: a-newer\n  namespace: infra\n  creationTimestamp: \"2026-02-01T00:00:00Z\"\nspec:\n  parentRefs:\n  - name: gw\n  rules:\n  - backendRefs:\n    - name: new\n      port: 1\n";
    let older = newer
        .replace("a-newer", "z-older")
        .replace("2026-02-01", "2025-01-01")
        .replace("name: new", "name: old");
    let (routes, warnings) = check(&(gateway(TCP_LISTENER) + newer + &older));
    assert_eq!(
        routes,
        "0.0.0.0:8080 * raw -> old.infra:1 (100%) [z-older]\n"
    );
    assert!(
        warnings.iter().any(
            |w| w.contains("TCPRoute a-newer: not bound to infra/gw listener foo")
                && w.contains("TCPRoute infra/z-older")
        ),
        "{warnings:?}"
    );
}

#[test]
fn other_classes_are_skipped_and_addresses_bind() {
    let yaml =
        gateway(TCP_LISTENER) + &tcp_route("r", "infra", PARENT, "    - name: s\n      port: 1\n");
    let other = load_class(&yaml, "someone-else").unwrap();
    assert_eq!(other.render_text(), "");
    // Nothing served at all: the warning says which class was looked for.
    assert_eq!(
        other
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "warning: gw.yaml:1: Config -: no TCPMapping, and no TCPRoute or TLSRoute bound to a \
          Gateway of class `someone-else` (--gateway-class) (found: Gateway 1, TCPRoute 1)"
        ]
    );
    let addressed = yaml.replace(
        "  gatewayClassName: tcpmap\n",
        "  gatewayClassName: tcpmap\n  addresses:\n  - value: 127.0.0.2\n",
    );
    assert_eq!(
        check(&addressed).0,
        "127.0.0.2:8080 * raw -> s.infra:1 (100%) [r]\n"
    );
}

#[test]
fn conflicting_listeners_are_not_served_and_a_port_shared_with_a_tcpmapping_is_an_error() {
    let clash = "  - name: a\n    protocol: TCP\n    port: 8080\n  - name: b\n    protocol: TLS\n    port: 8080\n    tls:\n      mode: Passthrough\n";
    let (routes, warnings) = check(
        &(gateway(clash) + &tcp_route("r", "infra", PARENT, "    - name: s\n      port: 1\n")),
    );
    assert_eq!(routes, "");
    assert_eq!(
        warnings.iter().filter(|w| w.contains("Conflicted")).count(),
        2,
        "{warnings:?}"
    );
    let mapping = "---\napiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata:\n  name: m\nspec:\n  port: 8080\n  service: x:1\n";
    let yaml = gateway(TCP_LISTENER)
        + &tcp_route("r", "infra", PARENT, "    - name: s\n      port: 1\n")
        + mapping;
    let errs = load(&yaml).expect_err("a port claimed twice is an error");
    assert!(
        errs.iter().any(|e| e.is_error()
            && e.to_string()
                .contains("TCPMapping m: port 8080 is also a Gateway listener's")
            && e.message.contains("TCPRoute r")),
        "{errs:#?}"
    );
}

#[test]
fn a_kubectl_list_of_gateway_api_resources_is_read_with_its_lines() {
    let yaml = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: gateway.networking.k8s.io/v1\n  kind: Gateway\n  metadata:\n    name: gw\n    namespace: infra\n  spec:\n    gatewayClassName: tcpmap\n    listeners:\n    - name: foo\n      protocol: HTTP\n      port: 80\n- apiVersion: gateway.networking.k8s.io/v2\n  kind: TCPRoute\n  metadata:\n    name: future\n";
    let (routes, warnings) = check(yaml);
    assert_eq!(routes, "");
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("warning: gw.yaml:12: ")
                && w.contains("Gateway gw: listener foo: protocol HTTP")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("warning: gw.yaml:15: TCPRoute future: TCPRoute is not served in gateway.networking.k8s.io/v2")),
        "{warnings:?}"
    );
}

#[test]
fn warnings_point_at_the_list_entry_they_are_about() {
    // Line 23 holds the refused backend (flow style); line 18 the parentRef to a listener that
    // does not exist (entries are found by name: the first of that name).
    let yaml = gateway(TCP_LISTENER)
        + "---\napiVersion: gateway.networking.k8s.io/v1\nkind: TCPRoute\nmetadata: {name: r, namespace: infra}\nspec:\n  parentRefs:\n  - {name: gw, sectionName: nope}\n  - {name: gw}\n  rules:\n  - backendRefs:\n    - {name: ok, port: 1}\n    - {name: db, namespace: data, port: 5432}\n";
    let (_, warnings) = check(&yaml);
    let at = |needle: &str| {
        warnings
            .iter()
            .find(|w| w.contains(needle))
            .unwrap_or_else(|| panic!("{needle}: {warnings:?}"))
            .split(':')
            .nth(2)
            .unwrap()
            .to_string()
    };
    assert_eq!(at("NoMatchingParent"), "18");
    assert_eq!(at("backendRef db"), "23");
}

fn load_in(yaml: &str, namespace: &str, secrets: &std::path::Path) -> Loaded {
    let input = ConfigInput {
        inline: vec![("gw.yaml".into(), yaml.into())],
        secrets_dir: Some(secrets.to_path_buf()),
        namespace: namespace.into(),
        ..ConfigInput::default()
    };
    let (mut bundle, problems) = read(&input);
    bundle.gateway_class = "tcpmap".into();
    build_bundle(&bundle, problems).unwrap_or_else(|e| panic!("{e:#?}"))
}

#[test]
fn certificate_refs_read_every_secret_shape_tcpmap_reads() {
    let listener = "  - name: t\n    protocol: TLS\n    port: 8443\n    tls:\n      certificateRefs:\n      - name: cert\n";
    let route = tls_route(
        "bar",
        "[bar.example.com]",
        PARENT,
        "    - name: s\n      port: 1\n",
    );
    let want = "0.0.0.0:8443 bar.example.com terminate(Gateway gw/t) -> s.infra:1 (100%) [bar]\n";
    // --secrets-dir DIR/NAMESPACE/NAME/ (tls.mode defaults to Terminate).
    let dir = tempfile::tempdir().unwrap();
    crate::config::testutil::write_secret(dir.path(), "infra/cert", &["bar.example.com"]);
    let loaded = load_in(&(gateway(listener) + &route), "default", dir.path());
    assert_eq!(loaded.render_text(), want);
    // A Gateway without a namespace is in the proxy's: its Secret folder too.
    let yaml = (gateway(listener) + &route).replace(
        "  namespace: infra\nspec:\n  gatewayClassName",
        "spec:\n  gatewayClassName",
    );
    crate::config::testutil::write_secret(dir.path(), "edge/cert", &["bar.example.com"]);
    let edge = load_in(
        &yaml.replace(
            "namespace: infra\nspec:\n  parentRefs:\n  - name: gw\n    namespace: infra",
            "namespace: edge\nspec:\n  parentRefs:\n  - name: gw\n    namespace: edge",
        ),
        "edge",
        dir.path(),
    );
    assert_eq!(edge.render_text(), want.replace("s.infra", "s.edge"));
    // Secret documents: Opaque with tls.crt/tls.key, and istio.io/key-and-cert.
    let ck = rcgen::generate_simple_self_signed(vec!["bar.example.com".to_string()]).unwrap();
    let (crt, key) = (b64(&ck.cert.pem()), b64(&ck.key_pair.serialize_pem()));
    let empty = tempfile::tempdir().unwrap();
    for (ty, data) in [
        ("Opaque", format!("tls.crt: {crt}\n  tls.key: {key}")),
        (
            "istio.io/key-and-cert",
            format!("cert-chain.pem: {crt}\n  key.pem: {key}"),
        ),
    ] {
        let secret = format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: cert\n  namespace: infra\ntype: {ty}\ndata:\n  {data}\n"
        );
        let loaded = load_in(
            &(gateway(listener) + &route + &secret),
            "default",
            empty.path(),
        );
        assert_eq!(loaded.render_text(), want, "{ty}");
    }
}

#[test]
fn a_reference_grant_without_a_namespace_is_in_the_proxys() {
    let backends = "    - name: db\n      namespace: data\n      port: 5432\n";
    let grant = "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata:\n  name: g\nspec:\n  from:\n  - {group: gateway.networking.k8s.io, kind: TCPRoute, namespace: infra}\n  to:\n  - {group: \"\", kind: Service}\n";
    let yaml = gateway(TCP_LISTENER) + &tcp_route("r", "infra", PARENT, backends) + grant;
    let empty = tempfile::tempdir().unwrap();
    let granted = load_in(&yaml, "data", empty.path()).render_text();
    assert_eq!(granted, "0.0.0.0:8080 * raw -> db.data:5432 (100%) [r]\n");
    let elsewhere = load_in(&yaml, "default", empty.path()).render_text();
    assert!(
        elsewhere.contains("[r refused:RefNotPermitted]"),
        "{elsewhere}"
    );
}

/// The facts of the conformance test TLSRouteHostnameIntersection
/// (conformance/tests/tlsroute-hostname-intersection.yaml): four listeners (exact, more and less
/// specific wildcard, none) and routes whose hostnames intersect them.
#[test]
fn conformance_tlsroute_hostname_intersection() {
    let listener = |name: &str, port: u16, hostname: &str| {
        format!(
            "  - name: {name}\n    protocol: TLS\n    port: {port}\n{hostname}    tls:\n      mode: Passthrough\n"
        )
    };
    let listeners = listener("exact", 1001, "    hostname: abc.example.com\n")
        + &listener("more", 1002, "    hostname: \"*.example.com\"\n")
        + &listener("less", 1003, "    hostname: \"*.com\"\n")
        + &listener("empty", 1004, "");
    let route = |name: &str, section: &str, host: &str, backend: &str| {
        tls_route(
            name,
            &format!("[\"{host}\"]"),
            &format!("  - name: gw\n    sectionName: {section}\n"),
            &format!("    - name: {backend}\n      port: 443\n"),
        )
    };
    let yaml = gateway(&listeners)
        + &route("x1", "exact", "*.example.com", "b1")
        + &route("x2-exact", "more", "abc.example.com", "b1")
        + &route("x2-less", "more", "*.com", "b2")
        + &route("x3-exact", "less", "abc.example.com", "b1")
        + &route("x3-more", "less", "*.example.com", "b2")
        + &route("x4-exact", "empty", "abc.example.com", "b1")
        + &route("x4-less", "empty", "*.com", "b2");
    let (routes, warnings) = check(&yaml);
    assert!(warnings.is_empty(), "{warnings:?}");
    let hosts: Vec<String> = routes
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            format!("{} {} {}", f[0], f[1], f[4])
        })
        .collect();
    assert_eq!(
        hosts,
        [
            "0.0.0.0:1001 abc.example.com b1.infra:443",
            "0.0.0.0:1002 abc.example.com b1.infra:443",
            // `*.com` on a `*.example.com` listener serves `*.example.com`.
            "0.0.0.0:1002 *.example.com b2.infra:443",
            "0.0.0.0:1003 abc.example.com b1.infra:443",
            "0.0.0.0:1003 *.example.com b2.infra:443",
            "0.0.0.0:1004 abc.example.com b1.infra:443",
            "0.0.0.0:1004 *.com b2.infra:443",
        ]
    );
}

/// The facts of the conformance test TLSRouteMixedTerminationSameNamespace: a Terminate and a
/// Passthrough listener on one port with different hostnames; routes without sectionName
/// attach where their hostnames intersect.
#[test]
fn conformance_tlsroute_mixed_termination_on_one_port() {
    let listeners = "  - name: tls-terminate\n    port: 8883\n    protocol: TLS\n    hostname: tls.example.com\n    tls:\n      mode: Terminate\n      certificateRefs:\n      - name: cert\n  - name: tls-passthrough\n    port: 8883\n    protocol: TLS\n    hostname: abc.example.com\n    tls:\n      mode: Passthrough\n";
    let yaml = gateway(listeners)
        + &secret("cert", "infra")
        + &tls_route(
            "pass",
            "[abc.example.com]",
            PARENT,
            "    - name: tcp-backend\n      port: 8443\n",
        )
        + &tls_route(
            "term",
            "[tls.example.com]",
            PARENT,
            "    - name: tcp-backend\n      port: 3000\n",
        );
    let (routes, warnings) = check(&yaml);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        routes,
        "0.0.0.0:8883 abc.example.com passthrough -> tcp-backend.infra:8443 (100%) [pass]\n\
         0.0.0.0:8883 tls.example.com terminate(Gateway gw/tls-terminate) -> tcp-backend.infra:3000 (100%) [term]\n"
    );
}
