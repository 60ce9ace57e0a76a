//! The `postgres` scenario: `examples/config/postgres.yaml` in front of two real PostgreSQL
//! servers, reached with `psql` by SNI through one port.
//!
//! It needs Debian's `postgresql` (the servers and `psql`; `apt-get install postgresql`) and
//! says so when it is missing. One `initdb` (copied for the second server) in a temporary
//! directory; the servers run as the `postgres` user (else `nobody`) when this runs as root,
//! which `initdb` refuses. Each runs under a shell that waits on a pipe from this process: when
//! the scenario ends (or this process dies) the pipe closes and the shell stops its server and
//! removes its directory.
//!
//! The service names resolve through the runner's hosts file: `db1` to db1's address, `db2`
//! and `reports-db` to db2's two addresses (db2 listens on both).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tcpmap::testkit::pki::Ca;

use super::Env;

/// What the scenario asks each server: which one answered, and whether the session is TLS.
const WHO: &str = "SELECT current_setting('cluster_name') || '|' || CASE WHEN ssl THEN 'tls' \
                   ELSE 'clear' END FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

/// What to say when PostgreSQL is missing.
pub(crate) const INSTALL: &str = "PostgreSQL is not installed (no /usr/lib/postgresql/N/bin/initdb): \
     `apt-get install postgresql` (Debian/Ubuntu), then run this scenario again";

/// One running server; dropping it stops the server and removes its directory.
pub(crate) struct Server {
    pub(crate) port: u16,
    shell: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing the shell's stdin makes it stop postgres (fast shutdown) and remove the
        // directory; wait for that so nothing outlives the scenario.
        drop(self.shell.stdin.take());
        let _ = self.shell.wait();
    }
}

/// The two servers, the CA their certificates come from, and `psql`.
pub(crate) struct Servers {
    pub(crate) db1: Server,
    pub(crate) db2: Server,
    /// The file holding the servers' CA certificate (for `sslrootcert`).
    pub(crate) ca_file: PathBuf,
    psql: PathBuf,
    _dir: tempfile::TempDir,
}

/// The newest installed PostgreSQL's `bin` directory (Debian: /usr/lib/postgresql/N/bin).
fn pg_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

/// Whether PostgreSQL (its `initdb`) is installed where Debian puts it.
pub(crate) fn installed() -> bool {
    pg_bin().is_some()
}

/// The user the servers run as when this runs as root: `postgres`, else `nobody`.
fn server_user() -> Option<&'static str> {
    // SAFETY: getuid(2) reads the process's own uid.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    let has = |u: &str| {
        Command::new("id")
            .args(["-u", u])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    Some(if has("postgres") {
        "postgres"
    } else {
        "nobody"
    })
}

/// `sh -c script sh ARGS...`, as the server user when there is one.
fn shell(script: &str, args: &[&str]) -> Command {
    let mut c = match server_user() {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", "sh", "-c", script, "sh"]);
            c
        }
        None => {
            let mut c = Command::new("sh");
            c.args(["-c", script, "sh"]);
            c
        }
    };
    c.args(args);
    c
}

fn path_str(p: &Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("{}: not UTF-8", p.display()))
}

