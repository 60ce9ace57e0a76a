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
fn families_module_defaults_and_both_off() {
    let d = Families::default();
    assert_eq!(
        families(None, None, d),
        Ok(Families::new(true, false).unwrap())
    );
    assert_eq!(
        families(None, Some(true), d),
        Ok(Families::new(true, true).unwrap())
    );
    let m6 = Families::new(false, true).unwrap();
    assert_eq!(families(None, None, m6), Ok(m6));
    assert!(families(Some(false), Some(false), d).is_err());
    assert!(families(Some(false), None, d).is_err());
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
}

#[test]
fn every_mistake_of_a_mapping_is_reported_at_its_line() {
    let (m, errs) = check(
        "port: 70000\nservice: \"::1\"\naddress: nowhere\nweight: 101\ntls: nope\nidle_timeout_ms: -1\nconnect_timeout_ms: 0\ncircuit_breakers:\n- max_connections: 0\nenable_ipv4: false\n",
    );
    assert!(m.is_none());
    assert_eq!(errs.len(), 9, "{errs:#?}");
    for (i, line) in [4, 5, 6, 7, 8, 9, 10, 12, 13].into_iter().enumerate() {
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("t.yaml:{line}: TCPMapping m: "))),
            "line {line} missing ({i}): {errs:#?}"
        );
    }
}

#[test]
fn families_off_on_the_mapping_is_its_own_error() {
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
    assert!(m.is_none());
    assert_eq!(errs.len(), 1, "{errs:#?}");
}
