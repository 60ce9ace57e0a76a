//! Gateways and routes → the one route model: every accepted `(listener, hostname)` of a
//! route becomes one validated [`Mapping`] per backend, grouped and built like TCPMappings.
//!
//! - `TCP` listener + TCPRoute → host-less group (raw relay);
//! - `TLS` listener, `mode: Passthrough` + TLSRoute hostnames → passthrough host groups;
//! - `TLS` listener, `mode: Terminate` + its first `certificateRefs` Secret → terminating host
//!   groups (the certificate is a model Host), cleartext to the backends;
//! - `backendRefs` → upstreams `name.namespace:port` with relative weights made percentages.
//!
//! A route, listener or reference that cannot be served is a warning naming the Gateway API's
//! reason; nothing here is an error, so the rest keeps serving.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use super::backends::{Backend, backends};
use super::listeners::{Served, listeners, without_conflicts};
use super::raw::{From, GROUP, GatewayResource, ObjRef, RawGateway, RawGrant, RawRoute, RouteKind};
use super::status::{Body, ListenerStatus, ParentStatus, ResourceStatus, Why};
use crate::config::ConfigError;
use crate::config::model::{CertSource, Mapping, Model, Origin};
use crate::config::raw::Loc;
use crate::config::secrets::Files;
use crate::config::validate::mapping::DEFAULT_CONNECT_TIMEOUT_MS;
use crate::proxy_protocol::Accept;
use crate::route::balance::EndpointPolicy;
use crate::route::host::{CATCH_ALL, matches};
use crate::route::{Families, ServiceHost};

/// What the translation depends on besides the resources.
pub(crate) struct Env<'a> {
    /// `--gateway-class`: the Gateways served.
    pub class: &'a str,
    /// The namespace of resources that name none.
    pub namespace: &'a str,
    /// The Module's families (the default of every mapping).
    pub families: Families,
    /// The Module's endpoint defaults.
    pub endpoints: EndpointPolicy,
    /// `--secrets-dir`.
    pub secrets_dir: Option<&'a Path>,
    /// Every file read before validation (Secret documents included).
    pub files: &'a Files,
}

/// The Gateway API resources of one config.
#[derive(Debug, Default)]
pub(crate) struct Resources {
    /// Gateways (any class).
    pub gateways: Vec<RawGateway>,
    /// TLSRoutes and TCPRoutes.
    pub routes: Vec<RawRoute>,
    /// ReferenceGrants.
    pub grants: Vec<RawGrant>,
    /// Namespace labels by name.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// `kind: Service` documents: `(namespace, name)` (`None`: the proxy's namespace).
    pub services: BTreeSet<(Option<String>, String)>,
}

impl Resources {
    /// Files one resource.
    pub(crate) fn add(&mut self, r: GatewayResource) {
        match r {
            GatewayResource::Gateway(g) => self.gateways.push(g),
            GatewayResource::Route(r) => self.routes.push(r),
            GatewayResource::Grant(g) => self.grants.push(g),
            GatewayResource::Namespace(n) => {
                self.namespaces.insert(n.name, n.labels);
            }
            GatewayResource::Service { namespace, name } => {
                self.services.insert((namespace, name));
            }
        }
    }
}

/// True when `m` comes from a Gateway API route (not a TCPMapping).
pub(crate) fn is_route(m: &Mapping) -> bool {
    matches!(m.loc.kind, "TLSRoute" | "TCPRoute")
}

/// A port claimed by a TCPMapping and a Gateway route is an error naming both (`mappings`
/// from `first_route` on are the routes').
pub(crate) fn shared_ports(mappings: &[Mapping], first_route: usize) -> Vec<ConfigError> {
    let (tcp, routes) = mappings.split_at(first_route.min(mappings.len()));
    let mut out = Vec::new();
    let mut said = BTreeSet::new();
    for r in routes {
        let clash = tcp.iter().find(|m| {
            m.port == r.port
                && (m.address == r.address
                    || m.address.is_unspecified()
                    || r.address.is_unspecified())
        });
        if let Some(m) = clash {
            if said.insert((m.loc.place(), r.port)) {
                out.push(m.loc.err(
                    &["port"],
                    format!(
                        "port {} is also a Gateway listener's, served to {} {} ({}); one port is either TCPMappings' or a Gateway's",
                        r.port,
                        r.loc.kind,
                        r.loc.name,
                        r.loc.place()
                    ),
                ));
            }
        }
    }
    out
}

