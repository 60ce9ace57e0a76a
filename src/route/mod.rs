//! The route table: what a validated config means at runtime.
//!
//! ```text
//! RouteTable ─┬─ Listener (address, port) ─┬─ plain group   (no `host`: relayed without SNI match)
//!             │                            └─ host routes   (SNI: exact, `*.suffix`, `*`)
//!             │                                 └─ HostGroups (by `match_alpn`, then the plain one):
//!             │                                    terminate or pass through, then a Group
//!             └─ …                              └─ Group: weighted Upstreams + TLS settings + limits
//! ```
//!
//! Pure values only: no sockets, no tasks. rustls configs are built once per config
//! generation by the config pipeline and shared here by `Arc`, so a connection never
//! builds one.

pub(crate) mod balance;
pub(crate) mod diff;
pub(crate) mod fleet;
pub(crate) mod host;
pub(crate) mod view;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub(crate) use host::{HostMap, HostRoutes};
pub use view::Routes;

use crate::proxy_protocol::{Accept, Version};

/// The whole routing state of one config generation.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    /// Config generation; the Supervisor numbers each applied table.
    generation: u64,
    /// One entry per bound `(address, port)`, keyed by [`Listener::addr`].
    listeners: BTreeMap<SocketAddr, Listener>,
    /// The Gateway API status of the config the table was built from.
    status: ConfigStatus,
    /// The listeners that speak a protocol's TLS negotiation before the ClientHello
    /// (`starttls`); the others have no entry.
    starttls: BTreeMap<SocketAddr, StartTls>,
}

/// What a config says about its Gateway API resources beside the routes (SPEC section 14,
/// "Status"), rendered when the table is built: the `FILE:LINE: KIND NAME: status: …` lines
/// `check` prints, and the array `check --output json` and `/config` carry as `status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ConfigStatus {
    /// The lines, each newline-terminated (empty without Gateway API resources).
    pub text: String,
    /// The entries (`[]` without Gateway API resources).
    pub json: Vec<serde_json::Value>,
}

impl RouteTable {
    /// The config generation: 0 as built, then the number the Supervisor gave the table.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Numbers the table: the Supervisor (or, in a worker, the number its pool sent) does,
    /// before the table is shared.
    pub(crate) fn set_generation(&mut self, generation: u64) {
        self.generation = generation;
    }

    /// The Gateway API status of the config the table was built from.
    pub(crate) fn status(&self) -> &ConfigStatus {
        &self.status
    }

    /// Records the Gateway API status (the builder does, once).
    pub(crate) fn set_status(&mut self, status: ConfigStatus) {
        self.status = status;
    }

    /// The listeners, one per bound `(address, port)`, in address order.
    pub(crate) fn listeners(&self) -> &BTreeMap<SocketAddr, Listener> {
        &self.listeners
    }

    /// The listener on `addr`, added with no routes (and `proxy_protocol`) if the table has
    /// none yet: the builder fills it group by group.
    pub(crate) fn listener_at(
        &mut self,
        addr: SocketAddr,
        proxy_protocol: Accept,
    ) -> &mut Listener {
        self.listeners.entry(addr).or_insert_with(|| Listener {
            addr,
            plain: None,
            hosts: HostMap::default(),
            proxy_protocol,
        })
    }

    /// The protocol whose TLS negotiation the listener on `addr` speaks before the
    /// ClientHello (`starttls`), if any.
    pub(crate) fn starttls(&self, addr: &SocketAddr) -> Option<StartTls> {
        self.starttls.get(addr).copied()
    }

    /// Makes the listener on `addr` speak `protocol`'s TLS negotiation first.
    pub(crate) fn set_starttls(&mut self, addr: SocketAddr, protocol: StartTls) {
        self.starttls.insert(addr, protocol);
    }

    /// Adds `listener` under its address, replacing one already there (tests build tables
    /// this way).
    #[cfg(test)]
    pub(crate) fn insert(&mut self, listener: Listener) {
        self.listeners.insert(listener.addr, listener);
    }

    /// Every upstream of the table with its listener and group, in table order (per
    /// listener [`Listener::groups`], per group its upstreams): the one walk of the table
    /// that the metric handles, the endpoint sets and the `/config` view all take.
    pub(crate) fn upstreams(&self) -> impl Iterator<Item = (&Listener, &Group, &Upstream)> {
        self.listeners.values().flat_map(|listener| {
            listener
                .groups()
                .flat_map(move |group| group.upstreams.iter().map(move |up| (listener, group, up)))
        })
    }

    /// Every mapping the table routes to (a mapping can appear more than once).
    pub(crate) fn mapping_ids(&self) -> impl Iterator<Item = &Arc<MappingId>> {
        self.upstreams().map(|(_, _, up)| &up.mapping)
    }
}

