//! `starttls: postgres` with the real thing: two PostgreSQL servers (Debian's `postgresql`,
//! `ssl = on` with certificates of a test CA) behind one tcpmap port, reached with `psql` (libpq)
//! by SNI, in clear, with cancels, and with a small Rust client for what psql of this version
//! cannot do (direct TLS with ALPN `postgresql`, the GSSENCRequest).
//!
//! The two servers start once for the whole file (one `initdb`, copied), run as the `postgres`
//! user (else `nobody`) when the tests run as root (`initdb` refuses root), in temporary
//! directories, and stop (and remove their directory) when the test process exits: each runs
//! under a shell that waits on a pipe from this process. A missing PostgreSQL fails these tests
//! unless `TCPMAP_SKIP_POSTGRES=1` (scripts/test installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::daemon::Daemon;
use common::net::{free_port, local};
use common::pki::{Ca, write_secret};
use common::wait::eventually;
use common::yaml::{mapping_with, tls_context};

/// A running PostgreSQL server: its port, the `cluster_name` it answers with, and the shell
/// that stops it when its stdin (held here) closes.
struct Server {
    port: u16,
    _guard: Mutex<Child>,
}

/// The two servers and the CA their certificates come from.
struct Servers {
    db1: Server,
    db2: Server,
    ca_file: PathBuf,
    psql: PathBuf,
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

/// The user the servers run as: this one, or when root (which `initdb` refuses) `postgres`,
/// else `nobody`.
fn server_user() -> Option<&'static str> {
    // SAFETY: getuid(2) reads the process's own uid.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    let has = |u: &str| {
        Command::new("id")
            .arg("-u")
            .arg(u)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    Some(if has("postgres") {
        "postgres"
    } else {
        "nobody"
    })
}

/// `sh -c script` as the server user, with `args` as `$1...`.
fn as_server_user(script: &str, args: &[&str]) -> Command {
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

fn servers() -> Option<&'static Servers> {
    static SERVERS: OnceLock<Option<Servers>> = OnceLock::new();
    SERVERS.get_or_init(start_servers).as_ref()
}

fn start_servers() -> Option<Servers> {
    let Some(bin) = pg_bin() else {
        common::env::missing(
            "POSTGRES",
            "PostgreSQL is not installed (apt-get install postgresql)",
        );
        return None;
    };
    let ca = Ca::new("postgres upstream CA");
    // Kept: each server's shell removes its directory when it stops. Under /tmp when the
    // servers run as another user, who must reach them (a root-only TMPDIR would not do).
    let base = match server_user() {
        Some(_) => PathBuf::from("/tmp"),
        None => std::env::temp_dir(),
    };
    let dirs: Vec<PathBuf> = (0..2)
        .map(|_| tempfile::tempdir_in(&base).unwrap().keep())
        .collect();
    let ca_file = dirs[0].join("upstream-ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    for (dir, name) in dirs.iter().zip(["db1.example", "db2.example"]) {
        let (cert, key) = ca.leaf(&[name]);
        std::fs::write(dir.join("server.crt"), cert).unwrap();
        std::fs::write(dir.join("server.key"), key).unwrap();
        if let Some(user) = server_user() {
            let ok = Command::new("chown")
                .args(["-R", &format!("{user}:")])
                .arg(dir)
                .status()
                .unwrap();
            assert!(ok.success());
        }
    }
    let d: Vec<&str> = dirs.iter().map(|d| d.to_str().unwrap()).collect();
    // One initdb, copied: the two servers differ in cluster_name, port and certificate.
    let init = as_server_user(
        "chmod 600 \"$2/server.key\" \"$3/server.key\" && \
         \"$1/initdb\" -D \"$2/data\" -A trust -U postgres --no-sync -E UTF8 >\"$2/initdb.log\" 2>&1 && \
         cp -a \"$2/data\" \"$3/data\"",
        &[bin.to_str().unwrap(), d[0], d[1]],
    )
    .output()
    .unwrap();
    assert!(
        init.status.success(),
        "initdb failed: {}\n{}",
        String::from_utf8_lossy(&init.stderr),
        std::fs::read_to_string(dirs[0].join("initdb.log")).unwrap_or_default()
    );
    let db1 = start_server(&bin, &dirs[0], "db1");
    let db2 = start_server(&bin, &dirs[1], "db2");
    let psql = if bin.join("psql").exists() {
        bin.join("psql")
    } else {
        PathBuf::from("psql")
    };
    Some(Servers {
        db1,
        db2,
        ca_file,
        psql,
    })
}

