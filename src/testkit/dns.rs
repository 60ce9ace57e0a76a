//! A real DNS server for a test: Debian's dnsmasq on a free loopback UDP port, answering
//! the names of a hosts file (several addresses for one name = several endpoints) and any
//! records its extra arguments add, with `--local=/test/` (unknown names under `test` are
//! NXDOMAIN); and a resolv.conf + empty hosts file pointing the proxy at it. A missing dnsmasq
//! fails the test unless `TCPMAP_SKIP_DNSMASQ=1` (then [`Dnsmasq::start`] returns `None`).

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A dnsmasq child process (killed on drop) and the files that name it.
pub struct Dnsmasq {
    child: Child,
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> Option<PathBuf> {
    let fixed = [
        "/usr/sbin/dnsmasq",
        "/usr/local/sbin/dnsmasq",
        "/sbin/dnsmasq",
    ];
    let found = fixed.iter().map(PathBuf::from).find(|p| p.exists());
    found.or_else(|| {
        let paths = std::env::var_os("PATH")?;
        std::env::split_paths(&paths)
            .map(|d| d.join("dnsmasq"))
            .find(|p| p.exists())
    })
}

impl Dnsmasq {
    /// Starts dnsmasq answering `records` (`(ip, name)` pairs, a name may repeat) with TTL
    /// `ttl` under the local domain `test`.
    pub fn start(records: &[(&str, &str)], ttl: u32) -> Option<Dnsmasq> {
        Self::start_with(records, ttl, &[])
    }

    /// [`Dnsmasq::start`] with extra dnsmasq arguments (`--host-record=v6.test,::2`, ...).
    pub fn start_with(records: &[(&str, &str)], ttl: u32, args: &[&str]) -> Option<Dnsmasq> {
        let Some(bin) = binary() else {
            super::env::missing(
                "DNSMASQ",
                "dnsmasq not found (apt-get install -y dnsmasq-base; scripts/test does)",
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let hosts: String = records
            .iter()
            .map(|(ip, name)| format!("{ip} {name}\n"))
            .collect();
        std::fs::write(dir.path().join("records"), hosts).unwrap();
        std::fs::write(dir.path().join("hosts"), "").unwrap();
        let mut last = String::new();
        for _ in 0..5 {
            // dnsmasq binds the port for UDP and TCP: both must be free.
            let port = free_udp_and_tcp_port();
            let mut cmd = Command::new(&bin);
            cmd.args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--domain-needed",
                "--pid-file=",
                "--local=/test/",
            ])
            .arg(format!("--port={port}"))
            .arg(format!(
                "--addn-hosts={}",
                dir.path().join("records").display()
            ))
            .arg(format!("--local-ttl={ttl}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
            // dnsmasq drops privileges to `nobody` by default; keep root when we are root.
            if rustix::process::geteuid().is_root() {
                cmd.arg("--user=root");
            }
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            if ready(addr, &mut child) {
                std::fs::write(
                    dir.path().join("resolv.conf"),
                    format!("nameserver {addr}\nsearch test\n"),
                )
                .unwrap();
                return Some(Dnsmasq { child, addr, dir });
            }
            let _ = child.kill();
            last = String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into();
        }
        panic!("dnsmasq did not start: {last}");
    }

    /// A resolv.conf naming this server (and `search test`).
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.path().join("resolv.conf")
    }

    /// An empty hosts file (so names come from DNS).
    pub fn hosts_file(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }
}

/// A loopback port free for both UDP and TCP at the time of asking (another process may still
/// take it before dnsmasq binds it: the caller retries).
fn free_udp_and_tcp_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// True once dnsmasq answers a TCP-less probe: any reply to a query for `probe.test` (asked
/// for up to 10 s: a loaded CI machine starts it slowly); false at once when it exited (its
/// port was taken between the probe and its bind).
fn ready(addr: SocketAddr, child: &mut std::process::Child) -> bool {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    // A minimal DNS query: id 7, RD, one question `probe.test` A IN.
    let mut q = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["probe", "test"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut buf = [0u8; 512];
    for _ in 0..200 {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        let _ = socket.send_to(&q, addr);
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            if n >= 2 && buf[..2] == [0, 7] {
                return true;
            }
        }
    }
    false
}