/// The Gateway API has no way to ask for PROXY protocol on a listener (GEP-2644, TCPRoute,
/// leaves client IP preservation to a future GEP), so Gateway listeners read none: a warning
/// on each Emissary `Listener` with `PROXY` on a Gateway listener's port, and on a Module's
/// `use_proxy_proto: true` when there are Gateway listeners (`mappings` from `first_route` on
/// are the routes').
pub(crate) fn proxy_protocol_unused(
    mappings: &[Mapping],
    first_route: usize,
    listeners: &[crate::config::raw::RawListener],
    module: Option<&crate::config::raw::RawModule>,
) -> Vec<ConfigError> {
    let routes = mappings.get(first_route..).unwrap_or_default();
    let mut out = Vec::new();
    let why = "the Gateway API has no way to ask for PROXY protocol (GEP-2644 leaves client IP preservation to a future GEP), so Gateway listeners read none";
    for l in listeners.iter().filter(|l| l.proxy()) {
        let port = l.port.and_then(|p| u16::try_from(p).ok());
        if let Some(r) = routes.iter().find(|r| Some(r.port) == port) {
            out.push(l.loc.warn(
                &["protocolStack"],
                format!(
                    "port {}: PROXY protocol does not apply to the Gateway listener there (served to {} {}): {why}",
                    r.port, r.loc.kind, r.loc.name
                ),
            ));
        }
    }
    if let (Some(m), Some(r)) = (
        module.filter(|m| m.use_proxy_proto == Some(true)),
        routes.first(),
    ) {
        out.push(m.loc.warn(
            &["config", "use_proxy_proto"],
            format!(
                "use_proxy_proto applies to TCPMapping listeners only, not to Gateway listeners (port {}, {} {}): {why}",
                r.port, r.loc.kind, r.loc.name
            ),
        ));
    }
    out
}

/// Translates `res` into mappings (pushed to `model.mappings`; certificates to
/// `model.hosts`; the status of every served Gateway and of every route bound to one to
/// `model.gateway_status`); returns the warnings.
pub(crate) fn translate(res: &Resources, env: &Env<'_>, model: &mut Model) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    let mut served = Vec::new();
    let mut ours = BTreeSet::new();
    let mut gateways: Vec<(&RawGateway, String, Option<String>)> = Vec::new();
    let mut listener_status: Vec<Vec<ListenerStatus>> = Vec::new();
    for g in &res.gateways {
        let ns = g.namespace.clone().unwrap_or_else(|| env.namespace.into());
        if g.class.as_deref() != Some(env.class) {
            tracing::debug!(gateway = %g.loc.name, class = ?g.class, "skipping a Gateway of another class");
            continue;
        }
        problems.extend(g.problems.iter().cloned());
        ours.insert((ns.clone(), g.loc.name.clone()));
        let gi = listener_status.len();
        let mut st = Vec::new();
        let (s, bad) = listeners(g, ns.clone(), gi, res, env, model, &mut problems, &mut st);
        served.extend(s);
        listener_status.push(st);
        gateways.push((g, ns, bad));
    }
    let served = without_conflicts(served, &mut problems, &mut listener_status);
    for s in &served {
        if let Some(st) = listener_status
            .get_mut(s.slot.0)
            .and_then(|g| g.get_mut(s.slot.1))
        {
            st.programmed = true;
        }
    }
    let mut routes: Vec<&RawRoute> = res.routes.iter().collect();
    // The oldest route wins a listener (or hostname) that several claim.
    routes.sort_by_key(|r| {
        let ns = r.namespace.as_deref().unwrap_or(env.namespace);
        (
            r.created.clone().unwrap_or_default(),
            format!("{ns}/{}", r.loc.name),
        )
    });
    let mut claims: BTreeMap<(IpAddr, u16, Option<String>), String> = BTreeMap::new();
    let mut route_status = Vec::new();
    for r in routes {
        let (ms, p, st) = route(
            r,
            &served,
            &ours,
            res,
            env,
            &mut claims,
            &mut listener_status,
        );
        problems.extend(p);
        model.mappings.extend(ms);
        route_status.extend(st);
    }
    for ((g, namespace, bad_address), listeners) in gateways.into_iter().zip(listener_status) {
        model.gateway_status.push(ResourceStatus {
            kind: "Gateway",
            namespace,
            name: g.loc.name.clone(),
            file: g.loc.doc.file.clone(),
            line: g.loc.doc.line,
            body: Body::Gateway {
                bad_address,
                listeners,
            },
        });
    }
    model.gateway_status.extend(route_status);
    problems
}

