//! PROXY protocol end to end with the real binary: headers in (v1, v2, LOCAL, optional) make
//! the header's source the client in the access log (`client=`, with the socket's `peer=`) and
//! in the header sent upstream (`send_proxy_proto`); a terminated connection's v2 header carries
//! the SNI, the ALPN and the TLS version; missing, garbage, oversized and late headers close
//! that connection (counted, one warning per second) while the listener keeps serving; a reload
//! turns header reading on for new connections while open ones relay on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::daemon::{Daemon, http_get};
use common::metrics::metric;
use common::net::{self, local};
use common::pki::TlsSecret;
use common::yaml::{mapping_with, tls_context};
use tcpmap::proxy_protocol::{Header, Tlv, Version, tlv};

fn access_lines(d: &Daemon, from: usize) -> Vec<serde_json::Value> {
    d.lines()
        .iter()
        .skip(from)
        .filter(|l| l.contains("tcpmap::access"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits for the `n`-th access line after `from` and returns it.
fn access(d: &Daemon, from: usize, n: usize) -> serde_json::Value {
    assert!(
        common::wait::eventually(Duration::from_secs(5), || access_lines(d, from).len() >= n),
        "no access line:\n{}",
        d.log()
    );
    access_lines(d, from)[n - 1].clone()
}

/// Sends `header` and reads the upstream reporter's line, then closes.
fn through(port: u16, header: &[u8]) -> (String, SocketAddr) {
    let mut s = net::connect(local(port));
    let me = s.local_addr().unwrap();
    s.write_all(header).unwrap();
    let line = net::read_line(&mut s);
    net::roundtrip(&mut s, b"after the header");
    s.shutdown(Shutdown::Write).unwrap();
    assert!(net::closed_within(&mut s, Duration::from_secs(3)));
    (line, me)
}

#[test]
fn headers_in_become_the_client_in_the_log_and_upstream() {
    let reporter = net::proxy_reporter("127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let (d, [required, optional]) = Daemon::run_yaml(
        &cfg,
        |[a, b]| {
            mapping_with(
                "pp-in",
                a,
                reporter.addr,
                "use_proxy_proto: true\nsend_proxy_proto: v2\n",
            ) + &mapping_with(
                "pp-optional",
                b,
                reporter.addr,
                "use_proxy_proto: optional\nsend_proxy_proto: v1\n",
            )
        },
        &["--log-format", "json", "--admin", "127.0.0.1:0"],
    );

    // v1 in, v2 out.
    let mark = d.mark();
    let v1 = format!("PROXY TCP4 203.0.113.7 127.0.0.1 40000 {required}\r\n");
    let (line, me) = through(required, v1.as_bytes());
    assert_eq!(
        line,
        format!(
            "client=203.0.113.7:40000 dest=127.0.0.1:{required} authority=- alpn=- tls=- version=v2"
        )
    );
    let a = access(&d, mark, 1);
    assert_eq!(a["client"], "203.0.113.7:40000");
    assert_eq!(a["peer"], me.to_string());
    assert_eq!(a["mapping"], "pp-in");
    // The payload after the header was relayed, the header was not counted as payload.
    assert_eq!(a["bytes_in"], 16);

    // v2 in (IPv6 client, TLVs), v2 out.
    let mark = d.mark();
    let mut h = Header::proxy(
        Version::V2,
        "[2001:db8::5]:1234".parse().unwrap(),
        "[2001:db8::1]:443".parse().unwrap(),
    );
    h.tlvs.push(Tlv {
        kind: tlv::UNIQUE_ID,
        value: b"lb-connection-17".to_vec(),
    });
    let (line, _) = through(required, &h.encode());
    assert_eq!(
        line,
        "client=[2001:db8::5]:1234 dest=[2001:db8::1]:443 authority=- alpn=- tls=- version=v2"
    );
    assert_eq!(access(&d, mark, 1)["client"], "[2001:db8::5]:1234");

    // v2 LOCAL (a balancer's health check): the peer stays the client.
    let mark = d.mark();
    let local_cmd = Header {
        command: tcpmap::proxy_protocol::Command::Local,
        ..Header::proxy(
            Version::V2,
            "10.9.9.9:1".parse().unwrap(),
            "10.9.9.8:2".parse().unwrap(),
        )
    };
    let (line, me) = through(required, &local_cmd.encode());
    assert!(line.starts_with(&format!("client={me} ")), "{line}");
    assert_eq!(access(&d, mark, 1)["client"], me.to_string());

    // optional: with a header (v1 out), and without one.
    let (line, _) = through(optional, b"PROXY TCP6 2001:db8::9 ::1 5555 443\r\n");
    assert_eq!(
        line,
        "client=[2001:db8::9]:5555 dest=[::1]:443 authority=- alpn=- tls=- version=v1"
    );
    let mut s = net::connect(local(optional));
    let me = s.local_addr().unwrap();
    s.write_all(b"no header here\n").unwrap();
    let line = net::read_line(&mut s);
    assert_eq!(
        line,
        format!("client={me} dest=127.0.0.1:{optional} authority=- alpn=- tls=- version=v1")
    );
    assert_eq!(net::read_line(&mut s), "no header here");

    let (_, text) = http_get(d.admin_addr(), "/metrics");
    assert_eq!(
        metric(
            &text,
            "tcpmap_proxy_protocol_headers_total",
            &[("version", "v1")]
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            "tcpmap_proxy_protocol_headers_total",
            &[("version", "v2")]
        ),
        2.0
    );
}

#[test]
fn a_terminated_v2_header_carries_sni_alpn_and_tls_version() {
    let TlsSecret { ca, dir: secrets } = TlsSecret::new("pp CA", "sec", &["my-host"]);
    let reporter = net::proxy_reporter("127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let secrets_arg = secrets.path().to_str().unwrap().to_string();
    let (d, [port]) = Daemon::run_yaml(
        &cfg,
        |[port]| {
            tls_context(
                "ctx",
                "hosts: [my-host]\nsecret: sec\nalpn_protocols: h2,http/1.1\n",
            ) + &mapping_with(
                "term",
                port,
                reporter.addr,
                "host: my-host\nuse_proxy_proto: true\nsend_proxy_proto: v2\n",
            )
        },
        &["--secrets-dir", &secrets_arg, "--log-format", "json"],
    );
    let mut client = (*net::tls_client_config(&ca.cert_pem(), None)).clone();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("my-host").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
    let mut sock = net::connect(local(port));
    // A v2 header first, then TLS on the same connection.
    sock.write_all(
        &Header::proxy(
            Version::V2,
            "198.51.100.20:6000".parse().unwrap(),
            local(port),
        )
        .encode(),
    )
    .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let line = net::read_line(&mut tls);
    assert_eq!(
        line,
        format!(
            "client=198.51.100.20:6000 dest=127.0.0.1:{port} authority=my-host alpn=h2 tls=TLSv1.3 version=v2"
        )
    );
    net::roundtrip(&mut tls, b"ping");
    drop(tls);
    let a = access(&d, 0, 1);
    assert_eq!(a["client"], "198.51.100.20:6000");
    assert_eq!(a["sni"], "my-host");
    assert_eq!(a["tls"], "terminate");
}

#[test]
fn bad_headers_close_the_connection_are_counted_and_the_listener_serves_on() {
    let echo = net::echo("127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let (d, [port]) = Daemon::run_yaml(
        &cfg,
        |[port]| mapping_with("strict", port, echo.addr, "use_proxy_proto: true\n"),
        &["--admin", "127.0.0.1:0", "--handshake-timeout", "0.5"],
    );
    let closed = |bytes: &[u8]| {
        let mut s = net::connect(local(port));
        let me = s.local_addr().unwrap();
        let _ = s.write_all(bytes);
        assert!(
            net::closed_within(&mut s, Duration::from_secs(3)),
            "not closed after {:?}",
            String::from_utf8_lossy(bytes)
        );
        me
    };
    let missing_peer = closed(b"SSH-2.0-OpenSSH_9.2\r\n");
    closed(b"PROXY garbage here\r\n");
    let mut oversized = b"PROXY UNKNOWN ".to_vec();
    oversized.resize(300, b'x');
    closed(&oversized);
    let mut v2_long = tcpmap::proxy_protocol::V2_SIGNATURE.to_vec();
    v2_long.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    closed(&v2_long);

    // A header trickling in past the handshake timeout.
    let mut s = net::connect(local(port));
    let line = b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 2000\r\n";
    let started = std::time::Instant::now();
    let mut cut_off = false;
    for b in line {
        if s.write_all(&[*b]).is_err() {
            cut_off = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut probe = [0u8; 1];
        s.set_nonblocking(true).unwrap();
        let r = s.read(&mut probe);
        s.set_nonblocking(false).unwrap();
        if matches!(r, Ok(0)) || matches!(&r, Err(e) if e.kind() != std::io::ErrorKind::WouldBlock)
        {
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "the trickling header was let through");
    assert!(started.elapsed() < Duration::from_secs(2));

    // The listener keeps serving a good header.
    let mut s = net::connect(local(port));
    s.write_all(b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 2000\r\nhello")
        .unwrap();
    let mut got = [0u8; 5];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    drop(s);

    let admin = d.admin_addr();
    let reasons = [
        ("missing", 1.0),
        ("malformed", 1.0),
        ("too_long", 2.0),
        ("timeout", 1.0),
    ];
    assert!(
        common::wait::eventually(Duration::from_secs(3), || {
            let (_, text) = http_get(admin, "/metrics");
            reasons.iter().all(|(r, n)| {
                metric(
                    &text,
                    "tcpmap_proxy_protocol_rejected_total",
                    &[("reason", r)],
                ) == *n
            })
        }),
        "{}",
        http_get(admin, "/metrics").1
    );
    // Each connection has its access line (a worker's log lines may wait up to 100 ms in its
    // buffer, so they are awaited); one warning per second at most, naming the peer.
    let ended = || {
        d.lines()
            .iter()
            .filter(|l| l.contains("tcpmap::access") && l.contains("proxy_protocol"))
            .count()
    };
    assert!(
        common::wait::eventually(Duration::from_secs(3), || ended() >= 5),
        "{}",
        d.log()
    );
    let warnings: Vec<String> = d
        .lines()
        .into_iter()
        .filter(|l| l.contains("bad PROXY protocol header"))
        .collect();
    assert!(!warnings.is_empty() && warnings.len() <= 3, "{warnings:#?}");
    assert!(
        warnings[0].contains(&format!("peer={missing_peer}")),
        "{}",
        warnings[0]
    );
}

#[test]
fn a_reload_turns_header_reading_on_for_new_connections_only() {
    let echo = net::echo("127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let (d, [port]) = Daemon::run_yaml(
        &cfg,
        |[port]| mapping_with("m", port, echo.addr, ""),
        &["--log-format", "json"],
    );
    // Open before the reload: keeps relaying raw bytes afterwards.
    let mut old = net::connect(local(port));
    net::roundtrip(&mut old, b"before");

    let yaml = mapping_with("m", port, echo.addr, "use_proxy_proto: true\n");
    common::daemon::write_atomic(&cfg, &yaml);
    let mark = d.mark();
    d.signal(libc::SIGHUP);
    d.wait_for(mark, "reload applied", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no reload:\n{}", d.log()));

    net::roundtrip(&mut old, b"PROXY is just data here");
    // New connections need a header now.
    let mut bare = net::connect(local(port));
    let _ = bare.write_all(b"hello");
    assert!(net::closed_within(&mut bare, Duration::from_secs(3)));
    let mut with = net::connect(local(port));
    with.write_all(b"PROXY TCP4 192.0.2.44 127.0.0.1 4444 80\r\nhello")
        .unwrap();
    let mut got = [0u8; 5];
    with.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    drop(with);
    let line = d
        .wait_line(0, Duration::from_secs(5), |l| {
            l.contains("tcpmap::access") && l.contains("192.0.2.44:4444")
        })
        .unwrap_or_else(|| panic!("no access line:\n{}", d.log()));
    assert!(line.contains("\"mapping\":\"m\""), "{line}");
}

#[test]
fn header_and_client_hello_share_one_handshake_window() {
    // 3 s window; the header arrives after 2 s, the ClientHello never: the connection closes
    // about 3 s after accept (one window), not 2 s + 3 s.
    let TlsSecret {
        ca: _,
        dir: secrets,
    } = TlsSecret::new("pp window CA", "sec", &["my-host"]);
    let echo = net::echo("127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let secrets_arg = secrets.path().to_str().unwrap().to_string();
    let (_d, [port]) = Daemon::run_yaml(
        &dir.path().join("config.yaml"),
        |[port]| {
            tls_context("ctx", "hosts: [my-host]\nsecret: sec\n")
                + &mapping_with(
                    "w",
                    port,
                    echo.addr,
                    "host: my-host\nuse_proxy_proto: true\n",
                )
        },
        &["--secrets-dir", &secrets_arg, "--handshake-timeout", "3"],
    );
    let mut s = net::connect(local(port));
    let accepted = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    s.write_all(b"PROXY TCP4 192.0.2.1 127.0.0.1 1 443\r\n")
        .unwrap();
    assert!(net::closed_within(&mut s, Duration::from_secs(8)));
    let took = accepted.elapsed();
    assert!(
        took < Duration::from_millis(4500),
        "closed after {took:?}: the ClientHello got a window of its own"
    );
}

#[test]
fn the_header_goes_before_originated_tls() {
    use tcpmap::proxy_protocol::{Decoded, decode};
    // An upstream that reads a PROXY header byte by byte, then does TLS on the same socket.
    let (cert, key) = common::pki::self_signed(&["localhost"]);
    let config = net::tls_server_config(&cert, &key, None);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        let header = loop {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
            buf.push(b[0]);
            match decode(&buf) {
                Ok(Decoded::Partial { .. }) => continue,
                Ok(Decoded::Complete { header, .. }) => break header,
                other => panic!("no header first: {other:?}"),
            }
        };
        let conn = rustls::ServerConnection::new(config).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, s);
        let line = format!("tls after header from {}\n", header.client().unwrap());
        tls.write_all(line.as_bytes()).unwrap();
        tls.flush().unwrap();
        let mut b = [0u8; 4];
        let _ = tls.read_exact(&mut b);
        let _ = tls.write_all(&b);
    });
    let dir = tempfile::tempdir().unwrap();
    let (_d, [port]) = Daemon::run_yaml(
        &dir.path().join("config.yaml"),
        |[port]| {
            mapping_with(
                "orig",
                port,
                format!("127.0.0.1:{}", up.port()),
                "tls: true\nsend_proxy_proto: v1\n",
            )
        },
        &[],
    );
    let mut s = net::connect(local(port));
    let me = s.local_addr().unwrap();
    assert_eq!(
        net::read_line(&mut s),
        format!("tls after header from {me}")
    );
    net::roundtrip(&mut s, b"ping");
    server.join().unwrap();
}
