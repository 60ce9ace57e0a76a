//! Raw resources → validated [`Model`]: defaults, per-attribute rules, cross-resource rules.
//! Every problem is collected; nothing stops at the first.
//!
//! Owns: the order of checks and which resource a problem is reported on.
//! Must not: build rustls configs or route tables (that is `build`), touch sockets.

pub(crate) mod endpoints;
pub(crate) mod fleet;
pub(crate) mod groups;
pub(crate) mod mapping;
pub(crate) mod service;
pub(crate) mod starttls;
pub(crate) mod tls;
pub(crate) mod usage;
pub(crate) mod weights;

use std::collections::BTreeSet;
use std::path::Path;

use super::ConfigError;
use super::gateway;
use super::model::{self, CertSource, GroupPlan, HostSettings, Model, Origin};
use super::raw::{RawHost, RawListener, RawModule, RawTlsContext, Resource};
use crate::proxy_protocol::Accept;
use crate::route::Families;
use usage::{Mode, Usage, judge};

/// What validation depends on besides the resources.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Env<'a> {
    /// The proxy's namespace.
    pub namespace: &'a str,
    /// `--secrets-dir`.
    pub secrets_dir: Option<&'a Path>,
    /// Every file the resources name, read before validation.
    pub files: &'a super::secrets::Files,
    /// `--gateway-class`: the Gateways served.
    pub gateway_class: &'a str,
}

/// The Module's defaults (`enable_ipv4: true`, `enable_ipv6: false` when absent); several
/// `ambassador` Modules → a warning and the first applies; both families off → IPv4 with a
/// warning (Emissary's fallback).
pub(crate) fn module_defaults(modules: &[RawModule]) -> (Families, Vec<ConfigError>) {
    let mut problems = Vec::new();
    let Some(first) = modules.first() else {
        return (Families::default(), problems);
    };
    for m in modules.iter().skip(1) {
        problems.push(m.loc.warn(
            &[],
            format!(
                "another Module ambassador is at {}; that one applies",
                first.loc.place()
            ),
        ));
    }
    let f = Families::new(
        first.enable_ipv4.unwrap_or(true),
        first.enable_ipv6.unwrap_or(false),
    );
    let Some(f) = f else {
        problems.push(first.loc.warn(
            &["config", "enable_ipv4"],
            "enable_ipv4 and enable_ipv6 are both false: IPv4 is used (as Emissary does)",
        ));
        return (Families::V4, problems);
    };
    (f, problems)
}

/// The Module's `use_proxy_proto` (Ambassador's key): `true` makes every listener require a
/// PROXY protocol header; absent or `false`, listeners read none unless a mapping says so.
pub(crate) fn module_proxy(modules: &[RawModule]) -> Accept {
    match modules.first().and_then(|m| m.use_proxy_proto) {
        Some(true) => Accept::Required,
        _ => Accept::Off,
    }
}

/// The Module's `circuit_breakers` max_connections, the default of mappings that set none.
fn module_circuit_breakers(modules: &[RawModule]) -> (Option<u32>, Vec<ConfigError>) {
    let Some(m) = modules.first() else {
        return (None, Vec::new());
    };
    match m.max_connections.map(mapping::max_connections).transpose() {
        Ok(n) => (n, Vec::new()),
        Err(e) => (
            None,
            vec![
                m.loc
                    .err(&["config", "circuit_breakers", "max_connections"], e),
            ],
        ),
    }
}

