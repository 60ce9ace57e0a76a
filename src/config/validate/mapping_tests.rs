use super::*;
use crate::config::raw::Resource;
use crate::config::testutil::resource;

fn raw(attrs: &str) -> RawMapping {
    let y = format!("apiVersion: ambassador/v1\nkind: TCPMapping\nname: m\n{attrs}");
    match resource(&y) {
        Resource::Mapping(m) => m,
        other => panic!("{other:?}"),
    }
}

fn env_with<'a>(contexts: &'a BTreeSet<String>, module: Families) -> MappingEnv<'a> {
    MappingEnv {
        namespace: "default",
        module,
        contexts,
        max_connections: None,
        own_namespace: false,
    }
}

fn check(attrs: &str) -> (Option<Mapping>, Vec<String>) {
    let ctx: BTreeSet<String> = ["ctx".to_string()].into();
    let (m, errs) = mapping(&raw(attrs), &env_with(&ctx, Families::default()));
    (m, errs.iter().map(ToString::to_string).collect())
}

#[test]
fn port_required_and_in_range() {
    assert_eq!(check_port(None, false).unwrap_err(), "`port` is required");
    assert_eq!(check_port(None, true), Ok(None));
    assert!(check_port(Some(0), false).is_err());
    assert!(check_port(Some(65536), false).is_err());
    assert!(check_port(Some(-1), false).is_err());
    assert_eq!(check_port(Some(65535), false), Ok(Some(65535)));
}

#[test]
fn service_required() {
    assert!(check_service_present(None, false).is_err());
    assert!(check_service_present(None, true).is_ok());
    assert!(check_service_present(Some("x"), true).is_ok());
}

#[test]
fn address_is_an_ip_literal_defaulting_to_any() {
    assert_eq!(parse_address(None).unwrap().to_string(), "0.0.0.0");
    assert_eq!(
        parse_address(Some("127.0.0.1")).unwrap().to_string(),
        "127.0.0.1"
    );
    assert_eq!(parse_address(Some("::1")).unwrap().to_string(), "::1");
    assert_eq!(parse_address(Some("[::]")).unwrap().to_string(), "::");
    assert!(parse_address(Some("localhost")).is_err());
    assert!(parse_address(Some("[127.0.0.1")).is_err());
}

#[test]
fn host_is_a_name_or_wildcard() {
    assert_eq!(check_host("My-Host.Example.").unwrap(), "my-host.example");
    assert_eq!(check_host("*.example.com").unwrap(), "*.example.com");
    assert!(check_host("a*.example.com").is_err());
    assert!(check_host("host:443").is_err());
    assert!(check_host("").is_err());
    assert_eq!(check_host("*").unwrap(), "*");
    assert_eq!(check_host(" * ").unwrap(), "*");
    assert!(check_host("**").is_err());
    for ip in ["127.0.0.1", "10.0.0.1.", "::1", "[::1]", "2001:db8::7"] {
        let e = check_host(ip).unwrap_err();
        assert!(
            e.contains("is an IP address") && e.contains("RFC 6066"),
            "{ip}: {e}"
        );
    }
}

#[test]
fn tls_and_https_give_the_origination() {
    assert_eq!(origin(None, false), Ok(Origin::Plain));
    assert_eq!(origin(Some(&RawTls::Bool(false)), false), Ok(Origin::Plain));
    assert_eq!(
        origin(Some(&RawTls::Bool(true)), false),
        Ok(Origin::Insecure)
    );
    assert_eq!(origin(None, true), Ok(Origin::Insecure));
    assert_eq!(
        origin(Some(&RawTls::Context("c".into())), true),
        Ok(Origin::Context("c".into()))
    );
    assert!(origin(Some(&RawTls::Bool(false)), true).is_err());
}

#[test]
fn tls_context_must_exist() {
    let known: BTreeSet<String> = ["a".to_string()].into();
    assert!(check_context_known(&Origin::Context("a".into()), &known).is_ok());
    let e = check_context_known(&Origin::Context("b".into()), &known).unwrap_err();
    assert_eq!(e, "tls: unknown TLSContext `b`");
    assert!(check_context_known(&Origin::Insecure, &known).is_ok());
}

#[test]
fn weight_is_0_to_100() {
    assert_eq!(check_weight(0), Ok(0));
    assert_eq!(check_weight(100), Ok(100));
    assert!(check_weight(101).is_err());
    assert!(check_weight(-5).is_err());
}

