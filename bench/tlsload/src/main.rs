//! TLS load for bench/run.sh: full-handshake generator, one-connection bulk pusher and
//! puller, TLS sink.
//!
//! Owns: the client and server ends of the TLS scenarios (rustls 0.23 + aws-lc-rs, blocking
//! std sockets, one OS thread per connection). Python's ssl client spends ~1.2 ms of CPU per
//! handshake, which capped the handshake rate; this one spends a fraction of that.
//! Must not: decide what a number means; it prints one JSON line and bench/scenarios.py judges.
//!
//! Usage:
//!   tlsload handshakes --port P [--sni bench.test] [--seconds 5] [--threads 2] [--resume on]
//!     (--resume on: the client keeps the server's session tickets / ids and offers them on
//!     the next connection, as browsers and most TLS stacks do; the JSON line counts the
//!     handshakes that resumed)
//!   tlsload push       --port P [--sni bench.test] [--seconds 5]
//!   tlsload pull       --port P [--sni bench.test] [--seconds 5]   (GET /big, read for N s)
//!   tlsload sink       --port P --cert FILE --key FILE

use std::error::Error;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::HandshakeKind;
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, ServerConfig, ServerConnection,
};
use rustls::{SignatureScheme, Stream};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const GET: &[u8] = b"GET / HTTP/1.0\r\nHost: bench.test\r\n\r\n";
const CHUNK: usize = 1 << 20;

/// Accepts any certificate but still checks the handshake signature (so the client pays
/// the same verification cost a real client pays for the CertificateVerify message).
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

struct Args {
    mode: String,
    port: u16,
    sni: String,
    seconds: f64,
    threads: usize,
    resume: bool,
    cert: String,
    key: String,
}

fn parse_args() -> Res<Args> {
    let mut it = std::env::args().skip(1);
    let mode = it
        .next()
        .ok_or("usage: tlsload handshakes|push|pull|sink --port P ...")?;
    let mut a = Args {
        mode,
        port: 0,
        sni: "bench.test".into(),
        seconds: 5.0,
        threads: 2,
        resume: false,
        cert: String::new(),
        key: String::new(),
    };
    while let Some(flag) = it.next() {
        let val = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => a.port = val.parse()?,
            "--sni" => a.sni = val,
            "--seconds" => a.seconds = val.parse()?,
            "--threads" => a.threads = val.parse()?,
            "--resume" => a.resume = val == "on",
            "--cert" => a.cert = val,
            "--key" => a.key = val,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(a)
}

fn client_config() -> Res<Arc<ClientConfig>> {
    client_config_with(Resumption::disabled())
}

/// The bench client; `resumption` decides whether it keeps and offers sessions.
fn client_config_with(resumption: Resumption) -> Res<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    // Full handshakes only unless the caller keeps sessions.
    cfg.resumption = resumption;
    Ok(Arc::new(cfg))
}

/// One handshake + one tiny GET, read up to nginx's 3-byte body, then close_notify; true when
/// the handshake resumed a session.
fn one_handshake(port: u16, cfg: &Arc<ClientConfig>, name: &ServerName<'static>) -> Res<bool> {
    let mut sock = TcpStream::connect(("127.0.0.1", port))?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut conn = ClientConnection::new(cfg.clone(), name.clone())?;
    let mut tls = Stream::new(&mut conn, &mut sock);
    tls.write_all(GET)?;
    let mut got = Vec::with_capacity(256);
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"\r\n\r\nok\n") {
        let n = tls.read(&mut buf)?;
        if n == 0 {
            return Err("closed before the answer".into());
        }
        got.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    if !got.starts_with(b"HTTP/1.1 200") {
        return Err("not a 200".into());
    }
    let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
    conn.send_close_notify();
    let _ = conn.write_tls(&mut sock);
    Ok(resumed)
}