/// The routes of one `(address, port)`.
#[derive(Debug)]
pub(crate) struct Listener {
    /// The bind address.
    pub addr: SocketAddr,
    /// The host-less group: raw relay (or origination) for anything without a matching SNI.
    pub plain: Option<Arc<Group>>,
    /// The `host` groups, matched against the ClientHello's SNI (and its ALPN offer).
    pub hosts: HostMap<HostRoutes>,
    /// Whether connections start with a PROXY protocol header (`use_proxy_proto`).
    pub proxy_protocol: Accept,
}

/// A protocol that negotiates TLS in clear before the ClientHello (`starttls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum StartTls {
    /// Postgres: an SSLRequest answered `S` (`postgres` module).
    Postgres,
}

impl StartTls {
    /// The config word.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StartTls::Postgres => "postgres",
        }
    }
}

impl Listener {
    /// True when connections must be peeked for a ClientHello before routing.
    pub(crate) fn needs_peek(&self) -> bool {
        !self.hosts.is_empty()
    }

    /// The group for a TLS SNI name from a client offering no ALPN: exact first, then the most
    /// specific wildcard, then the catch-all (`host: "*"`).
    #[cfg(test)]
    pub(crate) fn by_sni(&self, sni: &str) -> Option<&Arc<HostGroup>> {
        self.by_hello(Some(sni), std::iter::empty())
    }

    /// The group for a ClientHello's server name (or none: the catch-all) and the protocols it
    /// offers with ALPN, in its order of preference.
    ///
    /// The host patterns are tried from the most specific (exact, the longest wildcard, the
    /// catch-all); the first whose routes take this offer wins ([`HostRoutes::pick`]: a group
    /// whose `match_alpn` lists an offered protocol, else the host's group without
    /// `match_alpn`). A host that has only `match_alpn` groups, none of them offered, passes the
    /// client on to the next less specific pattern.
    pub(crate) fn by_hello<'a, I>(&self, sni: Option<&str>, alpn: I) -> Option<&Arc<HostGroup>>
    where
        I: Iterator<Item = &'a [u8]> + Clone,
    {
        self.hosts.find_map(sni, |routes| routes.pick(alpn.clone()))
    }

    /// Every group with its host group (`None` for the host-less group): the host-less one
    /// first, then the host groups in [`Self::host_groups`] order.
    pub(crate) fn groups_with_hosts(
        &self,
    ) -> impl Iterator<Item = (&Group, Option<&Arc<HostGroup>>)> {
        self.plain
            .iter()
            .map(|g| (&**g, None))
            .chain(self.host_groups().map(|(_, h)| (&h.group, Some(h))))
    }

    /// Every group, in [`Self::groups_with_hosts`] order.
    pub(crate) fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups_with_hosts().map(|(g, _)| g)
    }

    /// Every host group: `(host pattern, group)`, per pattern the `match_alpn` groups first.
    pub(crate) fn host_groups(&self) -> impl Iterator<Item = (String, &Arc<HostGroup>)> {
        self.hosts
            .iter()
            .flat_map(|(pattern, routes)| routes.groups().map(move |g| (pattern.clone(), g)))
    }
}

/// The mappings sharing `(address, port, host)`: they agree on TLS, families and idle timeout.
#[derive(Debug)]
pub(crate) struct Group {
    /// The SNI host (`None` for the host-less group, `*` for the catch-all).
    pub host: Option<String>,
    /// Weighted upstreams; their `share`s sum to 100.
    pub upstreams: Vec<Upstream>,
    /// Origination settings when `tls`/`https://` is set.
    pub origination: Option<Origination>,
    /// Close after this long without a byte either way (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Address families for resolving services.
    pub families: Families,
    /// This group's id, unique in the process ([`Group::id`]).
    id: GroupId,
    /// Per-group pick counter (drives the weighted choice); only [`Group::choose_id`] moves it.
    picks: AtomicU64,
}

/// A group's id: unique among the groups this process ever built (a counter), so per-group
/// and per-upstream state of a generation is keyed by a value, not by an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct GroupId(u64);

/// An upstream's id: its group's id and its position in the group's `upstreams`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct UpstreamId {
    group: GroupId,
    index: usize,
}

