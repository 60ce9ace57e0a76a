use super::*;
use crate::config::testutil::{classify, resource};

fn mapping(yaml: &str) -> RawMapping {
    match resource(yaml) {
        Resource::Mapping(m) => m,
        other => panic!("not a mapping: {other:?}"),
    }
}

#[test]
fn flat_form_reads_attributes() {
    let m = mapping(
        "apiVersion: ambassador/v1\nkind: TCPMapping\nname: ssh\nnamespace: ns\nport: 2222\nservice: upstream:22\ntls: true\nweight: 30\n",
    );
    assert_eq!(m.loc.name, "ssh");
    assert_eq!(m.namespace.as_deref(), Some("ns"));
    assert_eq!(m.port, Some(2222));
    assert_eq!(m.service.as_deref(), Some("upstream:22"));
    assert_eq!(m.tls, Some(RawTls::Bool(true)));
    assert_eq!(m.weight, Some(30));
}

#[test]
fn crd_form_reads_metadata_and_spec() {
    let m = mapping(
        "apiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata:\n  name: db\n  namespace: prod\nspec:\n  port: 5432\n  service: pg\n  tls: ctx\n  circuit_breakers:\n  - max_connections: 7\n",
    );
    assert_eq!(
        (m.loc.name.as_str(), m.namespace.as_deref()),
        ("db", Some("prod"))
    );
    assert!(m.loc.crd);
    assert_eq!(m.port, Some(5432));
    assert_eq!(m.tls, Some(RawTls::Context("ctx".into())));
    assert_eq!(m.max_connections, Some(7));
}

#[test]
fn all_accepted_api_versions_and_others_rejected() {
    for v in API_VERSIONS {
        let c = classify(&format!(
            "apiVersion: {v}\nkind: TCPMapping\nname: a\nport: 1\nservice: x\n"
        ));
        assert!(
            c.resource.is_some() && c.problems.is_empty(),
            "{v}: {:?}",
            c.problems
        );
    }
    let c = classify("apiVersion: getambassador.io/v9\nkind: TCPMapping\nname: a\n");
    assert!(c.resource.is_none());
    assert!(c.problems[0].message.contains("unsupported apiVersion"));
    let c = classify("kind: TCPMapping\nname: a\n");
    assert!(c.problems[0].message.contains("apiVersion is required"));
}

#[test]
fn other_kinds_and_foreign_modules_are_skipped_silently() {
    for y in [
        "apiVersion: getambassador.io/v2\nkind: Mapping\nname: http\nprefix: /\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
        "apiVersion: getambassador.io/v2\nkind: Module\nname: tls\nconfig: {}\n",
        "apiVersion: getambassador.io/v2\nkind: Host\nmetadata: {name: h}\nspec: {hostname: a.example}\n",
        "just a string\n",
    ] {
        let c = classify(y);
        assert!(
            c.resource.is_none() && c.problems.is_empty(),
            "{y}: {:?}",
            c.problems
        );
    }
}

#[test]
fn ambassador_id_filters_resources() {
    let y = |id: &str| {
        format!("apiVersion: ambassador/v1\nkind: TCPMapping\nname: a\nport: 1\nservice: x\n{id}")
    };
    assert!(
        classify(&y("")).resource.is_some(),
        "absent means `default`"
    );
    assert!(classify(&y("ambassador_id: default\n")).resource.is_some());
    assert!(
        classify(&y("ambassador_id: [other, default]\n"))
            .resource
            .is_some()
    );
    assert!(classify(&y("ambassador_id: other\n")).resource.is_none());
    assert!(classify(&y("ambassador_id: [a, b]\n")).resource.is_none());
}

#[test]
fn unknown_attribute_warns_naming_it_at_its_line() {
    let c = classify(
        "apiVersion: ambassador/v1\nkind: TCPMapping\nname: a\nport: 1\nservice: x\nidle_timeout: 5\n",
    );
    assert!(c.resource.is_some());
    assert_eq!(c.problems.len(), 1);
    let w = &c.problems[0];
    assert!(!w.is_error());
    assert_eq!(
        w.to_string(),
        "warning: t.yaml:6: TCPMapping a: unknown attribute `idle_timeout` (ignored)"
    );
}

