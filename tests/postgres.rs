//! `starttls: postgres` with the real thing: two PostgreSQL servers (Debian's `postgresql`,
//! `ssl = on` with certificates of a test CA) behind one tcpmap port, reached with `psql` (libpq)
//! by SNI, in clear, with cancels, and with a small Rust client for what psql of this version
//! cannot do (direct TLS with ALPN `postgresql`, the GSSENCRequest).
//!
//! The two servers start once for the whole file (tests/pg/mod.rs). A missing PostgreSQL fails
//! these tests unless `TCPMAP_SKIP_POSTGRES=1` (scripts/test installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod pg;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::daemon::Daemon;
use common::net::local;
use common::pki::{Ca, write_secret};
use common::wait::eventually;
use common::yaml::{mapping_with, tls_context};
use pg::{
    WHO, conninfo, direct_tls, first_message_of_psql_with_kerberos, psql, psql_with_kerberos,
    servers, startup_message,
};

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
    // gssencmode=prefer with Kerberos credentials at hand: libpq sends the GSSENCRequest
    // first, tcpmap answers `N`, and libpq goes on with the SSLRequest on the same connection.
    assert_eq!(
        first_message_of_psql_with_kerberos(s),
        [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]
    );
    let verify = format!(
        "sslmode=verify-full sslrootcert={} gssencmode=prefer",
        proxy_ca_file.display()
    );
    assert_eq!(
        psql_with_kerberos(s, &conninfo(port, "db1.example", &verify), WHO).unwrap(),
        "db1|clear"
    );
    assert_eq!(
        psql_with_kerberos(s, &conninfo(port, "db2.example", &verify), WHO).unwrap(),
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
    // gssencmode=prefer with Kerberos credentials: tcpmap answers the GSSENCRequest `N` (the
    // servers never see it), then passes the SSLRequest on.
    let gss = format!("{verify} gssencmode=prefer");
    assert_eq!(
        psql_with_kerberos(s, &conninfo(port, "db2.example", &gss), WHO).unwrap(),
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
