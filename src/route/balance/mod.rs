//! Choosing one endpoint of a service for a connection: the load-balancing policies, the
//! consistent-hash tables, and the health rules (passive ejection, active probe thresholds).
//!
//! ```text
//! endpoints (preferred family first) ─▶ tier: usable & preferred ─▶ usable & other family
//!                                       ─▶ unusable (ejected/unhealthy) & preferred ─▶ the rest
//!                        each tier ─▶ policy: round_robin | least_request | random
//!                                              | ring_hash | maglev (hash of the client IP)
//! ```
//!
//! Pure: the caller passes the endpoints' loads and states, a pick counter, a random number
//! and the client's hash; nothing here reads the clock, spawns or touches a socket. The
//! runtime state (atomics per endpoint, the refresh from DNS, the probes) lives in
//! `crate::state::endpoints` and `crate::actors::health`.

pub(crate) mod hash;
pub(crate) mod health;

use std::fmt;
use std::time::Duration;

pub(crate) use hash::{HashTable, Maglev, Ring};

/// `load_balancer.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) enum Policy {
    /// Each endpoint in turn (the default).
    #[default]
    RoundRobin,
    /// The endpoint with the fewest open connections (ties in turn).
    LeastRequest,
    /// A uniformly random endpoint.
    Random,
    /// A consistent-hash ring over the client IP (`source_ip: true`).
    RingHash,
    /// Maglev consistent hashing over the client IP (`source_ip: true`).
    Maglev,
}

impl Policy {
    /// Every policy, as written in config.
    pub(crate) const ALL: [Policy; 5] = [
        Policy::RoundRobin,
        Policy::LeastRequest,
        Policy::Random,
        Policy::RingHash,
        Policy::Maglev,
    ];

    /// The config spelling (`round_robin`, …).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round_robin",
            Policy::LeastRequest => "least_request",
            Policy::Random => "random",
            Policy::RingHash => "ring_hash",
            Policy::Maglev => "maglev",
        }
    }

    /// The policy spelled `s` (case-insensitive).
    pub(crate) fn parse(s: &str) -> Option<Policy> {
        Policy::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// True for the consistent-hash policies, which need `source_ip: true`.
    pub(crate) fn hashes(self) -> bool {
        matches!(self, Policy::RingHash | Policy::Maglev)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `load_balancer: {policy, source_ip}` after validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct LoadBalancer {
    /// The policy.
    pub policy: Policy,
    /// Hash on the client address (always true for `ring_hash` and `maglev`).
    pub source_ip: bool,
}

/// `health_check: {interval_ms, timeout_ms, unhealthy_threshold, healthy_threshold}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct HealthCheck {
    /// Time between two probes of an endpoint.
    pub interval: Duration,
    /// How long one TCP connect probe may take.
    pub timeout: Duration,
    /// Failed probes in a row that make an endpoint unhealthy.
    pub unhealthy_threshold: u32,
    /// Passed probes in a row that make an unhealthy endpoint healthy again.
    pub healthy_threshold: u32,
}

/// Everything a mapping says about how its endpoints are chosen and guarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct EndpointPolicy {
    /// How an endpoint is chosen.
    pub load_balancer: LoadBalancer,
    /// Connect attempts per connection (each on another endpoint), within the connect timeout.
    pub max_connect_attempts: u8,
    /// Active TCP health checks (`None`: passive health only).
    pub health_check: Option<HealthCheck>,
    /// Open connections allowed from one client address (`None`: unlimited).
    pub max_connections_per_ip: Option<u32>,
    /// TCP keepalive on upstream sockets (the Module's `keepalive`; `None`: the kernel's).
    pub keepalive: Option<Keepalive>,
    /// `max_connection_duration_ms` (ext, SPEC section 15; `None`: no maximum age).
    pub max_duration: Option<Duration>,
    /// `connection_rate_limit` (ext, SPEC section 15): every mapping of a listener has the same.
    pub rate_limit: Option<super::fleet::RateLimit>,
}

