//! `/status.json` by place ([`Layout::write`] over [`Dynamic`] numbers) against the snapshot's
//! own JSON by name (`build(..).json()`): the same bytes, in threads mode, summed over two
//! workers, with a worker answering by name, and with mappings the table no longer has.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::fast::{Layout, Top};
use super::tests::{facts, originating_table, table, upstream};
use super::*;
use crate::admin::status::counters;
use crate::admin::status::index::{Dynamic, StatusIndex};
use crate::admin::status::tests::HOSTILE;
use crate::close::CloseReason;
use crate::route::MappingId;
use crate::route::balance::HealthCheck;
use crate::state::endpoints::{EndpointKey, UpstreamState, merge_reports};

/// One process: its registries, and the endpoint sets of `snap`'s upstreams it holds.
struct Process {
    metrics: Arc<Metrics>,
    registry: Arc<EndpointRegistry>,
    _held: Vec<Arc<UpstreamState>>,
}

/// A process that served `snap` with `seed` shaping its counts: every other upstream resolved
/// (IPv4 and IPv6 endpoints), one probed, one failed connect, one connection open, and a
/// mapping of an earlier config (with a hostile name) still counted.
fn process(snap: &Snapshot, seed: u64) -> Process {
    let metrics = Metrics::new();
    let registry = EndpointRegistry::new(metrics.clone());
    let mut held = Vec::new();
    let hc = HealthCheck {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        unhealthy_threshold: 1,
        healthy_threshold: 1,
    };
    for (i, (_, group, up)) in snap.table.upstreams().enumerate() {
        let m = metrics.mapping(&up.mapping);
        for _ in 0..(i as u64 + seed) % 4 {
            m.accepted();
        }
        if i % 3 == 0 {
            m.ended(CloseReason::ClientClosed, 10 * seed, 7);
            m.ended(CloseReason::IoError(crate::close::Side::Client), 1, 0);
        }
        let state = registry.state(EndpointKey::of(up, group.families));
        if (i as u64 + seed) % 2 == 0 {
            let addrs: Vec<SocketAddr> = vec![
                ([10, 0, seed as u8, i as u8], up.port).into(),
                SocketAddr::new("fd00::1".parse().unwrap(), up.port),
            ];
            let list = state.refresh(&addrs, None);
            if i % 4 == 0 {
                state.record(&list, 0, false);
                state.probed(&list.endpoints[1], seed % 2 == 0, &hc);
            }
        }
        held.push(state);
    }
    let old = metrics.mapping(&MappingId {
        name: HOSTILE.into(),
        namespace: "old".into(),
        port: 1,
        host: "a.example".into(),
    });
    old.accepted();
    old.ended(CloseReason::UpstreamClosed, seed, 1);
    Process {
        metrics,
        registry,
        _held: held,
    }
}

fn snapshot(table: RouteTable) -> Snapshot {
    Snapshot {
        table: Arc::new(table),
        ready: true,
        last_reload: None,
    }
}

fn top() -> Top {
    let f = facts(Vec::new(), Vec::new());
    Top {
        now_unix_ms: f.now_unix_ms,
        uptime_s: f.uptime_s,
        workers: f.workers,
    }
}

