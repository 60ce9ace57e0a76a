//! Micro benchmark (ignored by default): pushes `TCPMAP_BENCH_GIB` GiB (default 2) client → upstream
//! through `relay_tcp` on loopback, splice on and off, and prints Gbit/s and CPU seconds.
//!
//! Run: `cargo test --release --lib relay_bench -- --ignored --nocapture`
//! The sender and the sink are blocking std threads; the relay runs alone on the test thread, so
//! "relay CPU" (that thread's rusage) is the relay's own cost and "process CPU" includes both ends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use super::copy::{Progress, RelayEnd};
use super::relay_tests::tcp_pair;
use super::splice::relay_tcp_with;
use crate::rt;

/// User + system CPU seconds of the calling thread (`thread`) or of the whole process.
#[allow(unsafe_code)] // getrusage(2) has no safe wrapper in libc; test-only.
fn cpu_seconds(thread: bool) -> f64 {
    let who = if thread {
        libc::RUSAGE_THREAD
    } else {
        libc::RUSAGE_SELF
    };
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a full `rusage` into the pointer we pass; it is zero-initialised anyway.
    let usage = unsafe {
        libc::getrusage(who, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn run(total: u64, splice: bool) {
    let (client, proxy_client) = tcp_pair();
    let (proxy_upstream, upstream) = tcp_pair();
    let mut client: TcpStream = client.into_inner().unwrap();
    let mut upstream: TcpStream = upstream.into_inner().unwrap();
    client.set_nonblocking(false).unwrap();
    upstream.set_nonblocking(false).unwrap();
    let sender = std::thread::spawn(move || {
        let chunk = vec![0x5au8; 1 << 20];
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            client.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
        client.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
    });
    let sink = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        loop {
            match upstream.read(&mut buf).unwrap() {
                0 => break,
                n => got += n as u64,
            }
        }
        upstream.shutdown(Shutdown::Write).unwrap();
        got
    });
    let (cpu_proc, cpu_thread, started) = (cpu_seconds(false), cpu_seconds(true), Instant::now());
    let progress = Progress::default();
    let (stats, spliced) = rt::block_on(relay_tcp_with(
        &proxy_client,
        &proxy_upstream,
        Some(Duration::from_secs(30)),
        &progress,
        splice,
    ));
    let wall = started.elapsed().as_secs_f64();
    let (relay_cpu, proc_cpu) = (
        cpu_seconds(true) - cpu_thread,
        cpu_seconds(false) - cpu_proc,
    );
    sender.join().unwrap();
    assert_eq!(sink.join().unwrap(), total);
    assert_eq!(stats.end, RelayEnd::ClientClosed);
    assert_eq!(stats.client_to_upstream, total);
    let gbit = total as f64 * 8.0 / wall / 1e9;
    println!(
        "{:<8} {:>6.2} GiB in {wall:>5.2} s = {gbit:>5.2} Gbit/s | relay thread CPU {relay_cpu:>5.2} s \
         ({:.2} s/GiB) | process CPU {proc_cpu:>5.2} s | spliced {} B",
        if splice { "splice" } else { "buffered" },
        total as f64 / (1u64 << 30) as f64,
        relay_cpu / (total as f64 / (1u64 << 30) as f64),
        spliced[0],
    );
}

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn relay_bench() {
    let gib: u64 = std::env::var("TCPMAP_BENCH_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    for splice in [true, false, true, false] {
        run(gib << 30, splice);
    }
}
