//! Read-only views of a [`RouteTable`]: a human text rendering (`tcpmap check`), a JSON
//! value (the admin `/config` endpoint) and [`Routes`], the view an embedding application
//! gets from [`ProxyHandle::routes`](crate::ProxyHandle::routes).
//!
//! Must not: change the table or expose secrets (rustls configs are never rendered).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{Group, HostGroup, HostTls, OriginationMode, RouteTable, Termination};
use crate::proxy_protocol::Accept;

impl HostGroup {
    /// The TLS mode in words, as [`Group::tls_mode`] with this group's termination, or
    /// `passthrough`.
    pub(crate) fn tls_mode(&self) -> String {
        match &self.tls {
            HostTls::Terminate(t) => self.group.tls_mode_with(Some(t)),
            HostTls::Passthrough => PASSTHROUGH.into(),
        }
    }

    /// The JSON view of this group (`tls` is `passthrough` for a passthrough group;
    /// `match_alpn` lists the protocols it requires, empty when none).
    pub(crate) fn to_json(&self) -> Value {
        let mut v = self.group.to_json_with(self.termination());
        if let Some(obj) = v.as_object_mut() {
            obj.insert("tls".into(), self.tls_mode().into());
            obj.insert("passthrough".into(), self.passthrough().into());
            obj.insert("match_alpn".into(), json!(self.match_alpn));
        }
        v
    }

    /// The host column of the text view: the pattern (`*(catch-all)` for `*`) and, for a
    /// `match_alpn` group, `(alpn=acme-tls/1,h2)`.
    fn host_text(&self) -> String {
        let host = match self.group.host.as_deref() {
            Some(super::host::CATCH_ALL) => "*(catch-all)",
            Some(h) => h,
            None => "*",
        };
        if self.match_alpn.is_empty() {
            host.to_string()
        } else {
            format!("{host}(alpn={})", self.match_alpn.join(","))
        }
    }
}

/// The TLS mode of a passthrough group, in `check` and `/config`.
const PASSTHROUGH: &str = "passthrough";

impl Group {
    /// The TLS mode in words of a host-less group: `raw`, `originate(insecure)`,
    /// `originate(TLSContext o, verify)`.
    pub(crate) fn tls_mode(&self) -> String {
        self.tls_mode_with(None)
    }

    /// The TLS mode in words: `raw`, `terminate(TLSContext c)`, `originate(insecure)`,
    /// `terminate(Host h)+originate(TLSContext o, verify)`.
    fn tls_mode_with(&self, termination: Option<&Termination>) -> String {
        let mut parts = Vec::new();
        if let Some(t) = termination {
            let auth = if t.client_auth { ", client-cert" } else { "" };
            parts.push(format!("terminate({}{auth})", t.source));
        }
        if let Some(o) = &self.origination {
            let mut what = match &o.mode {
                OriginationMode::Insecure => "insecure".to_string(),
                OriginationMode::Context(c) => format!("TLSContext {c}"),
            };
            if o.verify {
                what.push_str(", verify");
            }
            if let Some(sni) = &o.sni {
                what.push_str(&format!(", sni={sni}"));
            }
            parts.push(format!("originate({what})"));
        }
        if parts.is_empty() {
            "raw".into()
        } else {
            parts.join("+")
        }
    }