#[test]
fn idle_timeout_not_negative_zero_is_off() {
    assert_eq!(idle_timeout(0), Ok(None));
    assert_eq!(idle_timeout(1500), Ok(Some(Duration::from_millis(1500))));
    assert!(idle_timeout(-1).is_err());
}

#[test]
fn connect_timeout_defaults_to_3000() {
    assert_eq!(connect_timeout(None), Ok(Duration::from_millis(3000)));
    assert_eq!(connect_timeout(Some(250)), Ok(Duration::from_millis(250)));
    assert!(connect_timeout(Some(0)).is_err());
    assert!(connect_timeout(Some(-3)).is_err());
}

#[test]
fn max_connections_at_least_one() {
    assert_eq!(max_connections(10), Ok(10));
    assert!(max_connections(0).is_err());
    assert!(max_connections(i64::MAX).is_err());
}

#[test]
fn families_module_defaults_and_both_off_fall_back_to_ipv4() {
    let d = Families::default();
    assert_eq!(
        families(None, None, d),
        (Families::new(true, false).unwrap(), None)
    );
    assert_eq!(
        families(None, Some(true), d),
        (Families::new(true, true).unwrap(), None)
    );
    let m6 = Families::new(false, true).unwrap();
    assert_eq!(families(None, None, m6), (m6, None));
    for (v4, v6) in [(Some(false), Some(false)), (Some(false), None)] {
        let (f, warning) = families(v4, v6, d);
        assert_eq!(f, Families::V4);
        assert!(warning.unwrap().contains("IPv4 is used"));
    }
}

#[test]
fn ip_literal_must_match_a_family() {
    let v6 = ServiceHost::Ip("::1".parse().unwrap());
    assert!(check_literal_family(&v6, Families::default()).is_err());
    assert!(check_literal_family(&v6, Families::new(true, true).unwrap()).is_ok());
    let v4 = ServiceHost::Ip("127.0.0.1".parse().unwrap());
    assert!(check_literal_family(&v4, Families::new(false, true).unwrap()).is_err());
    assert!(check_literal_family(&ServiceHost::Dns("x".into()), Families::default()).is_ok());
}

#[test]
fn good_mapping_gets_defaults() {
    let (m, errs) = check("port: 2222\nservice: upstream\n");
    assert!(errs.is_empty(), "{errs:?}");
    let m = m.unwrap();
    assert_eq!(m.address.to_string(), "0.0.0.0");
    assert_eq!((m.service_port, m.origin.clone()), (80, Origin::Plain));
    assert_eq!(m.connect_timeout, Duration::from_millis(3000));
    assert_eq!(m.namespace, "default");
    let (m, _) = check("port: 2222\nservice: upstream\ntls: true\n");
    assert_eq!(m.unwrap().service_port, 443);
    let (m, _) = check("port: 2222\nservice: https://upstream\n");
    assert_eq!(m.unwrap().origin, Origin::Insecure);
}

#[test]
fn namespace_qualifies_services_of_other_namespaces() {
    let (m, _) = check("namespace: other\nport: 1\nservice: svc:81\n");
    assert_eq!(
        m.unwrap().service_host,
        ServiceHost::Dns("svc.other".into())
    );
    let (m, _) = check("namespace: default\nport: 1\nservice: svc:81\n");
    assert_eq!(m.unwrap().service_host, ServiceHost::Dns("svc".into()));
    // `localhost` and IP literals are never qualified.
    let (m, _) = check("namespace: other\nport: 1\nservice: localhost:81\n");
    assert_eq!(
        m.unwrap().service_host,
        ServiceHost::Dns("localhost".into())
    );
    let (m, _) = check("namespace: other\nport: 1\nservice: 127.0.0.1:81\n");
    assert_eq!(
        m.unwrap().service_host,
        ServiceHost::Ip("127.0.0.1".parse().unwrap())
    );
}

#[test]
fn http_scheme_is_cleartext_with_a_warning_and_string_timeouts_are_read() {
    let (m, errs) = check("port: 1\nservice: http://svc:8080\nidle_timeout_ms: \"5000\"\n");
    let m = m.unwrap();
    assert_eq!((m.origin, m.service_port), (Origin::Plain, 8080));
    assert_eq!(m.idle_timeout, Some(Duration::from_millis(5000)));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("warning: t.yaml:5: TCPMapping m: `http://` service"),
        "{errs:?}"
    );
}