/// Validates every resource; problems hold errors and warnings.
pub(crate) fn validate(resources: Vec<Resource>, env: Env<'_>) -> (Model, Vec<ConfigError>) {
    let mut raw_mappings = Vec::new();
    let mut raw_contexts = Vec::new();
    let mut raw_hosts = Vec::new();
    let mut raw_modules = Vec::new();
    let mut raw_listeners: Vec<RawListener> = Vec::new();
    let mut gateway_api = gateway::translate::Resources::default();
    for r in resources {
        match r {
            Resource::Mapping(m) => raw_mappings.push(m),
            Resource::Context(c) => raw_contexts.push(c),
            Resource::Host(h) => raw_hosts.push(h),
            Resource::Module(m) => raw_modules.push(m),
            Resource::Listener(l) => raw_listeners.push(l),
            Resource::Gateway(g) => gateway_api.add(g),
        }
    }
    let (module, mut problems) = module_defaults(&raw_modules);
    let (endpoint_defaults, p) = endpoints::module_defaults(&raw_modules);
    problems.extend(p);
    let mut model = Model::default();
    let context_names: BTreeSet<String> = raw_contexts.iter().map(|c| c.loc.name.clone()).collect();
    let (max_connections, p) = module_circuit_breakers(&raw_modules);
    problems.extend(p);
    let menv = mapping::MappingEnv {
        namespace: env.namespace,
        module,
        contexts: &context_names,
        max_connections,
        own_namespace: raw_modules
            .first()
            .and_then(|m| m.own_namespace_resolution)
            .unwrap_or(false),
    };
    for raw in &raw_mappings {
        let (m, p) = mapping::mapping(raw, &menv);
        problems.extend(p);
        let (ep, p) = endpoints::policy(raw, &endpoint_defaults);
        problems.extend(p);
        model.mappings.extend(
            m.zip(ep)
                .map(|(m, ep)| model::Mapping { endpoints: ep, ..m }),
        );
    }
    problems.extend(groups::listener_proxy(
        &mut model.mappings,
        module_proxy(&raw_modules),
        &raw_listeners,
    ));
    let (listeners, p) = starttls::listeners(&raw_mappings, &model.mappings);
    model.starttls = listeners;
    problems.extend(p);
    let first_route = model.mappings.len();
    problems.extend(gateway_routes(
        &gateway_api,
        &env,
        module,
        &endpoint_defaults,
        &mut model,
    ));
    problems.extend(gateway::translate::proxy_protocol_unused(
        &model.mappings,
        first_route,
        &raw_listeners,
        raw_modules.first(),
    ));
    problems.extend(groups::duplicate_names(raw_mappings.iter().map(|m| {
        let ns = m.namespace.as_deref().unwrap_or(env.namespace);
        (format!("{ns}/{}", m.loc.name), &m.loc)
    })));

    // Which Hosts and TLSContexts the mappings use decides how their problems count.
    let all_groups = groups::group(&model.mappings);
    let (usage, chosen) = usage_of(&model.mappings, &all_groups, &raw_hosts, &raw_contexts);
    let (context_at, host_at, p) =
        certificate_sources(&raw_contexts, &raw_hosts, &usage, env, &mut model);
    problems.extend(p);
    problems.extend(groups::duplicate_names(
        raw_contexts.iter().map(|c| (c.loc.name.clone(), &c.loc)),
    ));
    problems.extend(groups::check_alpn_overlap(&model.mappings, &all_groups));
    problems.extend(fleet::listener_agreement(&model.mappings));
    for members in all_groups {
        problems.extend(plan_group(
            &mut model,
            members,
            &chosen,
            &context_at,
            &host_at,
        ));
    }
    (model, problems)
}

/// Gateway API routes become mappings beside the TCPMappings already in `model` (their
/// certificates are model Hosts already, so the usage rule does not look at them).
fn gateway_routes(
    gateway_api: &gateway::translate::Resources,
    env: &Env<'_>,
    module: Families,
    endpoint_defaults: &endpoints::EndpointDefaults,
    model: &mut Model,
) -> Vec<ConfigError> {
    let tcp_mappings = model.mappings.len();
    let genv = gateway::translate::Env {
        class: env.gateway_class,
        namespace: env.namespace,
        families: module,
        endpoints: crate::route::balance::EndpointPolicy {
            load_balancer: endpoint_defaults.load_balancer,
            max_connections_per_ip: endpoint_defaults.max_connections_per_ip,
            keepalive: endpoint_defaults.keepalive,
            max_duration: endpoint_defaults.max_duration,
            rate_limit: endpoint_defaults.rate_limit,
            ..Default::default()
        },
        secrets_dir: env.secrets_dir,
        files: env.files,
    };
    let mut problems = gateway::translate::translate(gateway_api, &genv, model);
    problems.extend(gateway::translate::shared_ports(
        &model.mappings,
        tcp_mappings,
    ));
    problems
}

