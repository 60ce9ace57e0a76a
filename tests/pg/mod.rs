//! Two throwaway PostgreSQL servers for `tests/postgres.rs`, and a minimal Postgres client
//! (startup, one simple query) for what psql of this version cannot do.
//!
//! The servers start once per test process (one `initdb`, copied), run as the `postgres` user
//! (else `nobody`) when the tests run as root (`initdb` refuses root), in temporary
//! directories, and stop (and remove their directory) when the test process exits: each runs
//! under a shell that waits on a pipe from this process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::common::net::{free_port, local};
use crate::common::pki::Ca;
use crate::common::wait::eventually;

/// A running PostgreSQL server: its port, the `cluster_name` it answers with, and the shell
/// that stops it when its stdin (held here) closes.
pub struct Server {
    pub port: u16,
    _guard: Mutex<Child>,
}

/// The two servers and the CA their certificates come from.
pub struct Servers {
    pub db1: Server,
    pub db2: Server,
    pub ca_file: PathBuf,
    pub psql: PathBuf,
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

pub fn servers() -> Option<&'static Servers> {
    static SERVERS: OnceLock<Option<Servers>> = OnceLock::new();
    SERVERS.get_or_init(start_servers).as_ref()
}

fn start_servers() -> Option<Servers> {
    let Some(bin) = pg_bin() else {
        crate::common::env::missing(
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
pub fn psql(s: &Servers, conninfo: &str, sql: &str) -> Result<String, String> {
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
pub const WHO: &str = "SELECT current_setting('cluster_name') || '|' || CASE WHEN ssl THEN 'tls' ELSE 'clear' END FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

pub fn conninfo(port: u16, host: &str, extra: &str) -> String {
    format!("host={host} hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres {extra}")
}

// --- a minimal Postgres client (startup, one simple query) for what psql cannot do here ---

pub fn startup_message() -> Vec<u8> {
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
pub fn direct_tls(
    port: u16,
    name: &str,
    ca_pem: &str,
) -> Result<(Option<Vec<u8>>, String), String> {
    let mut config = (*crate::common::pki::client_config(ca_pem, None)).clone();
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

// --- gssencmode=prefer: libpq sends a GSSENCRequest only when it holds Kerberos credentials ---

/// A Kerberos credential cache (MIT's file format, version 4) holding one made-up TGT for
/// `postgres@TEST.INVALID` that expires in a day. No KDC ever sees it: it only makes
/// `gss_acquire_cred` succeed, which is what libpq checks before it sends a GSSENCRequest
/// (without credentials, `gssencmode=prefer` skips the GSSENCRequest and the test would prove
/// nothing). It lives in the first server's directory (removed when that server stops).
/// Returns the value for `KRB5CCNAME`.
pub fn fake_kerberos_ccache(s: &Servers) -> &'static str {
    static CCACHE: OnceLock<String> = OnceLock::new();
    CCACHE.get_or_init(|| {
        fn data(out: &mut Vec<u8>, b: &[u8]) {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        }
        fn principal(out: &mut Vec<u8>, realm: &[u8], parts: &[&[u8]]) {
            out.extend_from_slice(&1u32.to_be_bytes()); // KRB5_NT_PRINCIPAL
            out.extend_from_slice(&(parts.len() as u32).to_be_bytes());
            data(out, realm);
            for p in parts {
                data(out, p);
            }
        }
        let realm = b"TEST.INVALID";
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32;
        let mut c = vec![0x05, 0x04, 0, 0]; // version 4, no header fields
        principal(&mut c, realm, &[b"postgres"]); // the default principal
        principal(&mut c, realm, &[b"postgres"]); // the credential's client
        principal(&mut c, realm, &[b"krbtgt", realm]); // ... and its server: a TGT
        c.extend_from_slice(&18u16.to_be_bytes()); // aes256-cts key, all zero
        data(&mut c, &[0; 32]);
        for t in [now, now, now + 86_400, now + 86_400] {
            c.extend_from_slice(&t.to_be_bytes()); // auth, start, end, renew-till
        }
        c.push(0); // is_skey
        c.extend_from_slice(&[0; 12]); // flags, no addresses, no authdata
        data(&mut c, &[0x61; 16]); // the "ticket"
        data(&mut c, &[]); // no second ticket
        let path = s.ca_file.with_file_name("krb5cc");
        std::fs::write(&path, c).unwrap();
        format!("FILE:{}", path.display())
    })
}

/// `psql CONNINFO -c SQL` holding [`fake_kerberos_ccache`]'s credentials, so that
/// `gssencmode=prefer` in `conninfo` really sends a GSSENCRequest first.
pub fn psql_with_kerberos(s: &Servers, conninfo: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(&s.psql)
        .args(["-X", "-A", "-t", "-q", "-d", conninfo, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .env("KRB5CCNAME", fake_kerberos_ccache(s))
        .env_remove("PGSSLMODE")
        .env_remove("PGHOST")
        .env_remove("PGGSSENCMODE")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The first message `psql_with_kerberos` sends with `gssencmode=prefer`, as a listener that
/// accepts one connection sees it (then closes). The tests check it is the GSSENCRequest, so
/// a libpq built without GSSAPI, or credentials it does not accept, fail loudly.
pub fn first_message_of_psql_with_kerberos(s: &Servers) -> [u8; 8] {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let info = conninfo(port, "db1.example", "gssencmode=prefer sslmode=require");
    let ccache = fake_kerberos_ccache(s);
    let client = std::thread::spawn({
        let psql = s.psql.clone();
        move || {
            let _ = Command::new(psql)
                .args(["-X", "-d", &info, "-c", "SELECT 1"])
                .env("PGCONNECT_TIMEOUT", "10")
                .env("KRB5CCNAME", ccache)
                .env_remove("PGGSSENCMODE")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    });
    let (mut c, _) = listener.accept().unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut first = [0u8; 8];
    c.read_exact(&mut first).unwrap();
    drop(c);
    drop(listener);
    client.join().unwrap();
    first
}
