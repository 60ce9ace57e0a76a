//! Test upstreams and clients on loopback: plain echo, banner (server speaks first),
//! TLS echo that reports the client certificate it saw. Blocking std threads, so they are
//! independent of the proxy's runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

/// The start of the port range the registry hands out from.
const PORT_LO: u32 = 20_000;
/// The size of that range: 20000..32000 lies below Linux's default ephemeral range
/// (32768-60999), so neither port-0 binds nor outgoing connects of any process take these.
const PORT_SPAN: u32 = 12_000;

/// A TCP port for a proxy listener, from a per-process registry: never the same port twice
/// in one process, each process starting at its own pid-derived offset (parallel test binaries
/// start far apart), and probed free on 0.0.0.0 and [::] right before it is handed out.
/// Another process can still take it before the proxy binds: start proxies with
/// `proxy::start_ports` / `Daemon::run_ports`, which retry with fresh ports on a bind error.
pub fn free_port() -> u16 {
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU32::new(std::process::id().wrapping_mul(7919)));
    for _ in 0..PORT_SPAN {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let port = (PORT_LO + n % PORT_SPAN) as u16;
        let v4 = TcpListener::bind(("0.0.0.0", port)).is_ok();
        // Without IPv6 at all, the v4 probe decides.
        let v6 = !matches!(TcpListener::bind(("::", port)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse);
        if v4 && v6 {
            return port;
        }
    }
    panic!("no free port in {PORT_LO}..{}", PORT_LO + PORT_SPAN);
}

/// `127.0.0.1:port`.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A running test upstream.
pub struct Upstream {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn serve(bind: &str, handler: impl Fn(TcpStream) + Send + Sync + 'static) -> Upstream {
    let listener = TcpListener::bind(bind).unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let handler = Arc::new(handler);
    thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            let h = handler.clone();
            thread::spawn(move || h(s));
        }
    });
    Upstream { addr, accepted }
}

/// Echoes until EOF, then shuts the write side (half-close aware).
fn echo_loop(mut s: TcpStream) {
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = s.shutdown(Shutdown::Write);
}

/// Echoes every byte; on EOF from the client it shuts its write side.
pub fn echo(bind: &str) -> Upstream {
    serve(bind, echo_loop)
}

/// Writes `NAME\n` at once (server speaks first), then echoes.
pub fn banner(bind: &str, name: &'static str) -> Upstream {
    serve(bind, move |mut s| {
        let _ = s.write_all(format!("{name}\n").as_bytes());
        echo_loop(s);
    })
}

/// A TLS upstream: on handshake it writes `NAME client-cert=<CN|none> sni=<name|none>\n`, then echoes.
pub fn tls_banner(bind: &str, name: &'static str, config: Arc<rustls::ServerConfig>) -> Upstream {
    serve(bind, move |s| {
        let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
            return;
        };
        let mut tls = rustls::StreamOwned::new(conn, s);
        // Drive the handshake.
        while tls.conn.is_handshaking() {
            if tls.conn.complete_io(&mut tls.sock).is_err() {
                return;
            }
        }
        let sni = tls.conn.server_name().unwrap_or("none").to_string();
        let cert = tls
            .conn
            .peer_certificates()
            .and_then(|c| c.first().cloned())
            .map(|c| common_name(&c))
            .unwrap_or_else(|| "none".to_string());
        let _ = tls.write_all(format!("{name} client-cert={cert} sni={sni}\n").as_bytes());
        let mut buf = [0u8; 16384];
        loop {
            match tls.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tls.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
        tls.conn.send_close_notify();
        let _ = tls.conn.complete_io(&mut tls.sock);
    })
}

/// The subject CN of a DER certificate (test helper; crude but enough for rcgen certs).
pub fn common_name(der: &[u8]) -> String {
    // Find the OID 2.5.4.3 (55 04 03) and read the following string.
    let oid = [0x55u8, 0x04, 0x03];
    let mut last = None;
    for i in 0..der.len().saturating_sub(5) {
        if der[i..i + 3] == oid {
            let len = der[i + 4] as usize;
            let start = i + 5;
            if start + len <= der.len() {
                last = Some(String::from_utf8_lossy(&der[start..start + len]).to_string());
            }
        }
    }
    last.unwrap_or_else(|| "?".to_string())
}

/// Connects with a 5 s read timeout.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads one `\n`-terminated line.
pub fn read_line(s: &mut impl Read) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while let Ok(1) = s.read(&mut b) {
        if b[0] == b'\n' {
            break;
        }
        out.push(b[0]);
    }
    String::from_utf8_lossy(&out).to_string()
}

/// Sends `msg`, expects it echoed back.
pub fn roundtrip(s: &mut (impl Read + Write), msg: &[u8]) {
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, msg);
}

/// True when the peer closed (EOF or reset) within `within`.
pub fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
        && {
            // Distinguish a timeout from a close.
            !matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut)
        }
}

/// The test PKI's rustls configs (the same for the unit tests: `tcpmap::testkit::pki`).
#[allow(unused_imports)] // each test crate uses a different subset
pub use tcpmap::testkit::pki::{
    client_config as tls_client_config, server_config as tls_server_config,
};

/// A blocking TLS client connection through `addr` with SNI `sni`.
pub fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let sock = connect(addr);
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// An upstream that expects a PROXY protocol header (decoded with tcpmap's codec) and answers
/// `client=ADDR dest=ADDR authority=NAME alpn=PROTO tls=VERSION version=v1|v2\n` (`-` for what
/// the header lacks; `no-header\n` when the first bytes are none), then echoes the rest.
pub fn proxy_reporter(bind: &str) -> Upstream {
    use tcpmap::proxy_protocol::{Decoded, decode, tlv};
    serve(bind, |mut s| {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (line, rest) = loop {
            let n = match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            match decode(&buf) {
                Ok(Decoded::Partial { .. }) => continue,
                Ok(Decoded::NotProxy) => break ("no-header".to_string(), buf.clone()),
                Ok(Decoded::Complete { header, len }) => {
                    let dash = |o: Option<String>| o.unwrap_or_else(|| "-".into());
                    let line = format!(
                        "client={} dest={} authority={} alpn={} tls={} version={}",
                        dash(header.client().map(|a| a.to_string())),
                        dash(header.destination().map(|a| a.to_string())),
                        dash(header.authority().map(str::to_string)),
                        dash(
                            header
                                .tlv(tlv::ALPN)
                                .map(|a| String::from_utf8_lossy(a).to_string())
                        ),
                        dash(header.ssl().and_then(|s| s.version().map(str::to_string))),
                        header.version.as_str(),
                    );
                    break (line, buf[len..].to_vec());
                }
                // `Decoded` is #[non_exhaustive]: a kind this test does not know is a failure.
                Ok(other) => break (format!("unknown {other:?}"), Vec::new()),
                Err(e) => break (format!("bad-header {e}"), Vec::new()),
            }
        };
        if s.write_all(format!("{line}\n").as_bytes()).is_err() || s.write_all(&rest).is_err() {
            return;
        }
        echo_loop(s);
    })
}
