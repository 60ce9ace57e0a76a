//! The scenario runner: every example of Ambassador's "Routing TCP connections" page, served by
//! tcpmap and driven by real clients, on one machine, with nothing to set up.
//!
//! For each config in `examples/config/` (ssh, cockroach, termination, termination-origination,
//! origination, postgres) it starts in-process upstreams (an SSH-like server that speaks first, an echo
//! server, TLS echo servers that report the SNI and client certificate they saw), starts a proxy
//! on the example with its listener port moved to a free port and its service ports pointed at
//! those upstreams (the service names resolve through a temporary hosts file, each name to its
//! own 127.0.0.N address), connects clients and prints one line per checked case. The
//! `postgres` scenario starts two real PostgreSQL servers and drives `psql`: it needs Debian's
//! `postgresql`; without it, a run of all scenarios skips it with a note on stderr, and
//! `-- postgres` fails saying how to install it.
//!
//! Run all: `cargo run --release --example scenarios`; one: `cargo run --release --example
//! scenarios -- termination`. Exits 1 if any case fails. `tests/scenarios.rs` runs it as a test.

mod cases;
pub(crate) mod postgres;
mod tls;
mod upstreams;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tcpmap::ProxyHandle;

/// The service names of the examples and the loopback address each resolves to.
pub(crate) const HOSTS: [(&str, Ipv4Addr); 8] = [
    ("upstream", Ipv4Addr::new(127, 0, 0, 2)),
    ("cockroach", Ipv4Addr::new(127, 0, 0, 3)),
    ("upstream-host-1", Ipv4Addr::new(127, 0, 0, 4)),
    ("upstream-host-2", Ipv4Addr::new(127, 0, 0, 5)),
    ("upstream-host", Ipv4Addr::new(127, 0, 0, 6)),
    ("db1", Ipv4Addr::new(127, 0, 0, 7)),
    ("db2", Ipv4Addr::new(127, 0, 0, 8)),
    ("reports-db", Ipv4Addr::new(127, 0, 0, 9)),
];

/// Every scenario, in run order; each is named after its `examples/config/NAME.yaml`.
pub(crate) const SCENARIOS: [&str; 6] = [
    "ssh",
    "cockroach",
    "termination",
    "termination-origination",
    "origination",
    "postgres",
];

/// One checked case: one line of the table.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The scenario (config file) it belongs to.
    pub(crate) scenario: &'static str,
    /// What the client did and where it should have landed.
    pub(crate) case: String,
    /// What was checked.
    pub(crate) checked: String,
    /// `Err` says what went wrong.
    pub(crate) result: Result<(), String>,
}

/// What every scenario shares: the example directory, the temporary hosts file and resolv.conf,
/// and the example secrets.
pub(crate) struct Env {
    _dir: tempfile::TempDir,
    hosts: PathBuf,
    resolv: PathBuf,
    examples: PathBuf,
    /// The termination certificate of the examples (`secrets/supersecret`).
    pub(crate) supersecret: tls::Secret,
    /// The origination client certificate of the examples (`secrets/othersecret`).
    pub(crate) othersecret: tls::Secret,
}

impl Env {
    /// Writes the hosts file and reads the example secrets.
    pub(crate) fn new() -> Result<Env, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let hosts = dir.path().join("hosts");
        let lines: String = HOSTS.iter().map(|(n, ip)| format!("{ip} {n}\n")).collect();
        std::fs::write(&hosts, lines).map_err(|e| format!("write hosts file: {e}"))?;
        // Every name is in the hosts file; no DNS server is needed or asked.
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&resolv, "nameserver 127.0.0.1\n").map_err(|e| e.to_string())?;
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config");
        let secrets = examples.join("secrets");
        Ok(Env {
            supersecret: tls::Secret::load(&secrets.join("supersecret"))?,
            othersecret: tls::Secret::load(&secrets.join("othersecret"))?,
            _dir: dir,
            hosts,
            resolv,
            examples,
        })
    }

    /// The address `name` resolves to through the hosts file.
    pub(crate) fn ip(name: &str) -> IpAddr {
        let ip = HOSTS.iter().find(|(n, _)| *n == name).map(|(_, ip)| *ip);
        IpAddr::V4(ip.unwrap_or(Ipv4Addr::LOCALHOST))
    }

    /// Starts a proxy on `examples/config/FILE` with its listener port moved to a free port
    /// and each named service's port moved to its upstream's. Returns the proxy and the port.
    pub(crate) fn proxy(
        &self,
        file: &str,
        services: &[(&str, SocketAddr)],
    ) -> Result<(ProxyHandle, u16), String> {
        let path = self.examples.join(file);
        let yaml =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        // A port picked by binding port 0 can be taken again (by another program's outgoing
        // connection) before the proxy binds it: pick another one then, a few times.
        let mut tries = 0;
        loop {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("free port: {e}"))?
                .port();
            let yaml = rewrite(&yaml, port, services)?;
            let started = tcpmap::ProxyBuilder::new()
                .config_yaml(file, yaml)
                .secrets_dir(self.examples.join("secrets"))
                .hosts_file(&self.hosts)
                .resolv_conf(&self.resolv)
                .handshake_timeout(Duration::from_secs(5))
                .drain_timeout(Duration::from_secs(1))
                .start_blocking();
            match started {
                Ok(proxy) => return Ok((proxy, port)),
                Err(tcpmap::Error::Bind { .. }) if tries < 5 => tries += 1,
                Err(e) => return Err(format!("proxy on {file} did not start: {e}")),
            }
        }
    }
}