#[test]
fn known_kinds_have_no_warnings_for_their_attributes() {
    let c = classify(
        "apiVersion: ambassador/v1\nkind: TLSContext\nname: c\nhosts: [a]\nsecret: s\nca_secret: ca\ncert_required: false\nsni: x\nalpn_protocols: h2,http/1.1\nmin_tls_version: v1.2\nmax_tls_version: v1.3\ncipher_suites: [TLS13_AES_128_GCM_SHA256]\nsecret_namespacing: true\n",
    );
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    let Some(Resource::Context(ctx)) = c.resource else {
        panic!()
    };
    assert_eq!(ctx.alpn_protocols.unwrap(), ["h2", "http/1.1"]);
}

#[test]
fn type_errors_are_reported_at_the_attribute() {
    let c = classify(
        "apiVersion: ambassador/v1\nkind: TCPMapping\nname: a\nport: \"22x\"\nservice: [x]\nenable_ipv6: yes please\n",
    );
    let lines: Vec<String> = c.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "t.yaml:4: TCPMapping a: `port` must be an integer",
            "t.yaml:5: TCPMapping a: `service` must be a string",
            "t.yaml:6: TCPMapping a: `enable_ipv6` must be true or false",
        ]
    );
    let Some(Resource::Mapping(m)) = c.resource else {
        panic!()
    };
    assert!(m.port.is_none() && m.has("port"));
}

#[test]
fn host_and_module_forms() {
    let Resource::Host(h) = resource(
        "apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: h, namespace: ns}\nspec:\n  hostname: \"*.example.com\"\n  tlsSecret: {name: wild}\n  acmeProvider: {authority: none}\n",
    ) else {
        panic!()
    };
    assert_eq!(
        (h.hostname.as_deref(), h.secret.as_str()),
        (Some("*.example.com"), "wild")
    );
    let Resource::Module(m) = resource(
        "apiVersion: getambassador.io/v2\nkind: Module\nname: ambassador\nconfig:\n  enable_ipv6: true\n  diagnostics: {enabled: false}\n",
    ) else {
        panic!()
    };
    assert_eq!((m.enable_ipv4, m.enable_ipv6), (None, Some(true)));
}

#[test]
fn missing_name_is_an_error() {
    let c = classify("apiVersion: ambassador/v1\nkind: TCPMapping\nport: 1\nservice: x\n");
    assert!(
        c.problems
            .iter()
            .any(|p| p.is_error() && p.message == "name is required")
    );
}

#[test]
fn proxy_protocol_attributes() {
    use crate::proxy_protocol::Accept;
    let base = "apiVersion: ambassador/v1\nkind: TCPMapping\nname: p\nport: 1\nservice: x\n";
    for (value, want) in [
        ("true", Accept::Required),
        ("false", Accept::Off),
        ("optional", Accept::Optional),
        ("\"Optional\"", Accept::Optional),
        ("\"true\"", Accept::Required),
    ] {
        let c = classify(&format!(
            "{base}use_proxy_proto: {value}\nsend_proxy_proto: v2\n"
        ));
        assert!(c.problems.is_empty(), "{value}: {:?}", c.problems);
        let Some(Resource::Mapping(m)) = c.resource else {
            panic!()
        };
        assert_eq!(m.use_proxy_proto, Some(want), "{value}");
        assert_eq!(m.send_proxy_proto.as_deref(), Some("v2"));
    }
    let c = classify(&format!("{base}use_proxy_proto: 2\n"));
    assert_eq!(
        c.problems[0].to_string(),
        "t.yaml:6: TCPMapping p: `use_proxy_proto` must be true, false or optional"
    );
    let Resource::Module(m) = resource(
        "apiVersion: getambassador.io/v2\nkind: Module\nname: ambassador\nconfig:\n  use_proxy_proto: true\n",
    ) else {
        panic!()
    };
    assert_eq!(m.use_proxy_proto, Some(true));
}