/// The mappings of one route, why parts of it are not served, and its status (when a parent
/// is a served Gateway); the listeners it is accepted on count it in `listener_status`.
fn route(
    r: &RawRoute,
    served: &[Served<'_>],
    ours: &BTreeSet<(String, String)>,
    res: &Resources,
    env: &Env<'_>,
    claims: &mut BTreeMap<(IpAddr, u16, Option<String>), String>,
    listener_status: &mut [Vec<ListenerStatus>],
) -> (Vec<Mapping>, Vec<ConfigError>, Option<ResourceStatus>) {
    let ns = r.namespace.clone().unwrap_or_else(|| env.namespace.into());
    let who = format!("{} {ns}/{}", r.kind.as_str(), r.loc.name);
    let (targets, parents, mut problems) =
        accept_parents(r, &ns, &who, served, ours, res, listener_status);
    if parents.is_empty() {
        return (Vec::new(), problems, None);
    }
    problems.extend(r.problems.iter().cloned());
    let (backends, resolved, p) = backends(r, &ns, res, env);
    problems.extend(p);
    let status = Some(ResourceStatus {
        kind: r.kind.as_str(),
        namespace: ns.clone(),
        name: r.loc.name.clone(),
        file: r.loc.doc.file.clone(),
        line: r.loc.doc.line,
        body: Body::Route { parents, resolved },
    });
    if backends.is_empty() {
        if !targets.is_empty() {
            problems.push(r.loc.warn(
                &["rules"],
                "no backend has a weight above 0: nothing is served for it",
            ));
        }
        return (Vec::new(), problems, status);
    }
    let mut out = Vec::new();
    for (s, host, parent) in targets {
        let host = (r.kind == RouteKind::Tls).then_some(host);
        for addr in &s.addresses {
            let key = (*addr, s.port, host.clone());
            if let Some(owner) = claims.get(&key) {
                // Accepted (a controller says so), but not bound: the Gateway API's
                // conflict rule gives the listener (or hostname) to the oldest route.
                let message = format!(
                    "not bound to {} {}{}: {owner} has it (the oldest route is bound)",
                    s.label(),
                    addr,
                    host.as_deref()
                        .map(|h| format!(" host {h}"))
                        .unwrap_or_default()
                );
                problems.push(super::warn_at_item(
                    &r.loc,
                    "parentRefs",
                    &parent.name,
                    message,
                ));
                continue;
            }
            claims.insert(key, who.clone());
            let at = Place {
                ns: &ns,
                served: s,
                address: *addr,
                host: host.as_deref(),
            };
            out.extend(backends.iter().map(|b| mapping(r, &at, b, env)));
        }
    }
    (out, problems, status)
}

/// A listener a route is accepted on, the hostname it serves there, and the parentRef.
type Target<'a, 's, 'r> = (&'s Served<'r>, String, &'a ObjRef);

