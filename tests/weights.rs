//! Weighted canaries over many connections: exact shares within ±5 points.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;

use common::net::{self, free_port};
use common::proxy;

fn run(weights: &[Option<u8>], conns: usize) -> Vec<usize> {
    let ups: Vec<_> = weights.iter().map(|_| net::echo("127.0.0.1:0")).collect();
    let port = free_port();
    let mut yaml = String::new();
    for (i, (w, up)) in weights.iter().zip(&ups).enumerate() {
        yaml += &format!(
            "---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: m{i}\naddress: 127.0.0.1\nport: {port}\nservice: {}\n",
            up.addr
        );
        if let Some(w) = w {
            yaml += &format!("weight: {w}\n");
        }
    }
    let _p = proxy::start(&yaml, None);
    for _ in 0..conns {
        let mut s = net::connect(SocketAddr::from(([127, 0, 0, 1], port)));
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
