//! The cost of `/status.json` for 1,000 mappings (100 listeners × 10, each mapping with one
//! resolved endpoint and counters): an ignored benchmark, in both modes.
//!
//! - threads: this process's counters and endpoint sets, the snapshot, its JSON;
//! - workers (`--workers 2`, simulated in one process): what the Supervisor does with two
//!   workers' `Status` replies (decoded from their wire frames) and what each worker does to
//!   answer; the old path (every worker's metrics text, merged and parsed) is timed beside it.
//!
//! Run: `cargo test --release --lib api::status::bench -- --ignored --nocapture`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fast::{Layout, Top};
use super::tests::{facts, table};
use super::*;
use crate::admin::status::counters;
use crate::state::endpoints::EndpointKey;
use crate::state::endpoints::merge_reports;
use crate::workers::codec::{self, FromWorker};
use crate::workers::merge::{self, Retired};
use crate::workers::status_wire::WorkerCounts;

const RUNS: u32 = 200;
const WORKERS: usize = 2;

/// The mean time of `f` over [`RUNS`] runs (after one warm-up run).
fn time<T>(mut f: impl FnMut() -> T) -> Duration {
    std::hint::black_box(f());
    let t = Instant::now();
    for _ in 0..RUNS {
        std::hint::black_box(f());
    }
    t.elapsed() / RUNS
}

/// One process's registry and endpoint sets for every upstream of `snap`.
struct Process {
    metrics: Arc<Metrics>,
    registry: Arc<EndpointRegistry>,
    _held: Vec<Arc<crate::state::endpoints::UpstreamState>>,
}

fn process(snap: &Snapshot) -> Process {
    let metrics = Metrics::new();
    let registry = EndpointRegistry::new(metrics.clone());
    let mut held = Vec::new();
    for (_, group, up) in snap.table.upstreams() {
        let m = metrics.mapping(&up.mapping);
        m.accepted();
        let state = registry.state(EndpointKey::of(up, group.families));
        state.refresh(&[SocketAddr::from(([10, 0, 0, 1], up.port))], None);
        held.push(state);
    }
    Process {
        metrics,
        registry,
        _held: held,
    }
}

fn decode(frame: &[u8]) -> FromWorker {
    codec::decode::<FromWorker>(frame).unwrap().unwrap().0
}