fn handshakes(a: &Args) -> Res<()> {
    let cfg = if a.resume {
        // One store for both threads (like one client process); TLS 1.3 tickets are used once,
        // so each connection needs a ticket the previous ones brought.
        client_config_with(Resumption::in_memory_sessions(256))?
    } else {
        client_config()?
    };
    let name = ServerName::try_from(a.sni.clone())?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.seconds);
    let workers: Vec<_> = (0..a.threads)
        .map(|_| {
            let (cfg, name, port) = (cfg.clone(), name.clone(), a.port);
            std::thread::spawn(move || {
                let (mut ok, mut err, mut resumed) = (0u64, 0u64, 0u64);
                while Instant::now() < deadline {
                    match one_handshake(port, &cfg, &name) {
                        Ok(r) => {
                            ok += 1;
                            resumed += u64::from(r);
                        }
                        Err(_) => err += 1,
                    }
                }
                (ok, err, resumed)
            })
        })
        .collect();
    let (mut ok, mut err, mut resumed) = (0u64, 0u64, 0u64);
    for w in workers {
        let (o, e, r) = w.join().map_err(|_| "worker thread panicked")?;
        ok += o;
        err += e;
        resumed += r;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"handshakes\": {ok}, \"errors\": {err}, \"resumed\": {resumed}, \"seconds\": {secs}, \"per_s\": {}}}",
        ok as f64 / secs
    );
    Ok(())
}

fn push(a: &Args) -> Res<()> {
    let cfg = client_config()?;
    let name = ServerName::try_from(a.sni.clone())?;
    let mut sock = TcpStream::connect(("127.0.0.1", a.port))?;
    sock.set_nodelay(true)?;
    let mut conn = ClientConnection::new(cfg, name)?;
    let data = vec![0u8; CHUNK];
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.seconds);
    let mut sent: u64 = 0;
    {
        let mut tls = Stream::new(&mut conn, &mut sock);
        while Instant::now() < deadline {
            tls.write_all(&data)?;
            sent += CHUNK as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    conn.send_close_notify();
    let _ = conn.write_tls(&mut sock);
    println!(
        "{{\"bytes\": {sent}, \"seconds\": {secs}, \"gbps\": {}, \"cipher\": \"{cipher}\"}}",
        sent as f64 * 8.0 / secs / 1e9
    );
    Ok(())
}

/// One TLS connection reading an endless HTTP response (`GET /big`, a huge file) for
/// `seconds`: the download direction, where the proxy encrypts. A response that ends early
/// is followed by a new connection.
fn pull(a: &Args) -> Res<()> {
    let cfg = client_config()?;
    let name = ServerName::try_from(a.sni.clone())?;
    let request = format!(
        "GET /big HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        a.sni
    );
    let mut buf = vec![0u8; CHUNK];
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.seconds);
    let mut got: u64 = 0;
    let mut cipher = String::new();
    while Instant::now() < deadline {
        let mut sock = TcpStream::connect(("127.0.0.1", a.port))?;
        sock.set_nodelay(true)?;
        let mut conn = ClientConnection::new(cfg.clone(), name.clone())?;
        let mut tls = Stream::new(&mut conn, &mut sock);
        tls.write_all(request.as_bytes())?;
        while Instant::now() < deadline {
            match tls.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(s) = conn.negotiated_cipher_suite() {
            cipher = format!("{:?}", s.suite());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"bytes\": {got}, \"seconds\": {secs}, \"gbps\": {}, \"cipher\": \"{cipher}\"}}",
        got as f64 * 8.0 / secs / 1e9
    );
    Ok(())
}

fn drain(cfg: Arc<ServerConfig>, mut sock: TcpStream) -> Res<()> {
    let mut conn = ServerConnection::new(cfg)?;
    let mut tls = Stream::new(&mut conn, &mut sock);
    let mut buf = vec![0u8; CHUNK];
    while tls.read(&mut buf)? > 0 {}
    Ok(())
}

fn sink(a: &Args) -> Res<()> {
    let certs = CertificateDer::pem_file_iter(&a.cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&a.key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.send_tls13_tickets = 0;
    let cfg = Arc::new(cfg);
    let listener = TcpListener::bind(("127.0.0.1", a.port))?;
    for sock in listener.incoming() {
        let sock = sock?;
        let cfg = cfg.clone();
        std::thread::spawn(move || drain(cfg, sock));
    }
    Ok(())
}

fn main() -> Res<()> {
    let a = parse_args()?;
    match a.mode.as_str() {
        "handshakes" => handshakes(&a),
        "push" => push(&a),
        "pull" => pull(&a),
        "sink" => sink(&a),
        other => Err(format!("unknown mode {other}").into()),
    }
}
