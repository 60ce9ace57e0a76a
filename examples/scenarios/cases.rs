//! The scenarios (the `postgres` one is in postgres.rs): each starts its upstreams and a proxy
//! on its example config, then checks what a client sees through it. A scenario that cannot
//! even start is one failed case.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use super::{Env, Outcome, tls, upstreams};

type Check = Result<(), String>;

/// Runs scenario `name` and returns one outcome per case.
pub(crate) fn run(name: &'static str, env: &Env) -> Vec<Outcome> {
    let result = match name {
        "ssh" => ssh(env),
        "cockroach" => cockroach(env),
        "termination" => termination(env),
        "termination-origination" => termination_origination(env),
        "origination" => origination(env),
        "postgres" => super::postgres::scenario(env),
        _ => Err(format!("no scenario `{name}`")),
    };
    let (proxy, cases) = match result {
        Ok(r) => r,
        Err(e) => {
            return vec![Outcome {
                scenario: name,
                case: "start".into(),
                checked: "upstreams and proxy start".into(),
                result: Err(e),
            }];
        }
    };
    let outcomes = cases
        .into_iter()
        .map(|(case, checked, result)| Outcome {
            scenario: name,
            case,
            checked: checked.into(),
            result,
        })
        .collect();
    // Connections are done; nothing to drain.
    let _ = tcpmap::block_on(proxy.shutdown(false));
    outcomes
}

