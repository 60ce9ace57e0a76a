//! The snapshot type: its JSON (the `/status.json` schema), the page it is inlined into, and
//! the two sources of mapping counters agreeing.

use std::collections::BTreeMap;

use super::*;
use crate::close::{CloseReason, Side};
use crate::metrics::Metrics;
use crate::route::MappingId;
use crate::state::endpoints::LastCheck;

/// A mapping name that is markup and ends a script element if pasted raw.
pub(crate) const HOSTILE: &str = "</script><img src=x onerror=alert(1)>&amp;";

/// A snapshot with one of everything (the admin server's tests serve it too).
pub(crate) fn sample() -> StatusSnapshot {
    let endpoint = EndpointRow {
        address: "10.0.0.1:5432".into(),
        state: "ejected".into(),
        active: 2,
        connect_failures: 7,
        last_check: Some(LastCheck {
            ok: false,
            at_unix_ms: 1_700_000_000_000,
        }),
    };
    StatusSnapshot {
        version: "0.0.0".into(),
        now_unix_ms: 1_700_000_001_000,
        uptime_s: 90,
        workers: WorkersView {
            mode: "processes".into(),
            count: 1,
            processes: vec![WorkerRow {
                id: 0,
                pid: 42,
                generation: 3,
                active_connections: 2,
            }],
        },
        generation: 3,
        ready: true,
        last_reload: Some(ReloadView {
            ok: false,
            generation: 3,
            at_unix_ms: 1_700_000_000_500,
            errors: vec!["a.yaml:3: TCPMapping x: <b>bad</b>".into()],
            warnings: vec![],
        }),
        listeners: vec![ListenerView {
            address: "0.0.0.0:5432".into(),
            proxy_protocol: "off".into(),
            groups: vec![GroupView {
                host: Some("db.example".into()),
                tls_mode: "terminate".into(),
                tls: "terminate(TLSContext db)".into(),
                match_alpn: vec![],
                upstreams: vec![UpstreamView {
                    mapping: HOSTILE.into(),
                    namespace: "default".into(),
                    port: 5432,
                    host: "db.example".into(),
                    service: "db:5432".into(),
                    weight: 100,
                    policy: "round_robin".into(),
                    health_check: true,
                    endpoints: vec![endpoint],
                }],
            }],
        }],
        mappings: vec![MappingTotals {
            mapping: HOSTILE.into(),
            namespace: "default".into(),
            port: 5432,
            host: "db.example".into(),
            active: 2,
            accepted: 10,
            bytes_client_to_upstream: 100,
            bytes_upstream_to_client: 2000,
            connect_failures: 7,
            ended: BTreeMap::from([("client_closed".into(), 8)]),
        }],
        certificates: vec![CertificateView {
            source: "TLSContext db".into(),
            subject: "CN=db.example".into(),
            names: vec!["db.example".into()],
            not_after_unix: 1_700_000_000 + 86_400 * 10,
            days_left: 10,
            expiring: true,
            used_by: vec!["0.0.0.0:5432 db.example".into()],
        }],
    }
}

