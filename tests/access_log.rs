//! The access log: one line per connection when it ends. `--log-format json` gives one JSON
//! object per line with mapping, listener, client, peer, sni, upstream, tls, bytes_in, bytes_out,
//! duration_ms, end, detail and side; text mode has exactly one line per connection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::Shutdown;
use std::time::Duration;

use common::daemon::Daemon;
use common::net::{self, free_port};
use common::pki::{Ca, TlsSecret, write_secret};
use common::yaml::{mapping, mapping_with, tls_context};

const FIELDS: [&str; 13] = [
    "mapping",
    "listener",
    "client",
    "peer",
    "sni",
    "upstream",
    "tls",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "end",
    "detail",
    "side",
];

#[test]
fn json_access_lines_parse_and_carry_every_field() {
    let TlsSecret { ca, dir: secrets } = TlsSecret::new("log CA", "sec", &["my-host"]);
    let echo = net::echo("127.0.0.1:0");
    let refused = free_port(); // nothing listens here
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let secrets_arg = secrets.path().to_str().unwrap().to_string();
    let (d, [p_plain, p_tls, p_dead]) = Daemon::run_yaml(
        &cfg,
        |[p_plain, p_tls, p_dead]| {
            tls_context("ctx", "hosts: [my-host]\nsecret: sec\n")
                + &mapping("plain", p_plain, echo.addr)
                + &mapping_with("term", p_tls, echo.addr, "host: my-host\n")
                + &mapping("dead", p_dead, format!("127.0.0.1:{refused}"))
        },
        &["--secrets-dir", &secrets_arg, "--log-format", "json"],
    );

    // plain: 11 bytes each way, client closes.
    let mut s = net::connect(net::local(p_plain));
    net::roundtrip(&mut s, b"hello world");
    s.shutdown(Shutdown::Write).unwrap();
    assert!(net::closed_within(&mut s, Duration::from_secs(3)));
    // terminate: 5 bytes each way.
    let client = net::tls_client_config(&ca.cert_pem(), None);
    let mut t = net::tls_connect(net::local(p_tls), "my-host", client).unwrap();
    net::roundtrip(&mut t, b"howdy");
    t.conn.send_close_notify();
    let _ = t.conn.complete_io(&mut t.sock);
    drop(t);
    // connect failure.
    let mut f = net::connect(net::local(p_dead));
    assert!(net::closed_within(&mut f, Duration::from_secs(5)));

    let access = |name: &str| {
        d.wait_line(0, Duration::from_secs(5), |l| {
            l.contains("tcpmap::access") && l.contains(&format!("\"mapping\":\"{name}\""))
        })
        .unwrap_or_else(|| panic!("no access line for {name}:\n{}", d.log()))
    };
    let parse = |l: String| -> serde_json::Value {
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))
    };
    let plain = parse(access("plain"));
    let term = parse(access("term"));
    let dead = parse(access("dead"));
    for (v, name) in [(&plain, "plain"), (&term, "term"), (&dead, "dead")] {
        for f in FIELDS {
            assert!(!v[f].is_null(), "{name}: field {f} missing in {v}");
        }
        assert_eq!(v["target"], "tcpmap::access");
    }
    assert_eq!(plain["listener"], net::local(p_plain).to_string());
    assert!(plain["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    // Without a PROXY protocol header the client is the socket's peer.
    assert_eq!(plain["peer"], plain["client"]);
    assert_eq!(plain["upstream"], echo.addr.to_string());
    assert_eq!(plain["tls"], "none");
    assert_eq!(plain["sni"], "-");
    assert_eq!(plain["bytes_in"], 11);
    assert_eq!(plain["bytes_out"], 11);
    assert_eq!(plain["end"], "client_closed");
    assert!(plain["duration_ms"].is_u64());

    assert_eq!(term["sni"], "my-host");
    assert_eq!(term["tls"], "terminate");
    assert_eq!(term["bytes_in"], 5);
    assert_eq!(term["bytes_out"], 5);

    assert_eq!(dead["end"], "connect_failed");
    assert_eq!(dead["bytes_in"], 0);

    // Every line on stderr is one JSON object.
    for line in d.lines() {
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.is_object());
    }
}

