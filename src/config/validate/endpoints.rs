//! The endpoint attributes (ext, SPEC section 10): `load_balancer`, `max_connect_attempts`,
//! `health_check` and `max_connections_per_ip`, with the Module's defaults applied.

use std::time::Duration;

use crate::config::ConfigError;
use crate::config::raw::endpoints::{RawHealthCheck, RawLoadBalancer};
use crate::config::raw::{Loc, RawMapping, RawModule};
use crate::route::balance::{
    DEFAULT_CONNECT_ATTEMPTS, EndpointPolicy, HealthCheck, Keepalive, LoadBalancer, Policy,
};

/// Most connect attempts a mapping may ask for.
pub(crate) const MAX_CONNECT_ATTEMPTS: i64 = 10;
/// Defaults of `health_check` fields left out.
const DEFAULT_INTERVAL_MS: i64 = 5000;
const DEFAULT_TIMEOUT_MS: i64 = 1000;
const DEFAULT_UNHEALTHY: i64 = 3;
const DEFAULT_HEALTHY: i64 = 2;

/// What the Module gives every mapping that does not say otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EndpointDefaults {
    /// `config.load_balancer`.
    pub load_balancer: LoadBalancer,
    /// `config.max_connections_per_ip`.
    pub max_connections_per_ip: Option<u32>,
    /// `config.keepalive`.
    pub keepalive: Option<Keepalive>,
    /// `config.max_connection_duration_ms` (ext, `fleet.rs`).
    pub max_duration: Option<Duration>,
    /// `config.connection_rate_limit` (ext, `fleet.rs`).
    pub rate_limit: Option<crate::route::fleet::RateLimit>,
}

/// The first Module's endpoint defaults (the Module rules for several Modules are
/// `module_defaults`'s); an invalid default is an error on the Module.
pub(crate) fn module_defaults(modules: &[RawModule]) -> (EndpointDefaults, Vec<ConfigError>) {
    let mut problems = Vec::new();
    let Some(m) = modules.first() else {
        return (EndpointDefaults::default(), problems);
    };
    let mut d = EndpointDefaults::default();
    if let Some(raw) = m
        .load_balancer
        .as_ref()
        .filter(|lb| !lb.http_keys.is_empty())
    {
        // Emissary's cookie/header hashing balances HTTP Mappings; TCPMappings keep their own.
        let key = raw.http_keys.first().map_or("cookie", String::as_str);
        problems.push(m.loc.warn(
            &["config", "load_balancer", key],
            format!(
                "config.load_balancer hashes on `{key}` (HTTP data): it applies to HTTP Mappings \
                 only; TCPMappings keep round_robin unless they set load_balancer"
            ),
        ));
    } else if let Some(raw) = &m.load_balancer {
        match load_balancer(raw) {
            Ok(lb) => d.load_balancer = lb,
            Err((key, msg)) => problems.push(m.loc.err(&["config", "load_balancer", key], msg)),
        }
    }
    if let Some(n) = m.max_connections_per_ip {
        match per_ip(n) {
            Ok(n) => d.max_connections_per_ip = Some(n),
            Err(msg) => problems.push(m.loc.err(&["config", "max_connections_per_ip"], msg)),
        }
    }
    if let Some(k) = m.keepalive {
        match keepalive(k) {
            Ok(k) => d.keepalive = Some(k),
            Err((key, msg)) => problems.push(m.loc.err(&["config", "keepalive", key], msg)),
        }
    }
    (d.max_duration, d.rate_limit) = super::fleet::module_defaults(&m.fleet, &m.loc, &mut problems);
    (d, problems)
}

/// A mapping's endpoint policy; `None` (with the errors) when an attribute is invalid.
pub(crate) fn policy(
    raw: &RawMapping,
    defaults: &EndpointDefaults,
) -> (Option<EndpointPolicy>, Vec<ConfigError>) {
    let loc: &Loc = &raw.loc;
    let mut errs = Vec::new();
    let mut p = EndpointPolicy {
        load_balancer: defaults.load_balancer,
        max_connections_per_ip: defaults.max_connections_per_ip,
        keepalive: defaults.keepalive,
        max_duration: defaults.max_duration,
        rate_limit: defaults.rate_limit,
        ..EndpointPolicy::default()
    };
    super::fleet::apply(&raw.fleet, loc, &[], &mut p, &mut errs);
    if let Some(lb) = &raw.load_balancer {
        if let Some(key) = lb.http_keys.first() {
            errs.push(loc.err(
                &["load_balancer", key],
                format!(
                    "load_balancer.{key} hashes on HTTP data; a TCPMapping can hash only on source_ip"
                ),
            ));
        }
        match load_balancer(lb) {
            Ok(v) => p.load_balancer = v,
            Err((key, msg)) => errs.push(loc.err(&["load_balancer", key], msg)),
        }
    }
    if let Some(n) = raw.max_connect_attempts {
        match u8::try_from(n) {
            Ok(n) if (1..=MAX_CONNECT_ATTEMPTS).contains(&i64::from(n)) => {
                p.max_connect_attempts = n
            }
            _ => errs.push(loc.err(
                &["max_connect_attempts"],
                format!("max_connect_attempts {n} must be from 1 to {MAX_CONNECT_ATTEMPTS}"),
            )),
        }
    } else {
        p.max_connect_attempts = DEFAULT_CONNECT_ATTEMPTS;
    }
    if let Some(hc) = &raw.health_check {
        match health_check(hc) {
            Ok(hc) => p.health_check = Some(hc),
            Err((key, msg)) => errs.push(loc.err(&["health_check", key], msg)),
        }
    }
    if let Some(n) = raw.max_connections_per_ip {
        match per_ip(n) {
            Ok(n) => p.max_connections_per_ip = Some(n),
            Err(msg) => errs.push(loc.err(&["max_connections_per_ip"], msg)),
        }
    }
    if errs.is_empty() {
        (Some(p), errs)
    } else {
        (None, errs)
    }
}