#[test]
fn every_mistake_of_a_mapping_is_reported_at_its_line() {
    let (m, errs) = check(
        "port: 70000\nservice: \"::1\"\naddress: nowhere\nweight: 101\ntls: nope\nidle_timeout_ms: -1\nconnect_timeout_ms: 0\ncircuit_breakers:\n- max_connections: 0\nenable_ipv4: false\n",
    );
    assert!(m.is_none());
    // Both families off is Emissary's IPv4 fallback: a warning (line 13), not an error.
    assert_eq!(errs.len(), 9, "{errs:#?}");
    assert!(
        errs.iter()
            .any(|e| e.starts_with("warning: t.yaml:13: TCPMapping m: "))
    );
    for (i, line) in [4, 5, 6, 7, 8, 9, 10, 12].into_iter().enumerate() {
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("t.yaml:{line}: TCPMapping m: "))),
            "line {line} missing ({i}): {errs:#?}"
        );
    }
}

#[test]
fn families_off_on_the_mapping_is_ipv4_with_its_own_warning() {
    let none = BTreeSet::new();
    let (m, errs) = mapping(
        &raw("port: 1\nservice: x\n"),
        &env_with(&none, Families::V4),
    );
    assert!(m.is_some() && errs.is_empty());
    let (m, errs) = mapping(
        &raw("port: 1\nservice: x\nenable_ipv4: false\n"),
        &env_with(&none, Families::V4),
    );
    assert_eq!(m.unwrap().families, Families::V4);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        !errs[0].is_error() && errs[0].message.contains("IPv4 is used"),
        "{errs:?}"
    );
}

#[test]
fn passthrough_needs_host_and_no_origination() {
    let plain = Origin::Plain;
    assert_eq!(passthrough(None, None, &plain), Ok(false));
    assert_eq!(passthrough(Some(false), None, &Origin::Insecure), Ok(false));
    assert_eq!(passthrough(Some(true), Some("a.example"), &plain), Ok(true));
    let (key, msg) = passthrough(Some(true), None, &plain).unwrap_err();
    assert_eq!(key, "tls_passthrough");
    assert!(msg.contains("needs `host`"), "{msg}");
    for o in [Origin::Insecure, Origin::Context("ctx".into())] {
        let (key, msg) = passthrough(Some(true), Some("a.example"), &o).unwrap_err();
        assert_eq!(key, "tls");
        assert!(msg.contains(&format!("`tls: {o}`")), "{msg}");
    }
    // The default upstream port of a passthrough mapping.
    let (m, errs) = mapping(
        &raw("port: 443\nhost: a.example\ntls_passthrough: true\nservice: b\n"),
        &env_with(&BTreeSet::new(), Families::V4),
    );
    assert!(errs.is_empty(), "{errs:?}");
    let m = m.unwrap();
    assert!(m.passthrough);
    assert_eq!(m.service_port, PASSTHROUGH_PORT);
}

#[test]
fn match_alpn_is_sorted_deduplicated_and_bounded() {
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(match_alpn(None, None), Ok(vec![]));
    assert_eq!(
        match_alpn(Some(&names(&["h2", "acme-tls/1", "h2"])), Some("a")),
        Ok(names(&["acme-tls/1", "h2"]))
    );
    assert!(match_alpn(Some(&names(&["h2"])), None).is_err());
    assert!(match_alpn(Some(&[]), Some("a")).is_err());
    assert!(match_alpn(Some(&names(&[""])), Some("a")).is_err());
    assert!(match_alpn(Some(&["x".repeat(256)]), Some("a")).is_err());
    assert!(match_alpn(Some(&["x".repeat(255)]), Some("a")).is_ok());
}

mod alpn_props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Accepted lists come back sorted, without duplicates, holding exactly the names given.
        #[test]
        fn accepted_lists_are_canonical(v in proptest::collection::vec("[a-z0-9/.-]{0,8}", 0..6)) {
            match match_alpn(Some(&v), Some("a")) {
                Ok(out) => {
                    prop_assert!(!v.is_empty() && v.iter().all(|n| !n.is_empty()));
                    prop_assert!(out.windows(2).all(|w| w[0] < w[1]));
                    let given: BTreeSet<&String> = v.iter().collect();
                    let got: BTreeSet<&String> = out.iter().collect();
                    prop_assert_eq!(given, got);
                }
                Err(_) => prop_assert!(v.is_empty() || v.iter().any(|n| n.is_empty())),
            }
        }
    }
}