    /// `host:port (70%) [mapping]` for every upstream, comma-separated; an upstream that is
    /// sent a PROXY protocol header says so: `[mapping, send_proxy_proto=v2]`.
    pub(crate) fn upstreams_text(&self) -> String {
        self.upstreams
            .iter()
            .map(|u| {
                let send = u
                    .send_proxy
                    .map(|v| format!(", send_proxy_proto={}", v.as_str()))
                    .unwrap_or_default();
                format!(
                    "{} ({}%) [{}{send}]{}",
                    u.service(),
                    u.share,
                    u.mapping.name,
                    endpoint_extras(&u.endpoints)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn extras(&self) -> String {
        let mut out = String::new();
        if let Some(t) = self.idle_timeout {
            out.push_str(&format!(" idle={}ms", t.as_millis()));
        }
        match (self.families.ipv4(), self.families.ipv6()) {
            (true, false) => {}
            (true, true) => out.push_str(" dns=ipv6,ipv4"),
            (false, true) => out.push_str(" dns=ipv6"),
            (false, false) => out.push_str(" dns=none"),
        }
        out
    }

    /// The JSON view of a host-less group.
    pub(crate) fn to_json(&self) -> Value {
        self.to_json_with(None)
    }

    fn to_json_with(&self, termination: Option<&Termination>) -> Value {
        json!({
            "host": self.host,
            "tls": self.tls_mode_with(termination),
            "termination": termination.map(|t| json!({
                "source": t.source,
                "client_auth": t.client_auth,
            })),
            "origination": self.origination.as_ref().map(|o| json!({
                "mode": match &o.mode {
                    OriginationMode::Insecure => "insecure".to_string(),
                    OriginationMode::Context(_) => "context".to_string(),
                },
                "context": match &o.mode {
                    OriginationMode::Context(c) => Some(c.clone()),
                    OriginationMode::Insecure => None,
                },
                "sni": o.sni,
                "verify": o.verify,
            })),
            "idle_timeout_ms": self.idle_timeout.map(|d| d.as_millis() as u64),
            "families": { "ipv4": self.families.ipv4(), "ipv6": self.families.ipv6() },
            "upstreams": self.upstreams.iter().map(|u| json!({
                "mapping": u.mapping.name,
                "namespace": u.mapping.namespace,
                "service": u.service(),
                "share": u.share,
                "connect_timeout_ms": u.connect_timeout.as_millis() as u64,
                "max_connections": u.max_connections,
                "refused": u.refused,
                "send_proxy_proto": u.send_proxy.map(|v| v.as_str()),
                "load_balancer": {
                    "policy": u.endpoints.load_balancer.policy.as_str(),
                    "source_ip": u.endpoints.load_balancer.source_ip,
                },
                "max_connect_attempts": u.endpoints.max_connect_attempts,
                "health_check": u.endpoints.health_check.map(|h| json!({
                    "interval_ms": h.interval.as_millis() as u64,
                    "timeout_ms": h.timeout.as_millis() as u64,
                    "unhealthy_threshold": h.unhealthy_threshold,
                    "healthy_threshold": h.healthy_threshold,
                })),
                "max_connections_per_ip": u.endpoints.max_connections_per_ip,
                "max_connection_duration_ms": u.endpoints.max_duration.map(|d| d.as_millis() as u64),
                "connection_rate_limit": u.endpoints.rate_limit,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The endpoint settings that differ from the defaults, for the text view:
/// ` lb=ring_hash attempts=2 health=2000ms per_ip=10 max_duration=60000ms
/// rate_limit=20/s,burst=40,per=client_ip,dry_run`.
fn endpoint_extras(p: &super::balance::EndpointPolicy) -> String {
    let d = super::balance::EndpointPolicy::default();
    let mut out = String::new();
    if p.load_balancer.policy != d.load_balancer.policy {
        out.push_str(&format!(" lb={}", p.load_balancer.policy));
    }
    if p.max_connect_attempts != d.max_connect_attempts {
        out.push_str(&format!(" attempts={}", p.max_connect_attempts));
    }
    if let Some(h) = &p.health_check {
        out.push_str(&format!(" health={}ms", h.interval.as_millis()));
    }
    if let Some(n) = p.max_connections_per_ip {
        out.push_str(&format!(" per_ip={n}"));
    }
    if let Some(d) = p.max_duration {
        out.push_str(&format!(" max_duration={}ms", d.as_millis()));
    }
    if let Some(r) = &p.rate_limit {
        let per = match r.per {
            super::fleet::RatePer::ClientIp => "client_ip",
            super::fleet::RatePer::Listener => "listener",
        };
        let dry = if r.dry_run { ",dry_run" } else { "" };
        out.push_str(&format!(
            " rate_limit={}/s,burst={},per={per}{dry}",
            r.rate, r.burst
        ));
    }
    out
}

impl RouteTable {
    /// Every group as `(listener, group, host group)`: per listener the host-less group,
    /// then host groups. The listener is its address, with `proxy_protocol=required|optional`
    /// when it reads PROXY protocol headers and `starttls=postgres` when it speaks Postgres'
    /// TLS negotiation first.
    fn groups(&self) -> impl Iterator<Item = (String, &Group, Option<&HostGroup>)> {
        self.listeners.values().flat_map(|l| {
            let mut addr = match l.proxy_protocol {
                Accept::Off => l.addr.to_string(),
                accept => format!("{} proxy_protocol={}", l.addr, accept.as_str()),
            };
            if let Some(s) = self.starttls(&l.addr) {
                addr.push_str(&format!(" starttls={}", s.as_str()));
            }
            l.groups_with_hosts()
                .map(move |(g, h)| (addr.clone(), g, h.map(|h| &**h)))
        })
    }

    /// One line per group: listener, SNI host (`*` for the host-less group, `*(catch-all)` for
    /// `host: "*"`, `(alpn=…)` after the host of a `match_alpn` group), TLS mode (`passthrough`
    /// for a passthrough group), weighted upstreams.
    pub(crate) fn render_text(&self) -> String {
        let mut out = String::new();
        for (addr, g, host_group) in self.groups() {
            let (host, mode) = match host_group {
                Some(h) => (h.host_text(), h.tls_mode()),
                None => ("*".to_string(), g.tls_mode()),
            };
            out.push_str(&format!(
                "{addr} {host} {mode} -> {}{}\n",
                g.upstreams_text(),
                g.extras()
            ));
        }
        out
    }

    /// The JSON view: generation and listeners with their groups.
    pub(crate) fn to_json(&self) -> Value {
        let listeners: Vec<Value> = self
            .listeners
            .values()
            .map(|l| {
                let groups: Vec<Value> = l
                    .groups_with_hosts()
                    .map(|(g, h)| h.map_or_else(|| g.to_json(), |h| h.to_json()))
                    .collect();
                json!({
                    "address": l.addr.to_string(),
                    "proxy_protocol": l.proxy_protocol.as_str(),
                    "starttls": self.starttls(&l.addr).map(|s| s.as_str()),
                    "groups": groups,
                })
            })
            .collect();
        json!({ "generation": self.generation, "listeners": listeners })
    }
}

impl fmt::Display for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_text())
    }
}

/// The active routes as an embedding application sees them: which generation serves, on
/// which addresses, and the same text and JSON renderings as `tcpmap check` and `/config`.
/// Cheap to clone (it shares the serving table) and read-only: nothing in it can change
/// what the proxy does, and no key material or counter is reachable through it.
#[derive(Debug, Clone)]
pub struct Routes {
    table: Arc<RouteTable>,
}

impl Routes {
    pub(crate) fn new(table: Arc<RouteTable>) -> Self {
        Self { table }
    }

    /// The config generation these routes belong to (0 before the first config applies).
    pub fn generation(&self) -> u64 {
        self.table.generation
    }

    /// Every listening address, in ascending order.
    pub fn listeners(&self) -> Vec<SocketAddr> {
        self.table.listeners.keys().copied().collect()
    }

    /// The routes as `tcpmap check` prints them, one line per group.
    pub fn render_text(&self) -> String {
        self.table.render_text()
    }

    /// The routes as the admin `/config` endpoint shows them.
    pub fn to_json(&self) -> Value {
        self.table.to_json()
    }

    /// The Gateway API status (`Accepted`, `ResolvedRefs`, `Programmed` per Gateway,
    /// listener and route parent) as `/config` shows it under `status`: one entry per
    /// resource, `[]` without Gateway API resources.
    pub fn status_json(&self) -> Value {
        Value::Array(self.table.status().json.clone())
    }
}

impl fmt::Display for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.table.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{Families, HostMap, Listener, MappingId, ServiceHost, Upstream};
    use std::time::Duration;

    fn upstream(name: &str, host: &str, port: u16, share: u8) -> Upstream {
        Upstream {
            mapping: Arc::new(MappingId {
                name: name.into(),
                namespace: "default".into(),
                port: 2222,
                host: String::new(),
            }),
            host: ServiceHost::Dns(host.into()),
            port,
            share,
            connect_timeout: Duration::from_millis(3000),
            max_connections: None,
            refused: None,
            send_proxy: None,
            endpoints: Default::default(),
        }
    }

    fn table() -> RouteTable {
        plain_table(Group::new(
            None,
            vec![upstream("a", "one", 80, 70), upstream("b", "two", 81, 30)],
            None,
            Some(Duration::from_millis(5000)),
            Families::default(),
        ))
    }

    /// A table with one raw listener, on 0.0.0.0:2222, served by `g`.
    fn plain_table(g: Group) -> RouteTable {
        let addr: SocketAddr = "0.0.0.0:2222".parse().unwrap();
        let mut t = RouteTable::default();
        t.listeners.insert(
            addr,
            Listener {
                addr,
                plain: Some(Arc::new(g)),
                hosts: HostMap::default(),
                proxy_protocol: Default::default(),
            },
        );
        t
    }

    #[test]
    fn text_has_listener_host_mode_and_weights() {
        let text = table().render_text();
        assert_eq!(
            text,
            "0.0.0.0:2222 * raw -> one:80 (70%) [a], two:81 (30%) [b] idle=5000ms\n"
        );
    }

    #[test]
    fn the_view_reads_what_the_table_holds() {
        let t = Arc::new(table());
        let view = Routes::new(t.clone());
        assert_eq!(view.generation(), 0);
        assert_eq!(
            view.listeners(),
            ["0.0.0.0:2222".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(view.to_string(), t.render_text());
        assert_eq!(view.to_json(), t.to_json());
    }

    #[test]
    fn the_walk_and_the_ids_name_every_upstream_once() {
        let t = table();
        let walked: Vec<&str> = t
            .upstreams()
            .map(|(_, _, u)| u.mapping.name.as_str())
            .collect();
        assert_eq!(walked, ["a", "b"]);
        let other = table();
        let (_, g, _) = t.upstreams().next().unwrap();
        let (_, h, _) = other.upstreams().next().unwrap();
        assert_ne!(g.id(), h.id(), "every group built gets its own id");
        let ids: Vec<_> = g.upstream_ids().map(|(id, _)| id).collect();
        assert_ne!(ids[0], ids[1]);
        // 100 picks: each chosen upstream comes with its own id, 70 and 30 of them.
        let mut hits = [0; 2];
        for _ in 0..100 {
            let (id, up) = g.choose_id().unwrap();
            let at = ids.iter().position(|i| *i == id).unwrap();
            assert!(std::ptr::eq(up, &g.upstreams[at]));
            hits[at] += 1;
        }
        assert_eq!(hits, [70, 30]);
    }

    #[test]
    fn json_lists_groups_and_shares() {
        let j = table().to_json();
        assert_eq!(j["generation"], 0);
        assert_eq!(j["listeners"][0]["address"], "0.0.0.0:2222");
        let g = &j["listeners"][0]["groups"][0];
        assert_eq!(g["tls"], "raw");
        assert_eq!(g["idle_timeout_ms"], 5000);
        assert_eq!(g["upstreams"][1]["service"], "two:81");
        assert_eq!(g["upstreams"][1]["share"], 30);
        assert_eq!(g["upstreams"][1]["max_connection_duration_ms"], Value::Null);
        assert_eq!(g["upstreams"][1]["connection_rate_limit"], Value::Null);
    }

    /// A table whose one upstream has a maximum age and a rate limit.
    fn fleet_table(dry_run: bool) -> RouteTable {
        let mut up = upstream("a", "one", 80, 100);
        up.endpoints.max_duration = Some(Duration::from_millis(60_000));
        up.endpoints.rate_limit = Some(crate::route::fleet::RateLimit {
            rate: 20,
            burst: 40,
            per: crate::route::fleet::RatePer::ClientIp,
            dry_run,
        });
        plain_table(Group::new(None, vec![up], None, None, Families::default()))
    }

    #[test]
    fn the_views_show_the_maximum_age_and_the_rate_limit() {
        assert_eq!(
            fleet_table(false).render_text(),
            "0.0.0.0:2222 * raw -> one:80 (100%) [a] max_duration=60000ms \
             rate_limit=20/s,burst=40,per=client_ip\n"
        );
        assert!(
            fleet_table(true)
                .render_text()
                .ends_with("per=client_ip,dry_run\n")
        );
        let j = fleet_table(true).to_json();
        let u = &j["listeners"][0]["groups"][0]["upstreams"][0];
        assert_eq!(u["max_connection_duration_ms"], 60_000);
        assert_eq!(
            u["connection_rate_limit"],
            serde_json::json!({"rate": 20, "burst": 40, "per": "client_ip", "dry_run": true})
        );
    }
}
