//! Running the real `tcpmap` binary as a child process for a test: spawn with arguments,
//! collect its stderr lines, wait for a log line with a deadline, send signals, wait for the
//! exit, and a tiny HTTP/1.1 GET for the admin endpoint. The child is killed on drop.
//! It must not start a proxy in-process (that is `proxy.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How often a start is retried with fresh ports after a bind error.
const BIND_ATTEMPTS: usize = 8;

/// A running `tcpmap` child process.
pub struct Daemon {
    child: Child,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
}

/// The path of the built binary.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tcpmap")
}

impl Daemon {
    /// Starts `tcpmap ARGS...` with `RUST_LOG=info` (unless `RUST_LOG` is given in `env`).
    pub fn spawn(args: &[&str]) -> Daemon {
        Self::spawn_env(args, &[])
    }

    /// Like [`Daemon::spawn`] with extra environment variables.
    pub fn spawn_env(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(binary());
        cmd.args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn tcpmap");
        let stderr = child.stderr.take().expect("stderr piped");
        let lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("TCPMAP_TEST_ECHO").is_some() {
                    eprintln!("[tcpmap] {line}");
                }
                let (m, cv) = &*sink;
                m.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
        Daemon { child, lines }
    }

    /// `tcpmap run --config CONFIG ARGS...`, waiting until it logs that it runs.
    pub fn run(config: &Path, extra: &[&str]) -> Daemon {
        let mut args = vec!["run", "--config", config.to_str().unwrap()];
        args.extend_from_slice(extra);
        let d = Daemon::spawn(&args);
        d.wait_for(0, "tcpmap running", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("tcpmap did not start:\n{}", d.log()));
        d
    }

    /// `tcpmap run --config CONFIG ARGS...` on the config that `config` writes for `N` fresh
    /// listener ports (it returns the config path). When the daemon exits because it cannot
    /// bind (another process took a port between the probe and the bind), tries again with
    /// `N` new ports. Returns the running daemon and its ports.
    pub fn run_ports<const N: usize>(
        config: impl Fn([u16; N]) -> PathBuf,
        extra: &[&str],
    ) -> (Daemon, [u16; N]) {
        Self::run_ports_env(config, extra, &[])
    }

    /// [`Daemon::run_ports`] with extra environment variables.
    pub fn run_ports_env<const N: usize>(
        config: impl Fn([u16; N]) -> PathBuf,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> (Daemon, [u16; N]) {
        for _ in 0..BIND_ATTEMPTS {
            let ports: [u16; N] = std::array::from_fn(|_| super::net::free_port());
            let path = config(ports);
            let mut args = vec!["run", "--config", path.to_str().unwrap()];
            args.extend_from_slice(extra);
            let mut d = Daemon::spawn_env(&args, env);
            let outcome = d.wait_line(0, Duration::from_secs(10), |l| {
                l.contains("tcpmap running") || l.contains("cannot bind")
            });
            match outcome {
                Some(l) if l.contains("tcpmap running") => return (d, ports),
                Some(l) => {
                    let status = d.wait_exit(Duration::from_secs(5));
                    eprintln!("tcpmap start: {l} ({status:?}); retrying with fresh ports");
                }
                None => panic!("tcpmap did not start:\n{}", d.log()),
            }
        }
        panic!("tcpmap did not start after {BIND_ATTEMPTS} bind errors");
    }

    /// [`Daemon::run_ports`] on a config file at `path` holding the YAML that `yaml` makes
    /// from the ports (rewritten on each try).
    pub fn run_yaml<const N: usize>(
        path: &Path,
        yaml: impl Fn([u16; N]) -> String,
        extra: &[&str],
    ) -> (Daemon, [u16; N]) {
        Self::run_yaml_env(path, yaml, extra, &[])
    }

    /// [`Daemon::run_yaml`] with extra environment variables.
    pub fn run_yaml_env<const N: usize>(
        path: &Path,
        yaml: impl Fn([u16; N]) -> String,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> (Daemon, [u16; N]) {
        Self::run_ports_env(
            |ports| {
                std::fs::write(path, yaml(ports)).unwrap();
                path.to_path_buf()
            },
            extra,
            env,
        )
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many stderr lines arrived so far (a mark for [`Daemon::wait_for`]).
    pub fn mark(&self) -> usize {
        self.lines.0.lock().unwrap().len()
    }

    /// Every stderr line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.0.lock().unwrap().clone()
    }

    /// Every stderr line so far, joined (for failure messages).
    pub fn log(&self) -> String {
        self.lines().join("\n")
    }

    /// Waits for a line at index `from` or later containing `needle`; returns it, or `None`
    /// when `within` passes.
    pub fn wait_for(&self, from: usize, needle: &str, within: Duration) -> Option<String> {
        self.wait_line(from, within, |l| l.contains(needle))
    }

    /// Waits for a line at index `from` or later that satisfies `pred`.
    pub fn wait_line(
        &self,
        from: usize,
        within: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + within;
        let (m, cv) = &*self.lines;
        let mut lines = m.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().skip(from).find(|l| pred(l)) {
                return Some(l.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            lines = cv.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`) to the child.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({sig}) failed");
    }

    /// Waits for the child to exit within `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The admin address the daemon logged at start (`--admin 127.0.0.1:0` picks a port).
    pub fn admin_addr(&self) -> SocketAddr {
        let line = self
            .wait_for(0, "tcpmap running", Duration::from_secs(10))
            .expect("started");
        let start = line.find("Some(").expect("admin address in the start line") + 5;
        let end = line[start..].find(')').expect("closing paren") + start;
        line[start..end].parse().expect("admin address parses")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on the admin endpoint: (status code, body). Plain HTTP/1.1, `Connection: close`.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("admin connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("admin response");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

/// Decodes a chunked body (enough for the admin server's answers).
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// Writes `text` to `path` atomically (temp file + rename), like most editors.
pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// True while process `pid` runs (a zombie is dead for our purposes: it serves nothing).
pub fn pid_alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// Sends `sig` to process `pid` (a worker or Supervisor the daemon reported).
pub fn kill(pid: u64, sig: libc::c_int) {
    // SAFETY: kill(2) on a pid the daemon reported; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
}