/// `load_balancer`: a known policy; the hash policies need `source_ip: true`. `Err` holds
/// the offending key and the message.
pub(crate) fn load_balancer(raw: &RawLoadBalancer) -> Result<LoadBalancer, (&'static str, String)> {
    let policy = match raw.policy.as_deref() {
        None => return Err(("policy", "load_balancer.policy is required".into())),
        Some(s) => Policy::parse(s).ok_or_else(|| {
            let known: Vec<&str> = Policy::ALL.iter().map(|p| p.as_str()).collect();
            (
                "policy",
                format!(
                    "unknown load_balancer.policy `{s}` (expected one of {})",
                    known.join(", ")
                ),
            )
        })?,
    };
    let source_ip = raw.source_ip.unwrap_or(false);
    if policy.hashes() && !source_ip {
        return Err((
            "policy",
            format!(
                "load_balancer.policy {policy} needs `source_ip: true` (the client address is what it hashes)"
            ),
        ));
    }
    Ok(LoadBalancer { policy, source_ip })
}

fn positive(
    key: &'static str,
    v: Option<i64>,
    default: i64,
) -> Result<u64, (&'static str, String)> {
    let v = v.unwrap_or(default);
    u64::try_from(v)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| (key, format!("health_check.{key} {v} must be at least 1")))
}

/// `health_check`: positive values, thresholds ≤ 100.
pub(crate) fn health_check(raw: &RawHealthCheck) -> Result<HealthCheck, (&'static str, String)> {
    let interval = positive("interval_ms", raw.interval_ms, DEFAULT_INTERVAL_MS)?;
    let timeout = positive(
        "timeout_ms",
        raw.timeout_ms,
        DEFAULT_TIMEOUT_MS.min(interval as i64),
    )?;
    // A timeout above the interval is accepted (as Envoy and Kubernetes probes do): the next
    // probe starts when the last one ends.
    let threshold = |key, v, d| {
        let n = positive(key, v, d)?;
        u32::try_from(n)
            .ok()
            .filter(|n| *n <= 100)
            .ok_or_else(|| (key, format!("health_check.{key} {n} must be from 1 to 100")))
    };
    Ok(HealthCheck {
        interval: Duration::from_millis(interval),
        timeout: Duration::from_millis(timeout),
        unhealthy_threshold: threshold(
            "unhealthy_threshold",
            raw.unhealthy_threshold,
            DEFAULT_UNHEALTHY,
        )?,
        healthy_threshold: threshold("healthy_threshold", raw.healthy_threshold, DEFAULT_HEALTHY)?,
    })
}

/// `keepalive: {time, interval, probes}`: seconds, seconds and a count, each at least 1
/// (Linux takes up to 32767 s and 127 probes).
pub(crate) fn keepalive(raw: [Option<i64>; 3]) -> Result<Keepalive, (&'static str, String)> {
    let [time, interval, probes] = raw;
    let check = |key: &'static str, v: Option<i64>, max: i64| match v {
        None => Ok(None),
        Some(n) if (1..=max).contains(&n) => Ok(Some(n as u64)),
        Some(n) => Err((key, format!("keepalive.{key} {n} must be from 1 to {max}"))),
    };
    Ok(Keepalive {
        time: check("time", time, 32767)?.map(Duration::from_secs),
        interval: check("interval", interval, 32767)?.map(Duration::from_secs),
        probes: check("probes", probes, 127)?.map(|n| n as u32),
    })
}

/// `max_connections_per_ip`: at least 1.
pub(crate) fn per_ip(n: i64) -> Result<u32, String> {
    u32::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("max_connections_per_ip {n} must be at least 1"))
}

#[cfg(test)]
#[path = "endpoints_tests.rs"]
mod tests;
