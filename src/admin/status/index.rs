//! The status page's numbers without their names: what changes between two requests, placed
//! by an index of one config generation that every process derives from the same table.
//!
//! ```text
//! RouteTable ─▶ StatusIndex { mappings (sorted as the page lists them), sets (mapping + service) }
//!                  │ gather(metrics, endpoints)     (this process, read in place)
//!                  ▼
//!               Dynamic { counts per mapping, rows per set, extra (mappings not in the table) }
//!                  │ add / add_named                 (several processes, dead workers' counts)
//!                  ▼
//!               the JSON writer (`api::status::fast`), or `named` for the snapshot type
//! ```
//!
//! The Supervisor and each worker build the same index from the same bundle, so a worker can
//! send its numbers by place (`workers::status_wire`); the index's `fingerprint` (over every
//! key, in order, and the close-reason labels) tells both sides they agree.
//!
//! A process's registry also holds the mappings of earlier generations (their counters never
//! go away): those travel by name, in `extra`. Endpoint sets of earlier generations are not
//! shown (the page lists the active table's upstreams), so they are left out.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

use super::MappingTotals;
use super::counters;
use crate::close::CloseReason;
use crate::metrics::{MappingCounts, Metrics};
use crate::route::balance::hash;
use crate::route::{MappingId, RouteTable};
use crate::state::endpoints::{EndpointRegistry, EndpointSet, Row, UpstreamState};

/// How many close reasons a [`Counts`] holds (one per entry of `CloseReason::ALL`).
pub(crate) const REASONS: usize = CloseReason::ALL.len();

/// One mapping's counters, typed: connections ended by each reason of `CloseReason::ALL`, in
/// its order (several reasons may share a label; the JSON adds them up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counts {
    pub(crate) active: i64,
    pub(crate) accepted: u64,
    pub(crate) bytes_client_to_upstream: u64,
    pub(crate) bytes_upstream_to_client: u64,
    pub(crate) connect_failures: u64,
    pub(crate) ended: [u64; REASONS],
}

impl Counts {
    fn of(c: &MappingCounts) -> Counts {
        Counts {
            active: c.active,
            accepted: c.accepted,
            bytes_client_to_upstream: c.bytes_client_to_upstream,
            bytes_upstream_to_client: c.bytes_upstream_to_client,
            connect_failures: c.connect_failures,
            ended: c.ended.map(|(_, n)| n),
        }
    }

    /// Adds another process's counts (open connections too).
    pub(crate) fn add(&mut self, o: &Counts) {
        self.active = self.active.saturating_add(o.active);
        self.accepted = self.accepted.saturating_add(o.accepted);
        self.bytes_client_to_upstream =
            (self.bytes_client_to_upstream).saturating_add(o.bytes_client_to_upstream);
        self.bytes_upstream_to_client =
            (self.bytes_upstream_to_client).saturating_add(o.bytes_upstream_to_client);
        self.connect_failures = self.connect_failures.saturating_add(o.connect_failures);
        for (a, b) in self.ended.iter_mut().zip(o.ended) {
            *a = a.saturating_add(b);
        }
    }

    /// The counts of mapping `id` as the snapshot names them.
    pub(crate) fn totals(&self, id: &MappingId) -> MappingTotals {
        let mut t = MappingTotals {
            mapping: id.name.clone(),
            namespace: id.namespace.clone(),
            port: id.port,
            host: id.host.clone(),
            active: self.active,
            accepted: self.accepted,
            bytes_client_to_upstream: self.bytes_client_to_upstream,
            bytes_upstream_to_client: self.bytes_upstream_to_client,
            connect_failures: self.connect_failures,
            ended: Default::default(),
        };
        for (label, n) in self.ended_by_label() {
            t.ended.insert(label.to_string(), n);
        }
        t
    }

    /// The named totals' counts (each label's count on the first reason spelled so).
    fn from_totals(t: &MappingTotals) -> Counts {
        let mut c = Counts {
            active: t.active,
            accepted: t.accepted,
            bytes_client_to_upstream: t.bytes_client_to_upstream,
            bytes_upstream_to_client: t.bytes_upstream_to_client,
            connect_failures: t.connect_failures,
            ended: [0; REASONS],
        };
        for (label, n) in &t.ended {
            let place = CloseReason::ALL.iter().position(|r| r.as_str() == label);
            if let Some(slot) = place.and_then(|p| c.ended.get_mut(p)) {
                *slot = slot.saturating_add(*n);
            }
        }
        c
    }

