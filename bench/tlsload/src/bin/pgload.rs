//! Postgres-style connections through tcpmap: what the SSLRequest step (`starttls: postgres`)
//! costs the proxy per connection over the same connection without it.
//!
//! Owns: the whole measurement (a tcpmap daemon on four listeners, in-process upstreams, a
//! client, the proxy's CPU time per connection). Must not: touch bench/run.sh's scenarios.
//!
//! Each connection: connect, [SSLRequest, read `S`], a full TLS 1.3 handshake (no resumption),
//! a 41-byte startup message, read the upstream's 14-byte answer (AuthenticationOk,
//! ReadyForQuery), close_notify and close. Four ways through one tcpmap (`--workers 1`, one
//! executor thread):
//!
//! - `terminate+pg`: `starttls: postgres`, tcpmap terminates, the upstream gets the startup
//!   message in clear;
//! - `terminate`: the same without `starttls` and without the SSLRequest (plain TLS);
//! - `passthrough+pg`: `starttls: postgres`, passthrough; tcpmap sends the SSLRequest upstream
//!   and swallows its `S`; the upstream is a TLS server (rustls) that answers the SSLRequest;
//! - `passthrough`: plain TLS passthrough to the same upstream, without any SSLRequest.
//!
//! The proxy's CPU is the sum of its threads' `/proc/PID/task/*/schedstat` run time
//! (nanoseconds) around each run, divided by the connections of that run. Runs alternate
//! (the order reversed every other round) on this loaded machine; the medians are printed.
//!
//! Usage: `pgload --tcpmap PATH [--rounds 7] [--seconds 3] [--threads 2]`

use std::error::Error;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, ServerConfig, ServerConnection,
    SignatureScheme, Stream,
};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// AuthenticationOk, then ReadyForQuery (idle): what a trust-authenticating server answers.
const ANSWER: [u8; 15] = [b'R', 0, 0, 0, 8, 0, 0, 0, 0, b'Z', 0, 0, 0, 5, b'I'];

/// A protocol 3.0 startup message for user and database `postgres`.
fn startup() -> Vec<u8> {
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

/// Accepts any certificate but checks the handshake signature (a real client's cost).
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
        let algs = &self.0.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config() -> Res<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    cfg.resumption = Resumption::disabled();
    Ok(Arc::new(cfg))
}

fn server_config(dir: &Path) -> Res<Arc<ServerConfig>> {
    let certs =
        CertificateDer::pem_file_iter(dir.join("pg/tls.crt"))?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(dir.join("pg/tls.key"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

/// Reads one startup message (length first) from `r`.
fn read_startup(r: &mut impl Read) -> Res<()> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let mut rest = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
    r.read_exact(&mut rest)?;
    Ok(())
}

/// The clear upstream (behind terminate): startup in, answer out, wait for the end.
fn clear_session(mut s: TcpStream) -> Res<()> {
    read_startup(&mut s)?;
    s.write_all(&ANSWER)?;
    let mut buf = [0u8; 256];
    while s.read(&mut buf)? > 0 {}
    Ok(())
}

/// The TLS upstream (behind passthrough): an SSLRequest answered `S` when one comes, then TLS.
fn tls_session(cfg: Arc<ServerConfig>, mut s: TcpStream) -> Res<()> {
    let mut first = [0u8; 1];
    s.peek(&mut first)?;
    if first[0] == 0 {
        let mut req = [0u8; 8];
        s.read_exact(&mut req)?;
        if req != SSL_REQUEST {
            return Err("not an SSLRequest".into());
        }
        s.write_all(b"S")?;
    }
    let mut conn = ServerConnection::new(cfg)?;
    let mut tls = Stream::new(&mut conn, &mut s);
    read_startup(&mut tls)?;
    tls.write_all(&ANSWER)?;
    let mut buf = [0u8; 256];
    while matches!(tls.read(&mut buf), Ok(n) if n > 0) {}
    Ok(())
}

/// Serves `session` for every connection on a fresh loopback port, one thread each.
fn serve(session: impl Fn(TcpStream) -> Res<()> + Send + Sync + 'static) -> Res<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let session = Arc::new(session);
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let session = session.clone();
            std::thread::spawn(move || session(s));
        }
    });
    Ok(port)
}

