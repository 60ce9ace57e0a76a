#![allow(clippy::unwrap_used)]
//! Properties of the policies and the hash tables.

use std::net::SocketAddr;

use proptest::prelude::*;

use super::hash::{Maglev, Ring, client_hash, endpoint_hash};
use super::health::{ProbeState, ejection_time};
use super::*;

fn all_usable(load: &[u32]) -> impl Fn(usize) -> EndpointView + '_ {
    move |i| EndpointView {
        usable: true,
        preferred: true,
        tried: false,
        load: load[i],
    }
}

fn addrs(n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 8080)))
        .collect()
}

fn keys(addrs: &[SocketAddr]) -> Vec<u64> {
    addrs.iter().map(|a| endpoint_hash(*a)).collect()
}

/// The client IPs of the simulation: 10,000 distinct addresses.
fn clients() -> Vec<u64> {
    (0..10_000u32)
        .map(|i| client_hash(std::net::Ipv4Addr::from(0xC0A8_0000 + i).into()))
        .collect()
}

fn table(policy: Policy, addrs: &[SocketAddr]) -> HashTable {
    match policy {
        Policy::Maglev => HashTable::Maglev(Maglev::build(&keys(addrs))),
        _ => HashTable::Ring(Ring::build(&keys(addrs))),
    }
}

/// The endpoint address of every client.
fn assignment(policy: Policy, addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let t = table(policy, addrs);
    let load = vec![0; addrs.len()];
    clients()
        .into_iter()
        .map(|client| {
            let key = PickKey {
                client,
                ..PickKey::default()
            };
            addrs[pick(policy, addrs.len(), all_usable(&load), Some(&t), &key).unwrap()]
        })
        .collect()
}

fn moved(a: &[SocketAddr], b: &[SocketAddr]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x != y).count() as f64 / a.len() as f64
}

proptest! {
    #[test]
    fn round_robin_is_even(len in 1usize..20, rounds in 1u64..5, start in 0u64..1000) {
        let load = vec![0; len];
        let mut counts = vec![0u64; len];
        for seq in start..start + rounds * len as u64 {
            let key = PickKey { seq, ..PickKey::default() };
            counts[pick(Policy::RoundRobin, len, all_usable(&load), None, &key).unwrap()] += 1;
        }
        prop_assert!(counts.iter().all(|&c| c == rounds), "{counts:?}");
    }

    #[test]
    fn least_request_picks_a_minimum(
        eps in proptest::collection::vec((any::<bool>(), any::<bool>(), 0u32..10), 1..16),
        seq in any::<u64>(),
    ) {
        let view = |i: usize| EndpointView { usable: eps[i].0, preferred: true, tried: eps[i].1, load: eps[i].2 };
        let key = PickKey { seq, ..PickKey::default() };
        let got = pick(Policy::LeastRequest, eps.len(), view, None, &key);
        let untried: Vec<usize> = (0..eps.len()).filter(|&i| !eps[i].1).collect();
        if untried.is_empty() {
            prop_assert_eq!(got, None);
        } else {
            let i = got.unwrap();
            let any_usable = untried.iter().any(|&j| eps[j].0);
            let tier: Vec<usize> = untried.iter().copied().filter(|&j| eps[j].0 == any_usable).collect();
            prop_assert!(tier.contains(&i));
            prop_assert_eq!(eps[i].2, tier.iter().map(|&j| eps[j].2).min().unwrap());
        }
    }

    #[test]
    fn every_policy_prefers_usable_preferred_and_never_repeats(
        eps in proptest::collection::vec((any::<bool>(), any::<bool>(), any::<bool>()), 1..12),
        key in (any::<u64>(), any::<u64>(), any::<u64>()),
        p in 0usize..5,
    ) {
        let policy = Policy::ALL[p];
        let list = addrs(eps.len());
        let t = table(policy, &list);
        let view = |i: usize| EndpointView { usable: eps[i].0, preferred: eps[i].1, tried: eps[i].2, load: 0 };
        let key = PickKey { seq: key.0, random: key.1, client: key.2 };
        match pick(policy, eps.len(), view, Some(&t), &key) {
            None => prop_assert!(eps.iter().all(|e| e.2)),
            Some(i) => {
                prop_assert!(!eps[i].2, "a tried endpoint was picked again");
                let rank = |e: &(bool, bool, bool)| (!e.0, !e.1);
                let best = eps.iter().filter(|e| !e.2).map(rank).min().unwrap();
                prop_assert_eq!(rank(&eps[i]), best);
            }
        }
    }

    #[test]
    fn hash_policies_keep_a_client_while_the_set_is_stable(
        n in 1usize..12, client in any::<u64>(), shuffle in any::<u64>(), p in 0usize..2,
    ) {
        let policy = [Policy::RingHash, Policy::Maglev][p];
        let list = addrs(n);
        let mut other = list.clone();
        other.rotate_left((shuffle % n as u64) as usize);
        let key = PickKey { client, ..PickKey::default() };
        let load = vec![0; n];
        let a = list[pick(policy, n, all_usable(&load), Some(&table(policy, &list)), &key).unwrap()];
        let b = other[pick(policy, n, all_usable(&load), Some(&table(policy, &other)), &key).unwrap()];
        prop_assert_eq!(a, b, "the same set in another order moved the client");
    }
}