/// Rewrites an example config: every `port:` becomes `listen_port`, and every
/// `service: NAME:PORT` whose NAME is in `services` gets that upstream's port (the name stays,
/// so it is still resolved). Comments and everything else are kept as they are.
pub(crate) fn rewrite(
    yaml: &str,
    listen_port: u16,
    services: &[(&str, SocketAddr)],
) -> Result<String, String> {
    let mut out = String::with_capacity(yaml.len());
    for line in yaml.lines() {
        if line.starts_with("port:") {
            out.push_str(&format!("port: {listen_port}"));
        } else if let Some(service) = line.strip_prefix("service:") {
            let service = service.trim();
            let name = service.rsplit_once(':').map_or(service, |(n, _)| n);
            let Some((_, addr)) = services.iter().find(|(n, _)| *n == name) else {
                return Err(format!("no upstream for service `{service}`"));
            };
            out.push_str(&format!("service: {name}:{}", addr.port()));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    Ok(out)
}

/// Runs the named scenarios (all when `selected` is empty) and returns every case's outcome.
pub(crate) fn run(selected: &[String]) -> Result<Vec<Outcome>, String> {
    if let Some(bad) = selected.iter().find(|s| !SCENARIOS.contains(&s.as_str())) {
        return Err(format!(
            "unknown scenario `{bad}`; choose from: {}",
            SCENARIOS.join(", ")
        ));
    }
    let env = Env::new()?;
    let mut outcomes = Vec::new();
    for name in SCENARIOS {
        // Run all: the postgres scenario only where PostgreSQL is installed (the others need
        // nothing); asked for by name, it fails saying how to install it.
        if selected.is_empty() && name == "postgres" && !postgres::installed() {
            eprintln!("scenarios: postgres skipped: {}", postgres::INSTALL);
            continue;
        }
        if selected.is_empty() || selected.iter().any(|s| s == name) {
            outcomes.extend(cases::run(name, &env));
        }
    }
    Ok(outcomes)
}

/// The outcomes as an aligned table, one line per case, with a header.
pub(crate) fn table(outcomes: &[Outcome]) -> String {
    let w_scenario = outcomes
        .iter()
        .map(|o| o.scenario.len())
        .fold(8, usize::max);
    let w_case = outcomes.iter().map(|o| o.case.len()).fold(4, usize::max);
    let w_checked = outcomes.iter().map(|o| o.checked.len()).fold(7, usize::max);
    let mut out = format!(
        "{:w_scenario$}  {:w_case$}  {:w_checked$}  result\n",
        "scenario", "case", "checked"
    );
    for o in outcomes {
        let result = match &o.result {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("FAIL: {e}"),
        };
        out.push_str(&format!(
            "{:w_scenario$}  {:w_case$}  {:w_checked$}  {result}\n",
            o.scenario, o.case, o.checked
        ));
    }
    out
}

fn main() -> ExitCode {
    let selected: Vec<String> = std::env::args().skip(1).collect();
    match run(&selected) {
        Err(e) => {
            eprintln!("scenarios: {e}");
            ExitCode::from(2)
        }
        Ok(outcomes) => {
            print!("{}", table(&outcomes));
            let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
            println!("{} case(s), {failed} failed", outcomes.len());
            if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}
