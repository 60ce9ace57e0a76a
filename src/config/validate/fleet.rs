//! The fleet attributes (ext, SPEC section 15): `max_connection_duration_ms` and
//! `connection_rate_limit`, on a TCPMapping or as the Module's default, checked into the
//! mapping's [`EndpointPolicy`]; the mappings of one listener must agree on the rate limit.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::config::ConfigError;
use crate::config::model::Mapping;
use crate::config::raw::Loc;
use crate::config::raw::fleet::{RawFleet, RawRateLimit};
use crate::route::balance::EndpointPolicy;
use crate::route::fleet::{RateLimit, RatePer};

/// Most tokens per second or bucket size a rate limit may name.
const MAX_RATE: i64 = 1_000_000;

/// The Module's defaults: `(max_duration, rate_limit)`; an invalid one is an error on the
/// Module (prefix `config`).
pub(crate) fn module_defaults(
    raw: &RawFleet,
    loc: &Loc,
    problems: &mut Vec<ConfigError>,
) -> (Option<Duration>, Option<RateLimit>) {
    let mut p = EndpointPolicy::default();
    apply(raw, loc, &["config"], &mut p, problems);
    (p.max_duration, p.rate_limit)
}

/// Puts what `raw` (a mapping's, or the Module's with `prefix` `["config"]`) says into `p`,
/// over the defaults already there; errors go to `errs`.
pub(crate) fn apply(
    raw: &RawFleet,
    loc: &Loc,
    prefix: &[&str],
    p: &mut EndpointPolicy,
    errs: &mut Vec<ConfigError>,
) {
    let at = |k: &'static str| -> Vec<&str> { prefix.iter().copied().chain([k]).collect() };
    if let Some(ms) = raw.max_connection_duration_ms {
        match max_duration(ms) {
            Ok(d) => p.max_duration = d,
            Err(msg) => errs.push(loc.err(&at("max_connection_duration_ms"), msg)),
        }
    }
    if let Some(r) = &raw.connection_rate_limit {
        match rate_limit(r) {
            Ok(r) => p.rate_limit = Some(r),
            Err((key, msg)) => {
                let mut here = at("connection_rate_limit");
                here.push(key);
                errs.push(loc.err(&here, msg));
            }
        }
    }
}

/// `max_connection_duration_ms`: 0 means none (as Envoy's unset duration); at least 1000
/// otherwise, so the jitter (up to 10 % earlier) stays meaningful on the coarse clock.
pub(crate) fn max_duration(ms: i64) -> Result<Option<Duration>, String> {
    match ms {
        0 => Ok(None),
        1000.. => Ok(Some(Duration::from_millis(ms.unsigned_abs()))),
        _ => Err(format!(
            "max_connection_duration_ms {ms} must be 0 (no maximum) or at least 1000"
        )),
    }
}

/// `connection_rate_limit`: `rate` 1 to 1,000,000 per second, `burst` (default: `rate`) 1 to
/// 1,000,000, `per` `client_ip` (default) or `listener`. `Err` holds the key and the message.
pub(crate) fn rate_limit(raw: &RawRateLimit) -> Result<RateLimit, (&'static str, String)> {
    let count = |key: &'static str, n: i64| {
        u32::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_RATE).contains(&i64::from(*n)))
            .ok_or((
                key,
                format!("connection_rate_limit.{key} {n} must be from 1 to {MAX_RATE}"),
            ))
    };
    let rate = match raw.rate {
        Some(n) => count("rate", n)?,
        None => return Err(("rate", "connection_rate_limit.rate is required".into())),
    };
    let burst = match raw.burst {
        Some(n) => count("burst", n)?,
        None => rate,
    };
    let per = match raw.per.as_deref() {
        None | Some("client_ip") => RatePer::ClientIp,
        Some("listener") => RatePer::Listener,
        Some(other) => {
            return Err((
                "per",
                format!("connection_rate_limit.per `{other}` must be client_ip or listener"),
            ));
        }
    };
    Ok(RateLimit {
        rate,
        burst,
        per,
        dry_run: raw.dry_run.unwrap_or(false),
    })
}