/// The body by name, as before: every process's counters summed, endpoint sets merged.
fn by_name(snap: &Snapshot, processes: &[&Process]) -> Vec<u8> {
    let mappings = counters::sum(processes.iter().map(|p| counters::from_metrics(&p.metrics)));
    let sets = merge_reports(processes.iter().flat_map(|p| p.registry.report()));
    build(snap, facts(mappings, sets)).json()
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

#[test]
fn one_process_by_place_writes_the_snapshots_bytes() {
    let snap = snapshot(table(3, 4));
    let p = process(&snap, 1);
    let layout = Layout::new(&snap.table).unwrap();
    // Twice: the second time from the lookups the first one cached.
    for _ in 0..2 {
        let numbers = layout.index.gather(&p.metrics, Some(&p.registry));
        let placed = layout.write(&snap, &top(), &numbers);
        assert_eq!(text(&placed), text(&by_name(&snap, &[&p])));
    }
    // A mapping counted for the first time after the layout was made.
    let late = p.metrics.mapping(&MappingId {
        name: "late".into(),
        namespace: "a".into(),
        port: 2,
        host: String::new(),
    });
    late.accepted();
    let numbers = layout.index.gather(&p.metrics, Some(&p.registry));
    assert_eq!(numbers.extra.len(), 2, "{:?}", numbers.extra);
    let placed = layout.write(&snap, &top(), &numbers);
    assert_eq!(text(&placed), text(&by_name(&snap, &[&p])));
}

#[test]
fn two_workers_by_place_and_by_name_sum_to_the_same_bytes() {
    let snap = snapshot(table(2, 5));
    let (a, b) = (process(&snap, 1), process(&snap, 2));
    let layout = Layout::new(&snap.table).unwrap();
    let index = &layout.index;
    let expected = by_name(&snap, &[&a, &b]);
    // Both answer by place.
    let mut numbers = Dynamic::empty(index);
    numbers.add(&index.gather(&a.metrics, Some(&a.registry)));
    numbers.add(&index.gather(&b.metrics, Some(&b.registry)));
    assert_eq!(
        text(&layout.write(&snap, &top(), &numbers)),
        text(&expected)
    );
    // Worker b answers by name (it serves another generation, or is of another binary).
    let mut numbers = index.gather(&a.metrics, Some(&a.registry));
    numbers.add_named(index, &counters::from_metrics(&b.metrics));
    numbers.add_sets(index, &b.registry.report());
    assert_eq!(
        text(&layout.write(&snap, &top(), &numbers)),
        text(&expected)
    );
    // Worker b died: what it counted stays (placed once, then shared), its connections close.
    let retired = Arc::new(counters::latest(
        counters::from_metrics(&b.metrics),
        Vec::new(),
    ));
    let placed = layout.retired(&retired);
    assert!(Arc::ptr_eq(&placed, &layout.retired(&retired)));
    let mut after = index.gather(&a.metrics, Some(&a.registry));
    after.add(&placed);
    let mut by_name = index.gather(&a.metrics, Some(&a.registry));
    by_name.add_named(index, &retired);
    assert_eq!(after, by_name);
    // And the numbers by name again are what the snapshot type shows.
    let (mappings, sets) = numbers.named(index);
    assert_eq!(
        build(&snap, facts(mappings, sets)).json(),
        layout.write(&snap, &top(), &numbers)
    );
}

/// The certificates (days left counted at each request), an origination group, a reload's
/// problems and an unresolved upstream come out as the snapshot writes them.
#[test]
fn certificates_and_the_last_reload_are_written_alike() {
    let mut table = originating_table("up<&>", vec![upstream(HOSTILE, 10_000, 443, 100)]);
    table.set_generation(9);
    let mut snap = snapshot(table);
    snap.last_reload = Some(crate::actors::ReloadResult {
        ok: false,
        generation: 9,
        at_unix_ms: 5,
        errors: vec!["a.yaml:1: \"bad\" </script>".into()],
        warnings: vec!["w\n".into()],
    });
    let p = process(&snap, 1);
    let layout = Layout::new(&snap.table).unwrap();
    let numbers = layout.index.gather(&p.metrics, Some(&p.registry));
    let placed = layout.write(&snap, &top(), &numbers);
    assert_eq!(text(&placed), text(&by_name(&snap, &[&p])));
    assert!(text(&placed).contains("\"days_left\":9,\"expiring\":true"));
}

/// Another generation's index places nothing of this one's: the pool checks the shape and the
/// fingerprint before adding a worker's numbers by place.
#[test]
fn indexes_of_different_tables_have_different_fingerprints() {
    let (one, two) = (table(2, 3), table(2, 4));
    let (a, b) = (StatusIndex::new(&one), StatusIndex::new(&two));
    assert_ne!(a.fingerprint, b.fingerprint);
    assert_eq!(a.fingerprint, StatusIndex::new(&table(2, 3)).fingerprint);
    // A sum of differently shaped numbers keeps only what is named.
    let snap = snapshot(two);
    let p = process(&snap, 1);
    let mut numbers = Dynamic::empty(&a);
    numbers.add(&b.gather(&p.metrics, Some(&p.registry)));
    assert!(numbers.counts.iter().all(Option::is_none));
    assert!(numbers.rows.is_empty());
    assert_eq!(numbers.extra.len(), 1);
}

/// A worker's numbers are placed only by the index they were made for: same generation, same
/// fingerprint, same shape (else the pool takes them by name, or its last ones).
#[test]
fn counts_of_another_generation_or_index_do_not_fit() {
    use crate::workers::pool::fits;
    use crate::workers::status_wire::WorkerCounts;
    let (index, other) = (
        StatusIndex::new(&table(2, 3)),
        StatusIndex::new(&table(3, 3)),
    );
    let counts = |generation, fingerprint, of: &StatusIndex| WorkerCounts {
        generation,
        fingerprint,
        numbers: Dynamic::empty(of),
    };
    let (g, f) = (index.generation, index.fingerprint);
    assert!(fits(&counts(g, f, &index), &index));
    assert!(!fits(&counts(g + 1, f, &index), &index));
    assert!(!fits(&counts(g, f ^ 1, &index), &index));
    assert!(!fits(&counts(g, f, &other), &index));
}
