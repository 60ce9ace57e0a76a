//! The registry's families and their builders: [`super::Metrics::new`] registers the
//! per-mapping families ([`MappingFamilies::register`]), then the process-wide series
//! ([`Globals::register`], one builder per family), then the endpoint families; the order of
//! registration is the order of the exposition.
//!
//! This file only creates and registers; counting is [`super::Metrics`]'s methods.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

use super::latency::Latency;
use super::mapping::{BytesLabels, EndedLabels, MappingLabels, SideLabels};
use super::{PROXY_REJECT_REASONS, Refusal};

/// A single `key="value"` label set for the global families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResultLabel {
    pub(super) result: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ScopeLabel {
    pub(super) scope: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct WhatLabel {
    pub(super) what: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ActorLabel {
    pub(super) actor: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct VersionLabel {
    pub(super) version: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabel {
    pub(super) reason: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TlsRoutedLabels {
    pub(super) tls: &'static str,
    pub(super) host: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TlsLabels {
    pub(super) side: &'static str,
    pub(super) reason: &'static str,
}

/// The per-mapping families (each clone shares the series with the registry).
pub(super) struct MappingFamilies {
    pub(super) accepted: Family<MappingLabels, Counter>,
    pub(super) active: Family<MappingLabels, Gauge>,
    pub(super) ended: Family<EndedLabels, Counter>,
    pub(super) io_errors: Family<SideLabels, Counter>,
    pub(super) bytes: Family<BytesLabels, Counter>,
    pub(super) connect_failures: Family<MappingLabels, Counter>,
    pub(super) connect_latency: Family<MappingLabels, Latency>,
}

impl MappingFamilies {
    /// The per-mapping families, registered in `r`.
    pub(super) fn register(r: &mut Registry) -> Self {
        MappingFamilies {
            accepted: registered(
                r,
                "connections_accepted",
                "Connections accepted, per mapping",
                Family::default(),
            ),
            active: registered(
                r,
                "connections_active",
                "Connections open now, per mapping",
                Family::default(),
            ),
            ended: registered(
                r,
                "connections_ended",
                "Connections ended, per mapping and close reason",
                Family::default(),
            ),
            io_errors: registered(
                r,
                "connections_io_errors",
                "Connections ended with reason io_error, per mapping and the side whose read or write failed (side: client|upstream)",
                Family::default(),
            ),
            bytes: registered(
                r,
                "bytes",
                "Bytes relayed, per mapping and direction",
                Family::default(),
            ),
            connect_failures: registered(
                r,
                "upstream_connect_failures",
                "Failed upstream connect attempts, per mapping",
                Family::default(),
            ),
            connect_latency: registered(
                r,
                "upstream_connect_duration_seconds",
                "Time to connect to an upstream (successful connects), per mapping",
                Family::default(),
            ),
        }
    }
}

/// Registers `metric` in `r` under `name` and hands it back (a clone shares its values
/// with the registry).
fn registered<M: Metric + Clone>(r: &mut Registry, name: &str, help: &str, metric: M) -> M {
    r.register(name, help, metric.clone());
    metric
}

/// The process-wide series (each clone shares its values with the registry).
pub(super) struct Globals {
    pub(super) reload_ok: Counter,
    pub(super) reload_error: Counter,
    pub(super) generation: Gauge<u64, std::sync::atomic::AtomicU64>,
    pub(super) tls_failures: Family<TlsLabels, Counter>,
    pub(super) dns_lookups: Counter,
    pub(super) dns_failures: Counter,
    pub(super) rejected_global: Counter,
    pub(super) rejected_mapping: Counter,
    pub(super) internal_errors: Family<WhatLabel, Counter>,
    pub(super) actor_restarts: Family<ActorLabel, Counter>,
    pub(super) listeners: Gauge,
    pub(super) hello_bytes: Gauge,
    pub(super) proxy_headers: Family<VersionLabel, Counter>,
    pub(super) proxy_rejected: Family<ReasonLabel, Counter>,
    pub(super) tls_routed: Family<TlsRoutedLabels, Counter>,
}

impl Globals {
    /// Every process-wide family, registered in `r` (those with fixed labels with every
    /// series at zero).
    pub(super) fn register(r: &mut Registry) -> Self {
        let (reload_ok, reload_error) = reloads(r);
        let generation = registered(
            r,
            "config_generation",
            "The active config generation",
            Gauge::default(),
        );
        let tls_failures = registered(
            r,
            "tls_handshake_failures",
            "TLS handshake failures, by side (client|upstream) and reason",
            Family::default(),
        );
        let (dns_lookups, dns_failures) = dns(r);
        let (rejected_global, rejected_mapping) = rejections(r);
        let internal_errors = registered(
            r,
            "internal_errors",
            "Caught internal errors (panics), by component",
            Family::default(),
        );
        let actor_restarts = registered(
            r,
            "actor_restarts",
            "Actors restarted after a failure, by actor",
            Family::default(),
        );
        let listeners = registered(r, "listeners", "Listeners bound now", Gauge::default());
        let hello_bytes = registered(
            r,
            "client_hello_bytes_buffered",
            "Bytes held by ClientHello reads in progress (every connection together)",
            Gauge::default(),
        );
        let (proxy_headers, proxy_rejected) = proxy_protocol(r);
        let tls_routed = registered(
            r,
            "tls_routed_connections",
            "TLS connections routed by their ClientHello to a host group, by what is done with the client's TLS (tls: terminate|terminate+originate|passthrough) and the group's host pattern",
            Family::default(),
        );
        Globals {
            reload_ok,
            reload_error,
            generation,
            tls_failures,
            dns_lookups,
            dns_failures,
            rejected_global,
            rejected_mapping,
            internal_errors,
            actor_restarts,
            listeners,
            hello_bytes,
            proxy_headers,
            proxy_rejected,
            tls_routed,
        }
    }
}

/// `tcpmap_config_reloads_total{result}`: the `ok` and `error` series.
fn reloads(r: &mut Registry) -> (Counter, Counter) {
    let reloads: Family<ResultLabel, Counter> = registered(
        r,
        "config_reloads",
        "Config reloads, by result",
        Family::default(),
    );
    let series = |result| reloads.get_or_create(&ResultLabel { result }).clone();
    (series("ok"), series("error"))
}

/// `tcpmap_dns_lookups_total` and `tcpmap_dns_lookup_failures_total`.
fn dns(r: &mut Registry) -> (Counter, Counter) {
    let lookups = registered(r, "dns_lookups", "DNS lookups", Counter::default());
    let failures = registered(
        r,
        "dns_lookup_failures",
        "DNS lookups that failed",
        Counter::default(),
    );
    (lookups, failures)
}

/// `tcpmap_connections_rejected_total{scope}`: the `global` and `mapping` series.
fn rejections(r: &mut Registry) -> (Counter, Counter) {
    let rejected: Family<ScopeLabel, Counter> = registered(
        r,
        "connections_rejected",
        "Connections refused by a limit, by scope (global|mapping)",
        Family::default(),
    );
    let scope = |by: Refusal| {
        let scope = by.as_str();
        rejected.get_or_create(&ScopeLabel { scope }).clone()
    };
    (scope(Refusal::Global), scope(Refusal::Mapping))
}

/// `tcpmap_proxy_protocol_headers_total{version}` and
/// `tcpmap_proxy_protocol_rejected_total{reason}`, every series at zero.
fn proxy_protocol(
    r: &mut Registry,
) -> (Family<VersionLabel, Counter>, Family<ReasonLabel, Counter>) {
    let headers: Family<VersionLabel, Counter> = registered(
        r,
        "proxy_protocol_headers",
        "PROXY protocol headers accepted, by version (v1|v2)",
        Family::default(),
    );
    let rejected: Family<ReasonLabel, Counter> = registered(
        r,
        "proxy_protocol_rejected",
        "Connections closed for their PROXY protocol header, by reason (missing|malformed|too_long|timeout|closed)",
        Family::default(),
    );
    for version in ["v1", "v2"] {
        drop(headers.get_or_create(&VersionLabel { version }));
    }
    for reason in PROXY_REJECT_REASONS {
        drop(rejected.get_or_create(&ReasonLabel { reason }));
    }
    (headers, rejected)
}
