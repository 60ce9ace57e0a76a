//! Validated [`Model`] → [`RouteTable`]: listeners, groups, upstreams with shares, and the
//! rustls configs (one per certificate source, shared by every host it serves).
//!
//! Must not: re-check rules (that is `validate`), resolve names or touch sockets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::ConfigError;
use super::model::{CertSource, GroupPlan, Mapping, Model, Origin};
use super::tls::{self, TlsParams};
use crate::route::{
    Group, HostGroup, HostRoutes, HostTls, MappingId, Origination, OriginationMode, RouteTable,
    Termination, Upstream,
};

/// Caches so each certificate source / context builds one rustls config.
#[derive(Default)]
struct Configs {
    termination: HashMap<CertSource, Termination>,
    insecure: Option<Origination>,
    context: HashMap<String, Origination>,
}

/// Builds the route table (generation 0: the supervisor numbers it).
pub(crate) fn build(model: &Model) -> Result<RouteTable, Vec<ConfigError>> {
    let mut table = RouteTable::default();
    let mut cache = Configs::default();
    let mut errs = Vec::new();
    for plan in &model.groups {
        match group(model, plan, &mut cache) {
            Ok((first, g, tls)) => {
                let addr = SocketAddr::new(first.address, first.port);
                let listener = table.listener_at(addr, first.listener_proxy);
                match (&first.host, tls) {
                    (Some(h), Some(tls)) => {
                        let group = Arc::new(HostGroup {
                            tls,
                            match_alpn: first.match_alpn.clone(),
                            group: g,
                        });
                        match listener.hosts.get_mut(h) {
                            Some(routes) => routes.add(group),
                            None => {
                                let mut routes = HostRoutes::default();
                                routes.add(group);
                                listener.hosts.insert(h, routes);
                            }
                        }
                    }
                    (None, _) => listener.plain = Some(Arc::new(g)),
                    // `group` gives every host group its termination or an error.
                    (Some(_), None) => errs.push(
                        first
                            .loc
                            .err(&["host"], "internal: host group without a certificate"),
                    ),
                }
            }
            Err(e) => errs.push(e),
        }
    }
    let status = super::gateway::status::render(&model.gateway_status);
    table.set_status(crate::route::ConfigStatus {
        text: status.text,
        json: status.json,
    });
    for (addr, protocol) in &model.starttls {
        // A listener without a valid group is not bound; nothing to speak for.
        if table.listeners().contains_key(addr) {
            table.set_starttls(*addr, *protocol);
        }
    }
    if errs.is_empty() {
        Ok(table)
    } else {
        Err(errs)
    }
}

fn group<'m>(
    model: &'m Model,
    plan: &GroupPlan,
    cache: &mut Configs,
) -> Result<(&'m Mapping, Group, Option<HostTls>), ConfigError> {
    let members: Vec<&Mapping> = plan
        .members
        .iter()
        .filter_map(|i| model.mappings.get(*i))
        .collect();
    let Some(first) = members.first().copied() else {
        return Err(ConfigError::error(
            "-",
            1,
            "TCPMapping",
            "-",
            "internal: empty group",
        ));
    };
    let tls = match &first.host {
        Some(_) if first.passthrough => Some(HostTls::Passthrough),
        Some(h) => Some(HostTls::Terminate(termination(model, first, h, cache)?)),
        None => None,
    };
    let origination = origination(model, first, cache)?;
    let upstreams = members
        .iter()
        .zip(&plan.shares)
        .map(|(m, share)| Upstream {
            mapping: Arc::new(MappingId {
                name: m.loc.name.clone(),
                namespace: m.namespace.clone(),
                port: m.port,
                host: m.host.clone().unwrap_or_default(),
            }),
            host: m.service_host.clone(),
            port: m.service_port,
            share: *share,
            connect_timeout: m.connect_timeout,
            max_connections: m.max_connections,
            refused: m.refused,
            send_proxy: m.send_proxy,
            endpoints: m.endpoints,
        })
        .collect();
    let g = Group::new(
        first.host.clone(),
        upstreams,
        origination,
        first.idle_timeout,
        first.families,
    );
    Ok((first, g, tls))
}