/// TCP keepalive for upstream sockets (Emissary's Module `keepalive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Keepalive {
    /// Idle time before the first probe (`time`; `None`: the kernel's).
    pub time: Option<Duration>,
    /// Time between probes (`interval`; `None`: the kernel's).
    pub interval: Option<Duration>,
    /// Unanswered probes before the connection is dropped (`probes`; `None`: the kernel's).
    pub probes: Option<u32>,
}

/// Default `max_connect_attempts`.
pub(crate) const DEFAULT_CONNECT_ATTEMPTS: u8 = 3;

impl Default for EndpointPolicy {
    fn default() -> Self {
        Self {
            load_balancer: LoadBalancer::default(),
            max_connect_attempts: DEFAULT_CONNECT_ATTEMPTS,
            health_check: None,
            max_connections_per_ip: None,
            keepalive: None,
            max_duration: None,
            rate_limit: None,
        }
    }
}

/// What varies between two picks: the pick counter (round robin, least-request ties), a
/// random number (random) and the client's hash (ring_hash, maglev).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct PickKey {
    /// A counter that grows by one per connection.
    pub seq: u64,
    /// A random number.
    pub random: u64,
    /// [`hash::client_hash`] of the client address.
    pub client: u64,
}

/// Which endpoints a pick may choose from, best first: the first tier with any member is
/// balanced over. `usable` = neither ejected nor unhealthy; `preferred` = of the preferred
/// address family; `tried` = already failed for this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndpointView {
    /// Neither ejected nor failing its health check.
    pub usable: bool,
    /// Of the preferred address family.
    pub preferred: bool,
    /// Already tried by this connection.
    pub tried: bool,
    /// Open connections now.
    pub load: u32,
}

/// The tier of an endpoint (0 best), `None` when already tried.
fn tier(v: &EndpointView) -> Option<u8> {
    if v.tried {
        return None;
    }
    Some(match (v.usable, v.preferred) {
        (true, true) => 0,
        (true, false) => 1,
        (false, true) => 2,
        (false, false) => 3,
    })
}

/// Chooses an endpoint index, or `None` when every endpoint was tried.
///
/// `view(i)` describes endpoint `i` of `len`; `table` is the consistent-hash table for the
/// hash policies (without it they fall back to round robin). Allocation-free.
pub(crate) fn pick(
    policy: Policy,
    len: usize,
    view: impl Fn(usize) -> EndpointView,
    table: Option<&HashTable>,
    key: &PickKey,
) -> Option<usize> {
    let best = (0..len).filter_map(|i| tier(&view(i))).min()?;
    let member = |i: usize| tier(&view(i)) == Some(best);
    match (policy, table) {
        (Policy::RoundRobin, _) | (Policy::RingHash | Policy::Maglev, None) => {
            nth_member(len, &member, key.seq)
        }
        (Policy::Random, _) => nth_member(len, &member, key.random),
        (Policy::LeastRequest, _) => least_loaded(len, &member, &view, key.seq),
        (Policy::RingHash | Policy::Maglev, Some(t)) => t
            .walk(key.client)
            .find(|&i| i < len && member(i))
            .or_else(|| nth_member(len, &member, key.seq)),
    }
}

/// The `n mod k`-th of the `k` members.
fn nth_member(len: usize, member: &impl Fn(usize) -> bool, n: u64) -> Option<usize> {
    let k = (0..len).filter(|&i| member(i)).count() as u64;
    if k == 0 {
        return None;
    }
    let nth = (n % k) as usize;
    (0..len).filter(|&i| member(i)).nth(nth)
}

/// A member with the fewest open connections; the scan starts at `seq mod len`, so ties
/// take turns.
fn least_loaded(
    len: usize,
    member: &impl Fn(usize) -> bool,
    view: &impl Fn(usize) -> EndpointView,
    seq: u64,
) -> Option<usize> {
    if len == 0 {
        return None;
    }
    let start = (seq % len as u64) as usize;
    (0..len)
        .map(|j| (start + j) % len)
        .filter(|&i| member(i))
        .min_by_key(|&i| view(i).load)
}

#[cfg(test)]
mod tests;
