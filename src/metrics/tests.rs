//! Unit tests of the metrics registry: rendered text, independence, no double counting.

use std::time::Duration;

use super::text::check::{self, Sample};
use super::*;

fn id(name: &str, port: u16, host: &str) -> MappingId {
    MappingId {
        name: name.to_string(),
        namespace: "default".to_string(),
        port,
        host: host.to_string(),
    }
}

fn parsed(m: &Metrics) -> Vec<Sample> {
    let text = m.render();
    match check::parse(&text) {
        Ok(s) => s,
        Err(e) => panic!("render() is not valid Prometheus text: {e}\n{text}"),
    }
}

fn labels<'a>(id: &'a MappingId, port: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("mapping", id.name.as_str()),
        ("namespace", id.namespace.as_str()),
        ("port", port),
        ("host", id.host.as_str()),
    ]
}

#[test]
fn close_reason_index_matches_all() {
    for (i, r) in CloseReason::ALL.iter().enumerate() {
        assert_eq!(mapping::reason_index(*r), i, "{r}");
    }
}

/// An I/O error keeps its one `io_error` series (dashboards unchanged) and says its side in
/// `tcpmap_connections_io_errors_total{side}`; the snapshot splits it by side.
#[test]
fn an_io_error_is_counted_once_under_io_error_and_once_under_its_side() {
    let metrics = Metrics::new();
    let a = id("db", 5432, "");
    let m = metrics.mapping(&a);
    for _ in 0..3 {
        m.accepted();
    }
    m.ended(CloseReason::IoError(Side::Upstream), 0, 0);
    m.ended(CloseReason::IoError(Side::Upstream), 0, 0);
    m.ended(CloseReason::IoError(Side::Client), 0, 0);
    let text = metrics.render();
    let labels = "mapping=\"db\",namespace=\"default\",port=\"5432\",host=\"\"";
    for line in [
        format!("tcpmap_connections_ended_total{{{labels},reason=\"io_error\"}} 3"),
        format!("tcpmap_connections_io_errors_total{{{labels},side=\"upstream\"}} 2"),
        format!("tcpmap_connections_io_errors_total{{{labels},side=\"client\"}} 1"),
    ] {
        assert!(text.contains(&line), "missing {line}:\n{text}");
    }
    assert_eq!(text.matches("reason=\"io_error\"}").count(), 1, "{text}");
    let snap = metrics.snapshot();
    let ended = &snap.mappings[0].ended;
    assert_eq!(ended[&CloseReason::IoError(Side::Upstream)], 2);
    assert_eq!(ended[&CloseReason::IoError(Side::Client)], 1);
}

#[test]
fn render_has_expected_lines_after_updates() {
    let metrics = Metrics::new();
    let a = id("db", 5432, "");
    let m = metrics.mapping(&a);
    m.accepted();
    m.accepted();
    m.ended(CloseReason::ClientClosed, 10, 20);
    metrics.upstream_connect(&m, true, Duration::from_millis(2));
    metrics.upstream_connect(&m, false, Duration::from_secs(1));
    metrics.reload(true);
    metrics.reload(false);
    metrics.reload(false);
    metrics.set_generation(7);
    metrics.tls_handshake_failure(Side::Client, HandshakeFailure::TimeoutOrEof);
    metrics.dns_lookup(true);
    metrics.dns_lookup(false);
    metrics.rejected(Refusal::Global);
    metrics.internal_error("connection");
    metrics.actor_restart("resolver");
    metrics.listeners(3);

    let text = metrics.render();
    for line in [
        "# TYPE tcpmap_connections_accepted_total counter",
        "tcpmap_connections_accepted_total{mapping=\"db\",namespace=\"default\",port=\"5432\",host=\"\"} 2",
        "tcpmap_connections_active{mapping=\"db\",namespace=\"default\",port=\"5432\",host=\"\"} 1",
        "tcpmap_connections_ended_total{mapping=\"db\",namespace=\"default\",port=\"5432\",host=\"\",reason=\"client_closed\"} 1",
        "tcpmap_connections_ended_total{mapping=\"db\",namespace=\"default\",port=\"5432\",host=\"\",reason=\"idle_timeout\"} 0",
        "tcpmap_bytes_total{mapping=\"db\",namespace=\"default\",port=\"5432\",host=\"\",direction=\"client_to_upstream\"} 10",
        "tcpmap_bytes_total{mapping=\"db\",namespace=\"default\",port=\"5432\",host=\"\",direction=\"upstream_to_client\"} 20",
        "tcpmap_upstream_connect_failures_total{mapping=\"db\",namespace=\"default\",port=\"5432\",host=\"\"} 1",
        "# TYPE tcpmap_upstream_connect_duration_seconds histogram",
        "tcpmap_upstream_connect_duration_seconds_count{mapping=\"db\",namespace=\"default\",port=\"5432\",host=\"\"} 1",
        "tcpmap_upstream_connect_duration_seconds_bucket{le=\"0.0025\",mapping=\"db\",namespace=\"default\",port=\"5432\",host=\"\"} 1",
        "tcpmap_upstream_connect_duration_seconds_bucket{le=\"0.001\",mapping=\"db\",namespace=\"default\",port=\"5432\",host=\"\"} 0",
        "tcpmap_config_reloads_total{result=\"ok\"} 1",
        "tcpmap_config_reloads_total{result=\"error\"} 2",
        "tcpmap_config_generation 7",
        "tcpmap_tls_handshake_failures_total{side=\"client\",reason=\"timeout_or_eof\"} 1",
        "tcpmap_dns_lookups_total 2",
        "tcpmap_dns_lookup_failures_total 1",
        "tcpmap_connections_rejected_total{scope=\"global\"} 1",
        "tcpmap_connections_rejected_total{scope=\"mapping\"} 0",
        "tcpmap_internal_errors_total{what=\"connection\"} 1",
        "tcpmap_actor_restarts_total{actor=\"resolver\"} 1",
        "tcpmap_listeners 3",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in:\n{text}"
        );
    }
    assert!(!text.contains("# EOF"), "OpenMetrics-only line leaked");
    assert!(!text.contains("# UNIT"), "OpenMetrics-only line leaked");
    parsed(&metrics);
}

