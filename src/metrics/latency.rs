//! The upstream connect latency histogram: prometheus-client's `Histogram` semantics (the
//! first bucket whose bound is at least the value counts it; the sum adds up the values) with
//! atomics the process can read back ([`Latency::numbers`]) and set ([`Latency::set`]), so a
//! worker's histograms travel by place in its retained counts (`super::kept`) instead of as
//! text. Rendered through prometheus-client's own encoder, so the text is the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upstream connect latency buckets, in seconds (0.5 ms .. 3 s); a last one above them all.
pub(crate) const BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0,
];

/// Buckets of a histogram: one per bound and the `+Inf` one.
pub(crate) const BUCKETS: usize = BOUNDS.len() + 1;

/// A connect latency histogram (a clone shares the values).
#[derive(Debug, Clone, Default)]
pub(crate) struct Latency(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// Observations per bucket (not cumulative).
    buckets: [AtomicU64; BUCKETS],
    /// The sum of the observations, as `f64` bits.
    sum: AtomicU64,
}

impl Latency {
    /// Counts `v` seconds.
    pub(crate) fn observe(&self, v: f64) {
        let _ = self
            .0
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some((f64::from_bits(s) + v).to_bits())
            });
        let at = BOUNDS.iter().position(|b| *b >= v).unwrap_or(BOUNDS.len());
        if let Some(bucket) = self.0.buckets.get(at) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The observations per bucket and the sum's bits.
    pub(crate) fn numbers(&self) -> ([u64; BUCKETS], u64) {
        let buckets = std::array::from_fn(|i| {
            self.0
                .buckets
                .get(i)
                .map_or(0, |b| b.load(Ordering::Relaxed))
        });
        (buckets, self.0.sum.load(Ordering::Relaxed))
    }

    /// Sets the values to `numbers` (a dead worker's, rendered again).
    pub(crate) fn set(&self, buckets: &[u64; BUCKETS], sum_bits: u64) {
        for (b, n) in self.0.buckets.iter().zip(buckets) {
            b.store(*n, Ordering::Relaxed);
        }
        self.0.sum.store(sum_bits, Ordering::Relaxed);
    }
}

impl TypedMetric for Latency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (counts, sum) = self.numbers();
        // The count is the buckets' (never one observation more than they show).
        let count = counts.iter().fold(0u64, |a, n| a.saturating_add(*n));
        let bounds = BOUNDS.iter().copied().chain(std::iter::once(f64::MAX));
        let buckets: Vec<(f64, u64)> = bounds.zip(counts).collect();
        encoder.encode_histogram::<NoLabelSet>(f64::from_bits(sum), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    use super::*;

    type Labels = Vec<(String, String)>;

    fn text(f: impl FnOnce(&mut Registry)) -> String {
        let mut r = Registry::with_prefix("tcpmap");
        f(&mut r);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        out
    }

    #[test]
    fn renders_as_prometheus_clients_histogram() {
        let values = [0.0, 0.0005, 0.0007, 0.003, 0.2, 2.9, 3.0, 3.5, 120.0, 1e-9];
        let ours: Family<Labels, Latency> = Family::default();
        let theirs: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(BOUNDS));
        let labels = vec![("mapping".to_string(), "m".to_string())];
        for v in values {
            ours.get_or_create(&labels).observe(v);
            theirs.get_or_create(&labels).observe(v);
        }
        let a = text(|r| r.register("d", "Time", ours.clone()));
        let b = text(|r| r.register("d", "Time", theirs.clone()));
        assert_eq!(a, b);
        assert!(a.contains("le=\"+Inf\",mapping=\"m\"} 10"), "{a}");
    }

    #[test]
    fn set_restores_what_numbers_read() {
        let a = Latency::default();
        a.observe(0.004);
        a.observe(7.0);
        let (buckets, sum) = a.numbers();
        let b = Latency::default();
        b.set(&buckets, sum);
        assert_eq!(b.numbers(), (buckets, sum));
        assert_eq!(buckets.iter().sum::<u64>(), 2);
    }
}
