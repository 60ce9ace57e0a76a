//! Stress driver for `scripts/stress-10k.sh` (not part of the test run).
//!
//! ```text
//! stress echo                      echo server on 127.0.0.1:0; prints `listening ADDR`
//! stress free-port                 prints a free loopback port
//! stress client ADDR N [PID]       opens N connections to ADDR and keeps them all open,
//!                                  checks each echoes its own message, reports the memory of
//!                                  process PID (the proxy) at the peak, then closes them all
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("echo") => echo(),
        Some("free-port") => {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            println!("{}", l.local_addr().unwrap().port());
        }
        Some("client") => {
            let addr: SocketAddr = args[1].parse().expect("ADDR");
            let n: usize = args[2].parse().expect("N");
            let pid: Option<u32> = args.get(3).map(|p| p.parse().expect("PID"));
            client(addr, n, pid);
        }
        _ => {
            eprintln!("usage: stress echo | stress free-port | stress client ADDR N [PID]");
            std::process::exit(2);
        }
    }
}

/// One small-stack thread per connection: simple, and 10k of them fit easily.
fn echo() {
    // A deep accept queue: 10k connects arrive faster than threads are spawned.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    sock.listen(8192).unwrap();
    let l: TcpListener = sock.into();
    println!("listening {}", l.local_addr().unwrap());
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        let spawned = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        if let Err(e) = spawned {
            eprintln!("echo: cannot spawn a thread: {e}");
        }
    }
}

/// `Rss` and `Pss` of a process in KiB, from /proc/PID/smaps_rollup.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

fn client(addr: SocketAddr, n: usize, pid: Option<u32>) {
    let t0 = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let s = loop {
            match TcpStream::connect(addr) {
                Ok(s) => break s,
                Err(e) => {
                    eprintln!("connect {i}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        conns.push(s);
    }
    println!("opened {n} connections in {:?}", t0.elapsed());
    let t1 = Instant::now();
    for (i, c) in conns.iter_mut().enumerate() {
        c.write_all(format!("message {i:08}\n").as_bytes()).unwrap();
    }
    let mut ok = 0usize;
    for (i, c) in conns.iter_mut().enumerate() {
        let want = format!("message {i:08}\n");
        let mut got = vec![0u8; want.len()];
        match c.read_exact(&mut got) {
            Ok(()) if got == want.as_bytes() => ok += 1,
            Ok(()) => eprintln!("connection {i}: wrong bytes"),
            Err(e) => eprintln!("connection {i}: {e}"),
        }
    }
    println!(
        "{ok}/{n} echoed correctly in {:?} (all open at once)",
        t1.elapsed()
    );
    if let Some(pid) = pid {
        let (rss, pss) = memory_kib(pid);
        println!("proxy memory with {n} open: rss={rss} KiB pss={pss} KiB");
    }
    drop(conns);
    println!("closed all {n}");
    if ok != n {
        std::process::exit(1);
    }
}
