//! The endpoint attributes as written (ext, SPEC section 10): `load_balancer`,
//! `health_check`, and the integers `max_connect_attempts` and `max_connections_per_ip`,
//! on a TCPMapping and (`load_balancer`, `max_connections_per_ip`) in the Module's `config`.
//!
//! Type errors and unknown nested keys are reported here; meaning is `validate`'s.

use serde_yaml_ng::Value;

use super::Loc;
use crate::config::ConfigError;

/// `load_balancer: {policy, source_ip, ...}` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RawLoadBalancer {
    /// `policy`.
    pub policy: Option<String>,
    /// `source_ip`.
    pub source_ip: Option<bool>,
    /// Ambassador's other hash sources (`cookie`, `header`): known, but not at layer 4.
    pub http_keys: Vec<String>,
}

/// `health_check: {interval_ms, timeout_ms, unhealthy_threshold, healthy_threshold}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RawHealthCheck {
    /// `interval_ms`.
    pub interval_ms: Option<i64>,
    /// `timeout_ms`.
    pub timeout_ms: Option<i64>,
    /// `unhealthy_threshold`.
    pub unhealthy_threshold: Option<i64>,
    /// `healthy_threshold`.
    pub healthy_threshold: Option<i64>,
}

/// A path below `prefix` (`["config"]` in the Module, `[]` on a mapping).
fn path<'a>(prefix: &[&'a str], keys: &[&'a str]) -> Vec<&'a str> {
    prefix.iter().chain(keys).copied().collect()
}

fn dotted(keys: &[&str]) -> String {
    keys.join(".")
}

/// Reads `load_balancer` (the value at `prefix` + `load_balancer`).
pub(crate) fn load_balancer(
    value: Option<&Value>,
    loc: &Loc,
    prefix: &[&str],
    problems: &mut Vec<ConfigError>,
) -> Option<RawLoadBalancer> {
    let at = path(prefix, &["load_balancer"]);
    let map = match value? {
        Value::Null => return None,
        Value::Mapping(m) => m,
        _ => {
            problems.push(loc.err(
                &at,
                format!(
                    "`{}` must be a mapping like {{policy: round_robin}}",
                    dotted(&at)
                ),
            ));
            return None;
        }
    };
    let mut raw = RawLoadBalancer::default();
    for (key, v) in map {
        let k = key.as_str().unwrap_or("?");
        let here = path(&at, &[k]);
        match (k, v) {
            (_, Value::Null) => {}
            ("policy", Value::String(s)) => raw.policy = Some(s.clone()),
            ("policy", _) => {
                problems.push(loc.err(&here, format!("`{}` must be a string", dotted(&here))))
            }
            ("source_ip", Value::Bool(b)) => raw.source_ip = Some(*b),
            ("source_ip", _) => {
                problems.push(loc.err(&here, format!("`{}` must be true or false", dotted(&here))))
            }
            ("cookie" | "header", _) => raw.http_keys.push(k.to_string()),
            _ => problems.push(loc.warn(
                &here,
                format!("unknown attribute `{}` (ignored)", dotted(&here)),
            )),
        }
    }
    Some(raw)
}

/// Reads `health_check` on a mapping.
pub(crate) fn health_check(
    value: Option<&Value>,
    loc: &Loc,
    problems: &mut Vec<ConfigError>,
) -> Option<RawHealthCheck> {
    let map = match value? {
        Value::Null => return None,
        Value::Mapping(m) => m,
        _ => {
            problems.push(loc.err(
                &["health_check"],
                "`health_check` must be a mapping like {interval_ms: 5000}",
            ));
            return None;
        }
    };
    let mut raw = RawHealthCheck::default();
    for (key, v) in map {
        let k = key.as_str().unwrap_or("?");
        let slot = match k {
            "interval_ms" => &mut raw.interval_ms,
            "timeout_ms" => &mut raw.timeout_ms,
            "unhealthy_threshold" => &mut raw.unhealthy_threshold,
            "healthy_threshold" => &mut raw.healthy_threshold,
            _ => {
                problems.push(loc.warn(
                    &["health_check", k],
                    format!("unknown attribute `health_check.{k}` (ignored)"),
                ));
                continue;
            }
        };
        match v {
            Value::Null => {}
            Value::Number(n) if n.as_i64().is_some() => *slot = n.as_i64(),
            _ => problems.push(loc.err(
                &["health_check", k],
                format!("`health_check.{k}` must be an integer"),
            )),
        }
    }
    Some(raw)
}

/// Reads an integer at `prefix` + `key` of a nested mapping (the Module's `config`).
pub(crate) fn integer(
    value: Option<&Value>,
    loc: &Loc,
    at: &[&str],
    problems: &mut Vec<ConfigError>,
) -> Option<i64> {
    match value? {
        Value::Null => None,
        Value::Number(n) if n.as_i64().is_some() => n.as_i64(),
        _ => {
            problems.push(loc.err(at, format!("`{}` must be an integer", dotted(at))));
            None
        }
    }
}