/// Starts `postgres` on a fresh port (another port when that one turns out taken); the shell
/// around it stops it and removes `dir` when this process's end of its stdin closes.
fn start_server(bin: &Path, dir: &Path, name: &str) -> Server {
    for _ in 0..5 {
        let port = free_port();
        let script = "d=\"$2\"; \"$1/postgres\" -D \"$d/data\" -p \"$3\" -k \"$d\" \
             -c listen_addresses=127.0.0.1 -c cluster_name=\"$4\" -c fsync=off \
             -c max_connections=20 -c shared_buffers=16MB \
             -c ssl=on -c ssl_cert_file=\"$d/server.crt\" -c ssl_key_file=\"$d/server.key\" \
             </dev/null >\"$d/server.log\" 2>&1 & pid=$!; \
             read _ignored; kill -INT \"$pid\"; wait \"$pid\"; rm -rf \"$d\"";
        let port_text = port.to_string();
        let child = as_server_user(
            script,
            &[
                bin.to_str().unwrap(),
                dir.to_str().unwrap(),
                &port_text,
                name,
            ],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn postgres");
        let log = dir.join("server.log");
        let ready = eventually(Duration::from_secs(20), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains("ready to accept connections") || text.contains("could not bind")
        });
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if ready && !text.contains("could not bind") {
            return Server {
                port,
                _guard: Mutex::new(child),
            };
        }
        assert!(
            text.contains("could not bind"),
            "postgres {name} did not start:\n{text}"
        );
        // Dropping the child closes its stdin: the shell stops what started.
        drop(child);
    }
    panic!("postgres {name}: no free port after 5 tries");
}

