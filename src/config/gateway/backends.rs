//! A route's `backendRefs` as the route model takes them: relative weights made percentages,
//! and the backends that cannot be used (not a Service, no port, another namespace without a
//! ReferenceGrant, a Service the config shows does not exist), whose share is refused.

use super::listeners::granted;
use super::raw::{GROUP, RawRoute};
use super::status::Why;
use super::translate::{Env, Resources};
use crate::config::ConfigError;

/// A backend as the route model takes it.
pub(super) struct Backend {
    /// `name.namespace`.
    pub host: String,
    /// The Service port (0 when the ref has none: it is refused anyway).
    pub port: u16,
    /// Percent of the route's connections.
    pub pct: u8,
    /// Why its share of connections is refused (the Gateway API reason), if it is.
    pub refused: Option<&'static str>,
}

/// A route's backends with their shares, and what is wrong with them. Weights are relative
/// (default 1); weight 0 gets no traffic. A backend that cannot be used (not a Service, no
/// port, another namespace without a ReferenceGrant) keeps its share, which is refused: "if
/// an invalid backend is requested to have 80% of connections, then 80% of connections must be
/// rejected instead" (the Gateway API's BackendRefs).
pub(super) fn backends(
    r: &RawRoute,
    ns: &str,
    res: &Resources,
    env: &Env<'_>,
) -> (Vec<Backend>, Result<(), Why>, Vec<ConfigError>) {
    let mut problems = Vec::new();
    let mut resolved = Ok(());
    let mut weighted = Vec::new();
    for b in &r.backends {
        let warn = |why: String| {
            let message = format!("backendRef {}: {why}", b.name);
            super::warn_at_item(&r.loc, "backendRefs", &b.name, message)
        };
        let weight = match b.weight {
            None => 1,
            Some(w) if (0..=1_000_000).contains(&w) => w.unsigned_abs(),
            Some(w) => {
                problems.push(warn(format!("weight {w} is not 0-1000000; not used")));
                continue;
            }
        };
        let (group, kind) = (
            b.group.as_deref().unwrap_or(""),
            b.kind.as_deref().unwrap_or("Service"),
        );
        let target = b.namespace.clone().unwrap_or_else(|| ns.to_string());
        let port = b
            .port
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0);
        let refused = if !group.is_empty() || kind != "Service" {
            Some(("InvalidKind", format!("{kind} is not a Service")))
        } else if port.is_none() {
            Some((
                "UnsupportedValue",
                "a Service backend needs a port 1-65535".to_string(),
            ))
        } else if target != ns
            && !granted(
                res,
                env.namespace,
                (GROUP, r.kind.as_str(), ns),
                ("", "Service", &b.name),
                &target,
            )
        {
            Some((
                "RefNotPermitted",
                format!(
                    "Service {target}/{} is in another namespace and no ReferenceGrant there allows it",
                    b.name
                ),
            ))
        } else if !service_may_exist(res, env, &target, &b.name) {
            Some((
                "BackendNotFound",
                format!(
                    "the config holds Services of namespace {target} and none named {}",
                    b.name
                ),
            ))
        } else {
            None
        };
        if let Some((reason, why)) = &refused {
            problems.push(warn(format!(
                "{why} (ResolvedRefs False, {reason}); its share of connections is refused"
            )));
            if resolved.is_ok() {
                resolved = Err((*reason, format!("backendRef {}: {why}", b.name)));
            }
        }
        if weight > 0 {
            let host = format!("{}.{target}", b.name);
            weighted.push((host, port.unwrap_or(0), refused.map(|(r, _)| r), weight));
        }
    }
    let weights: Vec<u64> = weighted.iter().map(|b| b.3).collect();
    let out = weighted
        .into_iter()
        .zip(percents(&weights))
        .map(|((host, port, refused, _), pct)| Backend {
            host,
            port,
            pct,
            refused,
        })
        .collect();
    (out, resolved, problems)
}

/// False when the config holds `kind: Service` documents of namespace `ns` (a `kubectl get
/// services` export of it) and none is named `name`: the backend does not exist
/// (`BackendNotFound`). Without Service documents of that namespace tcpmap cannot tell, and
/// the name is resolved by DNS like any service.
fn service_may_exist(res: &Resources, env: &Env<'_>, ns: &str, name: &str) -> bool {
    let in_ns = |s: &Option<String>| s.as_deref().unwrap_or(env.namespace) == ns;
    let mut known = res.services.iter().filter(|(s, _)| in_ns(s)).peekable();
    known.peek().is_none() || known.any(|(_, n)| n == name)
}

/// Relative weights as percentages summing to 100 (largest remainder; ties to the earlier).
pub(crate) fn percents(weights: &[u64]) -> Vec<u8> {
    let sum: u128 = weights.iter().map(|w| u128::from(*w)).sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let parts: Vec<(u128, u128)> = weights
        .iter()
        .map(|w| (u128::from(*w) * 100 / sum, u128::from(*w) * 100 % sum))
        .collect();
    let given: u128 = parts.iter().map(|p| p.0).sum();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(parts.get(*i).map_or(0, |p| p.1)));
    let mut out: Vec<u128> = parts.iter().map(|p| p.0).collect();
    for i in order
        .into_iter()
        .take(100usize.saturating_sub(given as usize))
    {
        if let Some(v) = out.get_mut(i) {
            *v += 1;
        }
    }
    out.into_iter()
        .map(|v| u8::try_from(v).unwrap_or(100))
        .collect()
}