fn termination(
    model: &Model,
    m: &Mapping,
    host: &str,
    cache: &mut Configs,
) -> Result<Termination, ConfigError> {
    let Some(src) = m.cert else {
        return Err(m
            .loc
            .err(&["host"], format!("no certificate for host `{host}`")));
    };
    if let Some(t) = cache.termination.get(&src) {
        return Ok(t.clone());
    }
    let t = match src {
        CertSource::Host(i) => {
            let Some(h) = model.hosts.get(i) else {
                return Err(m.loc.err(&["host"], "internal: Host index out of range"));
            };
            let defaults = TlsParams::default();
            let (params, ca, required, source) = match &h.settings {
                Some(s) => (
                    &s.params,
                    s.ca.as_deref(),
                    s.cert_required,
                    format!("{} {} with {}", h.loc.kind, h.loc.name, s.from),
                ),
                // A Gateway listener's Secret is a Host of kind `Gateway`.
                None => (
                    &defaults,
                    None,
                    false,
                    format!("{} {}", h.loc.kind, h.loc.name),
                ),
            };
            let config = tls::server_config(&h.cert, params, ca, required)
                .map_err(|e| h.loc.err(&["tlsSecret"], e))?;
            Termination {
                source,
                client_auth: required,
                config,
                certificate: h.cert.chain.first().cloned(),
                postgres: Default::default(),
            }
        }
        CertSource::Context(i) => {
            let Some(c) = model.contexts.get(i) else {
                return Err(m
                    .loc
                    .err(&["host"], "internal: TLSContext index out of range"));
            };
            let Some(cert) = &c.cert else {
                return Err(c
                    .loc
                    .err(&["hosts"], "`hosts` are listed but there is no certificate"));
            };
            let config = tls::server_config(cert, &c.params, c.ca.as_deref(), c.cert_required)
                .map_err(|e| c.loc.err(&["secret"], e))?;
            Termination {
                source: format!("TLSContext {}", c.loc.name),
                client_auth: c.cert_required,
                config,
                certificate: cert.chain.first().cloned(),
                postgres: Default::default(),
            }
        }
    };
    cache.termination.insert(src, t.clone());
    Ok(t)
}

fn origination(
    model: &Model,
    m: &Mapping,
    cache: &mut Configs,
) -> Result<Option<Origination>, ConfigError> {
    match &m.origin {
        Origin::Plain => Ok(None),
        Origin::Insecure => {
            if let Some(o) = &cache.insecure {
                return Ok(Some(o.clone()));
            }
            let config = tls::client_config(None, &TlsParams::default(), None)
                .map_err(|e| m.loc.err(&["tls"], e))?;
            let o = Origination {
                mode: OriginationMode::Insecure,
                sni: None,
                verify: false,
                config,
                certificate: None,
            };
            cache.insecure = Some(o.clone());
            Ok(Some(o))
        }
        Origin::Context(name) => {
            if let Some(o) = cache.context.get(name) {
                return Ok(Some(o.clone()));
            }
            let Some(c) = model.contexts.iter().find(|c| c.loc.name == *name) else {
                return Err(m
                    .loc
                    .err(&["tls"], format!("tls: unknown TLSContext `{name}`")));
            };
            let config = tls::client_config(c.cert.as_ref(), &c.params, c.ca.as_deref())
                .map_err(|e| c.loc.err(&[], e))?;
            let o = Origination {
                mode: OriginationMode::Context(name.clone()),
                sni: c.sni.clone(),
                verify: c.ca.is_some(),
                config,
                certificate: c.cert.as_ref().and_then(|k| k.chain.first().cloned()),
            };
            cache.context.insert(name.clone(), o.clone());
            Ok(Some(o))
        }
    }
}