#[test]
fn hash_policies_move_about_one_nth_when_the_set_changes() {
    for policy in [Policy::RingHash, Policy::Maglev] {
        for n in [3usize, 5, 10] {
            let before = assignment(policy, &addrs(n));
            let grown = assignment(policy, &addrs(n + 1));
            let mut shrunk_set = addrs(n);
            shrunk_set.remove(n / 2);
            let shrunk = assignment(policy, &shrunk_set);
            let added = moved(&before, &grown);
            let removed = moved(&before, &shrunk);
            eprintln!(
                "{policy} n={n}: add one moves {added:.3} (ideal {:.3}), remove one moves {removed:.3} (ideal {:.3})",
                1.0 / (n + 1) as f64,
                1.0 / n as f64
            );
            let ideal_add = 1.0 / (n + 1) as f64;
            let ideal_remove = 1.0 / n as f64;
            assert!(
                added > ideal_add * 0.5 && added < ideal_add * 1.6,
                "{policy} n={n}: adding moved {added}"
            );
            assert!(
                removed > ideal_remove * 0.5 && removed < ideal_remove * 1.6,
                "{policy} n={n}: removing moved {removed}"
            );
            // Every client of the removed endpoint moved; for the ring nobody else did.
            let gone = addrs(n)[n / 2];
            let of_gone = before.iter().filter(|a| **a == gone).count() as f64 / 10_000.0;
            assert!(removed >= of_gone);
            if policy == Policy::RingHash {
                assert!((removed - of_gone).abs() < 1e-9, "{removed} vs {of_gone}");
            }
        }
    }
}

#[test]
fn hash_policies_spread_clients_over_every_endpoint() {
    for policy in [Policy::RingHash, Policy::Maglev] {
        let list = addrs(5);
        let got = assignment(policy, &list);
        for a in &list {
            let share = got.iter().filter(|x| *x == a).count() as f64 / got.len() as f64;
            assert!(share > 0.12 && share < 0.28, "{policy}: {a} got {share}");
        }
    }
}

#[test]
fn an_unusable_hashed_endpoint_sends_its_clients_elsewhere_and_only_them() {
    let list = addrs(4);
    let t = table(Policy::RingHash, &list);
    let load = [0; 4];
    for client in clients().into_iter().take(500) {
        let key = PickKey {
            client,
            ..PickKey::default()
        };
        let home = pick(Policy::RingHash, 4, all_usable(&load), Some(&t), &key).unwrap();
        let ejected = 2;
        let view = |i: usize| EndpointView {
            usable: i != ejected,
            preferred: true,
            tried: false,
            load: 0,
        };
        let now = pick(Policy::RingHash, 4, view, Some(&t), &key).unwrap();
        if home == ejected {
            assert_ne!(now, ejected);
        } else {
            assert_eq!(now, home);
        }
    }
}

#[test]
fn all_unusable_are_still_tried() {
    let view = |_| EndpointView {
        usable: false,
        preferred: true,
        tried: false,
        load: 0,
    };
    assert!(pick(Policy::RoundRobin, 3, view, None, &PickKey::default()).is_some());
}

#[test]
fn ejections_double_up_to_five_minutes() {
    let secs: Vec<u64> = (1..=7).map(|n| ejection_time(n).as_secs()).collect();
    assert_eq!(secs, [30, 60, 120, 240, 300, 300, 300]);
    assert_eq!(ejection_time(u32::MAX).as_secs(), 300);
}

#[test]
fn probes_flip_state_only_after_their_threshold() {
    let hc = HealthCheck {
        interval: std::time::Duration::from_millis(100),
        timeout: std::time::Duration::from_millis(50),
        unhealthy_threshold: 3,
        healthy_threshold: 2,
    };
    let mut s = ProbeState::default();
    for _ in 0..2 {
        s = s.after(false, &hc);
        assert!(s.healthy);
    }
    s = s.after(true, &hc);
    assert_eq!(s.streak, 0, "a pass resets the failure streak");
    for _ in 0..3 {
        s = s.after(false, &hc);
    }
    assert!(!s.healthy);
    s = s.after(true, &hc);
    assert!(!s.healthy);
    s = s.after(true, &hc);
    assert!(s.healthy);
}

#[test]
fn policies_parse_as_written() {
    for p in Policy::ALL {
        assert_eq!(Policy::parse(p.as_str()), Some(p));
    }
    assert_eq!(Policy::parse("ROUND_ROBIN"), Some(Policy::RoundRobin));
    assert_eq!(Policy::parse("least_conn"), None);
}
