//! Raw resources → validated [`Model`]: defaults, per-attribute rules, cross-resource rules.
//! Every problem is collected; nothing stops at the first.
//!
//! Owns: the order of checks and which resource a problem is reported on.
//! Must not: build rustls configs or route tables (that is `build`), touch sockets.

pub(crate) mod endpoints;
pub(crate) mod groups;
pub(crate) mod mapping;
pub(crate) mod service;
pub(crate) mod tls;
pub(crate) mod weights;

use std::collections::BTreeSet;
use std::path::Path;

use super::ConfigError;
use super::model::{self, CertSource, GroupPlan, Model};
use super::raw::{RawModule, Resource};
use crate::proxy_protocol::Accept;
use crate::route::Families;

/// What validation depends on besides the resources.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Env<'a> {
    /// The proxy's namespace.
    pub namespace: &'a str,
    /// `--secrets-dir`.
    pub secrets_dir: Option<&'a Path>,
    /// Every file the resources name, read before validation.
    pub files: &'a super::secrets::Files,
}

/// The Module's defaults (`enable_ipv4: true`, `enable_ipv6: false` when absent); several
/// `ambassador` Modules → a warning and the first applies; both families off → an error.
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
        problems.push(first.loc.err(
            &["config"],
            "enable_ipv4 and enable_ipv6 are both false: no address family left",
        ));
        return (Families::default(), problems);
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

/// Validates every resource; problems hold errors and warnings.
pub(crate) fn validate(resources: Vec<Resource>, env: Env<'_>) -> (Model, Vec<ConfigError>) {
    let mut raw_mappings = Vec::new();
    let mut raw_contexts = Vec::new();
    let mut raw_hosts = Vec::new();
    let mut raw_modules = Vec::new();
    for r in resources {
        match r {
            Resource::Mapping(m) => raw_mappings.push(m),
            Resource::Context(c) => raw_contexts.push(c),
            Resource::Host(h) => raw_hosts.push(h),
            Resource::Module(m) => raw_modules.push(m),
        }
    }
    let (module, mut problems) = module_defaults(&raw_modules);
    let (endpoint_defaults, p) = endpoints::module_defaults(&raw_modules);
    problems.extend(p);
    let mut model = Model::default();

    // Where each declared resource landed in the model (`None`: it was invalid), so that a
    // certificate source found among the declared ones is recorded as a model index.
    let mut context_at = Vec::with_capacity(raw_contexts.len());
    for raw in &raw_contexts {
        let (c, p) = tls::context(raw, env.secrets_dir, env.files);
        problems.extend(p);
        context_at.push(c.is_some().then_some(model.contexts.len()));
        model.contexts.extend(c);
    }
    problems.extend(groups::duplicate_names(
        raw_contexts.iter().map(|c| (c.loc.name.clone(), &c.loc)),
    ));
    let mut host_at = Vec::with_capacity(raw_hosts.len());
    for raw in &raw_hosts {
        let (h, p) = tls::host(raw, env.secrets_dir, env.files);
        problems.extend(p);
        host_at.push(h.is_some().then_some(model.hosts.len()));
        model.hosts.extend(h);
    }

    let context_names: BTreeSet<String> = raw_contexts.iter().map(|c| c.loc.name.clone()).collect();
    let menv = mapping::MappingEnv {
        namespace: env.namespace,
        module,
        contexts: &context_names,
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
    ));
    problems.extend(groups::duplicate_names(raw_mappings.iter().map(|m| {
        let ns = m.namespace.as_deref().unwrap_or(env.namespace);
        (format!("{ns}/{}", m.loc.name), &m.loc)
    })));

    // Certificates are looked up among every declared Host/TLSContext, also broken ones,
    // so a bad secret is reported once (at its resource), not again at each mapping.
    let globs: Vec<&str> = raw_hosts
        .iter()
        .filter_map(|h| h.hostname.as_deref())
        .collect();
    let ctx_hosts: Vec<&[String]> = raw_contexts
        .iter()
        .map(|c| c.hosts.as_deref().unwrap_or(&[]))
        .collect();
    for members in groups::group(&model.mappings) {
        problems.extend(groups::check_agreement(&model.mappings, &members));
        // The certificate source is chosen here, once; the build uses what is recorded.
        for &i in &members {
            let Some(m) = model.mappings.get_mut(i) else {
                continue;
            };
            if let Some(host) = &m.host {
                let found = groups::find_cert(host, &globs, &ctx_hosts);
                problems.extend(groups::check_host_cert(m, found));
                m.cert = found.and_then(|src| match src {
                    CertSource::Host(i) => host_at.get(i).copied().flatten().map(CertSource::Host),
                    CertSource::Context(i) => context_at
                        .get(i)
                        .copied()
                        .flatten()
                        .map(CertSource::Context),
                });
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
                // Reported once, at the mapping whose weight pushes the sum over 100.
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
    }
    (model, problems)
}