/// One group of mappings on a listener and host: they must agree, each gets the certificate
/// source chosen for it, and their weights become shares (an error at the mapping whose weight
/// pushes the sum over 100).
fn plan_group(
    model: &mut Model,
    members: Vec<usize>,
    chosen: &[Option<CertSource>],
    context_at: &[Option<usize>],
    host_at: &[Option<usize>],
) -> Vec<ConfigError> {
    let mut problems = groups::check_agreement(&model.mappings, &members);
    // The certificate source is chosen once (`usage_of`); the build uses what is recorded.
    for &i in &members {
        if let Some(m) = model.mappings.get_mut(i) {
            let found = chosen.get(i).copied().flatten();
            problems.extend(record_cert(m, found, context_at, host_at));
        }
    }
    let ws: Vec<Option<u8>> = members
        .iter()
        .filter_map(|i| model.mappings.get(*i))
        .map(|m| m.weight)
        .collect();
    match weights::shares(&ws) {
        Ok(shares) => model.groups.push(GroupPlan { members, shares }),
        Err(e) => {
            let mut sum = 0u32;
            let culprit = members
                .iter()
                .filter_map(|i| model.mappings.get(*i))
                .find(|m| {
                    sum += u32::from(m.weight.unwrap_or(0));
                    sum > 100
                });
            problems.extend(culprit.map(|m| m.loc.err(&["weight"], e)));
        }
    }
    problems
}

/// Records the model index of the certificate source declared resource `found` became
/// (none when it was invalid) on a host mapping; a host mapping without a source is an error.
fn record_cert(
    m: &mut model::Mapping,
    found: Option<CertSource>,
    context_at: &[Option<usize>],
    host_at: &[Option<usize>],
) -> Option<ConfigError> {
    // A Gateway route's certificate is its listener's, set by the translation.
    if m.host.is_none() || m.passthrough || gateway::translate::is_route(m) {
        return None;
    }
    m.cert = found.and_then(|src| match src {
        CertSource::Host(i) => host_at.get(i).copied().flatten().map(CertSource::Host),
        CertSource::Context(i) => context_at
            .get(i)
            .copied()
            .flatten()
            .map(CertSource::Context),
    });
    groups::check_host_cert(m, found)
}

/// The Hostname a Host serves (`*` when it names none, as in Emissary).
fn hostname(h: &RawHost) -> &str {
    h.hostname
        .as_deref()
        .unwrap_or(crate::route::host::CATCH_ALL)
}

/// What the mappings use: the declared certificate source of each mapping (by index, `None`
/// without `host` or with passthrough), every TLSContext named by `tls:`, and the
/// TLSContexts whose settings a used Host takes.
fn usage_of(
    mappings: &[model::Mapping],
    all_groups: &[Vec<usize>],
    raw_hosts: &[RawHost],
    raw_contexts: &[RawTlsContext],
) -> (Usage, Vec<Option<CertSource>>) {
    let mut usage = Usage::default();
    let globs: Vec<&str> = raw_hosts.iter().map(hostname).collect();
    let ctx_hosts: Vec<&[String]> = raw_contexts
        .iter()
        .map(|c| c.hosts.as_deref().unwrap_or(&[]))
        .collect();
    let mut chosen = vec![None; mappings.len()];
    for &i in all_groups.iter().flatten() {
        let Some(m) = mappings.get(i) else {
            continue;
        };
        if let Origin::Context(name) = &m.origin {
            for (j, c) in raw_contexts.iter().enumerate() {
                if c.loc.name == *name {
                    usage.context(j);
                }
            }
        }
        // A passthrough mapping needs no certificate: the upstream terminates; a Gateway
        // route's comes from its listener.
        let own = !m.passthrough && !gateway::translate::is_route(m);
        if let Some(host) = m.host.as_ref().filter(|_| own) {
            let found = groups::find_cert(host, &globs, &ctx_hosts);
            if let (Some(slot), Some(src)) = (chosen.get_mut(i), found) {
                *slot = Some(src);
                usage.cert(src);
            }
        }
    }
    let used_hosts: Vec<usize> = usage.hosts().collect();
    for h in used_hosts {
        if let Some(Ok(Some(j))) = raw_hosts.get(h).map(|h| settings_context(h, raw_contexts)) {
            usage.settings(j);
        }
    }
    (usage, chosen)
}

