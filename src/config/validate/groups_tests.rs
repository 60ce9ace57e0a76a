use super::*;
use crate::config::raw::Resource;
use crate::config::testutil::resource;
use crate::config::validate::mapping::{MappingEnv, mapping};
use crate::route::Families;
use std::collections::BTreeSet;

fn m(name: &str, attrs: &str) -> Mapping {
    let y = format!("apiVersion: ambassador/v1\nkind: TCPMapping\nname: {name}\n{attrs}");
    let Resource::Mapping(raw) = resource(&y) else {
        panic!()
    };
    let ctx: BTreeSet<String> = ["ctx".to_string()].into();
    let env = MappingEnv {
        namespace: "default",
        module: Families::default(),
        contexts: &ctx,
        max_connections: None,
        own_namespace: false,
    };
    let (m, errs) = mapping(&raw, &env);
    assert!(errs.is_empty(), "{errs:?}");
    m.unwrap()
}

#[test]
fn groups_by_address_port_host_in_order() {
    let ms = vec![
        m("a", "port: 1\nservice: x\n"),
        m("b", "port: 1\nhost: h\nservice: x\n"),
        m("c", "port: 1\nservice: y\n"),
        m("d", "port: 1\naddress: 127.0.0.1\nservice: y\n"),
        m("e", "port: 1\nhost: H\nservice: z\n"),
    ];
    assert_eq!(group(&ms), vec![vec![0, 2], vec![1, 4], vec![3]]);
}

#[test]
fn agreement_errors_name_both_mappings() {
    let ms = vec![
        m("a", "port: 1\nservice: x\n"),
        m(
            "b",
            "port: 1\nservice: y\ntls: true\nidle_timeout_ms: 500\n",
        ),
        m("c", "port: 1\nservice: z\n"),
    ];
    let errs: Vec<String> = check_agreement(&ms, &[0, 1, 2])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "t.yaml:6: TCPMapping b: `tls` is true here but false in TCPMapping a (t.yaml:1)"
        ),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("t.yaml:7: TCPMapping b: `idle_timeout_ms` is 500 here but unset"),
        "{errs:?}"
    );
    let fam = vec![
        m("a", "port: 1\nservice: x\n"),
        m("b", "port: 1\nservice: y\nenable_ipv6: true\n"),
    ];
    assert_eq!(check_agreement(&fam, &[0, 1]).len(), 1);
    let same = vec![
        m("a", "port: 1\nservice: x\ntls: true\n"),
        m("b", "port: 1\nservice: https://y\n"),
    ];
    assert!(check_agreement(&same, &[0, 1]).is_empty());
}

#[test]
fn host_certificate_by_specificity_then_host_before_context() {
    let ctx_hosts = vec!["a.example.com".to_string(), "*.example.com".to_string()];
    let other = vec!["*.b.example.com".to_string()];
    let ctxs: Vec<&[String]> = vec![&ctx_hosts, &other];
    assert_eq!(
        find_cert("a.example.com", &[], &ctxs),
        Some(CertSource::Context(0))
    );
    assert_eq!(
        find_cert("x.b.example.com", &[], &ctxs),
        Some(CertSource::Context(1))
    );
    assert_eq!(find_cert("example.com", &[], &ctxs), None);
    // An exact TLSContext entry beats a wildcard Host; at equal specificity the Host wins.
    assert_eq!(
        find_cert("a.example.com", &["*.example.com"], &ctxs),
        Some(CertSource::Context(0))
    );
    assert_eq!(
        find_cert("c.example.com", &["*.example.com"], &ctxs),
        Some(CertSource::Host(0))
    );
    assert_eq!(
        find_cert("a.example.com", &["a.example.com"], &ctxs),
        Some(CertSource::Host(0))
    );
    // The case: a catch-all Host never serves a name a TLSContext lists.
    assert_eq!(
        find_cert("x.b.example.com", &["*"], &ctxs),
        Some(CertSource::Context(1))
    );
    assert_eq!(
        find_cert("anything", &["x", "*"], &ctxs),
        Some(CertSource::Host(1))
    );
    assert_eq!(find_cert("x", &["*", "x"], &[]), Some(CertSource::Host(1)));
}

#[test]
fn host_without_certificate_is_an_error_for_that_mapping() {
    let mm = m("a", "port: 1\nhost: nocert\nservice: x\n");
    let e = check_host_cert(&mm, None).unwrap();
    assert!(
        e.to_string()
            .starts_with("t.yaml:5: TCPMapping a: no certificate for host `nocert`"),
        "{e}"
    );
    assert!(check_host_cert(&mm, Some(CertSource::Context(0))).is_none());
    assert!(check_host_cert(&m("b", "port: 1\nservice: x\n"), None).is_none());
}

#[test]
fn duplicate_names_warn_at_the_second_naming_the_first() {
    let a = m("same", "port: 1\nservice: x\n");
    let b = m("same", "port: 2\nservice: x\n");
    let c = m("other", "port: 3\nservice: x\n");
    let w = duplicate_names([
        ("same".to_string(), &a.loc),
        ("same".to_string(), &b.loc),
        ("other".to_string(), &c.loc),
    ]);
    assert_eq!(w.len(), 1);
    assert!(!w[0].is_error());
    assert!(
        w[0].message.contains("also defined at t.yaml:1") && w[0].message.contains("both are kept")
    );
}
