//! The fleet attributes as written (ext, SPEC section 15): `max_connection_duration_ms` and
//! `connection_rate_limit: {rate, burst, per, dry_run}`, on a TCPMapping and in the Module's
//! `config` (the mappings' default).
//!
//! Type errors and unknown nested keys are reported here; meaning is `validate/fleet.rs`'s.

use serde_yaml_ng::Value;

use super::Loc;
use super::endpoints::integer;
use crate::config::ConfigError;

/// `connection_rate_limit` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RawRateLimit {
    /// `rate`: tokens per second.
    pub rate: Option<i64>,
    /// `burst`: the bucket's size.
    pub burst: Option<i64>,
    /// `per`: `client_ip` or `listener`.
    pub per: Option<String>,
    /// `dry_run`.
    pub dry_run: Option<bool>,
}

/// Both fleet attributes of one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RawFleet {
    /// `max_connection_duration_ms`.
    pub max_connection_duration_ms: Option<i64>,
    /// `connection_rate_limit`.
    pub connection_rate_limit: Option<RawRateLimit>,
}

/// Reads both attributes from `get` (a mapping's or the Module `config`'s values), reporting at
/// `prefix` (`[]` on a mapping, `["config"]` in the Module).
pub(crate) fn read<'a>(
    mut get: impl FnMut(&str) -> Option<&'a Value>,
    loc: &Loc,
    prefix: &[&str],
    problems: &mut Vec<ConfigError>,
) -> RawFleet {
    let at = |k: &'static str| -> Vec<&str> { prefix.iter().copied().chain([k]).collect() };
    RawFleet {
        max_connection_duration_ms: integer(
            get("max_connection_duration_ms"),
            loc,
            &at("max_connection_duration_ms"),
            problems,
        ),
        connection_rate_limit: rate_limit(
            get("connection_rate_limit"),
            loc,
            &at("connection_rate_limit"),
            problems,
        ),
    }
}

fn rate_limit(
    value: Option<&Value>,
    loc: &Loc,
    at: &[&str],
    problems: &mut Vec<ConfigError>,
) -> Option<RawRateLimit> {
    let dotted = |keys: &[&str]| keys.join(".");
    let map = match value? {
        Value::Null => return None,
        Value::Mapping(m) => m,
        _ => {
            problems.push(loc.err(
                at,
                format!(
                    "`{}` must be a mapping like {{rate: 10, burst: 20, per: client_ip}}",
                    dotted(at)
                ),
            ));
            return None;
        }
    };
    let mut raw = RawRateLimit::default();
    for (key, v) in map {
        let k = key.as_str().unwrap_or("?");
        let here: Vec<&str> = at.iter().copied().chain([k]).collect();
        match (k, v) {
            (_, Value::Null) => {}
            ("rate", v) => raw.rate = integer(Some(v), loc, &here, problems),
            ("burst", v) => raw.burst = integer(Some(v), loc, &here, problems),
            ("per", Value::String(s)) => raw.per = Some(s.clone()),
            ("dry_run", Value::Bool(b)) => raw.dry_run = Some(*b),
            ("per", _) => problems.push(loc.err(
                &here,
                format!("`{}` must be client_ip or listener", dotted(&here)),
            )),
            ("dry_run", _) => {
                problems.push(loc.err(&here, format!("`{}` must be true or false", dotted(&here))))
            }
            _ => problems.push(loc.warn(
                &here,
                format!("unknown attribute `{}` (ignored)", dotted(&here)),
            )),
        }
    }
    Some(raw)
}
