//! The pure half of name resolution: resolv.conf and hosts parsing, search candidates,
//! the DNS wire codec, the answer cache and the family policy.
//!
//! ```text
//! ServiceHost ─ IP literal ───────────────────────────────► addresses
//!             └ name ─ hosts.rs (exact, case-insensitive) ─► addresses
//!                    └ cache.rs hit ──────────────────────► addresses / cached NXDOMAIN
//!                    └ search.rs candidates ─► net::dns (wire.rs queries, A/AAAA) ─► order_by_family
//! ```
//!
//! Nothing here opens a socket, reads a file, spawns a task or reads the clock: file
//! contents and `now` are passed in, so every rule is unit-tested. The socket side lives in
//! `crate::net::dns`, the actor that owns the cache in `crate::actors::resolver`.
//! See `docs/dns.md` for the behaviour as users see it (and why `async-dns` is not used).

pub(crate) mod cache;
pub(crate) mod conf;
pub(crate) mod hosts;
pub(crate) mod search;
pub(crate) mod wire;

use std::net::IpAddr;
use std::time::Duration;

use crate::route::Families;

/// Why a service name did not resolve to any address.
///
/// Cloneable because one lookup answers every caller that asked for the same name meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ResolveError {
    /// The name does not exist (NXDOMAIN for every search candidate).
    #[error("{0}: no such host (NXDOMAIN)")]
    NotFound(String),
    /// The name exists but has no address of an allowed family.
    #[error("{0}: no address of the allowed family (no A/AAAA data)")]
    NoData(String),
    /// No nameserver answered within the lookup timeout.
    #[error("{0}: DNS lookup timed out")]
    Timeout(String),
    /// The lookup failed otherwise (socket error, SERVFAIL/REFUSED from every nameserver,
    /// an invalid name); the second field says why.
    #[error("{0}: DNS lookup failed: {1}")]
    Io(String, String),
    /// The resolver actor stopped.
    #[error("the resolver actor is gone")]
    ActorGone,
}

impl ResolveError {
    /// True for answers worth remembering for the negative TTL (the name is known not to
    /// resolve); timeouts and I/O errors are retried on the next request.
    pub(crate) fn is_negative_answer(&self) -> bool {
        matches!(self, ResolveError::NotFound(_) | ResolveError::NoData(_))
    }
}

/// A successful lookup: the addresses in preference order and how long they may be cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// Addresses, preferred family first.
    pub(crate) addrs: Vec<IpAddr>,
    /// The smallest TTL among the records used (`None` for answers without a TTL).
    pub(crate) ttl: Option<u32>,
}

/// Filters `addrs` by `families` and orders them IPv6 first, then IPv4, keeping the
/// original order within a family and dropping duplicates.
pub(crate) fn order_by_family(addrs: &[IpAddr], families: Families) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::with_capacity(addrs.len());
    let v6 = addrs.iter().filter(|a| a.is_ipv6() && families.ipv6());
    let v4 = addrs.iter().filter(|a| a.is_ipv4() && families.ipv4());
    for addr in v6.chain(v4) {
        if !out.contains(addr) {
            out.push(*addr);
        }
    }
    out
}

/// Clamps a record TTL (seconds) into `[min, max]`; a missing TTL counts as `min`.
pub(crate) fn clamp_ttl(ttl: Option<u32>, min: Duration, max: Duration) -> Duration {
    let ttl = ttl.map_or(min, |s| Duration::from_secs(u64::from(s)));
    ttl.max(min).min(max.max(min))
}

/// The outcome of asking one record type for one candidate name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TypeOutcome {
    /// Addresses with the smallest TTL among the records used.
    Found(Vec<IpAddr>, u32),
    /// NOERROR without records of the type.
    NoData,
    /// NXDOMAIN.
    NxDomain,
    /// No usable answer (timeout, SERVFAIL everywhere, socket error).
    Failed(ResolveError),
    /// The family policy did not ask for this type.
    NotAsked,
}

