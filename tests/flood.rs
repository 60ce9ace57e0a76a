//! Floods of empty connections (issue 24, item 5): `--dont-log-null` writes no access line for
//! a connection whose client sent no byte (plain and TLS listeners) but keeps the others', and
//! without `--max-connections` the soft RLIMIT_NOFILE is raised to the hard one and the
//! connection limit derived from it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::time::Duration;

use common::daemon::Daemon;
use common::net;
use common::pki::TlsSecret;
use common::yaml::{mapping, mapping_with, tls_context};

/// Connects and closes without a byte, `n` times; waits for each close to be seen.
fn empty_connections(addr: SocketAddr, n: usize) {
    for _ in 0..n {
        let s = TcpStream::connect(addr).unwrap();
        s.shutdown(Shutdown::Both).unwrap();
    }
}

#[test]
fn dont_log_null_skips_empty_connections_but_logs_the_rest() {
    let TlsSecret { ca: _ca, dir } = TlsSecret::new("flood CA", "fsecret", &["f.example"]);
    let up = net::echo("127.0.0.1:0");
    let cfg = dir.path().join("config.yaml");
    let secrets = dir.path().to_str().unwrap().to_string();
    let addr = up.addr;
    let (d, [plain, tls]) = Daemon::run_yaml(
        &cfg,
        |[plain, tls]| {
            format!(
                "{}{}{}",
                mapping("plain", plain, addr),
                tls_context("ctx", "hosts: [f.example]\nsecret: fsecret\n"),
                mapping_with("tls", tls, addr, "host: f.example\n"),
            )
        },
        &[
            "--dont-log-null",
            "--secrets-dir",
            &secrets,
            "--workers",
            "1",
        ],
    );
    empty_connections(net::local(plain), 20);
    empty_connections(net::local(tls), 20);
    // A client that sends something is logged on both kinds of listener.
    let mut s = net::connect(net::local(plain));
    net::roundtrip(&mut s, b"real data");
    drop(s);
    let mut t = net::connect(net::local(tls));
    t.write_all(b"not a hello at all\n").unwrap();
    drop(t);
    d.wait_for(0, "mapping=\"plain\"", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the real connection was not logged:\n{}", d.log()));
    // Not TLS on a port with only a `host` mapping.
    d.wait_for(0, "end=\"no_route\"", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the TLS listener's bad client was not logged:\n{}", d.log()));
    std::thread::sleep(Duration::from_millis(300));
    let access: Vec<String> = d
        .lines()
        .into_iter()
        .filter(|l| l.contains("tcpmap::access"))
        .collect();
    assert_eq!(access.len(), 2, "{access:#?}");
}

#[test]
fn without_max_connections_the_limit_follows_the_descriptors() {
    let up = net::echo("127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, mapping("m", net::free_port(), up.addr)).unwrap();
    let mut cmd = std::process::Command::new(common::daemon::binary());
    cmd.args(["run", "--workers", "1", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 200,
                rlim_max: 400,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(stderr);
    let mut found = None;
    for _ in 0..50 {
        line.clear();
        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) == 0 {
            break;
        }
        if line.contains("descriptor limit allows") {
            found = Some(line.clone());
            break;
        }
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let found = found.expect("no line about the derived limit");
    // Soft raised from 200 to the hard 400; (400 - 100) / 2.
    assert!(found.contains("max_connections=150"), "{found}");
    assert!(found.contains("nofile=400"), "{found}");
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        open_files.split_whitespace().collect::<Vec<_>>()[3..5],
        ["400", "400"],
        "{open_files}"
    );
}