    /// The connections ended per `reason` label, labels sorted, zeros left out (the JSON's
    /// `ended` object).
    pub(crate) fn ended_by_label(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        LABELS.iter().filter_map(|(label, places)| {
            let n = places
                .iter()
                .filter_map(|p| self.ended.get(*p))
                .fold(0u64, |a, b| a.saturating_add(*b));
            (n > 0).then_some((*label, n))
        })
    }
}

/// The `reason` labels, sorted and each once, with the places in `CloseReason::ALL` spelled so.
static LABELS: LazyLock<Vec<(&'static str, Vec<usize>)>> = LazyLock::new(|| {
    let mut labels: Vec<&'static str> = CloseReason::ALL.iter().map(|r| r.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    labels
        .into_iter()
        .map(|l| {
            let places = (CloseReason::ALL.iter().enumerate())
                .filter(|(_, r)| r.as_str() == l)
                .map(|(i, _)| i)
                .collect();
            (l, places)
        })
        .collect()
});

/// An endpoint set's name: its mapping and service (`host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetKey {
    pub(crate) mapping: Arc<MappingId>,
    pub(crate) service: String,
}

/// The order the page lists mappings in: namespace, name, port, host.
pub(crate) fn mapping_order(m: &MappingId) -> (&str, &str, u16, &str) {
    (&m.namespace, &m.name, m.port, &m.host)
}

/// One generation's places: its mappings and endpoint sets, sorted as the page lists them.
#[derive(Debug)]
pub(crate) struct StatusIndex {
    /// The table's generation.
    pub(crate) generation: u64,
    /// A hash of every key in order and of the close-reason labels: equal on two processes
    /// that place numbers alike.
    pub(crate) fingerprint: u64,
    /// Every mapping of the table, once each.
    pub(crate) mappings: Vec<Arc<MappingId>>,
    /// Every (mapping, service) of the table, once each.
    pub(crate) sets: Vec<SetKey>,
    /// This process's lookups, kept between requests.
    cache: Mutex<Cache>,
}

/// What [`StatusIndex::gather`] learnt of this process's registries.
#[derive(Debug, Default)]
struct Cache {
    /// Per place in the metrics registry's order: that mapping id's address and its place in
    /// the index (ids never leave the registry, so an address names one id).
    metrics: Vec<(usize, Option<u32>)>,
    /// Per endpoint set (by address; the `Weak` keeps the address from being reused): its
    /// place in the index's sets.
    states: HashMap<usize, (Weak<UpstreamState>, Option<u32>)>,
}

impl StatusIndex {
    /// The index of `table`.
    pub(crate) fn new(table: &RouteTable) -> StatusIndex {
        let mut mappings: Vec<Arc<MappingId>> = table.mapping_ids().cloned().collect();
        mappings.sort_unstable_by(|a, b| mapping_order(a).cmp(&mapping_order(b)));
        mappings.dedup();
        let mut sets: Vec<SetKey> = table
            .upstreams()
            .map(|(_, _, u)| SetKey {
                mapping: u.mapping.clone(),
                service: u.service(),
            })
            .collect();
        sets.sort_unstable_by(|a, b| set_order(a).cmp(&set_order(b)));
        sets.dedup();
        let mut hash = Fnv::default();
        for m in &mappings {
            hash.id(m);
        }
        hash.bytes(b"\x01");
        for s in &sets {
            hash.id(&s.mapping);
            hash.str(&s.service);
        }
        hash.bytes(b"\x01");
        for r in CloseReason::ALL {
            hash.str(r.as_str());
        }
        StatusIndex {
            generation: table.generation(),
            fingerprint: hash.0,
            mappings,
            sets,
            cache: Mutex::default(),
        }
    }

    /// The place of mapping `id`, if the table has it.
    pub(crate) fn place(&self, id: &MappingId) -> Option<u32> {
        let key = mapping_order(id);
        let at = self
            .mappings
            .binary_search_by(|m| mapping_order(m).cmp(&key))
            .ok()?;
        u32::try_from(at).ok()
    }

    /// The place of set (`mapping`, `service`), if the table has it.
    pub(crate) fn set_place(&self, mapping: &MappingId, service: &str) -> Option<u32> {
        let (ns, name, port, host) = mapping_order(mapping);
        let key = (ns, name, port, host, service);
        let at = self
            .sets
            .binary_search_by(|s| set_order(s).cmp(&key))
            .ok()?;
        u32::try_from(at).ok()
    }