/// One Postgres-style connection (see the module's description).
fn one(
    port: u16,
    ssl_request: bool,
    cfg: &Arc<ClientConfig>,
    name: &ServerName<'static>,
) -> Res<()> {
    let mut sock = TcpStream::connect(("127.0.0.1", port))?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    if ssl_request {
        sock.write_all(&SSL_REQUEST)?;
        let mut answer = [0u8; 1];
        sock.read_exact(&mut answer)?;
        if &answer != b"S" {
            return Err("SSLRequest not answered S".into());
        }
    }
    let mut conn = ClientConnection::new(cfg.clone(), name.clone())?;
    let mut tls = Stream::new(&mut conn, &mut sock);
    tls.write_all(&startup())?;
    let mut got = [0u8; ANSWER.len()];
    tls.read_exact(&mut got)?;
    if got != ANSWER {
        return Err("wrong answer".into());
    }
    conn.send_close_notify();
    conn.write_tls(&mut sock)?;
    sock.shutdown(Shutdown::Write)?;
    Ok(())
}

/// The run time of every thread of `pid`, in nanoseconds.
fn cpu_ns(pid: u32) -> Res<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = std::fs::read_to_string(task?.path().join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

struct Way {
    name: &'static str,
    port: u16,
    sni: &'static str,
    ssl_request: bool,
}

/// Runs `way` for `seconds` on `threads` client threads: (connections, errors, proxy ns).
fn run(way: &Way, pid: u32, seconds: f64, threads: usize) -> Res<(u64, u64, u64)> {
    let cfg = client_config()?;
    let name = ServerName::try_from(way.sni)?;
    let before = cpu_ns(pid)?;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (cfg, name, port, ssl) = (cfg.clone(), name.clone(), way.port, way.ssl_request);
            std::thread::spawn(move || {
                let (mut ok, mut err) = (0u64, 0u64);
                while Instant::now() < deadline {
                    match one(port, ssl, &cfg, &name) {
                        Ok(()) => ok += 1,
                        Err(_) => err += 1,
                    }
                }
                (ok, err)
            })
        })
        .collect();
    let (mut ok, mut err) = (0, 0);
    for w in workers {
        let (o, e) = w.join().map_err(|_| "client thread panicked")?;
        ok += o;
        err += e;
    }
    // Let the proxy finish closing the last connections before reading its CPU.
    std::thread::sleep(Duration::from_millis(300));
    Ok((ok, err, cpu_ns(pid)?.saturating_sub(before)))
}

struct Args {
    tcpmap: PathBuf,
    rounds: usize,
    seconds: f64,
    threads: usize,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        tcpmap: PathBuf::new(),
        rounds: 7,
        seconds: 3.0,
        threads: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let val = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--tcpmap" => a.tcpmap = val.into(),
            "--rounds" => a.rounds = val.parse()?,
            "--seconds" => a.seconds = val.parse()?,
            "--threads" => a.threads = val.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if a.tcpmap.as_os_str().is_empty() {
        return Err("usage: pgload --tcpmap PATH [--rounds 7] [--seconds 3] [--threads 2]".into());
    }
    Ok(a)
}

fn free_port() -> Res<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A self-signed P-256 certificate for pg.test and pt.test in `dir/pg/` (a tcpmap secret).
fn make_cert(dir: &Path) -> Res<()> {
    std::fs::create_dir_all(dir.join("pg"))?;
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=pg.test"])
        .args(["-addext", "subjectAltName=DNS:pg.test,DNS:pt.test"])
        .arg("-keyout")
        .arg(dir.join("pg/tls.key"))
        .arg("-out")
        .arg(dir.join("pg/tls.crt"))
        .stderr(Stdio::null())
        .status()?;
    if !ok.success() {
        return Err("openssl req failed".into());
    }
    Ok(())
}