#[test]
#[ignore = "benchmark"]
fn bench_status_json_for_1000_mappings() {
    let snap = Snapshot {
        table: Arc::new(table(100, 10)),
        ready: true,
        last_reload: None,
    };
    let p = process(&snap);

    // Threads: the old path read the counters through the library's snapshot.
    let old_threads = time(|| {
        let mappings = counters::from_snapshot(&p.metrics.snapshot());
        build(&snap, facts(mappings, p.registry.report())).json()
    });
    let counters = time(|| counters::from_metrics(&p.metrics));
    let report = time(|| p.registry.report());
    let (mappings, sets) = (counters::from_metrics(&p.metrics), p.registry.report());
    let built = time(|| build(&snap, facts(mappings.clone(), sets.clone())));
    let s = build(&snap, facts(mappings.clone(), sets.clone()));
    let json = time(|| s.json());
    let threads = time(|| {
        let mappings = counters::from_metrics(&p.metrics);
        build(&snap, facts(mappings, p.registry.report())).json()
    });
    eprintln!(
        "threads, by name (before): {threads:?} per /status.json ({} bytes; old path \
         {old_threads:?}): counters {counters:?}, endpoint report {report:?}, build {built:?}, \
         JSON {json:?}",
        s.json().len()
    );
    // By place: the generation's layout (made once per reload), the numbers, the JSON.
    let layout_made = time(|| Layout::new(&snap.table).unwrap());
    let layout = Layout::new(&snap.table).unwrap();
    let top = || Top {
        now_unix_ms: 1_700_000_000_000,
        uptime_s: 5,
        workers: WorkersView {
            mode: "threads".into(),
            count: 2,
            processes: Vec::new(),
        },
    };
    let gathered = time(|| layout.index.gather(&p.metrics, Some(&p.registry)));
    let numbers = layout.index.gather(&p.metrics, Some(&p.registry));
    let written = time(|| layout.write(&snap, &top(), &numbers));
    let placed = time(|| {
        let numbers = layout.index.gather(&p.metrics, Some(&p.registry));
        layout.write(&snap, &top(), &numbers)
    });
    assert_eq!(
        layout.write(&snap, &top(), &numbers),
        build(&snap, facts(mappings.clone(), sets.clone())).json()
    );
    eprintln!(
        "threads, by place (after): {placed:?} per /status.json: numbers {gathered:?}, JSON \
         {written:?}; the layout (once per generation) {layout_made:?}"
    );

    // Workers: each worker's replies as frames (the old Status reply had no counters).
    let status_frame = |with_counts: bool| {
        codec::encode(&FromWorker::Status {
            generation: 4,
            active: 0,
            endpoints: p.registry.report(),
            mappings: if with_counts {
                counters::from_metrics(&p.metrics)
            } else {
                Vec::new()
            },
            counts: with_counts,
        })
        .unwrap()
    };
    let worker_old = time(|| {
        let text = codec::encode(&FromWorker::Metrics {
            text: p.metrics.render_openmetrics(),
        });
        (text, status_frame(false))
    });
    let worker_new = time(|| status_frame(true));
    let text = codec::encode(&FromWorker::Metrics {
        text: p.metrics.render_openmetrics(),
    })
    .unwrap();
    let old_frames: Vec<(Vec<u8>, Vec<u8>)> = (0..WORKERS)
        .map(|_| (text.clone(), status_frame(false)))
        .collect();
    let new_frames: Vec<Vec<u8>> = (0..WORKERS).map(|_| status_frame(true)).collect();
    let own = Metrics::new();
    let old = time(|| {
        let mut texts = Vec::new();
        let mut sets = Vec::new();
        for (text, status) in &old_frames {
            if let (FromWorker::Metrics { text }, FromWorker::Status { endpoints, .. }) =
                (decode(text), decode(status))
            {
                texts.push(text);
                sets.extend(endpoints);
            }
        }
        let merged = merge::merge(&own.render_openmetrics(), &texts, &Retired::default(), "");
        let mappings = counters::from_openmetrics(&merged);
        build(&snap, facts(mappings, merge_reports(sets))).json()
    });
    let new = time(|| {
        let mut lists = vec![counters::from_metrics(&own)];
        let mut sets = Vec::new();
        for status in &new_frames {
            if let FromWorker::Status {
                endpoints,
                mappings,
                ..
            } = decode(status)
            {
                lists.push(mappings);
                sets.extend(endpoints);
            }
        }
        let mappings = counters::sum(lists);
        build(&snap, facts(mappings, merge_reports(sets))).json()
    });
    let decoded = time(|| new_frames.iter().map(|f| decode(f)).collect::<Vec<_>>());
    // By place: each worker's binary `Counts` reply (its own index of the same table).
    let worker = Layout::new(&snap.table).unwrap();
    let counts_frame = || {
        crate::workers::status_wire::encode_reply(&FromWorker::Counts(Box::new(WorkerCounts {
            generation: 4,
            fingerprint: worker.index.fingerprint,
            numbers: worker.index.gather(&p.metrics, Some(&p.registry)),
        })))
        .unwrap()
    };
    let worker_placed = time(counts_frame);
    let frames: Vec<Vec<u8>> = (0..WORKERS).map(|_| counts_frame()).collect();
    let decode_counts = |f: &[u8]| match crate::workers::status_wire::decode_reply(f)
        .unwrap()
        .unwrap()
        .0
    {
        FromWorker::Counts(c) => c,
        other => panic!("{other:?}"),
    };
    let decoded_placed = time(|| frames.iter().map(|f| decode_counts(f)).collect::<Vec<_>>());
    let supervisor_placed = time(|| {
        let mut numbers = layout.index.gather(&own, None);
        for f in &frames {
            numbers.add(&decode_counts(f).numbers);
        }
        layout.write(&snap, &top(), &numbers)
    });
    // After a worker died: the counts it left (by name) are placed on every request too.
    let retired = Arc::new(counters::from_metrics(&p.metrics));
    let with_retired = time(|| {
        let mut numbers = layout.index.gather(&own, None);
        for f in &frames {
            numbers.add(&decode_counts(f).numbers);
        }
        numbers.add(&layout.retired(&retired));
        layout.write(&snap, &top(), &numbers)
    });
    eprintln!(
        "workers ({WORKERS}), by place (after): {supervisor_placed:?} per /status.json in the \
         Supervisor ({with_retired:?} once a worker died), of which {decoded_placed:?} \
         decoding the Counts replies ({} bytes each); each worker spends {worker_placed:?} on \
         its reply",
        frames[0].len()
    );
    eprintln!(
        "workers ({WORKERS}): {new:?} per /status.json in the Supervisor, of which {decoded:?} \
         decoding the Status replies ({} bytes each); each worker spends {worker_new:?} on its \
         reply. Old path: {old:?} in the Supervisor (metrics text frame {} bytes and Status \
         reply {} bytes per worker), {worker_old:?} in each worker",
        new_frames[0].len(),
        old_frames[0].0.len(),
        old_frames[0].1.len()
    );
}
