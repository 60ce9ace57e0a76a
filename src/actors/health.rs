//! HealthActor: the active health checks and the endpoint-state gauges, on one timer.
//!
//! ```text
//! loop: sleep until the earliest due probe (at most 1 s) or a new set with a health check
//!   ├─ every endpoint set: refresh the state gauges (ejections end by time alone)
//!   └─ each set with `health_check` whose interval passed:
//!        stale list? ─ ResolverHandle::resolve_endpoints ─▶ UpstreamState::refresh
//!        TCP connect to every endpoint (timeout_ms), all at once inside this task
//!        ─▶ ProbeState::after (thresholds) ─▶ unhealthy flag read by the connect stage
//! ```
//!
//! It takes no messages: it walks the [`EndpointRegistry`] (held weakly, so it stops when
//! the proxy is dropped). One task probes every endpoint of every set: a probe round waits
//! for its slowest probe (at most the largest `timeout_ms`), which delays the next round of
//! other sets by as much; no task per endpoint. A probe only connects and closes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

use super::resolver::ResolverHandle;
use crate::metrics::Metrics;
use crate::net::socket;
use crate::route::balance::HealthCheck;
use crate::rt;
use crate::state::endpoints::{EndpointRegistry, UpstreamState};

/// The longest sleep: the state gauges are refreshed at least this often.
const GAUGE_TICK: Duration = Duration::from_secs(1);
/// The shortest sleep between two rounds.
const MIN_TICK: Duration = Duration::from_millis(10);

/// Starts the HealthActor over `registry` (it stops when the registry is gone).
pub(crate) fn spawn(
    registry: Weak<EndpointRegistry>,
    resolver: ResolverHandle,
    metrics: Arc<Metrics>,
) {
    rt::detach(supervised(registry, resolver, metrics));
}

/// Runs the loop; a panic is caught, counted and the loop restarted with backoff.
async fn supervised(
    registry: Weak<EndpointRegistry>,
    resolver: ResolverHandle,
    metrics: Arc<Metrics>,
) {
    use futures_lite::FutureExt;
    let mut backoff = Duration::from_millis(10);
    loop {
        match std::panic::AssertUnwindSafe(run(&registry, &resolver))
            .catch_unwind()
            .await
        {
            Ok(()) => break,
            Err(_) => {
                tracing::error!("health actor panicked; restarting");
                metrics.actor_restart("health");
                rt::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    tracing::debug!("health actor stopped");
}

async fn run(registry: &Weak<EndpointRegistry>, resolver: &ResolverHandle) {
    let mut gauges_at = Instant::now();
    loop {
        let Some(reg) = registry.upgrade() else {
            return;
        };
        // Listening before reading the sets: a set created from here on ends the sleep.
        let added = reg.checks_added();
        let states = reg.live();
        drop(reg);
        let now = Instant::now();
        let mut next = now + GAUGE_TICK;
        if now >= gauges_at {
            for s in &states {
                s.update_gauges();
            }
            gauges_at = now + GAUGE_TICK;
        }
        next = next.min(gauges_at);
        let mut rounds = Vec::new();
        for s in &states {
            let Some(hc) = s.health_check() else {
                continue;
            };
            if s.probe_due(now) {
                s.schedule_probe(now, hc.interval);
                rounds.push(probe_set(Arc::clone(s), hc, resolver));
            }
            if let Some(at) = s.next_probe() {
                next = next.min(at);
            }
        }
        join_all(rounds).await;
        drop(states);
        let nap = rt::sleep(next.saturating_duration_since(Instant::now()).max(MIN_TICK));
        futures_lite::future::or(nap, added).await;
    }
}

/// Probes every endpoint of `s` once (resolving first when its list is stale).
async fn probe_set(s: Arc<UpstreamState>, hc: HealthCheck, resolver: &ResolverHandle) {
    let mut list = s.list();
    if list.stale(Instant::now()) {
        let (host, port, families) = s.service();
        match resolver.resolve_endpoints(host, port, families).await {
            Ok(r) => list = s.refresh(&r.addrs, r.expires),
            Err(e) => {
                tracing::debug!(mapping = %s.key_name(), error = %e, "health check: resolve failed");
                if list.endpoints.is_empty() {
                    return;
                }
            }
        }
    }
    let probes = list.endpoints.iter().map(|ep| async move {
        let outcome = match socket::connect_one(ep.addr, hc.timeout).await {
            Ok(_) => Some(true),
            // No socket for the probe (out of descriptors or memory): no verdict on the
            // endpoint.
            Err(e) if e.is_local_exhaustion() => None,
            Err(_) => Some(false),
        };
        (ep, outcome)
    });
    let mut changed = false;
    for (ep, outcome) in join_all(probes).await {
        let Some(ok) = outcome else {
            continue;
        };
        if s.probed(ep, ok, &hc) {
            changed = true;
            let state = if ok { "healthy" } else { "unhealthy" };
            tracing::info!(mapping = %s.key_name(), endpoint = %ep.addr, state, "health check changed an endpoint's state");
        }
    }
    if changed {
        s.update_gauges();
    }
}

/// Polls every future to completion concurrently, inside the calling task.
async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    futures_lite::future::poll_fn(|cx| {
        let mut done = true;
        for (f, slot) in pending.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => done = false,
                }
            }
        }
        if done { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    out.into_iter().flatten().collect()
}
