#![allow(clippy::unwrap_used)]
use super::*;
use crate::config::raw::Resource;
use crate::config::testutil::resource;

fn raw(attrs: &str) -> RawMapping {
    let y = format!(
        "apiVersion: ambassador/v1\nkind: TCPMapping\nname: m\nport: 1\nservice: s\n{attrs}"
    );
    match resource(&y) {
        Resource::Mapping(m) => m,
        other => panic!("{other:?}"),
    }
}

fn module(config: &str) -> RawModule {
    let y = format!("apiVersion: ambassador/v1\nkind: Module\nname: ambassador\nconfig:\n{config}");
    match resource(&y) {
        Resource::Module(m) => m,
        other => panic!("{other:?}"),
    }
}

fn check(attrs: &str) -> Result<EndpointPolicy, String> {
    let (p, errs) = policy(&raw(attrs), &EndpointDefaults::default());
    p.ok_or_else(|| {
        errs.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[test]
fn defaults_are_round_robin_three_attempts_no_checks_no_limit() {
    let p = check("").unwrap();
    assert_eq!(p, EndpointPolicy::default());
    assert_eq!(p.load_balancer.policy, Policy::RoundRobin);
    assert_eq!(p.max_connect_attempts, 3);
}

#[test]
fn hash_policies_need_source_ip() {
    let e = check("load_balancer: {policy: ring_hash}").unwrap_err();
    assert!(e.contains("needs `source_ip: true`"), "{e}");
    assert!(
        e.contains(":6: TCPMapping m:"),
        "the line of load_balancer: {e}"
    );
    let e = check("load_balancer: {policy: maglev, source_ip: false}").unwrap_err();
    assert!(e.contains("maglev needs"), "{e}");
    let p = check("load_balancer: {policy: maglev, source_ip: true}").unwrap();
    assert_eq!(p.load_balancer.policy, Policy::Maglev);
}

#[test]
fn unknown_policies_and_http_hash_keys_are_errors() {
    let e = check("load_balancer: {policy: least_conn}").unwrap_err();
    assert!(
        e.contains("unknown load_balancer.policy `least_conn`"),
        "{e}"
    );
    let e = check("load_balancer: {policy: ring_hash, cookie: {name: x}}").unwrap_err();
    assert!(e.contains("only on source_ip"), "{e}");
    let c = crate::config::testutil::classify(
        "apiVersion: ambassador/v1\nkind: TCPMapping\nname: m\nload_balancer: round_robin\n",
    );
    assert!(
        c.problems[0].to_string().contains("must be a mapping"),
        "{:?}",
        c.problems
    );
}

#[test]
fn attempts_health_checks_and_per_ip_limits_are_checked() {
    assert!(check("max_connect_attempts: 0").is_err());
    assert!(check("max_connect_attempts: 11").is_err());
    assert_eq!(
        check("max_connect_attempts: 1")
            .unwrap()
            .max_connect_attempts,
        1
    );
    assert!(check("max_connections_per_ip: 0").is_err());
    assert_eq!(
        check("max_connections_per_ip: 3")
            .unwrap()
            .max_connections_per_ip,
        Some(3)
    );
    let hc = check("health_check: {interval_ms: 200}")
        .unwrap()
        .health_check
        .unwrap();
    assert_eq!(hc.interval, Duration::from_millis(200));
    assert_eq!(
        hc.timeout,
        Duration::from_millis(200),
        "timeout defaults to at most the interval"
    );
    assert_eq!((hc.unhealthy_threshold, hc.healthy_threshold), (3, 2));
    // A timeout above the interval is accepted (Envoy and Kubernetes probes accept it).
    let hc = check("health_check: {interval_ms: 100, timeout_ms: 500}")
        .unwrap()
        .health_check
        .unwrap();
    assert_eq!(
        (hc.interval, hc.timeout),
        (Duration::from_millis(100), Duration::from_millis(500))
    );
    let e = check("health_check: {unhealthy_threshold: 0}").unwrap_err();
    assert!(e.contains("at least 1"), "{e}");
}

#[test]
fn the_module_gives_defaults_that_mappings_override() {
    let (d, errs) = module_defaults(&[module(
        "  load_balancer: {policy: least_request}\n  max_connections_per_ip: 7\n",
    )]);
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(d.load_balancer.policy, Policy::LeastRequest);
    let (p, _) = policy(&raw(""), &d);
    let p = p.unwrap();
    assert_eq!(p.load_balancer.policy, Policy::LeastRequest);
    assert_eq!(p.max_connections_per_ip, Some(7));
    let (p, _) = policy(
        &raw("load_balancer: {policy: random}\nmax_connections_per_ip: 2"),
        &d,
    );
    let p = p.unwrap();
    assert_eq!(p.load_balancer.policy, Policy::Random);
    assert_eq!(p.max_connections_per_ip, Some(2));
    let (_, errs) = module_defaults(&[module("  load_balancer: {policy: ring_hash}\n")]);
    assert!(
        errs[0].to_string().contains("Module ambassador"),
        "{errs:?}"
    );
}
