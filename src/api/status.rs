//! Gathers the status page from what the proxy holds: the Supervisor's snapshot (route table,
//! generation, last reload), the mapping counters and the endpoint sets — this process's own
//! (threads, read in place), or totals over every worker (`--workers N`: each worker's numbers
//! by place in the generation's index, a binary `Counts` reply, or by name from a worker on
//! another generation, plus what dead workers left) — and the certificates the table's
//! terminating groups present.
//!
//! `/status.json` is written from the active generation's [`Layout`] (`fast.rs`: the JSON of
//! what only a reload changes, made once) with the numbers spliced in; `/` builds the
//! [`StatusSnapshot`] from the same numbers by name. Both give the same JSON (unit tests).

#[cfg(test)]
mod bench;
pub(crate) mod fast;
#[cfg(test)]
mod fast_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::actors::supervisor::{Status, ThreadsView};
use crate::actors::{ReloadResult, Snapshot};
use crate::admin::status::index::Dynamic;
use crate::admin::status::{
    CertificateView, GroupView, ListenerView, MappingTotals, ReloadView, StatusSnapshot,
    UpstreamView, WorkerRow, WorkersView,
};
use crate::metrics::Metrics;
use crate::route::{Group, HostGroup, Listener, OriginationMode, RouteTable, Upstream};
use crate::state::endpoints::{EndpointRegistry, EndpointSet, unix_ms};
use crate::workers::pool::{PoolHandle, PoolStatus};
use fast::{Layout, Top};

/// What the status page reads (all shared, cheap to clone).
#[derive(Clone)]
pub(super) struct StatusSource {
    pub(super) started: Instant,
    pub(super) status: Arc<Status>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) endpoints: Arc<EndpointRegistry>,
    pub(super) pool: Option<PoolHandle>,
    pub(super) threads: Option<Arc<ThreadsView>>,
    /// The active table's layout, made on the first request after a reload.
    pub(super) layout: Arc<Mutex<Option<Arc<Layout>>>>,
}

impl StatusSource {
    /// The layout of `snap`'s table (made now if the table is new).
    fn layout(&self, snap: &Snapshot) -> Option<Arc<Layout>> {
        let mut held = self.layout.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(l) = held.as_ref().filter(|l| Arc::ptr_eq(&l.table, &snap.table)) {
            return Some(l.clone());
        }
        let made = Layout::new(&snap.table).map(Arc::new);
        held.clone_from(&made);
        made
    }

    /// `/status.json`'s body now (asks every worker when there are worker processes): the
    /// numbers spliced into the active generation's layout.
    pub(super) async fn json(&self) -> Vec<u8> {
        let snap = self.status.get();
        let Some(layout) = self.layout(&snap) else {
            return self.snapshot().await.json();
        };
        let (workers, numbers) = self.numbers(&layout).await;
        let top = Top {
            now_unix_ms: unix_ms(),
            uptime_s: self.started.elapsed().as_secs(),
            workers,
        };
        layout.write(&snap, &top, &numbers)
    }

    /// The snapshot now (the page, `/`): the same numbers, by name.
    pub(super) async fn snapshot(&self) -> StatusSnapshot {
        let snap = self.status.get();
        let (workers, mappings, sets) = match self.layout(&snap) {
            Some(layout) => {
                let (workers, numbers) = self.numbers(&layout).await;
                let (mappings, sets) = numbers.named(&layout.index);
                (workers, mappings, sets)
            }
            None => (self.threads_view(), Vec::new(), Vec::new()),
        };
        build(
            &snap,
            Facts {
                uptime_s: self.started.elapsed().as_secs(),
                now_unix_ms: unix_ms(),
                workers,
                mappings,
                sets,
            },
        )
    }

    fn threads_view(&self) -> WorkersView {
        WorkersView {
            mode: "threads".into(),
            count: self.threads.as_ref().map_or(1, |t| t.connections().len()),
            processes: Vec::new(),
        }
    }

    /// The workers' view and every counter and endpoint, totals over every process: this
    /// one's (threads), or the Supervisor's counters, every worker's numbers and what the
    /// workers that died left (`--workers N`).
    async fn numbers(&self, layout: &Layout) -> (WorkersView, Dynamic) {
        let index = &layout.index;
        let Some(pool) = &self.pool else {
            let numbers = index.gather(&self.metrics, Some(&self.endpoints));
            return (self.threads_view(), numbers);
        };
        let PoolStatus { workers, retired } = pool.status_page(Some(index.clone())).await;
        // The Supervisor serves no connections: its counters, not its (empty) endpoint sets.
        let mut numbers = index.gather(&self.metrics, None);
        let mut processes = Vec::with_capacity(workers.len());
        for w in workers {
            match &w.counts {
                Some(counts) => numbers.add(counts),
                None => {
                    numbers.add_named(index, &w.mappings);
                    numbers.add_sets(index, &w.endpoints);
                }
            }
            processes.push(WorkerRow {
                id: w.id,
                pid: w.pid,
                generation: w.generation,
                active_connections: w.active_connections,
            });
        }
        numbers.add(&layout.retired(&retired));
        let workers = WorkersView {
            mode: "processes".into(),
            count: processes.len(),
            processes,
        };
        (workers, numbers)
    }
}

impl ReloadView {
    /// The view of reload result `r`.
    pub(crate) fn of(r: &ReloadResult) -> ReloadView {
        ReloadView {
            ok: r.ok,
            generation: r.generation,
            at_unix_ms: r.at_unix_ms,
            errors: r.errors.clone(),
            warnings: r.warnings.clone(),
        }
    }
}

/// Every certificate `table`'s groups present (and offer upstream), with the `listener host`
/// pairs using each, at wall-clock `now_unix_s`.
pub(crate) fn certificates(table: &RouteTable, now_unix_s: i64) -> Vec<CertificateView> {
    let mut certificates: BTreeMap<(String, Vec<u8>), CertificateView> = BTreeMap::new();
    for l in table.listeners().values() {
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
    }
    certificates.into_values().collect()
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
    let listeners = (snap.table.listeners().values())
        .map(|l| listener(l, &sets))
        .collect();
    StatusSnapshot {
        version: env!("CARGO_PKG_VERSION").to_string(),
        now_unix_ms: facts.now_unix_ms,
        uptime_s: facts.uptime_s,
        workers: facts.workers,
        generation: snap.generation(),
        ready: snap.ready,
        last_reload: snap.last_reload.as_ref().map(ReloadView::of),
        listeners,
        mappings: facts.mappings,
        certificates: certificates(&snap.table, now_unix_s),
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