impl Group {
    /// A group with a fresh [`GroupId`] and its pick counter at zero.
    pub(crate) fn new(
        host: Option<String>,
        upstreams: Vec<Upstream>,
        origination: Option<Origination>,
        idle_timeout: Option<Duration>,
        families: Families,
    ) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Group {
            host,
            upstreams,
            origination,
            idle_timeout,
            families,
            id: GroupId(NEXT.fetch_add(1, Ordering::Relaxed)),
            picks: AtomicU64::new(0),
        }
    }

    /// This group's id.
    pub(crate) fn id(&self) -> GroupId {
        self.id
    }

    /// Every upstream with its id.
    pub(crate) fn upstream_ids(&self) -> impl Iterator<Item = (UpstreamId, &Upstream)> {
        let group = self.id;
        self.upstreams
            .iter()
            .enumerate()
            .map(move |(index, up)| (UpstreamId { group, index }, up))
    }

    /// Picks the upstream for the next connection, with its id.
    ///
    /// Deterministic and allocation-free: pick number `n` maps to slot `(n * 37) % 100`
    /// (37 is coprime with 100, so every run of 100 picks visits each slot once, interleaved),
    /// and the slot falls into the upstream whose cumulative share covers it. Every window
    /// of 100 connections therefore gets the exact percentages.
    pub(crate) fn choose_id(&self) -> Option<(UpstreamId, &Upstream)> {
        let n = self.picks.fetch_add(1, Ordering::Relaxed);
        let index = pick_by_share(&self.upstreams, n)?;
        let up = self.upstreams.get(index)?;
        let group = self.id;
        Some((UpstreamId { group, index }, up))
    }

    /// [`Self::choose_id`] without the id.
    #[cfg(test)]
    pub(crate) fn choose(&self) -> Option<&Upstream> {
        self.choose_id().map(|(_, up)| up)
    }
}

/// The weighted choice behind [`Group::choose_id`], as a pure function of the pick number:
/// the index of the chosen upstream.
fn pick_by_share(upstreams: &[Upstream], n: u64) -> Option<usize> {
    let slot = ((n % 100) * 37 % 100) as u32;
    let mut acc = 0u32;
    for (i, u) in upstreams.iter().enumerate() {
        acc += u32::from(u.share);
        if slot < acc {
            return Some(i);
        }
    }
    // Shares sum to 100 by construction; a table without shares still routes somewhere.
    upstreams
        .iter()
        .position(|u| u.share > 0)
        .or((!upstreams.is_empty()).then_some(0))
}

/// A `host` group: its client side is TLS, terminated here with its termination's certificate
/// (every terminating host group has one, so no later step has to check) or passed through
/// untouched.
#[derive(Debug)]
pub(crate) struct HostGroup {
    /// What is done with the client's TLS.
    pub tls: HostTls,
    /// `match_alpn`: the group takes only clients offering one of these protocols (empty:
    /// any client of the host that no `match_alpn` group of it takes).
    pub match_alpn: Vec<String>,
    /// The routes behind it.
    pub group: Group,
}

impl HostGroup {
    /// The termination, when this group terminates.
    pub(crate) fn termination(&self) -> Option<&Termination> {
        match &self.tls {
            HostTls::Terminate(t) => Some(t),
            HostTls::Passthrough => None,
        }
    }

    /// True when the client's TLS is relayed untouched (`tls_passthrough: true`).
    pub(crate) fn passthrough(&self) -> bool {
        matches!(self.tls, HostTls::Passthrough)
    }

    /// What the group does with the client's TLS (the access log's `tls` field and the
    /// `tls` label of `tcpmap_tls_routed_connections_total`).
    pub(crate) fn client_tls(&self) -> TlsMode {
        match (&self.tls, &self.group.origination) {
            (HostTls::Passthrough, _) => TlsMode::Passthrough,
            (HostTls::Terminate(_), Some(_)) => TlsMode::TerminateOriginate,
            (HostTls::Terminate(_), None) => TlsMode::Terminate,
        }
    }
}

/// How a connection uses TLS: the access log's `tls` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsMode {
    /// Plain bytes both ways (also: not routed far enough to know).
    None,
    /// TLS from the client terminated here; cleartext upstream.
    Terminate,
    /// Plain from the client; TLS originated to the upstream.
    Originate,
    /// Terminated from the client and originated to the upstream.
    TerminateOriginate,
    /// The client's TLS relayed untouched, ClientHello included (`tls_passthrough`).
    Passthrough,
}

impl TlsMode {
    /// The label: `none`, `terminate`, `originate`, `terminate+originate`, `passthrough`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TlsMode::None => "none",
            TlsMode::Terminate => "terminate",
            TlsMode::Originate => "originate",
            TlsMode::TerminateOriginate => "terminate+originate",
            TlsMode::Passthrough => "passthrough",
        }
    }
}

/// The mode of a host group: the third beside the host-less group's raw relay.
#[derive(Debug, Clone)]
pub(crate) enum HostTls {
    /// The client's TLS is terminated here.
    Terminate(Termination),
    /// `tls_passthrough: true`: the ClientHello and everything after it are relayed untouched,
    /// and the upstream terminates TLS itself.
    Passthrough,
}