/// Every mapping of one listener (address, port) must have the same rate limit (one bucket
/// per listener or client address, checked before routing): each one that differs from the
/// listener's first mapping gets an error naming both.
pub(crate) fn listener_agreement(mappings: &[Mapping]) -> Vec<ConfigError> {
    let mut first: BTreeMap<(IpAddr, u16), &Mapping> = BTreeMap::new();
    let mut errs = Vec::new();
    let show = |r: Option<RateLimit>| match r {
        None => "unset".to_string(),
        Some(r) => format!(
            "{{rate: {}, burst: {}, per: {}, dry_run: {}}}",
            r.rate,
            r.burst,
            match r.per {
                RatePer::ClientIp => "client_ip",
                RatePer::Listener => "listener",
            },
            r.dry_run
        ),
    };
    for m in mappings {
        let f = *first.entry((m.address, m.port)).or_insert(m);
        if f.endpoints.rate_limit != m.endpoints.rate_limit {
            errs.push(m.loc.err(
                &["connection_rate_limit"],
                format!(
                    "`connection_rate_limit` is {} here but {} in TCPMapping {} ({}); mappings of one listener ({}:{}) must agree",
                    show(m.endpoints.rate_limit),
                    show(f.endpoints.rate_limit),
                    f.loc.name,
                    f.loc.place(),
                    m.address,
                    m.port
                ),
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_and_rate_limits_are_checked() {
        assert_eq!(max_duration(0), Ok(None));
        assert_eq!(max_duration(1000), Ok(Some(Duration::from_secs(1))));
        assert!(max_duration(999).is_err());
        assert!(max_duration(-5).is_err());
        let raw = |rate, burst, per: Option<&str>| RawRateLimit {
            rate,
            burst,
            per: per.map(str::to_string),
            dry_run: None,
        };
        let r = rate_limit(&raw(Some(10), None, None)).unwrap();
        assert_eq!(
            (r.rate, r.burst, r.per, r.dry_run),
            (10, 10, RatePer::ClientIp, false)
        );
        let r = rate_limit(&raw(Some(10), Some(50), Some("listener"))).unwrap();
        assert_eq!((r.burst, r.per), (50, RatePer::Listener));
        assert_eq!(rate_limit(&raw(None, Some(5), None)).unwrap_err().0, "rate");
        assert_eq!(rate_limit(&raw(Some(0), None, None)).unwrap_err().0, "rate");
        assert_eq!(
            rate_limit(&raw(Some(5), Some(-1), None)).unwrap_err().0,
            "burst"
        );
        assert_eq!(
            rate_limit(&raw(Some(5), None, Some("ip"))).unwrap_err().0,
            "per"
        );
        assert!(rate_limit(&raw(Some(MAX_RATE + 1), None, None)).is_err());
    }

    fn load(yaml: &str) -> Result<crate::config::Loaded, Vec<ConfigError>> {
        crate::config::load(&crate::config::ConfigInput {
            inline: vec![("t.yaml".into(), yaml.into())],
            ..Default::default()
        })
    }

    fn policies(yaml: &str) -> Vec<EndpointPolicy> {
        let table = load(yaml).unwrap().table;
        let mut out: Vec<EndpointPolicy> = table
            .listeners()
            .values()
            .flat_map(|l| {
                l.groups()
                    .flat_map(|g| g.upstreams.iter().map(|u| u.endpoints))
            })
            .collect();
        out.sort_by_key(|p| p.max_duration);
        out
    }

    const MODULE: &str = "---\napiVersion: getambassador.io/v3alpha1\nkind: Module\nname: ambassador\nconfig:\n  max_connection_duration_ms: 60000\n  connection_rate_limit: {rate: 5, per: listener}\n";

    fn mapping(name: &str, port: u16, extra: &str) -> String {
        format!(
            "---\napiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nname: {name}\nport: {port}\nservice: 127.0.0.1:9\n{extra}"
        )
    }

    #[test]
    fn the_module_gives_defaults_and_a_mapping_overrides_them() {
        let yaml = format!(
            "{MODULE}{}{}",
            mapping("a", 7001, ""),
            mapping(
                "b",
                7002,
                "max_connection_duration_ms: 0\nconnection_rate_limit: {rate: 9, burst: 3, dry_run: true}\n"
            )
        );
        let p = policies(&yaml);
        assert_eq!(p[0].max_duration, None);
        let r = p[0].rate_limit.unwrap();
        assert_eq!(
            (r.rate, r.burst, r.per, r.dry_run),
            (9, 3, RatePer::ClientIp, true)
        );
        assert_eq!(p[1].max_duration, Some(Duration::from_secs(60)));
        let r = p[1].rate_limit.unwrap();
        assert_eq!((r.rate, r.burst, r.per), (5, 5, RatePer::Listener));
    }

    #[test]
    fn bad_values_and_disagreeing_mappings_of_a_listener_are_errors() {
        let text = |errs: Vec<ConfigError>| {
            errs.iter()
                .filter(|e| e.is_error())
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        };
        let e = text(load(&mapping("a", 7001, "max_connection_duration_ms: 10\n")).unwrap_err());
        assert!(e.contains("at least 1000"), "{e}");
        let e = text(load(&mapping("a", 7001, "connection_rate_limit: {burst: 3}\n")).unwrap_err());
        assert!(e.contains("rate is required"), "{e}");
        let e = text(load(&mapping("a", 7001, "connection_rate_limit: 5\n")).unwrap_err());
        assert!(e.contains("must be a mapping"), "{e}");
        let yaml = format!(
            "{}{}",
            mapping(
                "a",
                7001,
                "host: a.example\ntls_passthrough: true\nconnection_rate_limit: {rate: 5}\n"
            ),
            mapping("b", 7001, "host: b.example\ntls_passthrough: true\n")
        );
        let e = text(load(&yaml).unwrap_err());
        assert!(
            e.contains("mappings of one listener") && e.contains("TCPMapping a"),
            "{e}"
        );
    }
}