/// The four listeners' YAML: ports in `Way` order.
fn config(ports: [u16; 4], clear: u16, tls: u16) -> String {
    let mapping = |name: &str, port: u16, service: u16, extra: &str| {
        format!(
            "---\napiVersion: ambassador/v1\nkind: TCPMapping\nname: {name}\naddress: 127.0.0.1\n\
             port: {port}\nservice: 127.0.0.1:{service}\n{extra}"
        )
    };
    "---\napiVersion: ambassador/v1\nkind: TLSContext\nname: pg\nhosts: [pg.test]\nsecret: pg\n"
        .to_string()
        + &mapping(
            "terminate-pg",
            ports[0],
            clear,
            "host: pg.test\nstarttls: postgres\n",
        )
        + &mapping("terminate", ports[1], clear, "host: pg.test\n")
        + &mapping(
            "passthrough-pg",
            ports[2],
            tls,
            "host: pt.test\ntls_passthrough: true\nstarttls: postgres\n",
        )
        + &mapping(
            "passthrough",
            ports[3],
            tls,
            "host: pt.test\ntls_passthrough: true\n",
        )
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> Res<()> {
    let a = parse_args()?;
    let dir = std::env::temp_dir().join(format!("pgload-{}", std::process::id()));
    make_cert(&dir)?;
    let clear = serve(clear_session)?;
    let scfg = server_config(&dir)?;
    let tls = serve(move |s| tls_session(scfg.clone(), s))?;
    let ports = [free_port()?, free_port()?, free_port()?, free_port()?];
    let cfg_path = dir.join("tcpmap.yaml");
    std::fs::write(&cfg_path, config(ports, clear, tls))?;
    let daemon = Daemon(
        Command::new(&a.tcpmap)
            .args(["run", "--workers", "1", "--config"])
            .arg(&cfg_path)
            .arg("--secrets-dir")
            .arg(&dir)
            .env("RUST_LOG", "warn")
            .env("ASYNC_STD_THREAD_COUNT", "1")
            .stdout(Stdio::null())
            .spawn()?,
    );
    let pid = daemon.0.id();
    let ways = [
        Way {
            name: "terminate+pg",
            port: ports[0],
            sni: "pg.test",
            ssl_request: true,
        },
        Way {
            name: "terminate",
            port: ports[1],
            sni: "pg.test",
            ssl_request: false,
        },
        Way {
            name: "passthrough+pg",
            port: ports[2],
            sni: "pt.test",
            ssl_request: true,
        },
        Way {
            name: "passthrough",
            port: ports[3],
            sni: "pt.test",
            ssl_request: false,
        },
    ];
    // Ready when every listener completes one connection.
    let ready = Instant::now() + Duration::from_secs(20);
    let (cfg0, mut up) = (client_config()?, false);
    while !up && Instant::now() < ready {
        up = ways.iter().all(|w| {
            ServerName::try_from(w.sni)
                .map_err(|e| e.to_string())
                .and_then(|n| one(w.port, w.ssl_request, &cfg0, &n).map_err(|e| e.to_string()))
                .is_ok()
        });
        if !up {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if !up {
        return Err("tcpmap did not serve all four listeners within 20 s".into());
    }
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    for round in 0..a.rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            vec![0, 1, 2, 3]
        } else {
            vec![3, 2, 1, 0]
        };
        for i in order {
            let (ok, err, ns) = run(&ways[i], pid, a.seconds, a.threads)?;
            let us = ns as f64 / 1e3 / ok.max(1) as f64;
            println!(
                "{{\"round\": {round}, \"way\": \"{}\", \"connections\": {ok}, \"errors\": {err}, \
                 \"per_s\": {:.0}, \"proxy_cpu_us_per_conn\": {us:.1}}}",
                ways[i].name,
                ok as f64 / a.seconds
            );
            per[i].push(us);
        }
    }
    let diffs = |pg: usize, plain: usize| -> Vec<f64> {
        per[pg]
            .iter()
            .zip(&per[plain])
            .map(|(a, b)| a - b)
            .collect()
    };
    let (mut dt, mut dp) = (diffs(0, 1), diffs(2, 3));
    for (i, w) in ways.iter().enumerate() {
        let mut v = per[i].clone();
        println!(
            "median {:<15} {:.1} us of proxy CPU per connection ({} runs)",
            w.name,
            median(&mut v),
            v.len()
        );
    }
    println!(
        "median of per-round differences: terminate {:+.1} us, passthrough {:+.1} us",
        median(&mut dt),
        median(&mut dp)
    );
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