/// The schema `/status.json` promises (docs/operations.md): every key, with its JSON type.
#[test]
fn the_json_has_the_documented_fields_and_types() {
    let v: serde_json::Value = serde_json::from_slice(&sample().json()).unwrap();
    let types = [
        ("/version", "string"),
        ("/now_unix_ms", "number"),
        ("/uptime_s", "number"),
        ("/workers/mode", "string"),
        ("/workers/count", "number"),
        ("/workers/processes/0/pid", "number"),
        ("/workers/processes/0/active_connections", "number"),
        ("/generation", "number"),
        ("/ready", "bool"),
        ("/last_reload/ok", "bool"),
        ("/last_reload/errors/0", "string"),
        ("/last_reload/warnings", "array"),
        ("/listeners/0/address", "string"),
        ("/listeners/0/proxy_protocol", "string"),
        ("/listeners/0/groups/0/host", "string"),
        ("/listeners/0/groups/0/tls_mode", "string"),
        ("/listeners/0/groups/0/tls", "string"),
        ("/listeners/0/groups/0/match_alpn", "array"),
        ("/listeners/0/groups/0/upstreams/0/mapping", "string"),
        ("/listeners/0/groups/0/upstreams/0/service", "string"),
        ("/listeners/0/groups/0/upstreams/0/weight", "number"),
        ("/listeners/0/groups/0/upstreams/0/policy", "string"),
        ("/listeners/0/groups/0/upstreams/0/health_check", "bool"),
        (
            "/listeners/0/groups/0/upstreams/0/endpoints/0/address",
            "string",
        ),
        (
            "/listeners/0/groups/0/upstreams/0/endpoints/0/state",
            "string",
        ),
        (
            "/listeners/0/groups/0/upstreams/0/endpoints/0/active",
            "number",
        ),
        (
            "/listeners/0/groups/0/upstreams/0/endpoints/0/connect_failures",
            "number",
        ),
        (
            "/listeners/0/groups/0/upstreams/0/endpoints/0/last_check/ok",
            "bool",
        ),
        (
            "/listeners/0/groups/0/upstreams/0/endpoints/0/last_check/at_unix_ms",
            "number",
        ),
        ("/mappings/0/mapping", "string"),
        ("/mappings/0/port", "number"),
        ("/mappings/0/active", "number"),
        ("/mappings/0/accepted", "number"),
        ("/mappings/0/bytes_client_to_upstream", "number"),
        ("/mappings/0/bytes_upstream_to_client", "number"),
        ("/mappings/0/connect_failures", "number"),
        ("/mappings/0/ended/client_closed", "number"),
        ("/certificates/0/source", "string"),
        ("/certificates/0/subject", "string"),
        ("/certificates/0/names/0", "string"),
        ("/certificates/0/not_after_unix", "number"),
        ("/certificates/0/days_left", "number"),
        ("/certificates/0/expiring", "bool"),
        ("/certificates/0/used_by/0", "string"),
    ];
    for (pointer, kind) in types {
        let found = v.pointer(pointer);
        let ok = match kind {
            "string" => found.is_some_and(|x| x.is_string()),
            "number" => found.is_some_and(|x| x.is_number()),
            "bool" => found.is_some_and(|x| x.is_boolean()),
            _ => found.is_some_and(|x| x.is_array()),
        };
        assert!(ok, "{pointer} should be a {kind}: {found:?}");
    }
    // And it reads back into the same snapshot.
    let back: StatusSnapshot = serde_json::from_value(v).unwrap();
    assert_eq!(back, sample());
}

#[test]
fn the_page_inlines_the_snapshot_without_letting_a_name_out_of_its_script() {
    let page = String::from_utf8(sample().page()).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    // One script element: the hostile name did not close it, nor open an element.
    assert_eq!(page.matches("</script>").count(), 1, "{page}");
    assert_eq!(page.matches("<script>").count(), 1);
    assert!(!page.contains("<img"), "{page}");
    assert!(!page.contains("<b>bad"), "{page}");
    // The inlined JSON (between `const INITIAL = ` and `;\n`) parses to the same snapshot.
    let start = page.find("const INITIAL = ").unwrap() + "const INITIAL = ".len();
    let end = start + page[start..].find(";\n").unwrap();
    let back: StatusSnapshot = serde_json::from_str(&page[start..end]).unwrap();
    assert_eq!(back, sample());
    assert_eq!(back.mappings[0].mapping, HOSTILE);
}

#[test]
fn the_page_is_self_contained_and_small() {
    for external in ["src=", "href=\"http", "@import", "url(", "<link"] {
        assert!(!PAGE.contains(external), "{external} in the page");
    }
    assert!(PAGE.len() < 16 * 1024, "the page is {} bytes", PAGE.len());
    // The script never parses strings as markup.
    assert!(!PAGE.contains("innerHTML") && !PAGE.contains("outerHTML"));
    assert!(!PAGE.contains("insertAdjacentHTML") && !PAGE.contains("document.write"));
}

#[test]
fn days_left_and_expiring_follow_not_after() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["a.example".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2030, 1, 15);
    let der = params.self_signed(&key).unwrap().der().to_vec();
    // 2030-01-15T00:00Z is 21929 days after the epoch.
    let not_after = 21_929 * 86_400;
    for (now, days, expiring) in [
        (not_after - 30 * 86_400, 30, false),
        (not_after - 15 * 86_400 + 1, 14, true),
        (not_after - 15 * 86_400, 15, false),
        (not_after - 1, 0, true),
        (not_after + 1, -1, true),
    ] {
        let c = CertificateView::new("TLSContext a", &der, now);
        assert_eq!(c.not_after_unix, not_after);
        assert_eq!((c.days_left, c.expiring), (days, expiring), "now {now}");
        assert_eq!(c.names, ["a.example"]);
    }
    let unreadable = CertificateView::new("TLSContext b", b"not DER", 0);
    assert_eq!(unreadable.subject, "");
    assert!(unreadable.expiring, "an unreadable certificate is flagged");
}