/// The declared TLSContext whose settings Host `h` takes when it has no inline `tls:`: the
/// one its `tlsContext` names (`Err` when there is none of that name), else the most specific
/// one whose `hosts` cover its hostname.
fn settings_context(h: &RawHost, raw_contexts: &[RawTlsContext]) -> Result<Option<usize>, String> {
    if h.tls.is_some() {
        return Ok(None);
    }
    if let Some(name) = &h.tls_context {
        return raw_contexts
            .iter()
            .position(|c| c.loc.name == *name)
            .map(Some)
            .ok_or_else(|| format!("tlsContext: unknown TLSContext `{name}`"));
    }
    let ctx_hosts: Vec<&[String]> = raw_contexts
        .iter()
        .map(|c| c.hosts.as_deref().unwrap_or(&[]))
        .collect();
    Ok(match groups::find_cert(hostname(h), &[], &ctx_hosts) {
        Some(CertSource::Context(j)) => Some(j),
        _ => None,
    })
}

/// Index of each declared resource in the model (`None`: invalid), for contexts and hosts.
type Placed = (Vec<Option<usize>>, Vec<Option<usize>>, Vec<ConfigError>);

/// Validates every TLSContext and Host in its mode ([`usage`]) into `model`; a used Host
/// takes its TLSContext's settings.
fn certificate_sources(
    raw_contexts: &[RawTlsContext],
    raw_hosts: &[RawHost],
    usage: &Usage,
    env: Env<'_>,
    model: &mut Model,
) -> Placed {
    let mut problems = Vec::new();
    let mut context_at = Vec::with_capacity(raw_contexts.len());
    for (i, raw) in raw_contexts.iter().enumerate() {
        let (mut c, p) = tls::context(raw, env.secrets_dir, env.files);
        if c.is_none() && usage.settings_only(i) {
            // A Host takes its settings, not its certificate: the settings alone must be
            // valid; what is wrong with the certificate only warns.
            let (settings, sp) =
                tls::context(&raw.without_certificate(), env.secrets_dir, env.files);
            let cert_only: Vec<ConfigError> = p.into_iter().filter(|x| !sp.contains(x)).collect();
            problems.extend(judge(Mode::Used, sp));
            problems.extend(usage::judge_unserved_certificate(cert_only));
            c = settings;
        } else {
            problems.extend(judge(usage.context_mode(i), p));
        }
        context_at.push(c.is_some().then_some(model.contexts.len()));
        model.contexts.extend(c);
    }
    let mut host_at = Vec::with_capacity(raw_hosts.len());
    for (i, raw) in raw_hosts.iter().enumerate() {
        let (mut h, mut p) = tls::host(raw, env.secrets_dir, env.files);
        match settings_context(raw, raw_contexts) {
            Ok(Some(j)) => {
                let ctx = context_at
                    .get(j)
                    .copied()
                    .flatten()
                    .and_then(|k| model.contexts.get(k));
                match (ctx, h.as_mut()) {
                    (Some(c), Some(h)) => {
                        h.settings = Some(HostSettings::from_context(
                            c,
                            format!("TLSContext {}", c.loc.name),
                        ));
                    }
                    // Its settings are broken (reported at the TLSContext): serving without
                    // them could drop a client-certificate requirement.
                    (None, Some(_)) => {
                        let name = raw_contexts.get(j).map_or("-", |c| c.loc.name.as_str());
                        p.push(raw.loc.err(
                            &["tlsSecret"],
                            format!(
                                "its TLS settings come from TLSContext {name}, which is invalid"
                            ),
                        ));
                        h = None;
                    }
                    (_, None) => {}
                }
            }
            Ok(None) => {}
            Err(e) => {
                p.push(raw.loc.err(&["tlsContext"], e));
                h = None;
            }
        }
        problems.extend(judge(usage.host_mode(i), p));
        host_at.push(h.is_some().then_some(model.hosts.len()));
        model.hosts.extend(h);
    }
    (context_at, host_at, problems)
}