/// The parentRefs of route `r` (in namespace `ns`, called `who` in messages) to served
/// Gateways: the listeners it is accepted on (counted in `listener_status`), each parent's
/// status, and why parents are not accepted.
fn accept_parents<'a, 's, 'r>(
    r: &'a RawRoute,
    ns: &str,
    who: &str,
    served: &'s [Served<'r>],
    ours: &BTreeSet<(String, String)>,
    res: &Resources,
    listener_status: &mut [Vec<ListenerStatus>],
) -> (Vec<Target<'a, 's, 'r>>, Vec<ParentStatus>, Vec<ConfigError>) {
    let mut problems = Vec::new();
    let not_accepted = |p: &ObjRef, why: String| {
        super::warn_at_item(
            &r.loc,
            "parentRefs",
            &p.name,
            format!("not accepted: {why}"),
        )
    };
    let mut targets: Vec<Target> = Vec::new();
    let mut parents = Vec::new();
    for p in &r.parents {
        let group = p.group.as_deref().unwrap_or(GROUP);
        let kind = p.kind.as_deref().unwrap_or("Gateway");
        if group != GROUP || kind != "Gateway" {
            problems.push(not_accepted(
                p,
                format!("parentRef {kind} {} is not a Gateway (InvalidKind)", p.name),
            ));
            continue;
        }
        let gw_ns = p.namespace.clone().unwrap_or_else(|| ns.to_string());
        if !ours.contains(&(gw_ns.clone(), p.name.clone())) {
            tracing::debug!(route = %r.loc.name, gateway = %p.name, "parent Gateway not served here");
            continue;
        }
        let found = attach(r, ns, p, &gw_ns, served, res);
        let line = super::warn_at_item(&r.loc, "parentRefs", &p.name, "").line;
        let parent = ObjRef {
            namespace: Some(gw_ns),
            ..p.clone()
        };
        match found {
            Ok(found) => {
                for (s, _) in &found {
                    if let Some(st) = listener_status
                        .get_mut(s.slot.0)
                        .and_then(|g| g.get_mut(s.slot.1))
                    {
                        st.attach(who);
                    }
                }
                targets.extend(found.into_iter().map(|(s, h)| (s, h, p)));
                parents.push(ParentStatus {
                    parent,
                    line,
                    accepted: Ok(()),
                });
            }
            Err((reason, why)) => {
                problems.push(not_accepted(p, format!("{why} ({reason})")));
                parents.push(ParentStatus {
                    parent,
                    line,
                    accepted: Err((reason, why)),
                });
            }
        }
    }
    (targets, parents, problems)
}

/// Where a route's backend is served: the route's namespace, the listener, one of its
/// addresses and the hostname (TLS).
struct Place<'a, 'r> {
    ns: &'a str,
    served: &'a Served<'r>,
    address: IpAddr,
    host: Option<&'a str>,
}

/// The mapping of backend `b` of route `r` at `at`.
fn mapping(r: &RawRoute, at: &Place<'_, '_>, b: &Backend, env: &Env<'_>) -> Mapping {
    let s = at.served;
    Mapping {
        // A refused share is a mapping whose connections are closed at once, never connected
        // (`end=no_route`, `detail` naming the reason), named by its reason.
        loc: match b.refused {
            Some(reason) => Loc {
                name: format!("{} refused:{reason}", r.loc.name),
                ..r.loc.clone()
            },
            None => r.loc.clone(),
        },
        namespace: at.ns.to_string(),
        address: at.address,
        port: s.port,
        host: at.host.map(str::to_string),
        origin: Origin::Plain,
        service_host: ServiceHost::Dns(b.host.clone()),
        service_port: b.port,
        weight: Some(b.pct),
        idle_timeout: None,
        families: env.families,
        max_connections: None,
        refused: b.refused,
        connect_timeout: std::time::Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS),
        endpoints: env.endpoints,
        cert: s.cert_for(at.host).map(CertSource::Host),
        use_proxy_proto: None,
        listener_proxy: Accept::Off,
        send_proxy: None,
        passthrough: s.passthrough == Some(true),
        match_alpn: Vec::new(),
    }
}

