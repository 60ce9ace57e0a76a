//! The status page (`GET /`) and its data (`GET /status.json`): one [`StatusSnapshot`],
//! served as JSON and embedded in one self-contained HTML page whose script renders it and
//! then refreshes it from `/status.json` every 2 s.
//!
//! ```text
//! api::status::gather ─▶ StatusSnapshot ─┬─ json()  ─▶ /status.json
//!   (route table, counters,              └─ page()  ─▶ /   (page.html + the snapshot inlined)
//!    endpoints, certificates)
//! ```
//!
//! Pure: values in, bytes out. The counters are totals since start; rates (new connections
//! per second, bytes per second) are computed by the page from two successive samples
//! (`now_unix_ms` of each), so the JSON stays stateless.
//!
//! Everything from the config (names, hosts, services, problems) is user input: the page's
//! script only ever sets it as text (`textContent`), never as markup, and the snapshot inlined
//! in the page has `<`, `>` and `&` escaped so no string can end its `<script>` element.

pub(crate) mod counters;
pub(crate) mod index;
#[cfg(test)]
pub(crate) mod tests;
pub(crate) mod x509;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use crate::state::endpoints::EndpointRow;

/// A certificate expiring within this many days is highlighted.
pub(crate) const EXPIRING_DAYS: i64 = 14;

/// The page, with `/*INITIAL*/null` where the first snapshot goes.
const PAGE: &str = include_str!("status/page.html");
const INITIAL: &str = "/*INITIAL*/null";

/// Everything the page shows, at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StatusSnapshot {
    /// The tcpmap version.
    pub(crate) version: String,
    /// When this snapshot was taken (wall clock, ms since the Unix epoch).
    pub(crate) now_unix_ms: u64,
    /// Seconds since the proxy started.
    pub(crate) uptime_s: u64,
    /// Where connections run.
    pub(crate) workers: WorkersView,
    /// The active config generation.
    pub(crate) generation: u64,
    /// Every listener of the active config is bound.
    pub(crate) ready: bool,
    /// The last reload's outcome (the first load counts).
    pub(crate) last_reload: Option<ReloadView>,
    /// Every listener with its groups, mappings and endpoints.
    pub(crate) listeners: Vec<ListenerView>,
    /// Every mapping's counters, totals over every worker.
    pub(crate) mappings: Vec<MappingTotals>,
    /// Every certificate the listeners present, and the client certificates offered upstream.
    pub(crate) certificates: Vec<CertificateView>,
}

/// Where connections run: worker processes, or threads of this process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WorkersView {
    /// `processes` (`--workers N`) or `threads`.
    pub(crate) mode: String,
    /// How many.
    pub(crate) count: usize,
    /// The worker processes (empty with threads).
    pub(crate) processes: Vec<WorkerRow>,
}

/// One worker process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WorkerRow {
    /// Its slot number.
    pub(crate) id: u32,
    /// Its process id.
    pub(crate) pid: u32,
    /// The generation it serves.
    pub(crate) generation: u64,
    /// Connections open in it.
    pub(crate) active_connections: u64,
}

/// The last reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReloadView {
    /// Applied (true) or rejected.
    pub(crate) ok: bool,
    /// The generation active after it.
    pub(crate) generation: u64,
    /// When (ms since the Unix epoch).
    pub(crate) at_unix_ms: u64,
    /// Why it was rejected.
    pub(crate) errors: Vec<String>,
    /// What the config should fix (applied anyway).
    pub(crate) warnings: Vec<String>,
}

/// One listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ListenerView {
    /// `ip:port`.
    pub(crate) address: String,
    /// `use_proxy_proto`: `off`, `required` or `optional`.
    pub(crate) proxy_protocol: String,
    /// Its groups: the host-less one first, then by host.
    pub(crate) groups: Vec<GroupView>,
}

/// One group: the mappings sharing a listener and host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GroupView {
    /// The SNI host pattern (`None`: the host-less group).
    pub(crate) host: Option<String>,
    /// `raw`, `terminate`, `passthrough`, `originate` or `terminate+originate`.
    pub(crate) tls_mode: String,
    /// The TLS settings in words (which context or Host, client certificates, verification).
    pub(crate) tls: String,
    /// The ALPN protocols a client must offer (empty: any).
    pub(crate) match_alpn: Vec<String>,
    /// Its weighted upstreams, one per mapping.
    pub(crate) upstreams: Vec<UpstreamView>,
}

