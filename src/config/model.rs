//! Validated resources: defaults applied, every value checked, secrets loaded.
//!
//! Owns: the types between `validate` and `build`. Must not: read files or build rustls
//! configs (that is `validate`/`secrets` and `build`).

use std::net::IpAddr;
use std::time::Duration;

use rustls_pki_types::CertificateDer;

use super::raw::Loc;
use super::tls::{CertKey, TlsParams};
use crate::proxy_protocol::{Accept, Version};
use crate::route::balance::EndpointPolicy;
use crate::route::{Families, ServiceHost};

/// How a mapping talks to its upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Plain TCP.
    Plain,
    /// `tls: true` or `https://`: TLS without client certificate or verification.
    Insecure,
    /// `tls: CONTEXT`.
    Context(String),
}

impl Origin {
    /// True when TLS is originated.
    pub(crate) fn originates(&self) -> bool {
        *self != Origin::Plain
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Plain => f.write_str("false"),
            Origin::Insecure => f.write_str("true"),
            Origin::Context(c) => f.write_str(c),
        }
    }
}

/// A validated `TCPMapping`.
#[derive(Debug, Clone)]
pub(crate) struct Mapping {
    /// Where it is (kind, name, file, line).
    pub loc: Loc,
    /// Its namespace (the proxy's when unset).
    pub namespace: String,
    /// Bind address.
    pub address: IpAddr,
    /// Listener port.
    pub port: u16,
    /// SNI host, lower-cased (`None`: host-less).
    pub host: Option<String>,
    /// TLS origination.
    pub origin: Origin,
    /// Upstream host (namespace-qualified).
    pub service_host: ServiceHost,
    /// Upstream port (defaulted).
    pub service_port: u16,
    /// `weight`, when written.
    pub weight: Option<u8>,
    /// `idle_timeout_ms` (`None`: no idle timeout).
    pub idle_timeout: Option<Duration>,
    /// Effective address families (Module defaults applied).
    pub families: Families,
    /// `circuit_breakers.max_connections`.
    pub max_connections: Option<u32>,
    /// A Gateway API backendRef that cannot be used: the Gateway API reason
    /// (`RefNotPermitted`, `InvalidKind`, …); its share of connections is refused.
    pub refused: Option<&'static str>,
    /// `connect_timeout_ms` (default 3000).
    pub connect_timeout: Duration,
    /// Balancing, failover, health checks and the per-client limit (ext; Module defaults
    /// applied).
    pub endpoints: EndpointPolicy,
    /// Where the certificate for `host` comes from (an index into the model's hosts or
    /// contexts), chosen once by validation; `None` without `host`.
    pub cert: Option<CertSource>,
    /// `use_proxy_proto` as written (`None`: unset, the listener's other mappings or the
    /// Module decide).
    pub use_proxy_proto: Option<Accept>,
    /// What the mapping's listener does with PROXY protocol headers: resolved by validation
    /// over every mapping of the listener and the Module.
    pub listener_proxy: Accept,
    /// `send_proxy_proto`: the header written first to the upstream.
    pub send_proxy: Option<Version>,
    /// `tls_passthrough: true`: the client's TLS is relayed untouched (only with `host`).
    pub passthrough: bool,
    /// `match_alpn`: the protocols one of which the client must offer, sorted, without
    /// duplicates (empty: no ALPN condition; only with `host`).
    pub match_alpn: Vec<String>,
}

/// A validated `TLSContext` with its secrets loaded.
#[derive(Debug)]
pub(crate) struct TlsContext {
    /// Where it is.
    pub loc: Loc,
    /// `hosts` it terminates for (validation matches hosts on the raw resources; kept so
    /// the model says what the context is).
    #[allow(dead_code)]
    pub hosts: Vec<String>,
    /// Its certificate and key (termination, or client certificate for origination).
    pub cert: Option<CertKey>,
    /// Its CA: verifies upstreams (origination) or client certificates (termination).
    pub ca: Option<Vec<CertificateDer<'static>>>,
    /// Client certificates required on termination.
    pub cert_required: bool,
    /// SNI sent when originating with this context.
    pub sni: Option<String>,
    /// Versions, ciphers, ALPN.
    pub params: TlsParams,
}

/// A validated `Host` with its certificate loaded.
#[derive(Debug)]
pub(crate) struct Host {
    /// Where it is.
    pub loc: Loc,
    /// `hostname` glob (`*.example.com`, `*`) (matched on the raw resource by validation;
    /// kept so the model says what the Host is).
    #[allow(dead_code)]
    pub hostname: String,
    /// Its certificate and key.
    pub cert: CertKey,
    /// Its TLS settings: from its inline `tls:` block, else the TLSContext its `tlsContext`
    /// names, else a TLSContext whose `hosts` cover its hostname (validation resolves them);
    /// `None`: the defaults (no client certificates, TLS 1.2 and 1.3).
    pub settings: Option<HostSettings>,
}

/// The TLS settings a Host terminates with (everything of a TLSContext but its certificate).
#[derive(Debug, Clone)]
pub(crate) struct HostSettings {
    /// Where they come from, for `check` (`its \`tls:\` block`, `TLSContext NAME`).
    pub from: String,
    /// The CA client certificates are verified against.
    pub ca: Option<Vec<CertificateDer<'static>>>,
    /// Client certificates required.
    pub cert_required: bool,
    /// Versions, ciphers, curves, ALPN, CRLs.
    pub params: TlsParams,
}

impl HostSettings {
    /// The settings of a validated context (its certificate is not taken).
    pub(crate) fn from_context(c: &TlsContext, from: String) -> HostSettings {
        HostSettings {
            from,
            ca: c.ca.clone(),
            cert_required: c.cert_required,
            params: c.params.clone(),
        }
    }
}

/// One group: the mappings sharing `(address, port, host)`, in config order, with their shares.
#[derive(Debug, Clone)]
pub(crate) struct GroupPlan {
    /// Indexes into [`Model::mappings`].
    pub members: Vec<usize>,
    /// Share of each member (sums to 100).
    pub shares: Vec<u8>,
}

/// Where a host group's certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CertSource {
    /// `Model::hosts[i]`.
    Host(usize),
    /// `Model::contexts[i]`.
    Context(usize),
}

/// Everything `build` needs.
#[derive(Debug, Default)]
pub(crate) struct Model {
    /// Valid mappings in config order.
    pub mappings: Vec<Mapping>,
    /// Valid TLSContexts in config order.
    pub contexts: Vec<TlsContext>,
    /// Valid Hosts in config order.
    pub hosts: Vec<Host>,
    /// The groups.
    pub groups: Vec<GroupPlan>,
    /// The Gateway API status of every served Gateway and of every route bound to one.
    pub gateway_status: Vec<crate::config::gateway::status::ResourceStatus>,
    /// The listeners that speak a protocol's TLS negotiation first (`starttls`).
    pub starttls: std::collections::BTreeMap<std::net::SocketAddr, crate::route::StartTls>,
}
