//! The cost of the pool's once-a-second snapshot of a worker with 1,000 mappings (100
//! listeners × 10, each with traffic: connections accepted and ended, bytes, connect latencies
//! across the buckets, endpoint attempts): an ignored benchmark. Old: the worker's metrics
//! text (`ToWorker::Metrics`); new: its counters by place (`ToWorker::Keep`). Each is timed on
//! the worker's side (read the registry, frame it) and the Supervisor's (read the frame), three
//! times in turn; then what a death costs the Supervisor with each (once).
//!
//! Run: `cargo test --release --lib workers::kept_bench -- --ignored --nocapture`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::close::CloseReason;
use crate::metrics::Metrics;
use crate::route::MappingId;
use crate::workers::codec::{self, FromWorker};
use crate::workers::merge::Retired;
use crate::workers::status_wire::{decode_reply, encode_reply};

const RUNS: u32 = 50;

/// The mean time of `f` over [`RUNS`] runs (after one warm-up run).
fn time<T>(mut f: impl FnMut() -> T) -> Duration {
    std::hint::black_box(f());
    let t = Instant::now();
    for _ in 0..RUNS {
        std::hint::black_box(f());
    }
    t.elapsed() / RUNS
}

/// A worker's registry: 1,000 mappings with traffic on each.
fn busy() -> Arc<Metrics> {
    let metrics = Metrics::new();
    for port in 0..100u16 {
        for i in 0..10u64 {
            let id = MappingId {
                name: format!("mapping-{port}-{i}"),
                namespace: "default".into(),
                port: 10_000 + port,
                host: if i % 2 == 0 {
                    format!("host-{i}.example.com")
                } else {
                    String::new()
                },
            };
            let m = metrics.mapping(&id);
            for k in 0..(3 + i) {
                m.accepted();
                let reason = CloseReason::ALL[(k as usize) % CloseReason::ALL.len()];
                m.ended(reason, 1_000 * k, 70_000 * k);
                let latency = Duration::from_micros(300 << (k % 14));
                metrics.upstream_connect(&m, k % 5 != 4, latency);
            }
            let e = metrics.endpoints(&id);
            e.attempt(false);
            e.attempt(i % 3 == 0);
        }
    }
    metrics
}

#[test]
#[ignore = "benchmark"]
fn bench_snapshot_for_1000_mappings() {
    let metrics = busy();
    let old_frame = codec::encode(&FromWorker::Metrics {
        text: metrics.render_openmetrics(),
    })
    .unwrap();
    let new_frame = encode_reply(&FromWorker::Kept(Box::new(metrics.keep()))).unwrap();
    println!(
        "frame: text {} bytes, by place {} bytes",
        old_frame.len(),
        new_frame.len()
    );
    for round in 1..=3 {
        let old_worker = time(|| {
            codec::encode(&FromWorker::Metrics {
                text: metrics.render_openmetrics(),
            })
            .unwrap()
        });
        let old_supervisor = time(|| codec::decode::<FromWorker>(&old_frame).unwrap());
        let new_worker = time(|| {
            let mut body = Vec::new();
            crate::workers::kept_wire::encode_registry(&metrics, &mut body);
            encode_reply(&FromWorker::KeptFrame(body)).unwrap()
        });
        let new_supervisor = time(|| decode_reply(&new_frame).unwrap());
        println!(
            "round {round}: worker {old_worker:?} -> {new_worker:?}, \
             Supervisor {old_supervisor:?} -> {new_supervisor:?}"
        );
    }
    // Where the new path's time goes, on the worker.
    let mut body = Vec::new();
    let read = time(|| {
        body.clear();
        crate::workers::kept_wire::encode_registry(&metrics, &mut body);
    });
    let rest = time(|| metrics.kept_rest());
    println!(
        "worker, new: reading and writing the numbers {read:?}, of which the text part {rest:?} \
         ({} bytes)",
        metrics.kept_rest().len()
    );
    // A death: the old path parsed the text into `Retired`; the new renders it first.
    let text = metrics.render_openmetrics();
    let kept = metrics.keep();
    let t = Instant::now();
    Retired::default().add(&text);
    let old_death = t.elapsed();
    let t = Instant::now();
    Retired::default().add(&kept.text());
    let new_death = t.elapsed();
    println!("a death: {old_death:?} -> {new_death:?}");
    let (mut a, mut b) = (Retired::default(), Retired::default());
    a.add(&text);
    b.add(&kept.text());
    assert_eq!(a, b);
}