#[test]
fn failed_handshakes_are_explained() {
    let ca = Ca::new("log CA");
    let stranger = Ca::new("stranger CA");
    let secrets = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf(&["my-host"]);
    write_secret(secrets.path(), "sec", &cert, &key);
    let echo = net::echo("127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let secrets_arg = secrets.path().to_str().unwrap().to_string();
    let (d, [port]) = Daemon::run_yaml(
        &cfg,
        |[port]| {
            tls_context("ctx", "hosts: [my-host]\nsecret: sec\n")
                + &mapping_with("term", port, echo.addr, "host: my-host\ntls: false\n")
        },
        &["--secrets-dir", &secrets_arg, "--log-format", "json"],
    );
    let addr = net::local(port);
    // The SNI matches, but the client does not trust the certificate: it sends an alert.
    let distrust = net::tls_client_config(&stranger.cert_pem(), None);
    assert!(net::tls_connect(addr, "my-host", distrust).is_err());
    // A NUL in the name, then a name nobody serves.
    let nul = common::hello::frame(
        &common::hello::minimal_message(&[(0, common::hello::server_name(b"my-host\x00"))]),
        16 * 1024,
    );
    assert_eq!(
        common::hello::send(addr, &nul),
        common::hello::Reply::Alert(common::hello::ILLEGAL_PARAMETER)
    );
    let unknown = common::hello::frame(
        &common::hello::rustls_message(Some("nobody.test")),
        16 * 1024,
    );
    assert_eq!(
        common::hello::send(addr, &unknown),
        common::hello::Reply::Alert(common::hello::UNRECOGNIZED_NAME)
    );

    let access = |end: &str| -> serde_json::Value {
        let line = d
            .wait_line(0, Duration::from_secs(5), |l| {
                l.contains("tcpmap::access") && l.contains(&format!("\"end\":\"{end}\""))
            })
            .unwrap_or_else(|| panic!("no access line ending {end}:\n{}", d.log()));
        serde_json::from_str(&line).unwrap()
    };
    let failed = access("handshake_failed");
    assert_eq!(failed["mapping"], "term", "{failed}");
    assert_eq!(failed["sni"], "my-host");
    assert_eq!(failed["tls"], "terminate");
    let detail = failed["detail"].as_str().unwrap();
    assert_eq!(detail, "received alert unknown_ca");
    let bad = access("tls_bad_sni");
    assert_eq!(bad["mapping"], "-");
    assert_eq!(bad["sni"], "my-host\\x00");
    assert_eq!(
        bad["detail"],
        "sent alert illegal_parameter: host_name is not a valid DNS name"
    );
    let unknown = access("tls_unknown_sni");
    assert_eq!(unknown["sni"], "nobody.test");
    assert_eq!(unknown["detail"], "sent alert unrecognized_name");
}

#[test]
fn text_mode_logs_one_line_per_connection() {
    let echo = net::echo("127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let (d, [port]) = Daemon::run_yaml(&cfg, |[port]| mapping("m", port, echo.addr), &[]);
    for i in 0..7 {
        let mut s = net::connect(net::local(port));
        net::roundtrip(&mut s, format!("n{i}").as_bytes());
        s.shutdown(Shutdown::Write).unwrap();
        assert!(net::closed_within(&mut s, Duration::from_secs(3)));
    }
    let count = || {
        d.lines()
            .iter()
            .filter(|l| l.contains("tcpmap::access"))
            .count()
    };
    assert!(common::wait::eventually(Duration::from_secs(3), || count() >= 7));
    std::thread::sleep(Duration::from_millis(200)); // no late duplicates
    let lines: Vec<String> = d
        .lines()
        .into_iter()
        .filter(|l| l.contains("tcpmap::access"))
        .collect();
    assert_eq!(lines.len(), 7, "{lines:#?}");
    for l in &lines {
        for f in FIELDS {
            assert!(l.contains(&format!("{f}=")), "{f} missing in {l}");
        }
        assert!(
            l.contains("mapping=\"m\"") || l.contains("mapping=m"),
            "{l}"
        );
    }
}

#[test]
fn rustls_warnings_a_client_triggers_are_rate_limited() {
    let TlsSecret {
        ca: _,
        dir: secrets,
    } = TlsSecret::new("log CA", "sec", &["default.test"]);
    let echo = net::echo("127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let secrets_arg = secrets.path().to_str().unwrap().to_string();
    let (d, [port]) = Daemon::run_yaml(
        &cfg,
        |[port]| {
            tls_context("ctx", "hosts: [\"*\"]\nsecret: sec\n")
                + &mapping_with("any", port, echo.addr, "host: \"*\"\n")
        },
        // One worker: each worker process limits its own lines, and the count held back in
        // one is only reported by that worker's next line (the last hello below must reach it).
        &["--secrets-dir", &secrets_arg, "--workers", "1"],
    );
    // An IP address as host_name: tcpmap treats it as no SNI (the catch-all serves it) and
    // rustls warns about it, once per hello.
    let ip_sni = common::hello::frame(
        &common::hello::with_extension(
            &common::hello::rustls_message(None),
            0,
            &common::hello::server_name(b"192.0.2.9"),
        ),
        16 * 1024,
    );
    let warned = || {
        d.lines()
            .iter()
            .filter(|l| l.contains("tcpmap::log") && l.contains("IP address"))
            .count()
    };
    let t0 = std::time::Instant::now();
    for _ in 0..30 {
        assert_eq!(
            common::hello::send(net::local(port), &ip_sni),
            common::hello::Reply::Handshake(common::hello::SERVER_HELLO)
        );
    }
    let secs = t0.elapsed().as_secs() as usize;
    assert!(
        common::wait::eventually(Duration::from_secs(3), || warned() >= 1),
        "{}",
        d.log()
    );
    assert!(
        warned() <= secs + 2,
        "{} lines in {secs} s:\n{}",
        warned(),
        d.log()
    );
    // The next line, a second later, says how many were held back: nothing is lost, the
    // lines and their `suppressed` counts add up to one warning per hello sent (31). Counted,
    // not timed: however the 30 hellos fell into one-second windows on a loaded machine, the
    // warnings held back after the last line are reported by this one.
    std::thread::sleep(Duration::from_millis(1100));
    let _ = common::hello::send(net::local(port), &ip_sni);
    let accounted = || -> usize {
        d.lines()
            .iter()
            .filter(|l| l.contains("tcpmap::log") && l.contains("IP address"))
            .map(|l| {
                let n = l.split("suppressed=").nth(1).unwrap_or("0");
                let digits: String = n.chars().take_while(char::is_ascii_digit).collect();
                1 + digits.parse::<usize>().unwrap_or(0)
            })
            .sum()
    };
    assert!(
        common::wait::eventually(Duration::from_secs(3), || accounted() >= 31),
        "{} of 31 warnings accounted for:\n{}",
        accounted(),
        d.log()
    );
    assert_eq!(accounted(), 31, "{}", d.log());
    let lines = d.lines();
    let line = lines
        .iter()
        .rev()
        .find(|l| l.contains("tcpmap::log") && l.contains("IP address"))
        .unwrap();
    assert!(
        line.contains("origin=\"rustls::") || line.contains("origin=rustls::"),
        "{line}"
    );
}

/// A TLS client that closes TCP without close_notify has closed, like most clients do (Python's
/// `ssl` after reading its answer): the line says how it ended (`upstream_closed` when the
/// upstream finished first, `client_closed` when the client did) with `without close_notify`
/// in `detail`, never `io_error`.
#[test]
fn a_tls_client_closing_without_close_notify_is_a_close_not_an_io_error() {
    use std::io::{Read, Write};
    // "answers": replies to 4 bytes and closes. "waits": answers only after the client's EOF.
    let answers = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let waits = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (a_addr, w_addr) = (answers.local_addr().unwrap(), waits.local_addr().unwrap());
    std::thread::spawn(move || {
        let (mut s, _) = answers.accept().unwrap();
        let mut req = [0u8; 4];
        s.read_exact(&mut req).unwrap();
        s.write_all(b"pong").unwrap();
    });
    std::thread::spawn(move || {
        let (mut s, _) = waits.accept().unwrap();
        let mut req = Vec::new();
        s.read_to_end(&mut req).unwrap();
        s.write_all(b"got:").unwrap();
        s.write_all(&req).unwrap();
    });
    let TlsSecret { ca, dir: secrets } = TlsSecret::new("notify CA", "sec", &["my-host"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let secrets_arg = secrets.path().to_str().unwrap().to_string();
    let (d, [p_answers, p_waits]) = Daemon::run_yaml(
        &cfg,
        |[p_answers, p_waits]| {
            tls_context("ctx", "hosts: [my-host]\nsecret: sec\n")
                + &mapping_with("answers", p_answers, a_addr, "host: my-host\n")
                + &mapping_with("waits", p_waits, w_addr, "host: my-host\n")
        },
        &["--secrets-dir", &secrets_arg, "--log-format", "json"],
    );
    let client = net::tls_client_config(&ca.cert_pem(), None);

    // The upstream finishes first; the client reads the reply and its close_notify, then
    // drops the socket without a close_notify of its own.
    let mut t = net::tls_connect(net::local(p_answers), "my-host", client.clone()).unwrap();
    t.write_all(b"ping").unwrap();
    let mut reply = Vec::new();
    t.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"pong");
    drop(t);

    // The client half-closes TCP without close_notify, then reads the answer.
    let mut t = net::tls_connect(net::local(p_waits), "my-host", client).unwrap();
    t.write_all(b"question").unwrap();
    t.flush().unwrap();
    t.sock.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    let _ = t.read_to_end(&mut reply);
    assert_eq!(reply, b"got:question");

    let access = |name: &str| -> serde_json::Value {
        let line = d
            .wait_line(0, Duration::from_secs(5), |l| {
                l.contains("tcpmap::access") && l.contains(&format!("\"mapping\":\"{name}\""))
            })
            .unwrap_or_else(|| panic!("no access line for {name}:\n{}", d.log()));
        serde_json::from_str(&line).unwrap()
    };
    let answered = access("answers");
    assert_eq!(answered["end"], "upstream_closed", "{answered}");
    assert_eq!(answered["detail"], "client closed without close_notify");
    assert_eq!(answered["side"], "-");
    let waited = access("waits");
    assert_eq!(waited["end"], "client_closed", "{waited}");
    assert_eq!(waited["detail"], "client closed without close_notify");
    assert_eq!(waited["bytes_out"], 12);
    assert!(!d.log().contains("io_error"), "{}", d.log());
}