/// Combines the AAAA and A outcomes of one candidate name into the family policy's answer:
/// IPv6 addresses first, then IPv4. Addresses from one family win over an error from the
/// other; otherwise an error beats "no data", and "no data" beats NXDOMAIN (the name exists).
pub(crate) fn combine(
    name: &str,
    aaaa: TypeOutcome,
    a: TypeOutcome,
) -> Result<Resolved, ResolveError> {
    let mut addrs = Vec::new();
    let mut ttl: Option<u32> = None;
    let mut failure = None;
    let mut nodata = false;
    for outcome in [aaaa, a] {
        match outcome {
            TypeOutcome::Found(found, t) => {
                addrs.extend(found);
                ttl = Some(ttl.map_or(t, |old| old.min(t)));
            }
            TypeOutcome::NoData => nodata = true,
            TypeOutcome::NxDomain | TypeOutcome::NotAsked => {}
            TypeOutcome::Failed(err) => failure = failure.or(Some(err)),
        }
    }
    if !addrs.is_empty() {
        return Ok(Resolved { addrs, ttl });
    }
    match failure {
        Some(err) => Err(err),
        None if nodata => Err(ResolveError::NoData(name.to_owned())),
        None => Err(ResolveError::NotFound(name.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Families = Families::new(true, true).unwrap();
    const V4: Families = Families::new(true, false).unwrap();
    const V6: Families = Families::new(false, true).unwrap();

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn family_policy_orders_ipv6_first_and_filters() {
        let addrs = [
            ip("10.0.0.1"),
            ip("::1"),
            ip("10.0.0.2"),
            ip("::2"),
            ip("::1"),
        ];
        assert_eq!(
            order_by_family(&addrs, BOTH),
            vec![ip("::1"), ip("::2"), ip("10.0.0.1"), ip("10.0.0.2")]
        );
        assert_eq!(
            order_by_family(&addrs, V4),
            vec![ip("10.0.0.1"), ip("10.0.0.2")]
        );
        assert_eq!(order_by_family(&addrs, V6), vec![ip("::1"), ip("::2")]);
    }

    #[test]
    fn ttl_is_clamped_between_one_second_and_the_maximum() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(300));
        assert_eq!(clamp_ttl(Some(0), min, max), min);
        assert_eq!(clamp_ttl(None, min, max), min);
        assert_eq!(clamp_ttl(Some(60), min, max), Duration::from_secs(60));
        assert_eq!(clamp_ttl(Some(86_400), min, max), max);
        assert_eq!(clamp_ttl(Some(u32::MAX), min, max), max);
    }

    #[test]
    fn combine_puts_ipv6_first_and_keeps_the_smallest_ttl() {
        let got = combine(
            "x",
            TypeOutcome::Found(vec![ip("::3")], 30),
            TypeOutcome::Found(vec![ip("127.0.0.3")], 10),
        );
        assert_eq!(
            got,
            Ok(Resolved {
                addrs: vec![ip("::3"), ip("127.0.0.3")],
                ttl: Some(10)
            })
        );
    }

    #[test]
    fn combine_prefers_addresses_then_errors_then_nodata_then_nxdomain() {
        let timeout = ResolveError::Timeout("x".into());
        let got = combine(
            "x",
            TypeOutcome::Failed(timeout.clone()),
            TypeOutcome::Found(vec![ip("1.2.3.4")], 5),
        );
        assert_eq!(got.map(|r| r.addrs), Ok(vec![ip("1.2.3.4")]));
        assert_eq!(
            combine(
                "x",
                TypeOutcome::Failed(timeout.clone()),
                TypeOutcome::NoData
            ),
            Err(timeout)
        );
        assert_eq!(
            combine("x", TypeOutcome::NxDomain, TypeOutcome::NoData),
            Err(ResolveError::NoData("x".into()))
        );
        assert_eq!(
            combine("x", TypeOutcome::NxDomain, TypeOutcome::NxDomain),
            Err(ResolveError::NotFound("x".into()))
        );
    }
}