/// TLS termination for a host group.
#[derive(Clone)]
pub(crate) struct Termination {
    /// Where the certificate came from, for humans (`TLSContext my-context`, `Host foo`).
    pub source: String,
    /// Whether a client certificate is required.
    pub client_auth: bool,
    /// The server config, built once per generation.
    pub config: Arc<rustls::ServerConfig>,
    /// The certificate it presents (the chain's first; the status page reads its names and
    /// expiry).
    pub certificate: Option<rustls::pki_types::CertificateDer<'static>>,
    /// `config` with ALPN `postgresql` added, for Postgres clients that offer it (a
    /// `starttls: postgres` listener): made once, by the first such client of the generation.
    pub postgres: std::sync::OnceLock<Arc<rustls::ServerConfig>>,
}

impl fmt::Debug for Termination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Termination")
            .field("source", &self.source)
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

/// How TLS is originated towards the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OriginationMode {
    /// `tls: true` or `https://`: no client certificate, no verification.
    Insecure,
    /// `tls: CONTEXT`: that context's client certificate, SNI and (with a CA) verification.
    Context(String),
}

/// TLS origination for a group.
#[derive(Clone)]
pub(crate) struct Origination {
    /// Which form of origination.
    pub mode: OriginationMode,
    /// The context's `sni`, overriding the service host name.
    pub sni: Option<String>,
    /// True when the upstream's chain and name are verified (a CA is configured).
    pub verify: bool,
    /// The client config, built once per generation.
    pub config: Arc<rustls::ClientConfig>,
    /// The client certificate it offers, if any (the chain's first; the status page reads it).
    pub certificate: Option<rustls::pki_types::CertificateDer<'static>>,
}

impl fmt::Debug for Origination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Origination")
            .field("mode", &self.mode)
            .field("sni", &self.sni)
            .field("verify", &self.verify)
            .finish_non_exhaustive()
    }
}

/// Which address families a service may resolve to: never none (a config with both
/// `enable_ipv4` and `enable_ipv6` off is rejected by validation, so no later step has to
/// handle it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) enum Families {
    /// A records / IPv4 literals only (Ambassador's default).
    #[default]
    V4,
    /// AAAA records / IPv6 literals only.
    V6,
    /// Both, IPv6 preferred.
    Both,
}

impl Families {
    /// The families for `enable_ipv4` / `enable_ipv6`; `None` when both are off.
    pub(crate) const fn new(ipv4: bool, ipv6: bool) -> Option<Self> {
        match (ipv4, ipv6) {
            (true, false) => Some(Families::V4),
            (false, true) => Some(Families::V6),
            (true, true) => Some(Families::Both),
            (false, false) => None,
        }
    }

    /// A records / IPv4 literals allowed.
    pub(crate) const fn ipv4(self) -> bool {
        matches!(self, Families::V4 | Families::Both)
    }

    /// AAAA records / IPv6 literals allowed (preferred when both).
    pub(crate) const fn ipv6(self) -> bool {
        matches!(self, Families::V6 | Families::Both)
    }
}

/// Identifies a mapping in logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MappingId {
    /// The mapping's name.
    pub name: String,
    /// The mapping's namespace.
    pub namespace: String,
    /// The listener port.
    pub port: u16,
    /// The SNI host, empty when none.
    pub host: String,
}

/// The host part of a `service`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServiceHost {
    /// An IP literal: no lookup.
    Ip(IpAddr),
    /// A DNS name (already namespace-qualified).
    Dns(String),
}

impl fmt::Display for ServiceHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            ServiceHost::Ip(ip) => write!(f, "{ip}"),
            ServiceHost::Dns(name) => f.write_str(name),
        }
    }
}

/// One weighted upstream (one mapping of a group).
#[derive(Debug)]
pub(crate) struct Upstream {
    /// The mapping this upstream comes from.
    pub mapping: Arc<MappingId>,
    /// Service host.
    pub host: ServiceHost,
    /// Service port (defaulted: 443 when originating, else 80).
    pub port: u16,
    /// Percentage of the group's connections (all shares of a group sum to 100).
    pub share: u8,
    /// How long to try connecting (all addresses together).
    pub connect_timeout: Duration,
    /// `circuit_breakers[0].max_connections`: concurrent connections allowed.
    pub max_connections: Option<u32>,
    /// A Gateway API backendRef that cannot be used (`RefNotPermitted`, `InvalidKind`, …):
    /// every connection picked for it is closed at once (`end=no_route`, `detail` names the
    /// reason), never connected.
    pub refused: Option<&'static str>,
    /// `send_proxy_proto`: the PROXY protocol header written first on the upstream connection.
    pub send_proxy: Option<Version>,
    /// How one of the service's endpoints is chosen and guarded (ext).
    pub endpoints: balance::EndpointPolicy,
}

impl Upstream {
    /// `host:port` as written for humans.
    pub(crate) fn service(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}
