//! Weighted canaries over many connections: exact shares within ±5 points.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::net;
use common::proxy;
use common::yaml::mapping_with;

fn run(weights: &[Option<u8>], conns: usize) -> Vec<usize> {
    let ups: Vec<_> = weights.iter().map(|_| net::echo("127.0.0.1:0")).collect();
    let (_p, port) = proxy::start_port(None, |port| {
        let mut yaml = String::new();
        for (i, (w, up)) in weights.iter().zip(&ups).enumerate() {
            let weight = w.map(|w| format!("weight: {w}\n")).unwrap_or_default();
            yaml += &mapping_with(&format!("m{i}"), port, up.addr, &weight);
        }
        yaml
    });
    for _ in 0..conns {
        let mut s = net::connect(net::local(port));
        net::roundtrip(&mut s, b"x");
    }
    ups.iter().map(|u| u.connections()).collect()
}

fn within(got: usize, total: usize, pct: f64) {
    let share = got as f64 * 100.0 / total as f64;
    assert!(
        (share - pct).abs() <= 5.0,
        "share {share:.1}% not within 5 points of {pct}%"
    );
}

#[test]
fn seventy_thirty() {
    let got = run(&[Some(70), Some(30)], 1000);
    within(got[0], 1000, 70.0);
    within(got[1], 1000, 30.0);
}

#[test]
fn thirty_plus_unweighted_gets_the_rest() {
    let got = run(&[Some(30), None], 1000);
    within(got[0], 1000, 30.0);
    within(got[1], 1000, 70.0);
}