/// One mapping of a group: where it sends connections and the endpoints there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UpstreamView {
    /// The mapping's name.
    pub(crate) mapping: String,
    /// The mapping's namespace.
    pub(crate) namespace: String,
    /// The mapping's port (its listener's).
    pub(crate) port: u16,
    /// The mapping's SNI host (empty when none), as in [`MappingTotals::host`].
    pub(crate) host: String,
    /// `host:port` of the service.
    pub(crate) service: String,
    /// Its share of the group's connections, in percent.
    pub(crate) weight: u8,
    /// The load-balancing policy among the service's endpoints.
    pub(crate) policy: String,
    /// An active health check is configured.
    pub(crate) health_check: bool,
    /// The service's endpoints (empty until resolved), summed over every worker.
    pub(crate) endpoints: Vec<EndpointRow>,
}

/// One mapping's counters, totals since start over every worker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MappingTotals {
    /// The mapping's name.
    pub(crate) mapping: String,
    /// The mapping's namespace.
    pub(crate) namespace: String,
    /// The listener port.
    pub(crate) port: u16,
    /// The SNI host (empty when none).
    pub(crate) host: String,
    /// Connections open now.
    pub(crate) active: i64,
    /// Connections accepted.
    pub(crate) accepted: u64,
    /// Bytes relayed client → upstream.
    pub(crate) bytes_client_to_upstream: u64,
    /// Bytes relayed upstream → client.
    pub(crate) bytes_upstream_to_client: u64,
    /// Failed upstream connects.
    pub(crate) connect_failures: u64,
    /// Connections ended, by reason (the `reason` labels of
    /// `tcpmap_connections_ended_total`; reasons never seen are left out).
    pub(crate) ended: BTreeMap<String, u64>,
}

/// One certificate the listeners present (or a client certificate offered upstream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CertificateView {
    /// Where it came from (`TLSContext c`, `Host h with ...`).
    pub(crate) source: String,
    /// Its subject (`CN=..., O=...`); empty when it could not be read.
    pub(crate) subject: String,
    /// Its subjectAltName DNS names and addresses.
    pub(crate) names: Vec<String>,
    /// notAfter, seconds since the Unix epoch (0 when it could not be read).
    pub(crate) not_after_unix: i64,
    /// Whole days until notAfter (negative: expired).
    pub(crate) days_left: i64,
    /// `days_left` ≤ [`EXPIRING_DAYS`].
    pub(crate) expiring: bool,
    /// The `listener host` pairs that present it (`listener host → upstream` for a client
    /// certificate).
    pub(crate) used_by: Vec<String>,
}

impl CertificateView {
    /// The view of certificate `der` from `source`, at wall-clock `now_unix_s`.
    pub(crate) fn new(source: &str, der: &[u8], now_unix_s: i64) -> Self {
        let info = x509::parse(der);
        let mut view = CertificateView {
            source: source.to_string(),
            subject: info.as_ref().map(|i| i.subject.clone()).unwrap_or_default(),
            names: info.as_ref().map(|i| i.names.clone()).unwrap_or_default(),
            not_after_unix: info.as_ref().map_or(0, |i| i.not_after_unix),
            days_left: 0,
            expiring: true,
            used_by: Vec::new(),
        };
        view.set_now(now_unix_s);
        view
    }

    /// Counts `days_left` (and `expiring`) from wall-clock `now_unix_s`.
    pub(crate) fn set_now(&mut self, now_unix_s: i64) {
        self.days_left = (self.not_after_unix - now_unix_s).div_euclid(86_400);
        self.expiring = self.days_left <= EXPIRING_DAYS;
    }
}

impl StatusSnapshot {
    /// `/status.json`'s body.
    pub(crate) fn json(&self) -> Vec<u8> {
        // Sized as the last body (the page asks every 2 s; the size barely changes), so the
        // JSON is written once into one buffer, not copied as it grows.
        static LAST: AtomicUsize = AtomicUsize::new(4096);
        let mut body = Vec::with_capacity(LAST.load(Ordering::Relaxed) + 1024);
        if serde_json::to_writer(&mut body, self).is_err() {
            body.clear();
            body.extend_from_slice(b"null");
        }
        body.push(b'\n');
        LAST.store(body.len(), Ordering::Relaxed);
        body
    }

    /// The page, with this snapshot inlined so it shows at once (then the script refreshes it).
    pub(crate) fn page(&self) -> Vec<u8> {
        PAGE.replacen(INITIAL, &inline_json(self), 1).into_bytes()
    }
}

/// The snapshot as JSON that is safe inside a `<script>` element: `<`, `>` and `&` only occur
/// inside JSON strings, where `\u003c` (and so on) mean the same character.
fn inline_json(snapshot: &StatusSnapshot) -> String {
    let json = serde_json::to_string(snapshot).unwrap_or_else(|_| "null".to_string());
    let mut out = String::with_capacity(json.len() + 64);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            c => out.push(c),
        }
    }
    out
}

/// The `Content-Type` of the page (`/`) and of `/status.json`.
pub(crate) fn content_type(path: &str) -> &'static str {
    match path {
        "/" => "text/html; charset=utf-8",
        _ => "application/json",
    }
}
