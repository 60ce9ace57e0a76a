//! Running out of file descriptors (EMFILE): the built binary under a low RLIMIT_NOFILE is
//! saturated with connections, stays cheap (accept backs off, no busy loop) and serves again
//! once the connections are released.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::net::{self, free_port};
use common::wait::eventually;

/// The file-descriptor limit of the proxy under test.
const NOFILE: u64 = 64;

/// CPU time (user + system) of `pid` so far, from /proc/PID/stat.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// Starts `tcpmap run` with RLIMIT_NOFILE = `NOFILE`; its log goes to `log`.
fn spawn_proxy(config: &std::path::Path, log: &std::path::Path) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tcpmap"));
    // An explicit limit far above the descriptors: without it the default derived from
    // RLIMIT_NOFILE refuses connections before the descriptors run out.
    cmd.args(["run", "--max-connections", "100000", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: NOFILE,
                rlim_max: NOFILE,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

/// True when a fresh connection relays a message within `within`.
fn serves(addr: SocketAddr, within: Duration) -> bool {
    eventually(within, || {
        let Ok(mut c) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            return false;
        };
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut got = [0u8; 4];
        c.write_all(b"ping").is_ok() && c.read_exact(&mut got).is_ok() && &got == b"ping"
    })
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn fd_exhaustion_backs_off_without_spinning_and_recovers() {
    let up = net::echo("127.0.0.1:0");
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("plain.yaml");
    std::fs::write(&config, common::yaml::mapping("plain", port, up.addr)).unwrap();
    let log = dir.path().join("tcpmap.log");
    let proxy = KillOnDrop(spawn_proxy(&config, &log));
    let pid = proxy.0.id();
    let addr = net::local(port);
    assert!(serves(addr, Duration::from_secs(10)), "proxy never served");

    // Saturate: more connections than the proxy has descriptors for, all held open. A
    // worker whose upstream socket fails closes the client it accepted and so keeps taking
    // connections from the shared queue, possibly most of a round, while the other worker
    // still has room: open rounds until a fresh connection is no longer served.
    let mut held = Vec::new();
    let mut saturated = false;
    for _round in 0..8 {
        for _ in 0..NOFILE {
            let mut c = TcpStream::connect(addr).unwrap();
            let _ = c.write_all(b"x");
            held.push(c);
        }
        std::thread::sleep(Duration::from_millis(300));
        if !serves(addr, Duration::from_millis(300)) {
            saturated = true;
            break;
        }
    }
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        saturated,
        "{} held connections and a new one was still served:\n{log_text}",
        held.len()
    );
    // Which call meets the limit first depends on how many descriptors the process holds:
    // the accept (it backs off) or the upstream socket (the client is closed).
    assert!(
        log_text.contains("accept failed; backing off")
            || log_text.contains("no socket for the upstream connect"),
        "the proxy never ran out of descriptors:\n{log_text}"
    );
    // Running out of descriptors is not the upstream's fault.
    assert!(
        !log_text.contains("endpoint ejected"),
        "the endpoint was ejected for a local shortage:\n{log_text}"
    );

    // Saturated for 2 s: the accept loop must sleep, not spin.
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_time(pid) - before;
    assert!(
        used < Duration::from_millis(300),
        "{used:?} of CPU in 2 s while saturated: busy loop"
    );

    // Release: the proxy serves again.
    drop(held);
    assert!(
        serves(addr, Duration::from_secs(5)),
        "the proxy did not recover after the connections closed"
    );
    assert!(proxy.0.try_wait_ok());
}

trait AliveExt {
    fn try_wait_ok(&self) -> bool;
}

impl AliveExt for Child {
    /// True while the process is alive (it has not exited).
    fn try_wait_ok(&self) -> bool {
        std::path::Path::new(&format!("/proc/{}", self.id())).exists()
            && !std::fs::read_to_string(format!("/proc/{}/stat", self.id()))
                .unwrap_or_default()
                .contains(") Z ")
    }
}