/// The listeners (with the hostname served on each) that parentRef `p` of route `r` attaches
/// to, or why none (the `Accepted` reason and a message).
fn attach<'s, 'r>(
    r: &RawRoute,
    ns: &str,
    p: &ObjRef,
    gw_ns: &str,
    served: &'s [Served<'r>],
    res: &Resources,
) -> Result<Vec<(&'s Served<'r>, String)>, Why> {
    let selected = |name: &str, port: Option<i64>| {
        p.section.as_ref().is_none_or(|n| n == name) && p.port.is_none_or(|want| Some(want) == port)
    };
    let named: Vec<&Served> = served
        .iter()
        .filter(|s| s.namespace == gw_ns && s.gateway.loc.name == p.name)
        .filter(|s| selected(&s.listener.name, Some(i64::from(s.port))))
        .collect();
    if named.is_empty() {
        // A listener the ref selects that is not served (HTTP, conflicted, no certificate)
        // does not allow the route; no such listener at all is no matching parent.
        let exists = res.gateways.iter().any(|g| {
            g.loc.name == p.name
                && g.namespace.as_deref().unwrap_or(gw_ns) == gw_ns
                && g.listeners.iter().any(|l| selected(&l.name, l.port))
        });
        let what = format!(
            "{}{}",
            p.section
                .as_ref()
                .map(|s| format!(" named {s}"))
                .unwrap_or_default(),
            p.port.map(|s| format!(" on port {s}")).unwrap_or_default()
        );
        return Err(if exists {
            (
                "NotAllowedByListeners",
                format!("no listener{what} of Gateway {gw_ns}/{} is served", p.name),
            )
        } else {
            (
                "NoMatchingParent",
                format!("Gateway {gw_ns}/{} has no listener{what}", p.name),
            )
        });
    }
    let allowed: Vec<&Served> = named
        .into_iter()
        .filter(|s| kind_allowed(s, r.kind) && namespace_allowed(s, ns, res))
        .collect();
    if allowed.is_empty() {
        return Err((
            "NotAllowedByListeners",
            format!(
                "no listener of Gateway {gw_ns}/{} allows a {} from namespace {ns}",
                p.name,
                r.kind.as_str()
            ),
        ));
    }
    let mut out = Vec::new();
    for s in allowed {
        let hosts = match r.kind {
            RouteKind::Tcp => vec![String::new()],
            RouteKind::Tls => intersect(s.listener.hostname.as_deref(), &r.hostnames),
        };
        out.extend(hosts.into_iter().map(|h| (s, h)));
    }
    if out.is_empty() {
        return Err((
            "NoMatchingListenerHostname",
            format!(
                "no hostname of it matches a listener of Gateway {gw_ns}/{}",
                p.name
            ),
        ));
    }
    Ok(out)
}

/// A listener takes TCPRoutes when it is TCP, TLSRoutes when it is TLS, and only the kinds
/// `allowedRoutes.kinds` lists when it lists any.
fn kind_allowed(s: &Served<'_>, kind: RouteKind) -> bool {
    let fits = match kind {
        RouteKind::Tcp => s.passthrough.is_none(),
        RouteKind::Tls => s.passthrough.is_some(),
    };
    fits && s
        .listener
        .kinds
        .as_ref()
        .is_none_or(|ks| ks.iter().any(|(g, k)| g == GROUP && k == kind.as_str()))
}

fn namespace_allowed(s: &Served<'_>, route_ns: &str, res: &Resources) -> bool {
    match &s.listener.from {
        From::Same => s.namespace == route_ns,
        From::All => true,
        From::Selector(sel) => {
            let implicit: BTreeMap<String, String> = [(
                "kubernetes.io/metadata.name".to_string(),
                route_ns.to_string(),
            )]
            .into();
            sel.matches(res.namespaces.get(route_ns).unwrap_or(&implicit))
        }
    }
}

/// The hostnames a TLS listener with `listener` hostname serves of a route's `route`
/// hostnames: the more specific of each matching pair; `*` (catch-all) when neither names one.
pub(crate) fn intersect(listener: Option<&str>, route: &[String]) -> Vec<String> {
    let Some(l) = listener.map(str::to_ascii_lowercase) else {
        return if route.is_empty() {
            vec![CATCH_ALL.to_string()]
        } else {
            route.to_vec()
        };
    };
    if route.is_empty() {
        return vec![l];
    }
    let mut out: Vec<String> = Vec::new();
    for r in route {
        let (lw, rw) = (l.strip_prefix("*."), r.strip_prefix("*."));
        let pick = match (lw, rw) {
            _ if *r == l => Some(r.clone()),
            // The route's name lies under the listener's wildcard (a wildcard of the route
            // counts by the names under it).
            (Some(_), None) if matches(&l, r) => Some(r.clone()),
            (Some(_), Some(rs)) if matches(&l, rs) => Some(r.clone()),
            (None, Some(_)) if matches(r, &l) => Some(l.clone()),
            (Some(ls), Some(_)) if matches(r, ls) => Some(l.clone()),
            _ => None,
        };
        if let Some(p) = pick.filter(|p| !out.contains(p)) {
            out.push(p);
        }
    }
    out
}
