//! In-process upstreams for the scenario runner, on plain std threads (independent of the
//! proxy's runtime): an echo server that may speak first (an SSH-like banner or its own name),
//! and a TLS echo server that first reports the SNI and client certificate it saw.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

/// Copies everything back until EOF, then half-closes (so clients see a clean end).
fn echo<S: Read + Write>(s: &mut S) {
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn serve(
    ip: IpAddr,
    handler: impl Fn(TcpStream) + Send + Sync + 'static,
) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind((ip, 0)).map_err(|e| format!("bind {ip}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let h = handler.clone();
            std::thread::spawn(move || h(s));
        }
    });
    Ok(addr)
}

/// A plain echo upstream on `ip`; with `greeting`, it writes that first (server speaks first).
pub(crate) fn plain(ip: IpAddr, greeting: Option<String>) -> Result<SocketAddr, String> {
    serve(ip, move |mut s| {
        if let Some(g) = &greeting {
            if s.write_all(g.as_bytes()).is_err() {
                return;
            }
        }
        echo(&mut s);
        let _ = s.shutdown(Shutdown::Write);
    })
}

/// A TLS echo upstream: after the handshake it writes
/// `NAME client-cert=<which> sni=<name|none>\n`, then echoes. `<which>` is the name of the
/// entry of `known` whose DER equals the client's certificate, `unknown`, or `none`.
pub(crate) fn tls(
    ip: IpAddr,
    name: &'static str,
    config: Arc<rustls::ServerConfig>,
    known: Vec<(&'static str, CertificateDer<'static>)>,
) -> Result<SocketAddr, String> {
    serve(ip, move |s| {
        let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
            return;
        };
        let mut tls = rustls::StreamOwned::new(conn, s);
        while tls.conn.is_handshaking() {
            if tls.conn.complete_io(&mut tls.sock).is_err() {
                return;
            }
        }
        let sni = tls.conn.server_name().unwrap_or("none").to_string();
        let cert = match tls.conn.peer_certificates().and_then(|c| c.first()) {
            None => "none",
            Some(der) => known
                .iter()
                .find(|(_, k)| k.as_ref() == der.as_ref())
                .map_or("unknown", |(n, _)| *n),
        };
        let report = format!("{name} client-cert={cert} sni={sni}\n");
        if tls.write_all(report.as_bytes()).is_err() {
            return;
        }
        echo(&mut tls);
        tls.conn.send_close_notify();
        let _ = tls.conn.complete_io(&mut tls.sock);
    })
}