#[test]
fn fresh_registry_renders_valid_text_with_zeroed_globals() {
    let metrics = Metrics::new();
    let s = parsed(&metrics);
    assert_eq!(check::value(&s, "tcpmap_config_generation", &[]), Some(0.0));
    assert_eq!(
        check::value(&s, "tcpmap_config_reloads_total", &[("result", "error")]),
        Some(0.0)
    );
    assert_eq!(check::value(&s, "tcpmap_dns_lookups_total", &[]), Some(0.0));
}

#[test]
fn two_mappings_are_independent() {
    let metrics = Metrics::new();
    let a = id("a", 8443, "a.example.com");
    let b = id("b", 8443, "b.example.com");
    let ma = metrics.mapping(&a);
    let mb = metrics.mapping(&b);
    for _ in 0..3 {
        ma.accepted();
    }
    mb.accepted();
    mb.ended(CloseReason::IdleTimeout, 1, 2);
    assert_eq!(ma.active(), 3);
    assert_eq!(mb.active(), 0);

    let s = parsed(&metrics);
    let name = "tcpmap_connections_accepted_total";
    assert_eq!(check::value(&s, name, &labels(&a, "8443")), Some(3.0));
    assert_eq!(check::value(&s, name, &labels(&b, "8443")), Some(1.0));
    let ended = "tcpmap_connections_ended_total";
    let mut want: Vec<_> = labels(&a, "8443").to_vec();
    want.push(("reason", "idle_timeout"));
    assert_eq!(check::value(&s, ended, &want), Some(0.0));
    let mut want: Vec<_> = labels(&b, "8443").to_vec();
    want.push(("reason", "idle_timeout"));
    assert_eq!(check::value(&s, ended, &want), Some(1.0));
}

#[test]
fn same_id_returns_same_handles_across_lookups() {
    let metrics = Metrics::new();
    let a = id("a", 1, "");
    let first = metrics.mapping(&a);
    assert!(first.try_acquire(Some(1)));
    let again = metrics.mapping(&a);
    assert!(Arc::ptr_eq(&first, &again));
    assert!(!again.try_acquire(Some(1)), "slot must survive a re-lookup");
    again.release();
    assert!(first.try_acquire(Some(1)));
}

#[test]
fn circuit_breaker_slots_count_and_never_underflow() {
    let metrics = Metrics::new();
    let m = metrics.mapping(&id("a", 1, ""));
    assert!(m.try_acquire(Some(2)));
    assert!(m.try_acquire(Some(2)));
    assert!(!m.try_acquire(Some(2)));
    assert!(m.try_acquire(None));
    assert_eq!(m.in_flight().load(std::sync::atomic::Ordering::Relaxed), 3);
    for _ in 0..5 {
        m.release();
    }
    assert_eq!(m.in_flight().load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn add_bytes_then_ended_remainder_is_not_double_counted() {
    let metrics = Metrics::new();
    let m = metrics.mapping(&id("a", 1, ""));
    m.accepted();
    m.add_bytes(100, 5);
    m.add_bytes(50, 0);
    m.ended(CloseReason::UpstreamClosed, 7, 1);
    let snap = metrics.snapshot();
    let a = &snap.mappings[0];
    assert_eq!(a.bytes_client_to_upstream, 157);
    assert_eq!(a.bytes_upstream_to_client, 6);
}

#[test]
fn snapshot_reports_globals() {
    let metrics = Metrics::new();
    metrics.reload(true);
    metrics.reload(false);
    metrics.set_generation(4);
    metrics.listeners(2);
    metrics.dns_lookup(false);
    metrics.rejected(Refusal::Mapping);
    let s = metrics.snapshot();
    assert_eq!(
        (s.reloads_ok, s.reloads_error, s.generation, s.listeners),
        (1, 1, 4, 2)
    );
    assert_eq!((s.dns_lookups, s.dns_failures), (1, 1));
    assert_eq!((s.rejected_global, s.rejected_mapping), (0, 1));
}

#[test]
fn hostile_label_values_are_escaped() {
    let metrics = Metrics::new();
    let evil = MappingId {
        name: "a\"b\\c\nd".to_string(),
        namespace: "ns".to_string(),
        port: 9,
        host: String::new(),
    };
    metrics.mapping(&evil).accepted();
    let s = parsed(&metrics);
    assert_eq!(
        check::value(
            &s,
            "tcpmap_connections_accepted_total",
            &[("mapping", "a\"b\\c\nd")]
        ),
        Some(1.0)
    );
}

#[test]
fn checker_rejects_malformed_text() {
    assert!(check::parse("foo 1\n").is_err(), "no TYPE");
    assert!(check::parse("# TYPE foo gauge\nfoo{a=\"x} 1\n").is_err());
    assert!(check::parse("# TYPE foo gauge\nfoo{a=\"x\"}\n").is_err());
    assert!(check::parse("# TYPE foo gauge\nfoo{a=\"x\"} 1\n").is_ok());
    assert!(check::parse("# TYPE foo counter\nfoo_total 1\n").is_err());
}

#[test]
fn openmetrics_rendering_keeps_eof() {
    let metrics = Metrics::new();
    assert!(metrics.render_openmetrics().ends_with("# EOF\n"));
}