/// Writes the certificates, runs one `initdb` (copied for db2) and starts both servers:
/// db1 on `ip1` with a certificate for `db1.example.com`, db2 on `ip2s` with one for
/// `db2.example.com`. `Err(INSTALL)` when PostgreSQL is missing.
pub(crate) fn start(ip1: IpAddr, ip2s: &[IpAddr]) -> Result<Servers, String> {
    let bin = pg_bin().ok_or(INSTALL)?;
    // Under /tmp when the servers run as another user, who must reach the directory.
    let dir = match server_user() {
        Some(_) => tempfile::tempdir_in("/tmp"),
        None => tempfile::tempdir(),
    }
    .map_err(|e| format!("temp dir: {e}"))?;
    let ca = Ca::new("scenario postgres CA");
    let ca_file = dir.path().join("servers-ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).map_err(|e| e.to_string())?;
    let mut dirs = Vec::new();
    for name in ["db1", "db2"] {
        let d = dir.path().join(name);
        std::fs::create_dir(&d).map_err(|e| e.to_string())?;
        let (cert, key) = ca.leaf(&[&format!("{name}.example.com")]);
        std::fs::write(d.join("server.crt"), cert).map_err(|e| e.to_string())?;
        std::fs::write(d.join("server.key"), key).map_err(|e| e.to_string())?;
        dirs.push(d);
    }
    if let Some(user) = server_user() {
        let ok = Command::new("chown")
            .args(["-R", &format!("{user}:")])
            .arg(dir.path())
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if !ok.success() {
            return Err(format!("chown -R {user} {} failed", dir.path().display()));
        }
    }
    let (d1, d2) = (path_str(&dirs[0])?, path_str(&dirs[1])?);
    // Trust every loopback client (tcpmap connects from 127.0.0.1 to the servers' 127.0.0.N).
    let init = shell(
        "chmod 600 \"$2/server.key\" \"$3/server.key\" && \
         \"$1/initdb\" -D \"$2/data\" -A trust -U postgres --no-sync -E UTF8 >\"$2/initdb.log\" 2>&1 && \
         echo 'host all all 127.0.0.0/8 trust' >>\"$2/data/pg_hba.conf\" && \
         cp -a \"$2/data\" \"$3/data\"",
        &[path_str(&bin)?, d1, d2],
    )
    .output()
    .map_err(|e| format!("initdb: {e}"))?;
    if !init.status.success() {
        let log = std::fs::read_to_string(dirs[0].join("initdb.log")).unwrap_or_default();
        return Err(format!(
            "initdb failed: {}{log}",
            String::from_utf8_lossy(&init.stderr)
        ));
    }
    let db1 = start_server(&bin, &dirs[0], "db1", &[ip1])?;
    let db2 = start_server(&bin, &dirs[1], "db2", ip2s)?;
    let psql = bin.join("psql");
    Ok(Servers {
        db1,
        db2,
        ca_file,
        psql: if psql.exists() { psql } else { "psql".into() },
        _dir: dir,
    })
}

/// Starts `postgres` on a free port of `ips` (another port if that one is taken meanwhile).
fn start_server(bin: &Path, dir: &Path, name: &str, ips: &[IpAddr]) -> Result<Server, String> {
    let listen: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    let log = dir.join("server.log");
    for _ in 0..5 {
        let port = std::net::TcpListener::bind((ips[0], 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("free port: {e}"))?
            .port();
        let script = "d=\"$2\"; \"$1/postgres\" -D \"$d/data\" -p \"$3\" -k \"$d\" \
             -c listen_addresses=\"$5\" -c cluster_name=\"$4\" -c fsync=off \
             -c max_connections=20 -c shared_buffers=16MB \
             -c ssl=on -c ssl_cert_file=\"$d/server.crt\" -c ssl_key_file=\"$d/server.key\" \
             </dev/null >\"$d/server.log\" 2>&1 & pid=$!; \
             read _ignored; kill -INT \"$pid\"; wait \"$pid\"; rm -rf \"$d\"";
        let port_text = port.to_string();
        let shell = shell(
            script,
            &[
                path_str(bin)?,
                path_str(dir)?,
                &port_text,
                name,
                &listen.join(","),
            ],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start postgres {name}: {e}"))?;
        let server = Server { port, shell };
        let deadline = Instant::now() + Duration::from_secs(20);
        let text = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("ready to accept connections")
                || text.contains("could not bind")
                || Instant::now() > deadline
            {
                break text;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if text.contains("ready to accept connections") && !text.contains("could not bind") {
            return Ok(server);
        }
        if !text.contains("could not bind") {
            return Err(format!("postgres {name} did not start:\n{text}"));
        }
        drop(server);
    }
    Err(format!("postgres {name}: no free port after 5 tries"))
}

impl Servers {
    /// `psql` with `conninfo` runs [`WHO`]: `server|tls` or `server|clear`, or its error.
    pub(crate) fn who(&self, conninfo: &str) -> Result<String, String> {
        let out = Command::new(&self.psql)
            .args(["-X", "-A", "-t", "-q", "-d", conninfo, "-c", WHO])
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGSSLMODE")
            .env_remove("PGHOST")
            .env_remove("PGHOSTADDR")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", self.psql.display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(err.trim().to_string())
        }
    }
}

type Cases = Vec<(String, &'static str, Result<(), String>)>;

/// The scenario: the servers, a proxy on `postgres.yaml`, and one `psql` per case.
pub(crate) fn scenario(env: &Env) -> Result<(tcpmap::ProxyHandle, Cases), String> {
    let servers = start(Env::ip("db1"), &[Env::ip("db2"), Env::ip("reports-db")])?;
    let addr = |ip, port| SocketAddr::new(ip, port);
    let (proxy, port) = env.proxy(
        "postgres.yaml",
        &[
            ("db1", addr(Env::ip("db1"), servers.db1.port)),
            ("db2", addr(Env::ip("db2"), servers.db2.port)),
            ("reports-db", addr(Env::ip("reports-db"), servers.db2.port)),
        ],
    )?;
    let servers_ca = servers.ca_file.display().to_string();
    let example_ca = env.examples.join("secrets/supersecret/tls.crt");
    let example_ca = example_ca.display().to_string();
    let conn = |host: &str, extra: &str| {
        format!("host={host} hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres {extra}")
    };
    let verify = |ca: &str| format!("sslmode=verify-full sslrootcert={ca}");
    let runs: [(String, &str, String, &str); 5] = [
        (
            format!("psql db1.example.com :{port} -> db1"),
            "SSLRequest, SNI routed, passthrough; verify-full with db1's own certificate",
            conn("db1.example.com", &verify(&servers_ca)),
            "db1|tls",
        ),
        (
            format!("psql db2.example.com :{port} -> db2"),
            "the same port, another name: db2's own TLS",
            conn("db2.example.com", &verify(&servers_ca)),
            "db2|tls",
        ),
        (
            format!("psql my-host-1 :{port} -> reports-db"),
            "TLS terminated with my-context (verify-full); the server gets the session in clear",
            conn("my-host-1", &verify(&example_ca)),
            "db2|clear",
        ),
        (
            format!("psql 127.0.0.1 :{port} -> db1"),
            "no SNI (an IP host): the host-less mapping, SSLRequest replayed, db1's TLS",
            conn("127.0.0.1", "sslmode=require"),
            "db1|tls",
        ),
        (
            format!("psql sslmode=disable :{port} -> db1"),
            "a startup message in clear: the host-less mapping",
            conn("db1.example.com", "sslmode=disable"),
            "db1|clear",
        ),
    ];
    let cases = runs
        .into_iter()
        .map(|(case, checked, conninfo, want)| {
            let result = servers.who(&conninfo).and_then(|got| {
                if got == want {
                    Ok(())
                } else {
                    Err(format!("expected {want}, got {got}"))
                }
            });
            (case, checked, result)
        })
        .collect();
    // Stop the servers before the proxy goes (they would stop at exit anyway).
    drop(servers);
    Ok((proxy, cases))
}
