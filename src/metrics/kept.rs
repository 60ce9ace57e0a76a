//! What a worker's registry must leave behind if the worker dies: its counters and histograms
//! as numbers by place ([`Kept`]), taken once a second by the pool (`ToWorker::Keep`) instead
//! of its whole OpenMetrics text. The per-mapping families travel as fixed arrays of numbers
//! beside the mapping's id; the process-wide and fleet families (a few dozen series) as their
//! text. [`Kept::text`] renders them again through a registry of the same families, so the
//! dead worker's samples read exactly as its own text would have shown them.
//!
//! Pure: numbers in, text out.

use std::sync::PoisonError;

use super::Metrics;
use super::endpoints::COUNTERS;
use super::latency::BUCKETS;
use super::mapping::REASONS;
use crate::route::MappingId;

/// Numbers of a mapping's own series: accepted, ended by reason, I/O errors by side, bytes
/// both ways, connect failures, the latency buckets and the latency sum (`f64` bits).
pub(crate) const NUMBERS: usize = 1 + REASONS + 2 + 2 + 1 + BUCKETS + 1;

/// The counters of one endpoint family set (ejections, attempts, retries, refused per IP).
pub(crate) const ENDPOINT_NUMBERS: usize = COUNTERS;

/// A worker's counters and histograms, by place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Kept {
    /// Every mapping with series, sorted by id.
    pub(crate) mappings: Vec<KeptMapping>,
    /// The OpenMetrics text of the process-wide and fleet families (no `# EOF`).
    pub(crate) rest: String,
}

/// One mapping's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeptMapping {
    pub(crate) id: MappingId,
    /// Its own series ([`NUMBERS`] of them), when it has them.
    pub(crate) numbers: Option<[u64; NUMBERS]>,
    /// Its endpoint counters, when it has endpoint series.
    pub(crate) endpoints: Option<[u64; ENDPOINT_NUMBERS]>,
}

impl Metrics {
    /// The counters and histograms of this registry, by place (see the module docs; a worker
    /// writes them straight from [`Metrics::each_kept`], the tests read them here).
    #[cfg(test)]
    pub(crate) fn keep(&self) -> Kept {
        let mut mappings = Vec::new();
        self.each_kept(|id, numbers, endpoints| {
            mappings.push(KeptMapping {
                id: id.clone(),
                numbers: numbers.copied(),
                endpoints: endpoints.copied(),
            });
        });
        Kept {
            mappings,
            rest: self.kept_rest(),
        }
    }

    /// Calls `f` with every mapping that has series, sorted by id, and its numbers, under the
    /// registry's locks and without copying an id (the worker writes its `Kept` reply from
    /// here: `kept_wire::encode_registry`). `f` must not call back into this registry.
    pub(crate) fn each_kept(
        &self,
        mut f: impl FnMut(&MappingId, Option<&[u64; NUMBERS]>, Option<&[u64; ENDPOINT_NUMBERS]>),
    ) {
        let map = self.mappings.lock().unwrap_or_else(PoisonError::into_inner);
        self.endpoints.with_made(|made| {
            // Both maps are sorted by id: walk them together.
            let mut own = map.iter().peekable();
            let mut ends = made.iter().peekable();
            loop {
                let (take_own, take_end) = match (own.peek(), ends.peek()) {
                    (None, None) => break,
                    (Some((a, _)), Some((b, _))) => (a <= b, b <= a),
                    (own, _) => (own.is_some(), own.is_none()),
                };
                let m = own.next_if(|_| take_own);
                let e = ends.next_if(|_| take_end);
                let Some(id) = m.map(|(id, _)| id).or(e.map(|(id, _)| id)) else {
                    break;
                };
                let numbers = m.map(|(_, m)| numbers(m));
                let counters = e.map(|(_, e)| e.counters());
                f(id, numbers.as_ref(), counters.as_ref());
            }
        });
    }

    /// The text of the process-wide and fleet families (no `# EOF`): [`Kept::rest`].
    pub(crate) fn kept_rest(&self) -> String {
        self.render_parts(&[1, 3])
    }
}

/// A mapping's own numbers, as [`NUMBERS`] lays them out.
fn numbers(m: &super::MappingMetrics) -> [u64; NUMBERS] {
    let mut n = [0u64; NUMBERS];
    let (buckets, sum) = m.connect_latency.numbers();
    let counters = std::iter::once(&m.accepted)
        .chain(&m.ended)
        .chain(&m.io_errors)
        .chain([&m.bytes_c2u, &m.bytes_u2c, &m.connect_failures])
        .map(|c| c.get());
    let all = counters.chain(buckets).chain(std::iter::once(sum));
    for (slot, v) in n.iter_mut().zip(all) {
        *slot = v;
    }
    n
}