    /// This process's numbers now: its metrics registry's counters and (given `registry`) its
    /// endpoint sets, read in place (names only looked up for ids and sets not seen before).
    pub(crate) fn gather(&self, metrics: &Metrics, registry: Option<&EndpointRegistry>) -> Dynamic {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Dynamic::empty(self);
        let mut at = 0;
        metrics.each_mapping(|id, c| {
            let addr = std::ptr::from_ref(id) as usize;
            let place = match cache.metrics.get(at) {
                Some(&(a, place)) if a == addr => place,
                _ => {
                    let place = self.place(id);
                    cache.metrics.truncate(at);
                    cache.metrics.push((addr, place));
                    place
                }
            };
            at += 1;
            let counts = Counts::of(&c);
            match place.and_then(|p| out.counts.get_mut(p as usize)) {
                Some(slot) => *slot = Some(counts),
                None => out.extra.push(counts.totals(id)),
            }
        });
        cache.metrics.truncate(at);
        out.extra.sort_unstable_by(counters::order);
        let mut tagged: Vec<(u32, Row)> = Vec::with_capacity(self.sets.len());
        let mut rows = Vec::new();
        for s in registry.map(EndpointRegistry::live).unwrap_or_default() {
            let addr = Arc::as_ptr(&s) as usize;
            let place = match cache.states.get(&addr) {
                Some((_, place)) => *place,
                None => {
                    let (host, port, _) = s.service();
                    let place = self.set_place(s.mapping(), &format!("{host}:{port}"));
                    cache.states.insert(addr, (Arc::downgrade(&s), place));
                    place
                }
            };
            if let Some(p) = place {
                s.rows(&mut rows);
                tagged.extend(rows.drain(..).map(|r| (p, r)));
            }
        }
        // Sets of no generation any more: forget them (and free what their `Weak` held).
        if cache.states.len() > 2 * self.sets.len() + 16 {
            cache.states.retain(|_, (w, _)| w.strong_count() > 0);
        }
        // Stable: several sets of one place (two generations' keys) keep their rows' order.
        tagged.sort_by_key(|(p, _)| *p);
        out.rows.clear();
        let mut tagged = tagged.into_iter().peekable();
        for (place, end) in out.ends.iter_mut().enumerate() {
            let start = out.rows.len();
            while let Some((_, row)) = tagged.next_if(|(p, _)| *p as usize == place) {
                add_row(&mut out.rows, start, &row);
            }
            *end = out.rows.len() as u32;
        }
        out
    }
}

/// Adds `row` to the rows from `start` on: to the row of the same address, else at the end.
fn add_row(rows: &mut Vec<Row>, start: usize, row: &Row) {
    let same = rows
        .get_mut(start..)
        .and_then(|rs| rs.iter_mut().find(|r| r.addr == row.addr));
    match same {
        Some(r) => r.add(row),
        None => rows.push(*row),
    }
}

fn set_order(s: &SetKey) -> (&str, &str, u16, &str, &str) {
    let (ns, name, port, host) = mapping_order(&s.mapping);
    (ns, name, port, host, &s.service)
}

/// FNV-1a, 64 bits (`route::balance::hash`'s): the same on every binary and platform.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(hash::FNV_BASIS)
    }
}

impl Fnv {
    fn bytes(&mut self, b: &[u8]) {
        self.0 = hash::fnv1a(self.0, b);
    }

    fn str(&mut self, s: &str) {
        self.bytes(&(s.len() as u64).to_le_bytes());
        self.bytes(s.as_bytes());
    }

    fn id(&mut self, m: &MappingId) {
        self.str(&m.namespace);
        self.str(&m.name);
        self.bytes(&m.port.to_le_bytes());
        self.str(&m.host);
    }
}

/// What changes between two requests, placed by a [`StatusIndex`]: one process's numbers, or
/// the sum of several.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Dynamic {
    /// Per mapping of the index: its counts (`None`: no process counted it).
    pub(crate) counts: Vec<Option<Counts>>,
    /// Mappings the index lacks (earlier generations'), by name, sorted.
    pub(crate) extra: Vec<MappingTotals>,
    /// Every set's endpoint rows, set after set.
    pub(crate) rows: Vec<Row>,
    /// Per set of the index: where its rows end in `rows`.
    pub(crate) ends: Vec<u32>,
}

impl Dynamic {
    /// No counts and no endpoints, shaped as `index`.
    pub(crate) fn empty(index: &StatusIndex) -> Dynamic {
        Dynamic {
            counts: vec![None; index.mappings.len()],
            extra: Vec::new(),
            rows: Vec::new(),
            ends: vec![0; index.sets.len()],
        }
    }