/// `psql CONNINFO -c SQL`: its output, or its error text.
fn psql(s: &Servers, conninfo: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(&s.psql)
        .args(["-X", "-A", "-t", "-q", "-d", conninfo, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSSLMODE")
        .env_remove("PGHOST")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// What every query asks: which server answered, and whether its connection is TLS.
const WHO: &str = "SELECT current_setting('cluster_name') || '|' || CASE WHEN ssl THEN 'tls' ELSE 'clear' END FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

fn conninfo(port: u16, host: &str, extra: &str) -> String {
    format!("host={host} hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres {extra}")
}

// --- a minimal Postgres client (startup, one simple query) for what psql cannot do here ---

fn startup_message() -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for s in ["user", "postgres", "database", "postgres"] {
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend(body);
    msg
}

fn read_message(r: &mut impl Read) -> (u8, Vec<u8>) {
    let mut head = [0u8; 5];
    r.read_exact(&mut head).unwrap();
    let len = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len - 4];
    r.read_exact(&mut body).unwrap();
    (head[0], body)
}

/// Starts a session on `s` (trust authentication) and returns the answer to `SELECT
/// current_setting('cluster_name')`.
fn cluster_name_over(s: &mut (impl Read + Write)) -> String {
    s.write_all(&startup_message()).unwrap();
    loop {
        let (kind, body) = read_message(s);
        assert_ne!(kind, b'E', "{}", String::from_utf8_lossy(&body));
        if kind == b'Z' {
            break;
        }
    }
    let sql = b"SELECT current_setting('cluster_name')\0";
    let mut q = vec![b'Q'];
    q.extend_from_slice(&((sql.len() + 4) as u32).to_be_bytes());
    q.extend_from_slice(sql);
    s.write_all(&q).unwrap();
    let mut value = String::new();
    loop {
        let (kind, body) = read_message(s);
        match kind {
            b'D' => {
                // One column: count (2), length (4), the bytes.
                let len = u32::from_be_bytes(body[2..6].try_into().unwrap()) as usize;
                value = String::from_utf8_lossy(&body[6..6 + len]).into_owned();
            }
            b'E' => panic!("{}", String::from_utf8_lossy(&body)),
            b'Z' => break,
            _ => {}
        }
    }
    value
}

/// A TLS client that starts TLS directly (no SSLRequest) with SNI `name` and ALPN
/// `postgresql`, trusting `ca_pem`: the negotiated ALPN and the server's cluster_name.
fn direct_tls(port: u16, name: &str, ca_pem: &str) -> Result<(Option<Vec<u8>>, String), String> {
    let mut config = (*common::pki::client_config(ca_pem, None)).clone();
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    let server = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
    let sock = TcpStream::connect(local(port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            return Err(e.to_string());
        }
    }
    let alpn = tls.conn.alpn_protocol().map(<[u8]>::to_vec);
    let name = cluster_name_over(&mut tls);
    Ok((alpn, name))
}

/// Sends `first` in clear and returns the bytes the proxy answers before it closes.
fn answer_to(port: u16, first: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(local(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(first).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

/// A tcpmap daemon on one port with the YAML `yaml` makes for it, secrets in `secrets`.
fn tcpmap(dir: &Path, secrets: &Path, yaml: impl Fn(u16) -> String) -> (Daemon, u16) {
    let secrets = secrets.to_str().unwrap().to_string();
    let (d, [port]) = Daemon::run_yaml(
        &dir.join("config.yaml"),
        |[p]| yaml(p),
        &["--secrets-dir", &secrets, "--log-format", "json"],
    );
    (d, port)
}

/// The access line whose JSON contains every one of `needles`.
fn access_line(d: &Daemon, needles: &[&str]) -> serde_json::Value {
    let line = d
        .wait_line(0, Duration::from_secs(10), |l| {
            l.contains("tcpmap::access") && needles.iter().all(|n| l.contains(n))
        })
        .unwrap_or_else(|| panic!("no access line with {needles:?}:\n{}", d.log()));
    serde_json::from_str(&line).unwrap()
}

#[test]
fn psql_reaches_each_database_by_sni_through_one_port_when_tcpmap_terminates() {
    let Some(s) = servers() else { return };
    let proxy_ca = Ca::new("tcpmap CA");
    let secrets = tempfile::tempdir().unwrap();
    let (cert, key) = proxy_ca.leaf(&["db1.example", "db2.example"]);
    write_secret(secrets.path(), "dbs", &cert, &key);
    let proxy_ca_file = secrets.path().join("proxy-ca.pem");
    std::fs::write(&proxy_ca_file, proxy_ca.cert_pem()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (d, port) = tcpmap(dir.path(), secrets.path(), |p| {
        tls_context("dbs", "hosts: [db1.example, db2.example]\nsecret: dbs\n")
            + &mapping_with(
                "db1",
                p,
                local(s.db1.port),
                "host: db1.example\nstarttls: postgres\n",
            )
            // The second database gets TLS again from tcpmap: SSLRequest, `S`, then TLS.
            + &mapping_with("db2", p, local(s.db2.port), "host: db2.example\ntls: true\n")
            + &mapping_with("clear", p, local(s.db1.port), "")
    });
    let verify = format!(
        "sslmode=verify-full sslrootcert={} gssencmode=prefer",
        proxy_ca_file.display()
    );
    assert_eq!(
        psql(s, &conninfo(port, "db1.example", &verify), WHO).unwrap(),
        "db1|clear"
    );
    assert_eq!(
        psql(s, &conninfo(port, "db2.example", &verify), WHO).unwrap(),
        "db2|tls"
    );
    // sslmode=disable: a startup message in clear, to the host-less mapping.
    assert_eq!(
        psql(s, &conninfo(port, "db1.example", "sslmode=disable"), WHO).unwrap(),
        "db1|clear"
    );
    // A direct ClientHello with ALPN postgresql: tcpmap selects it though the TLSContext
    // lists no ALPN.
    let (alpn, name) = direct_tls(port, "db2.example", &proxy_ca.cert_pem())
        .unwrap_or_else(|e| panic!("direct TLS: {e}\n{}", d.log()));
    assert_eq!(alpn.as_deref(), Some(&b"postgresql"[..]));
    assert_eq!(name, "db2");

    let v = access_line(&d, &["\"mapping\":\"db1\""]);
    assert_eq!(v["tls"], "terminate", "{v}");
    assert_eq!(v["sni"], "db1.example", "{v}");
    let v = access_line(&d, &["\"mapping\":\"db2\""]);
    assert_eq!(v["tls"], "terminate+originate", "{v}");
    let v = access_line(&d, &["\"mapping\":\"clear\""]);
    assert_eq!(v["tls"], "none", "{v}");
}

#[test]
fn passthrough_relays_each_servers_own_tls_and_cancels_go_to_the_host_less_mapping() {
    let Some(s) = servers() else { return };
    let secrets = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (d, port) = tcpmap(dir.path(), secrets.path(), |p| {
        mapping_with(
            "db1",
            p,
            local(s.db1.port),
            "host: db1.example\ntls_passthrough: true\nstarttls: postgres\n",
        ) + &mapping_with(
            "db2",
            p,
            local(s.db2.port),
            "host: db2.example\ntls_passthrough: true\n",
        ) + &mapping_with("cancels", p, local(s.db1.port), "")
    });
    // verify-full against the servers' own CA: the certificate is db1's or db2's.
    let verify = format!("sslmode=verify-full sslrootcert={}", s.ca_file.display());
    assert_eq!(
        psql(s, &conninfo(port, "db1.example", &verify), WHO).unwrap(),
        "db1|tls"
    );
    assert_eq!(
        psql(s, &conninfo(port, "db2.example", &verify), WHO).unwrap(),
        "db2|tls"
    );
    // An IP address as host: libpq sends no SNI, the host-less mapping takes the client's
    // TLS as a Postgres connection (SSLRequest replayed, `S` swallowed).
    assert_eq!(
        psql(s, &conninfo(port, "127.0.0.1", "sslmode=require"), WHO).unwrap(),
        "db1|tls"
    );
    // So does an unknown name.
    assert_eq!(
        psql(s, &conninfo(port, "db3.example", "sslmode=require"), WHO).unwrap(),
        "db1|tls"
    );
    // Direct TLS passed through to a server that knows only the SSLRequest (PostgreSQL 15).
    let ca_pem = std::fs::read_to_string(&s.ca_file).unwrap();
    let (_, name) = direct_tls(port, "db2.example", &ca_pem)
        .unwrap_or_else(|e| panic!("direct TLS: {e}\n{}", d.log()));
    assert_eq!(name, "db2");
    let v = access_line(&d, &["\"mapping\":\"db1\""]);
    assert_eq!(v["tls"], "passthrough", "{v}");
    assert_eq!(v["sni"], "db1.example", "{v}");

    // A cancel: psql (libpq before 17) sends PQcancel's CancelRequest in clear to the same
    // address; the host-less mapping takes it to db1, where the query runs.
    let mark = d.mark();
    let mut child = Command::new(&s.psql)
        .args(["-X", "-A", "-t", "-d"])
        .arg(conninfo(port, "db1.example", &verify))
        .args(["-c", "SELECT pg_sleep(30) /* cancel me */"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let direct = conninfo(s.db1.port, "127.0.0.1", "sslmode=disable");
    let running = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%cancel me%' AND pid <> pg_backend_pid()";
    assert!(
        eventually(Duration::from_secs(10), || psql(s, &direct, running)
            .is_ok_and(|n| n == "1")),
        "the query never ran"
    );
    let started = std::time::Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let _ = child.wait();
    assert!(
        err.contains("canceling statement due to user request"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let line = d
        .wait_line(mark, Duration::from_secs(10), |l| {
            l.contains("tcpmap::access") && l.contains("postgres CancelRequest in clear")
        })
        .unwrap_or_else(|| panic!("no cancel line:\n{}", d.log()));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["mapping"], "cancels", "{v}");
    assert_eq!(v["upstream"], local(s.db1.port).to_string(), "{v}");
}

#[test]
fn refusals_say_why_in_the_access_line() {
    let Some(s) = servers() else { return };
    // An upstream that declines TLS as a server with `ssl = off` does.
    let declines = TcpListener::bind("127.0.0.1:0").unwrap();
    let declines_addr = declines.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut c in declines.incoming().flatten() {
            let mut req = [0u8; 8];
            if c.read_exact(&mut req).is_ok() {
                let _ = c.write_all(b"N");
            }
            let _ = c.shutdown(Shutdown::Write);
        }
    });
    let secrets = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (d, port) = tcpmap(dir.path(), secrets.path(), |p| {
        mapping_with(
            "db1",
            p,
            local(s.db1.port),
            "host: db1.example\ntls_passthrough: true\nstarttls: postgres\n",
        ) + &mapping_with(
            "no-tls",
            p,
            declines_addr,
            "host: no-tls.example\ntls_passthrough: true\n",
        )
    });
    // tcpmap answers the GSSENCRequest `N` itself, then the SSLRequest `S`.
    let mut c = TcpStream::connect(local(port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]).unwrap();
    let mut b = [0u8; 1];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"N");
    c.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).unwrap();
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"S");
    drop(c);
    // No host-less mapping: a startup message and a cancel in clear are closed.
    assert_eq!(answer_to(port, &startup_message()), b"");
    let v = access_line(&d, &["a startup message in clear and no host-less mapping"]);
    assert_eq!(v["end"], "no_route", "{v}");
    let cancel = [0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2];
    assert_eq!(answer_to(port, &cancel), b"");
    access_line(&d, &["a CancelRequest in clear and no host-less mapping"]);
    assert_eq!(answer_to(port, b"GET / HTTP/1.1\r\n\r\n"), b"");
    access_line(&d, &["not a Postgres client"]);
    // A name no group takes, and no host-less mapping: the alert a TLS server sends.
    let err = psql(
        s,
        &conninfo(port, "unknown.example", "sslmode=require"),
        "SELECT 1",
    )
    .unwrap_err();
    assert!(err.contains("unrecognized name"), "{err}");
    let v = access_line(&d, &["\"sni\":\"unknown.example\""]);
    assert_eq!(v["end"], "tls_unknown_sni", "{v}");
    // An upstream that answers the SSLRequest with `N`: psql sees the connection close.
    let err = psql(
        s,
        &conninfo(port, "no-tls.example", "sslmode=require"),
        "SELECT 1",
    )
    .unwrap_err();
    assert!(!err.is_empty());
    let v = access_line(&d, &["\"mapping\":\"no-tls\""]);
    assert_eq!(v["end"], "upstream_handshake_failed", "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("answered the SSLRequest with N"),
        "{v}"
    );
}

/// What needs no PostgreSQL: the second GSSENCRequest, and a TLS client that would go to a
/// host-less mapping that originates TLS (its TLS is not wrapped in another).
#[test]
fn a_second_gssenc_request_and_tls_in_tls_are_refused() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (d, port) = tcpmap(dir.path(), secrets.path(), |p| {
        mapping_with("originates", p, up_addr, "tls: true\nstarttls: postgres\n")
    });
    let gssenc = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
    let mut c = TcpStream::connect(local(port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(&gssenc).unwrap();
    let mut b = [0u8; 1];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"N");
    c.write_all(&gssenc).unwrap();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert_eq!(rest, b"");
    access_line(&d, &["a second GSSENCRequest"]);

    // SSLRequest, `S`, then a ClientHello (with SNI) that only the host-less mapping could take.
    let mut c = TcpStream::connect(local(port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).unwrap();
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"S");
    c.write_all(&common::hello::rustls_records(
        Some("db.example"),
        &[b"postgresql"],
    ))
    .unwrap();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert_eq!(rest, b"");
    let v = access_line(&d, &["which originates TLS"]);
    assert_eq!(v["end"], "no_route", "{v}");
    assert_eq!(v["mapping"], "-", "{v}");
    // Neither reached the upstream.
    upstream.set_nonblocking(true).unwrap();
    assert!(upstream.accept().is_err());
}

/// After the SSLRequest the ClientHello is routed as on any TLS listener: `match_alpn` first
/// within a host, then the host's group, then the catch-all `*` for other names.
#[test]
fn match_alpn_and_the_catch_all_route_postgres_clients_too() {
    let Some(s) = servers() else { return };
    let proxy_ca = Ca::new("tcpmap CA 2");
    let secrets = tempfile::tempdir().unwrap();
    let (cert, key) = proxy_ca.leaf(&["db1.example", "other.example"]);
    write_secret(secrets.path(), "dbs", &cert, &key);
    let dir = tempfile::tempdir().unwrap();
    let (d, port) = tcpmap(dir.path(), secrets.path(), |p| {
        tls_context("dbs", "hosts: [db1.example, \"*\"]\nsecret: dbs\n")
            + &mapping_with(
                "alpn",
                p,
                local(s.db1.port),
                "host: db1.example\nmatch_alpn: [postgresql]\nstarttls: postgres\n",
            )
            + &mapping_with("plain", p, local(s.db2.port), "host: db1.example\n")
            + &mapping_with("any", p, local(s.db2.port), "host: \"*\"\n")
    });
    // libpq 15 offers no ALPN: the host's group without match_alpn.
    assert_eq!(
        psql(s, &conninfo(port, "db1.example", "sslmode=require"), WHO).unwrap(),
        "db2|clear"
    );
    // A client offering `postgresql` (as libpq 17 does): the match_alpn group.
    let (alpn, name) = direct_tls(port, "db1.example", &proxy_ca.cert_pem()).unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"postgresql"[..]));
    assert_eq!(name, "db1");
    // Any other name, and none: the catch-all.
    assert_eq!(
        psql(s, &conninfo(port, "other.example", "sslmode=require"), WHO).unwrap(),
        "db2|clear"
    );
    assert_eq!(
        psql(s, &conninfo(port, "127.0.0.1", "sslmode=require"), WHO).unwrap(),
        "db2|clear"
    );
    access_line(&d, &["\"mapping\":\"plain\"", "\"sni\":\"db1.example\""]);
    access_line(&d, &["\"mapping\":\"alpn\"", "\"sni\":\"db1.example\""]);
    access_line(&d, &["\"mapping\":\"any\"", "\"sni\":\"other.example\""]);
    access_line(&d, &["\"mapping\":\"any\"", "\"sni\":\"-\""]);
}