impl Kept {
    /// The OpenMetrics text these numbers were read from, gauges aside (they read zero): what
    /// the pool keeps of a worker that died (`merge::Retired::add`).
    pub(crate) fn text(&self) -> String {
        let fresh = Metrics::new();
        for k in &self.mappings {
            if let Some(n) = &k.numbers {
                fresh.mapping(&k.id).restore(n);
            }
            if let Some(c) = &k.endpoints {
                fresh.endpoints(&k.id).add_counters(c);
            }
        }
        let mut out = fresh.render_parts(&[0, 2]);
        out.push_str(&self.rest);
        out.push_str("# EOF\n");
        out
    }

    /// The mappings by id (the tests' view).
    #[cfg(test)]
    pub(crate) fn by_id(&self) -> std::collections::BTreeMap<&MappingId, &KeptMapping> {
        self.mappings.iter().map(|m| (&m.id, m)).collect()
    }
}

impl super::MappingMetrics {
    /// Sets the numbers as [`Metrics::keep`] reads them (set, not added: both `io_error`
    /// reasons of `ended` are one series).
    fn restore(&self, n: &[u64; NUMBERS]) {
        let counters = std::iter::once(&self.accepted)
            .chain(&self.ended)
            .chain(&self.io_errors)
            .chain([&self.bytes_c2u, &self.bytes_u2c, &self.connect_failures]);
        let mut values = n.iter();
        for (c, v) in counters.zip(values.by_ref()) {
            c.inner().store(*v, std::sync::atomic::Ordering::Relaxed);
        }
        let mut buckets = [0u64; BUCKETS];
        for (b, v) in buckets.iter_mut().zip(values.by_ref()) {
            *b = *v;
        }
        let sum = values.next().copied().unwrap_or(0);
        self.connect_latency.set(&buckets, sum);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;
    use crate::close::{CloseReason, Side};
    use crate::workers::merge::Retired;

    fn id(name: &str, host: &str) -> MappingId {
        MappingId {
            name: name.into(),
            namespace: "ns \"q\"".into(),
            port: 8443,
            host: host.into(),
        }
    }

    /// A registry with traffic on every kind of series.
    fn busy() -> std::sync::Arc<Metrics> {
        let m = Metrics::new();
        for (i, name) in ["a", "b\\x", "c\nd"].iter().enumerate() {
            let h = m.mapping(&id(name, if i == 1 { "h.example" } else { "" }));
            for _ in 0..=i {
                h.accepted();
            }
            h.ended(CloseReason::ALL[i], 10 + i as u64, 20);
            h.ended(CloseReason::IoError(Side::Upstream), 1, 2);
            m.upstream_connect(&h, true, Duration::from_micros(700 + 900 * i as u64));
            m.upstream_connect(&h, false, Duration::ZERO);
        }
        // Endpoint series for a mapping with its own and one without.
        let e = m.endpoints(&id("a", ""));
        e.attempt(true);
        e.ejected();
        m.endpoints(&id("z-only-endpoints", "")).refused_per_ip();
        m.reload(true);
        m.dns_lookup(false);
        m
    }

    #[test]
    fn kept_numbers_retire_as_the_text_would() {
        let m = busy();
        let kept = m.keep();
        let mut from_text = Retired::default();
        from_text.add(&m.render_openmetrics());
        let mut from_kept = Retired::default();
        from_kept.add(&kept.text());
        assert_eq!(from_kept, from_text);
        assert_eq!(kept.mappings.len(), 4);
        let only = kept.by_id()[&id("z-only-endpoints", "")];
        assert_eq!((only.numbers, only.endpoints), (None, Some([0, 0, 0, 1])));
    }

    #[test]
    fn the_status_page_reads_a_dead_workers_kept_counts_as_its_text() {
        let m = busy();
        let from_text = crate::admin::status::counters::from_openmetrics(&m.render_openmetrics());
        let from_kept = crate::admin::status::counters::from_openmetrics(&m.keep().text());
        // The text has the open connections; the kept counts none (the worker is gone).
        let no_active = |mut v: Vec<crate::admin::status::MappingTotals>| {
            v.iter_mut().for_each(|t| t.active = 0);
            v
        };
        assert_eq!(no_active(from_kept), no_active(from_text));
    }
}