type Cases = Vec<(String, &'static str, Check)>;

fn ssh(env: &Env) -> Result<(tcpmap::ProxyHandle, Cases), String> {
    let banner = "SSH-2.0-OpenSSH_9.6 scenario-upstream\r\n".to_string();
    let up = upstreams::plain(Env::ip("upstream"), Some(banner))?;
    let (proxy, port) = env.proxy("ssh.yaml", &[("upstream", up)])?;
    let check = (|| {
        let mut s = connect(port)?;
        // The server speaks first: the banner must arrive before the client sends anything.
        let line = read_line(&mut s)?;
        expect(line.starts_with("SSH-2.0-OpenSSH_9.6"), &line)?;
        roundtrip(&mut s, b"SSH-2.0-scenario-client\r\n")
    })();
    let case = format!("plain :{port} -> upstream ({up})");
    let cases = vec![(
        case,
        "raw relay; server speaks first (SSH banner); echo",
        check,
    )];
    Ok((proxy, cases))
}

fn cockroach(env: &Env) -> Result<(tcpmap::ProxyHandle, Cases), String> {
    let up = upstreams::plain(Env::ip("cockroach"), None)?;
    let (proxy, port) = env.proxy("cockroach.yaml", &[("cockroach", up)])?;
    let check = (|| {
        let s = connect(port)?;
        let mut writer = s.try_clone().map_err(|e| e.to_string())?;
        let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let w = std::thread::spawn(move || -> std::io::Result<()> {
            writer.write_all(&sent)?;
            writer.shutdown(Shutdown::Write) // half-close: the echo must still come back
        });
        let mut got = Vec::new();
        (&s).read_to_end(&mut got)
            .map_err(|e| format!("read: {e}"))?;
        w.join()
            .map_err(|_| "writer thread panicked".to_string())?
            .map_err(|e| format!("write: {e}"))?;
        expect(
            got == data,
            &format!("{} of {} bytes matched", got.len(), data.len()),
        )
    })();
    let case = format!("plain :{port} -> cockroach ({up})");
    let cases = vec![(
        case,
        "raw relay; 256 KiB echoed exactly; half-close then EOF",
        check,
    )];
    Ok((proxy, cases))
}

fn termination(env: &Env) -> Result<(tcpmap::ProxyHandle, Cases), String> {
    let up1 = upstreams::plain(Env::ip("upstream-host-1"), Some("upstream-host-1\n".into()))?;
    let up2 = upstreams::plain(Env::ip("upstream-host-2"), Some("upstream-host-2\n".into()))?;
    let services = [("upstream-host-1", up1), ("upstream-host-2", up2)];
    let (proxy, port) = env.proxy("termination.yaml", &services)?;
    let client = tls::pinned_client(&env.supersecret.leaf)?;
    let mut cases = Cases::new();
    for (sni, upstream) in [
        ("my-host-1", "upstream-host-1"),
        ("my-host-2", "upstream-host-2"),
    ] {
        let check = (|| {
            let mut s = tls_connect(port, sni, client.clone())?;
            let line = read_line(&mut s)?;
            expect(line == upstream, &line)?;
            roundtrip(&mut s, b"decrypted and relayed in cleartext\n")
        })();
        let checked = "served cert = supersecret/tls.crt; cleartext upstream; echo";
        cases.push((format!("SNI {sni} -> {upstream}"), checked, check));
    }
    cases.push((
        "SNI other-host -> (none)".into(),
        "handshake fails with unrecognized_name",
        refused(port, "other-host", client),
    ));
    Ok((proxy, cases))
}

fn termination_origination(env: &Env) -> Result<(tcpmap::ProxyHandle, Cases), String> {
    let server = tls::upstream_server(&env.supersecret)?;
    let known = || {
        vec![
            ("othersecret", env.othersecret.leaf.clone()),
            ("supersecret", env.supersecret.leaf.clone()),
        ]
    };
    let up1 = upstreams::tls(
        Env::ip("upstream-host-1"),
        "upstream-host-1",
        server.clone(),
        known(),
    )?;
    let up2 = upstreams::tls(
        Env::ip("upstream-host-2"),
        "upstream-host-2",
        server,
        known(),
    )?;
    let services = [("upstream-host-1", up1), ("upstream-host-2", up2)];
    let (proxy, port) = env.proxy("termination-origination.yaml", &services)?;
    let client = tls::pinned_client(&env.supersecret.leaf)?;
    let mut cases = Cases::new();
    let expected = [
        (
            "my-host-1",
            "upstream-host-1 client-cert=none sni=upstream-host-1",
            "served cert = supersecret; TLS upstream; no client cert; SNI upstream-host-1",
        ),
        (
            "my-host-2",
            "upstream-host-2 client-cert=othersecret sni=upstream-host-2",
            "served cert = supersecret; TLS upstream; client cert = othersecret; SNI upstream-host-2",
        ),
    ];
    for (sni, report, checked) in expected {
        let upstream = report.split(' ').next().unwrap_or("?");
        let check = (|| {
            let mut s = tls_connect(port, sni, client.clone())?;
            let line = read_line(&mut s)?;
            expect(line == report, &line)?;
            roundtrip(&mut s, b"encrypted on both legs\n")
        })();
        cases.push((format!("SNI {sni} -> {upstream}"), checked, check));
    }
    cases.push((
        "SNI other-host -> (none)".into(),
        "handshake fails with unrecognized_name",
        refused(port, "other-host", client),
    ));
    Ok((proxy, cases))
}

fn origination(env: &Env) -> Result<(tcpmap::ProxyHandle, Cases), String> {
    let server = tls::upstream_server(&env.supersecret)?;
    let known = vec![("othersecret", env.othersecret.leaf.clone())];
    let up = upstreams::tls(Env::ip("upstream-host"), "upstream-host", server, known)?;
    let (proxy, port) = env.proxy("origination.yaml", &[("upstream-host", up)])?;
    let check = (|| {
        let mut s = connect(port)?;
        let line = read_line(&mut s)?;
        expect(
            line == "upstream-host client-cert=none sni=upstream-host",
            &line,
        )?;
        roundtrip(&mut s, b"cleartext in, TLS out\n")
    })();
    let case = format!("plain :{port} -> upstream-host");
    let checked = "TLS originated (SNI upstream-host); no client cert; echo";
    Ok((proxy, vec![(case, checked, check)]))
}

// ---- client helpers ----

fn expect(ok: bool, got: &str) -> Check {
    if ok {
        Ok(())
    } else {
        Err(format!("got {got:?}"))
    }
}

fn connect(port: u16) -> Result<TcpStream, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    Ok(s)
}

fn read_line(s: &mut impl Read) -> Result<String, String> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b) {
            Ok(0) => return Err(format!("closed after {:?}", String::from_utf8_lossy(&out))),
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) => out.push(b[0]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Ok(String::from_utf8_lossy(&out)
        .trim_end_matches('\r')
        .to_string())
}

fn roundtrip(s: &mut (impl Read + Write), msg: &[u8]) -> Check {
    s.write_all(msg).map_err(|e| format!("write: {e}"))?;
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).map_err(|e| format!("echo: {e}"))?;
    expect(got == msg, &String::from_utf8_lossy(&got))
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_connect(
    port: u16,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<TlsStream, String> {
    let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, connect(port)?);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| format!("TLS handshake: {e}"))?;
    }
    Ok(tls)
}

/// The handshake must fail with the proxy's `unrecognized_name` alert.
fn refused(port: u16, sni: &str, config: Arc<rustls::ClientConfig>) -> Check {
    let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, connect(port)?);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            let alert = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
            return match alert {
                Some(rustls::Error::AlertReceived(rustls::AlertDescription::UnrecognisedName)) => {
                    Ok(())
                }
                _ => Err(format!("failed, but not with unrecognized_name: {e}")),
            };
        }
    }
    Err("handshake succeeded".into())
}
