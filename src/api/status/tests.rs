//! Gathering the status snapshot from a route table, counters and endpoint sets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::route::{Families, MappingId, RouteTable, ServiceHost, Upstream};
use crate::state::endpoints::EndpointRow;

pub(super) fn upstream(name: &str, port: u16, service_port: u16, share: u8) -> Upstream {
    Upstream {
        mapping: Arc::new(MappingId {
            name: name.into(),
            namespace: "default".into(),
            port,
            host: String::new(),
        }),
        host: ServiceHost::Ip([10, 0, 0, 1].into()),
        port: service_port,
        share,
        connect_timeout: Duration::from_secs(3),
        max_connections: None,
        send_proxy: None,
        endpoints: Default::default(),
        refused: None,
    }
}

/// `listeners` raw listeners on 127.0.0.1:10000.., each with `per` weighted mappings.
pub(super) fn table(listeners: u16, per: u16) -> RouteTable {
    let mut table = RouteTable::default();
    for l in 0..listeners {
        let port = 10_000 + l;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let ups = (0..per)
            .map(|i| {
                let share = if i == 0 { 100 - (per - 1) as u8 } else { 1 };
                upstream(&format!("m{l}-{i}"), port, 20_000 + i, share)
            })
            .collect();
        let group = Group::new(None, ups, None, None, Families::V4);
        table.listener_at(addr, Default::default()).plain = Some(Arc::new(group));
    }
    table.set_generation(4);
    table
}

pub(super) fn facts(mappings: Vec<MappingTotals>, sets: Vec<EndpointSet>) -> Facts {
    Facts {
        uptime_s: 5,
        now_unix_ms: 1_700_000_000_000,
        workers: WorkersView {
            mode: "threads".into(),
            count: 2,
            processes: Vec::new(),
        },
        mappings,
        sets,
    }
}

#[test]
fn each_upstream_gets_its_own_endpoint_set_and_weight() {
    let snap = Snapshot {
        table: Arc::new(table(1, 2)),
        ready: true,
        last_reload: None,
    };
    let row = |addr: &str| EndpointRow {
        address: addr.into(),
        state: "healthy".into(),
        active: 1,
        connect_failures: 0,
        last_check: None,
    };
    let set = |mapping: &str, service: &str, addr: &str| EndpointSet {
        mapping: mapping.into(),
        namespace: "default".into(),
        port: 10_000,
        host: String::new(),
        service: service.into(),
        endpoints: vec![row(addr)],
    };
    let sets = vec![
        set("m0-1", "10.0.0.1:20001", "10.0.0.1:20001"),
        set("m0-0", "10.0.0.1:20000", "10.0.0.1:20000"),
        // Same mapping, another service: not this upstream's.
        set("m0-0", "10.0.0.1:1", "10.0.0.1:1"),
    ];
    let s = build(&snap, facts(Vec::new(), sets));
    assert_eq!(s.generation, 4);
    assert_eq!(s.listeners.len(), 1);
    let g = &s.listeners[0].groups[0];
    assert_eq!((g.host.as_deref(), g.tls_mode.as_str()), (None, "raw"));
    let ups: Vec<(&str, u8, &str)> = g
        .upstreams
        .iter()
        .map(|u| {
            (
                u.mapping.as_str(),
                u.weight,
                u.endpoints[0].address.as_str(),
            )
        })
        .collect();
    assert_eq!(
        ups,
        [
            ("m0-0", 99, "10.0.0.1:20000"),
            ("m0-1", 1, "10.0.0.1:20001")
        ]
    );
    assert!(s.certificates.is_empty());
}

/// One plain listener on 127.0.0.1:10000 serving `ups` through a group that originates TLS
/// with context `context`'s client certificate (self-signed for `client.example`, expired
/// 2023-11-24).
pub(super) fn originating_table(context: &str, ups: Vec<Upstream>) -> RouteTable {
    use crate::route::{Origination, OriginationMode};
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["client.example".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2023, 11, 24);
    let der = params.self_signed(&key).unwrap().der().clone();
    let config =
        crate::config::tls::client_config(None, &crate::config::tls::TlsParams::default(), None)
            .unwrap();
    let origination = Origination {
        mode: OriginationMode::Context(context.into()),
        sni: None,
        verify: false,
        config,
        certificate: Some(der),
    };
    let group = Group::new(None, ups, Some(origination), None, Families::V4);
    let mut table = RouteTable::default();
    table
        .listener_at(
            SocketAddr::from(([127, 0, 0, 1], 10_000)),
            Default::default(),
        )
        .plain = Some(Arc::new(group));
    table
}

/// A group originating TLS with a context's client certificate lists that certificate.
#[test]
fn an_origination_client_certificate_is_listed() {
    let table = originating_table("up", vec![upstream("m", 10_000, 443, 100)]);
    let snap = Snapshot {
        table: Arc::new(table),
        ready: true,
        last_reload: None,
    };
    let s = build(&snap, facts(Vec::new(), Vec::new()));
    assert_eq!(s.listeners[0].groups[0].tls_mode, "originate");
    assert_eq!(s.certificates.len(), 1, "{:?}", s.certificates);
    let c = &s.certificates[0];
    assert_eq!(c.source, "TLSContext up (client certificate)");
    assert_eq!(c.names, ["client.example"]);
    assert_eq!(c.used_by, ["127.0.0.1:10000 * → upstream"]);
    // now is 2023-11-14T22:13:20Z: ten whole days (and some hours) before notAfter.
    assert_eq!((c.days_left, c.expiring), (9, true));
}
