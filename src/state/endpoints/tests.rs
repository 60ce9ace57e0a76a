#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::*;
use crate::metrics::Metrics;
use crate::route::balance::Policy;
use crate::route::{Families, MappingId, ServiceHost};

/// The endpoint set of mapping `m` for `svc.test:80`, without health checks.
pub(super) fn key() -> EndpointKey {
    EndpointKey {
        mapping: MappingId {
            name: "m".into(),
            namespace: "default".into(),
            port: 1,
            host: String::new(),
        },
        host: ServiceHost::Dns("svc.test".into()),
        port: 80,
        families: Families::V4,
        health: None,
    }
}

fn state() -> Arc<UpstreamState> {
    let reg = EndpointRegistry::new(Metrics::new());
    // The registry holds only a Weak: the state lives as long as the test holds it.
    reg.state(key())
}

fn addrs(n: u8) -> Vec<SocketAddr> {
    (1..=n)
        .map(|i| SocketAddr::from(([127, 0, 0, i], 80)))
        .collect()
}

#[test]
fn five_failures_eject_and_a_success_clears() {
    let s = state();
    let list = s.refresh(&addrs(3), None);
    for _ in 0..4 {
        s.record(&list, 0, false);
    }
    assert_eq!(list.endpoints[0].state(s.now_ms()), EndpointState::Healthy);
    s.record(&list, 0, false);
    assert_eq!(list.endpoints[0].state(s.now_ms()), EndpointState::Ejected);
    let ip = "10.0.0.1".parse().unwrap();
    for _ in 0..20 {
        assert_ne!(
            s.pick(&list, Policy::RoundRobin, ip, &[]),
            Some(0),
            "an ejected endpoint is skipped"
        );
    }
    s.record(&list, 0, true);
    assert_eq!(list.endpoints[0].state(s.now_ms()), EndpointState::Healthy);
}

#[test]
fn a_refresh_keeps_the_state_of_known_addresses() {
    let s = state();
    let list = s.refresh(&addrs(2), None);
    for _ in 0..5 {
        s.record(&list, 1, false);
    }
    let mut more = addrs(3);
    more.reverse();
    let list = s.refresh(&more, None);
    let two = list
        .endpoints
        .iter()
        .find(|e| e.addr == addrs(2)[1])
        .unwrap();
    assert_eq!(two.state(s.now_ms()), EndpointState::Ejected);
}

#[test]
fn per_ip_slots_are_bounded_and_entries_go_at_zero() {
    let s = state();
    let a: IpAddr = "10.0.0.1".parse().unwrap();
    let b: IpAddr = "10.0.0.2".parse().unwrap();
    let held: Vec<_> = (0..3).map(|_| s.take_client_slot(a, 3).unwrap()).collect();
    assert!(s.take_client_slot(a, 3).is_none());
    let other = s.take_client_slot(b, 3).unwrap();
    assert_eq!(s.clients_counted(), 2);
    drop(held);
    drop(other);
    assert_eq!(s.clients_counted(), 0, "no entry outlives its connections");
    for i in 0..10_000u32 {
        let ip = IpAddr::from(std::net::Ipv4Addr::from(i));
        drop(s.take_client_slot(ip, 1).unwrap());
    }
    assert_eq!(s.clients_counted(), 0);
}

#[test]
fn least_request_counts_held_loads() {
    let s = state();
    let list = s.refresh(&addrs(3), None);
    let ip = "10.0.0.1".parse().unwrap();
    let _busy: Vec<_> = (0..3).map(|_| s.hold(&list, 0).unwrap()).collect();
    for _ in 0..10 {
        assert_ne!(s.pick(&list, Policy::LeastRequest, ip, &[]), Some(0));
    }
}

#[test]
fn a_new_set_with_a_health_check_wakes_the_health_actor_and_others_do_not() {
    use crate::route::balance::HealthCheck;
    use futures_lite::future::{block_on, poll_once};
    use std::time::Duration;
    let reg = EndpointRegistry::new(Metrics::new());
    let mut added = reg.checks_added();
    let _plain = reg.state(key());
    assert!(
        block_on(poll_once(&mut added)).is_none(),
        "a set without a health check leaves the actor asleep"
    );
    let checked = EndpointKey {
        health: Some(HealthCheck {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            unhealthy_threshold: 2,
            healthy_threshold: 1,
        }),
        ..key()
    };
    let _held = reg.state(checked.clone());
    assert!(
        block_on(poll_once(&mut added)).is_some(),
        "a new checked set ends the actor's sleep"
    );
    let mut again = reg.checks_added();
    let _same = reg.state(checked);
    assert!(
        block_on(poll_once(&mut again)).is_none(),
        "a set already held (a reload keeping it) is not new"
    );
}