    /// The endpoint rows of set `place`.
    pub(crate) fn set_rows(&self, place: usize) -> &[Row] {
        let start = match place.checked_sub(1) {
            Some(before) => self.ends.get(before).copied().unwrap_or(0),
            None => 0,
        };
        let end = self.ends.get(place).copied().unwrap_or(start);
        self.rows
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    /// Connections open, over every mapping.
    pub(crate) fn active(&self) -> u64 {
        let placed = self.counts.iter().flatten().map(|c| c.active.max(0) as u64);
        let extra = self.extra.iter().map(|t| t.active.max(0) as u64);
        placed.chain(extra).sum()
    }

    /// Adds another process's numbers, shaped alike (else only its `extra` is added).
    pub(crate) fn add(&mut self, other: &Dynamic) {
        if !other.extra.is_empty() {
            let extra = std::mem::take(&mut self.extra);
            self.extra = counters::sum([extra, other.extra.clone()]);
        }
        if other.counts.len() != self.counts.len() || other.ends.len() != self.ends.len() {
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            match (a.as_mut(), b) {
                (Some(a), Some(b)) => a.add(b),
                (None, Some(b)) => *a = Some(*b),
                (_, None) => {}
            }
        }
        if other.rows.is_empty() {
            return;
        }
        let mut rows = Vec::with_capacity(self.rows.len().max(other.rows.len()));
        let mut ends = Vec::with_capacity(self.ends.len());
        for place in 0..self.ends.len() {
            let start = rows.len();
            rows.extend_from_slice(self.set_rows(place));
            for row in other.set_rows(place) {
                add_row(&mut rows, start, row);
            }
            ends.push(rows.len() as u32);
        }
        self.rows = rows;
        self.ends = ends;
    }

    /// Adds named counters, sorted (a worker that answered by name, the dead workers' counts):
    /// those of `index`'s mappings by place, the others to `extra`.
    pub(crate) fn add_named(&mut self, index: &StatusIndex, totals: &[MappingTotals]) {
        let mut rest = Vec::new();
        let mut places = index.mappings.iter().enumerate().peekable();
        for t in totals {
            let key = (&*t.namespace, &*t.mapping, t.port, &*t.host);
            while places.next_if(|(_, m)| mapping_order(m) < key).is_some() {}
            match places.peek() {
                Some((p, m)) if mapping_order(m) == key => {
                    if let Some(slot) = self.counts.get_mut(*p) {
                        let c = Counts::from_totals(t);
                        match slot {
                            Some(into) => into.add(&c),
                            None => *slot = Some(c),
                        }
                    }
                }
                _ => rest.push(t.clone()),
            }
        }
        if !rest.is_empty() {
            let extra = std::mem::take(&mut self.extra);
            self.extra = counters::sum([extra, rest]);
        }
    }

    /// Adds named endpoint sets (a worker that answered by name): those of `index`'s sets.
    pub(crate) fn add_sets(&mut self, index: &StatusIndex, sets: &[EndpointSet]) {
        let mut other = Dynamic::empty(index);
        let mut tagged: Vec<(u32, Row)> = Vec::new();
        for s in sets {
            let id = MappingId {
                name: s.mapping.clone(),
                namespace: s.namespace.clone(),
                port: s.port,
                host: s.host.clone(),
            };
            let Some(place) = index.set_place(&id, &s.service) else {
                continue;
            };
            for e in &s.endpoints {
                if let Some(row) = e.row() {
                    tagged.push((place, row));
                }
            }
        }
        tagged.sort_by_key(|(p, _)| *p);
        let mut tagged = tagged.into_iter().peekable();
        for (place, end) in other.ends.iter_mut().enumerate() {
            let start = other.rows.len();
            while let Some((_, row)) = tagged.next_if(|(p, _)| *p as usize == place) {
                add_row(&mut other.rows, start, &row);
            }
            *end = other.rows.len() as u32;
        }
        self.add(&other);
    }

    /// The numbers by name: every mapping's totals (sorted) and every set's endpoints.
    pub(crate) fn named(&self, index: &StatusIndex) -> (Vec<MappingTotals>, Vec<EndpointSet>) {
        let placed: Vec<MappingTotals> = (index.mappings.iter().zip(&self.counts))
            .filter_map(|(id, c)| c.as_ref().map(|c| c.totals(id)))
            .collect();
        let mappings = counters::sum([placed, self.extra.clone()]);
        let sets = (index.sets.iter().enumerate())
            .filter_map(|(place, key)| {
                let rows = self.set_rows(place);
                (!rows.is_empty()).then(|| EndpointSet {
                    mapping: key.mapping.name.clone(),
                    namespace: key.mapping.namespace.clone(),
                    port: key.mapping.port,
                    host: key.mapping.host.clone(),
                    service: key.service.clone(),
                    endpoints: rows.iter().map(Row::view).collect(),
                })
            })
            .collect();
        (mappings, sets)
    }
}
