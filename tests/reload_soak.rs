//! Reload soak (`#[ignore]`; run with `scripts/reload-soak.sh`): 100 SIGHUP reloads
//! alternating a mapping between two upstreams while load threads keep opening, using and
//! closing connections through it. Every connection must succeed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, write_atomic};
use common::net;
use common::yaml::mapping;

/// One client connection: banner, three echoes, half-close, EOF. Err on any deviation.
fn one_connection(addr: SocketAddr) -> Result<String, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let name = net::read_line(&mut s);
    if name != "A" && name != "B" {
        return Err(format!("bad banner {name:?}"));
    }
    for i in 0..3 {
        let msg = format!("ping {i}\n");
        s.write_all(msg.as_bytes()).map_err(|e| e.to_string())?;
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).map_err(|e| e.to_string())?;
        if got != msg.as_bytes() {
            return Err("echo mismatch".into());
        }
    }
    s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).map_err(|e| e.to_string())?;
    Ok(name)
}

#[test]
#[ignore = "soak: run scripts/reload-soak.sh"]
fn hundred_reloads_under_load_fail_no_connection() {
    let reloads: usize = std::env::var("SOAK_RELOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let workers: usize = std::env::var("SOAK_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let ups = [
        net::banner("127.0.0.1:0", "A"),
        net::banner("127.0.0.1:0", "B"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let (d, [port]) = Daemon::run_yaml(&cfg, |[port]| mapping("soak", port, ups[0].addr), &[]);
    let addr = net::local(port);
    let yaml = |up: usize| mapping("soak", port, ups[up].addr);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let load: Vec<_> = (0..workers)
        .map(|_| {
            let (stop, ok, failed, errors) =
                (stop.clone(), ok.clone(), failed.clone(), errors.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match one_connection(addr) {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            errors.lock().unwrap().push(e);
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();

    let started = Instant::now();
    for i in 0..reloads {
        write_atomic(&cfg, &yaml((i + 1) % 2));
        let mark = d.mark();
        d.signal(libc::SIGHUP);
        d.wait_line(mark, Duration::from_secs(5), |l| {
            l.contains("trigger=\"sighup\"") && l.contains("reload applied")
        })
        .unwrap_or_else(|| panic!("reload {i} not applied:\n{}", d.log()));
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let generation = d
        .lines()
        .iter()
        .rev()
        .find(|l| l.contains("config applied"))
        .cloned()
        .unwrap_or_default();
    eprintln!(
        "SOAK: {reloads} reloads in {took:.1?} with {workers} load threads: {ok} connections ok, \
         {failed} failed; upstream A accepted {}, B accepted {}; last apply: {generation}",
        ups[0].connections(),
        ups[1].connections()
    );
    let errors = errors.lock().unwrap();
    assert_eq!(
        failed,
        0,
        "failed connections: {:?}",
        &errors[..errors.len().min(10)]
    );
    assert!(ok > reloads, "too little load: {ok}");
}