/// The same counts read from this process's registry (in place and through the library's
/// snapshot) and from its OpenMetrics text (a dead worker's last) give the same totals.
#[test]
fn counters_from_the_registry_and_from_the_text_agree() {
    let metrics = Metrics::new();
    let ids = [
        MappingId {
            name: HOSTILE.into(),
            namespace: "default".into(),
            port: 5432,
            host: "db.example".into(),
        },
        MappingId {
            name: "b\"\\\nc".into(),
            namespace: "ns".into(),
            port: 80,
            host: String::new(),
        },
    ];
    for (i, id) in ids.iter().enumerate() {
        let m = metrics.mapping(id);
        for _ in 0..4 + i {
            m.accepted();
        }
        m.ended(CloseReason::ClientClosed, 10, 20 + i as u64);
        m.ended(CloseReason::IoError(Side::Upstream), 1, 0);
        m.ended(CloseReason::IoError(Side::Client), 0, 1);
        metrics.upstream_connect(&m, false, std::time::Duration::ZERO);
    }
    let from_registry = counters::from_snapshot(&metrics.snapshot());
    let from_text = counters::from_openmetrics(&metrics.render_openmetrics());
    assert_eq!(from_registry, from_text);
    assert_eq!(counters::from_metrics(&metrics), from_registry);
    assert_eq!(from_registry.len(), 2);
    let hostile = from_text.iter().find(|m| m.mapping == HOSTILE).unwrap();
    assert_eq!((hostile.accepted, hostile.active), (4, 1));
    assert_eq!(hostile.bytes_client_to_upstream, 11);
    assert_eq!(hostile.bytes_upstream_to_client, 21);
    assert_eq!(hostile.connect_failures, 1);
    assert_eq!(
        hostile.ended,
        BTreeMap::from([("client_closed".into(), 1), ("io_error".into(), 2)])
    );
    let quoted = from_text.iter().find(|m| m.namespace == "ns").unwrap();
    assert_eq!(quoted.mapping, "b\"\\\nc");
    assert_eq!((quoted.accepted, quoted.active), (5, 2));
}

fn totals(mapping: &str, active: i64, accepted: u64, ended: &[(&str, u64)]) -> MappingTotals {
    MappingTotals {
        mapping: mapping.into(),
        namespace: "default".into(),
        port: 80,
        active,
        accepted,
        bytes_client_to_upstream: accepted * 10,
        ended: ended.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
        ..MappingTotals::default()
    }
}

/// Workers' counters add up per mapping (one only a worker knows is kept, in order); a dead
/// worker leaves the newer of its two last views of each counter and no open connections, so
/// the totals do not go backwards when it is replaced.
#[test]
fn workers_counters_sum_and_a_dead_workers_stay() {
    let a = vec![
        totals("a", 1, 3, &[("client_closed", 2)]),
        totals("c", 0, 1, &[]),
    ];
    let b = vec![
        totals("a", 2, 4, &[("client_closed", 1), ("io_error", 1)]),
        totals("b", 1, 1, &[]),
        totals("c", 0, 2, &[]),
    ];
    let sum = counters::sum([a.clone(), b.clone()]);
    let names: Vec<&str> = sum.iter().map(|t| t.mapping.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(
        sum[0],
        totals("a", 3, 7, &[("client_closed", 3), ("io_error", 1)])
    );
    assert_eq!((sum[1].accepted, sum[2].accepted), (1, 3));
    // Worker b dies: its last Status reply said 4 accepted; its last metrics text (a second
    // later) 5 and one more connection ended.
    let text_view = vec![totals("a", 1, 5, &[("client_closed", 2), ("io_error", 1)])];
    let retired = counters::latest(b, text_view);
    assert_eq!(
        retired[0],
        totals("a", 0, 5, &[("client_closed", 2), ("io_error", 1)])
    );
    let after = counters::sum([a, retired]);
    assert_eq!(
        after[0],
        totals("a", 1, 8, &[("client_closed", 4), ("io_error", 1)])
    );
    assert!(
        after
            .iter()
            .zip(&sum)
            .all(|(n, o)| n.accepted >= o.accepted)
    );
    assert!(counters::sum(Vec::<Vec<MappingTotals>>::new()).is_empty());
}

#[test]
fn a_sample_line_parses_with_escapes_and_without_labels() {
    let (name, labels, v) = counters::sample(r#"x_total{a="1",b="q\"\\\n"} 3.5 123"#).unwrap();
    assert_eq!((name, v), ("x_total", 3.5));
    assert_eq!(
        labels,
        [
            ("a".to_string(), "1".to_string()),
            ("b".into(), "q\"\\\n".into())
        ]
    );
    assert_eq!(counters::sample("y 2").unwrap().2, 2.0);
    assert!(counters::sample("# TYPE y counter").is_none());
    assert!(counters::sample(r#"z{a="unterminated} 1"#).is_none());
}
