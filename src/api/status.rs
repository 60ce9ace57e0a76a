//! Gathers the status page's [`StatusSnapshot`] from what the proxy holds: the Supervisor's
//! snapshot (route table, generation, last reload), the mapping counters and the endpoint
//! sets — this process's own (threads, read in place), or totals over every worker
//! (`--workers N`: each worker's typed counters and endpoint sets from its `Status` reply,
//! plus what dead workers left) — and the certificates the table's terminating groups present.

#[cfg(test)]
mod bench;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::actors::Snapshot;
use crate::actors::supervisor::{Status, ThreadsView};
use crate::admin::status::{
    CertificateView, GroupView, ListenerView, MappingTotals, ReloadView, StatusSnapshot,
    UpstreamView, WorkerRow, WorkersView, counters,
};
use crate::metrics::Metrics;
use crate::route::{Group, HostGroup, Listener, OriginationMode, Upstream};
use crate::state::endpoints::{EndpointRegistry, EndpointSet, merge_reports, unix_ms};
use crate::workers::pool::{PoolHandle, PoolStatus};

/// What the status page reads (all shared, cheap to clone).
#[derive(Clone)]
pub(super) struct StatusSource {
    pub(super) started: Instant,
    pub(super) status: Arc<Status>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) endpoints: Arc<EndpointRegistry>,
    pub(super) pool: Option<PoolHandle>,
    pub(super) threads: Option<Arc<ThreadsView>>,
}

impl StatusSource {
    /// The snapshot now (asks every worker when there are worker processes).
    pub(super) async fn snapshot(&self) -> StatusSnapshot {
        let (workers, mappings, sets) = match &self.pool {
            Some(pool) => {
                let PoolStatus {
                    workers: mut list,
                    retired,
                } = pool.status_page().await;
                let own = counters::from_metrics(&self.metrics);
                let each = list.iter_mut().map(|w| std::mem::take(&mut w.mappings));
                let mappings = counters::sum(std::iter::once(own).chain(each).chain([retired]));
                let sets = merge_reports(
                    list.iter_mut()
                        .flat_map(|w| std::mem::take(&mut w.endpoints)),
                );
                let processes: Vec<WorkerRow> = list
                    .iter()
                    .map(|w| WorkerRow {
                        id: w.id,
                        pid: w.pid,
                        generation: w.generation,
                        active_connections: w.active_connections,
                    })
                    .collect();
                let workers = WorkersView {
                    mode: "processes".into(),
                    count: processes.len(),
                    processes,
                };
                (workers, mappings, sets)
            }
            None => {
                let workers = WorkersView {
                    mode: "threads".into(),
                    count: self.threads.as_ref().map_or(1, |t| t.connections().len()),
                    processes: Vec::new(),
                };
                let mappings = counters::from_metrics(&self.metrics);
                (workers, mappings, self.endpoints.report())
            }
        };
        build(
            &self.status.get(),
            Facts {
                uptime_s: self.started.elapsed().as_secs(),
                now_unix_ms: unix_ms(),
                workers,
                mappings,
                sets,
            },
        )
    }
}

/// What [`build`] takes besides the Supervisor's snapshot.
pub(super) struct Facts {
    pub(super) uptime_s: u64,
    pub(super) now_unix_ms: u64,
    pub(super) workers: WorkersView,
    pub(super) mappings: Vec<MappingTotals>,
    pub(super) sets: Vec<EndpointSet>,
}

/// The snapshot of `snap` with `facts` (pure: unit-tested without a proxy).
pub(super) fn build(snap: &Snapshot, facts: Facts) -> StatusSnapshot {
    let now_unix_s = (facts.now_unix_ms / 1000) as i64;
    // Each upstream finds its set by binary search (sorted already when merged: then this
    // sort is one pass).
    let mut sets: Vec<&EndpointSet> = facts.sets.iter().collect();
    sets.sort_by(|a, b| a.key().cmp(&b.key()));
    let mut certificates: BTreeMap<(String, Vec<u8>), CertificateView> = BTreeMap::new();
    let listeners = snap
        .table
        .listeners()
        .values()
        .map(|l| {
            let mut add = |source: &str, der: &[u8], user: String| {
                let cert = certificates
                    .entry((source.to_string(), der.to_vec()))
                    .or_insert_with(|| CertificateView::new(source, der, now_unix_s));
                cert.used_by.push(user);
            };
            for (g, hg) in l.groups_with_hosts() {
                let host = g.host.as_deref().unwrap_or("*");
                let term = hg.and_then(|h| h.termination());
                if let Some((t, der)) = term.and_then(|t| Some((t, t.certificate.as_ref()?))) {
                    add(&t.source, der, format!("{} {host}", l.addr));
                }
                let orig = g.origination.as_ref();
                if let Some((OriginationMode::Context(name), Some(der))) =
                    orig.map(|o| (&o.mode, o.certificate.as_ref()))
                {
                    let source = format!("TLSContext {name} (client certificate)");
                    add(&source, der, format!("{} {host} → upstream", l.addr));
                }
            }
            listener(l, &sets)
        })
        .collect();
    StatusSnapshot {
        version: env!("CARGO_PKG_VERSION").to_string(),
        now_unix_ms: facts.now_unix_ms,
        uptime_s: facts.uptime_s,
        workers: facts.workers,
        generation: snap.generation(),
        ready: snap.ready,
        last_reload: snap.last_reload.as_ref().map(|r| ReloadView {
            ok: r.ok,
            generation: r.generation,
            at_unix_ms: r.at_unix_ms,
            errors: r.errors.clone(),
            warnings: r.warnings.clone(),
        }),
        listeners,
        mappings: facts.mappings,
        certificates: certificates.into_values().collect(),
    }
}

fn listener(l: &Listener, sets: &[&EndpointSet]) -> ListenerView {
    ListenerView {
        address: l.addr.to_string(),
        proxy_protocol: l.proxy_protocol.as_str().to_string(),
        groups: l
            .groups_with_hosts()
            .map(|(g, hg)| group(g, hg.map(|h| &**h), sets))
            .collect(),
    }
}

fn group(g: &Group, hg: Option<&HostGroup>, sets: &[&EndpointSet]) -> GroupView {
    let (tls_mode, tls) = match hg {
        Some(h) => (h.client_tls().as_str().to_string(), h.tls_mode()),
        None if g.origination.is_some() => ("originate".to_string(), g.tls_mode()),
        None => ("raw".to_string(), g.tls_mode()),
    };
    GroupView {
        host: g.host.clone(),
        tls_mode,
        tls,
        match_alpn: hg.map(|h| h.match_alpn.clone()).unwrap_or_default(),
        upstreams: g.upstreams.iter().map(|u| upstream(u, sets)).collect(),
    }
}

fn upstream(u: &Upstream, sets: &[&EndpointSet]) -> UpstreamView {
    let service = u.service();
    let m = &u.mapping;
    let key = (
        m.namespace.as_str(),
        m.name.as_str(),
        m.port,
        m.host.as_str(),
        service.as_str(),
    );
    let endpoints = sets
        .binary_search_by(|s| s.key().cmp(&key))
        .ok()
        .and_then(|at| sets.get(at))
        .map(|s| s.endpoints.clone())
        .unwrap_or_default();
    UpstreamView {
        mapping: u.mapping.name.clone(),
        namespace: u.mapping.namespace.clone(),
        port: u.mapping.port,
        host: u.mapping.host.clone(),
        service,
        weight: u.share,
        policy: u.endpoints.load_balancer.policy.as_str().to_string(),
        health_check: u.endpoints.health_check.is_some(),
        endpoints,
    }
}
