//! A worker process (`tcpmap worker`, started by the pool; not for users).
//!
//! Its standard input is its end of the control channel. It runs the data plane — a
//! `LocalPlane` (ListenerActors and their ConnectionActors) and a ResolverActor; no
//! Supervisor: its pool's Supervisor chose the table and bound the sockets — on the local
//! runtime (`rt::local`: one thread runs every task and drives the reactor and the coarse
//! clock) while this thread answers the control channel, one request at a time:
//!
//! ```text
//! Hello{settings, tickets} + fd ─▶ take the ticket keys; build Shared (limits counted in
//!                                 the shared memory the fd maps)
//! TicketKeys{keys}              ─▶ seal new tickets with the rotated keys
//! Prepare{bundle} + socket fds  ─▶ config::build_bundle (the Supervisor's pure code) ─▶ held
//! Commit                        ─▶ LocalPlane.serve(table, given sockets, generation)
//! Metrics / Status              ─▶ this worker's registry / generation and open connections
//! Keep                          ─▶ its counters and histograms by place (binary; the snapshot)
//! Counts{generation, fingerprint} ─▶ the status page's numbers by place (binary), or Status
//! StopAccepting                 ─▶ close the listeners (the first step of a drain)
//! Shutdown                      ─▶ drain like `tcpmap run` does, reply, exit 0
//! ```
//!
//! A request it cannot carry out is answered `Failed` with a typed `WorkerError`. When the
//! Supervisor goes away (its end closes) the worker drains and exits.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use super::channel::Channel;
use super::codec::{FromWorker, Settings, Slot, ToWorker, WorkerError};
use super::shm::{Counters, Tally};
use super::status_wire::WorkerCounts;
use crate::actors::resolver::{ResolverConfig, ResolverHandle};
use crate::actors::supervisor::plane::Change;
use crate::actors::supervisor::{ApplyError, LocalPlane};
use crate::actors::{Count, Limits, Shared};
use crate::admin::status::index::StatusIndex;
use crate::config::Bundle;
use crate::metrics::Metrics;
use crate::route::{MappingId, RouteTable};
use crate::rt;
use crate::state::endpoints::EndpointRegistry;

/// The config a `Prepare` built, waiting for `Commit`.
struct Pending {
    table: RouteTable,
    bundle: Arc<Bundle>,
    sockets: HashMap<SocketAddr, TcpListener>,
}

/// What the Supervisor's `Hello` gave this worker.
struct Hello {
    id: u32,
    settings: Settings,
    /// Kept for the life of the process, with the blocks below that it maps.
    counters: Counters,
    /// The totals every limit is checked against.
    totals: Tally,
    /// This worker's own share of them.
    mine: Tally,
}

/// Takes the first control message, which must be `Hello` with the shared counters'
/// descriptor: installs the session-ticket keys, before any config is built, and maps the
/// counters.
fn hello(channel: &mut Channel) -> anyhow::Result<Hello> {
    let ToWorker::Hello {
        id,
        settings,
        tickets,
    } = channel.recv()?
    else {
        anyhow::bail!("the first control message was not Hello");
    };
    // Before any config is built: every TLS context of this worker uses the Supervisor's keys.
    match tickets {
        Some(keys) => crate::state::tickets::install(keys).map_err(anyhow::Error::msg)?,
        None => tracing::warn!(
            "the Supervisor sent no session-ticket keys; this worker's tickets resume only on it"
        ),
    }
    let counters = Counters::open(
        channel
            .take_fds(1)?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no counters descriptor"))?,
    )?;
    let (Some(totals), Some(mine)) = (counters.totals(), counters.tally(id)) else {
        anyhow::bail!("the shared counters have no block for worker {id}");
    };
    Ok(Hello {
        id,
        settings,
        counters,
        totals,
        mine,
    })
}

/// A worker between two control messages: all it keeps but its plane, which each step moves
/// onto the local runtime and back (`on_loop`).
struct Worker {
    /// This worker's number (what the fault hooks key on).
    #[cfg(feature = "fault-injection")]
    id: u32,
    metrics: Arc<Metrics>,
    endpoints: Arc<EndpointRegistry>,
    totals: Tally,
    mine: Tally,
    /// The shared counters' mapping (the tallies above point into it).
    _counters: Counters,
    /// The config a `Prepare` built, until `Commit` or `Abort`.
    pending: Option<Pending>,
    /// The generation committed last (0 before the first).
    serving: u64,
    /// The status page's index of the table served (`Counts` replies place numbers by it).
    index: Option<Arc<StatusIndex>>,
    drain_timeout: Duration,
}

impl Worker {
    /// Builds this process's data plane from what `Hello` gave: its metrics, endpoint sets
    /// (per-client counts in the shared table), resolver, health checks and `Shared` state,
    /// and the `LocalPlane` that will serve the configs.
    fn start(hello: Hello) -> (Worker, LocalPlane) {
        let Hello {
            id,
            settings,
            counters,
            totals,
            mine,
        } = hello;
        let metrics = Metrics::new();
        let (kill, tripwire) = rt::tripwire();
        let resolver = ResolverConfig {
            resolv_conf: settings.resolv_conf.clone(),
            ..ResolverConfig::default()
        };
        let endpoints = EndpointRegistry::new(metrics.clone());
        if let Some(table) = counters.clients(id) {
            endpoints.use_client_table(std::sync::Arc::new(table));
        }
        let shared = Shared::new(
            rt::block_on(async { ResolverHandle::spawn_observed(resolver, Some(metrics.clone())) }),
            metrics.clone(),
            endpoints.clone(),
            Limits {
                max_connections: settings.max_connections.map(|m| m as usize),
                handshake_timeout: Duration::from_millis(settings.handshake_timeout_ms),
                zero_copy: settings.zero_copy,
                drain_spread: settings.drain_spread,
                dont_log_null: settings.dont_log_null,
            },
            Count::Shared {
                total: totals.count,
                mine: mine.count,
            },
            tripwire,
        );
        // Rate limits count over every worker in the shared table.
        if let Some(table) = counters.rate_table() {
            let _ = shared.rates.set(table);
        }
        // Each worker checks its own endpoints' health (docs/operations.md, "Worker processes").
        crate::actors::health::spawn(
            Arc::downgrade(&endpoints),
            shared.resolver.clone(),
            metrics.clone(),
        );
        // This process's data plane, driven from this thread (each step a task on the local
        // runtime, see `on_loop`): the pool's Supervisor chose the table and bound the sockets,
        // so there is no Supervisor here.
        let plane = LocalPlane::new(shared.clone(), kill);
        let worker = Worker {
            #[cfg(feature = "fault-injection")]
            id,
            metrics,
            endpoints,
            totals,
            mine,
            _counters: counters,
            pending: None,
            serving: 0,
            index: None,
            drain_timeout: Duration::from_millis(settings.drain_timeout_ms),
        };
        (worker, plane)
    }

    /// `Prepare`: takes the mappings' shared slots and builds the bundle's table with the
    /// Supervisor's pure code, held until `Commit`.
    fn prepare(
        &mut self,
        generation: u64,
        bundle: Box<Bundle>,
        listeners: Vec<SocketAddr>,
        fds: Vec<OwnedFd>,
        slots: Vec<Slot>,
    ) -> FromWorker {
        let sockets = listeners
            .into_iter()
            .zip(fds)
            .map(|(addr, fd)| (addr, TcpListener::from(fd)))
            .collect();
        for s in slots {
            let id = MappingId {
                name: s.name,
                namespace: s.namespace,
                port: s.port,
                host: s.host,
            };
            self.endpoints.share_clients(id.clone(), s.index);
            if let (Some(total), Some(share)) = (self.totals.slot(s.index), self.mine.slot(s.index))
            {
                self.metrics.share_breaker(id, total, share);
            }
        }
        match crate::config::build_bundle(&bundle, Vec::new()) {
            #[cfg(feature = "fault-injection")]
            Ok(loaded)
                if crate::fault::on_prepare(
                    self.id,
                    loaded.table.mapping_ids().map(|m| m.name.as_str()),
                ) =>
            {
                FromWorker::failed(WorkerError::Injected)
            }
            Ok(mut loaded) => {
                loaded.table.set_generation(generation);
                self.pending = Some(Pending {
                    table: loaded.table,
                    bundle: Arc::from(bundle),
                    sockets,
                });
                FromWorker::Prepared
            }
            Err(problems) => {
                let lines = problems
                    .iter()
                    .filter(|p| p.is_error())
                    .map(ToString::to_string)
                    .collect();
                FromWorker::failed(WorkerError::Config(lines))
            }
        }
    }

    /// `Commit`: the plane serves the prepared config.
    fn commit(&mut self, plane: LocalPlane) -> (LocalPlane, FromWorker) {
        let Some(p) = self.pending.take() else {
            return (plane, FromWorker::failed(WorkerError::NothingPrepared));
        };
        let index = Arc::new(StatusIndex::new(&p.table));
        let (plane, result) = on_loop(plane, move |plane| commit(plane, p));
        let reply = match result {
            Ok(generation) => {
                self.serving = generation;
                self.index = Some(index);
                FromWorker::Committed {
                    generation,
                    keeps: true,
                }
            }
            Err(e) => FromWorker::failed(refused(e)),
        };
        (plane, reply)
    }

    /// `Status`: the generation served, the connections open in this worker, its endpoint sets
    /// and its counters per mapping.
    fn status(&self) -> FromWorker {
        let mappings = crate::admin::status::counters::from_metrics(&self.metrics);
        FromWorker::Status {
            generation: self.serving,
            active: mappings.iter().map(|m| m.active.max(0) as u64).sum(),
            endpoints: self.endpoints.report(),
            mappings,
            counts: true,
        }
    }
}

impl Worker {
    /// `Counts`: the status page's numbers placed by this worker's index when it is the one
    /// the Supervisor asks for (same generation, same fingerprint), else `Status` (by name).
    fn counts(&self, generation: u64, fingerprint: u64) -> FromWorker {
        match &self.index {
            Some(index)
                if index.generation == generation
                    && index.fingerprint == fingerprint
                    && self.serving == generation =>
            {
                FromWorker::Counts(Box::new(WorkerCounts {
                    generation,
                    fingerprint,
                    numbers: index.gather(&self.metrics, Some(&self.endpoints)),
                }))
            }
            _ => self.status(),
        }
    }
}

/// Runs the worker until the Supervisor tells it to stop (or goes away).
pub(crate) fn run() -> anyhow::Result<()> {
    // Every task of this process runs on one thread that also drives the reactor and the
    // coarse clock (`rt::local`); installed before anything spawns or registers a socket.
    rt::local::install()?;
    let control = std::io::stdin().as_fd().try_clone_to_owned()?;
    let mut channel = Channel::new(control);
    let hello = hello(&mut channel)?;
    // Every line this process logs from now on says `worker=N`, on whichever thread.
    crate::logwriter::tag_worker(hello.id);
    let (mut worker, mut plane) = Worker::start(hello);
    channel.send(&FromWorker::Ready, &[])?;
    loop {
        let msg = match channel.recv::<ToWorker>() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "the Supervisor is gone; draining");
                let timeout = worker.drain_timeout;
                on_loop(plane, move |p| drain(p, true, timeout));
                return Ok(());
            }
        };
        let reply = match msg {
            ToWorker::Hello { .. } => FromWorker::failed(WorkerError::AlreadyStarted),
            ToWorker::TicketKeys { keys } => match crate::state::tickets::install(keys) {
                Ok(()) => FromWorker::TicketKeysTaken,
                Err(e) => FromWorker::failed(WorkerError::TicketKeys(e)),
            },
            ToWorker::Prepare {
                generation,
                bundle,
                listeners,
                slots,
            } => {
                let fds = channel.take_fds(listeners.len())?;
                worker.prepare(generation, bundle, listeners, fds, slots)
            }
            ToWorker::Commit => {
                let reply;
                (plane, reply) = worker.commit(plane);
                reply
            }
            ToWorker::Abort => {
                worker.pending = None;
                FromWorker::Aborted
            }
            ToWorker::Metrics => FromWorker::Metrics {
                text: worker.metrics.render_openmetrics(),
            },
            ToWorker::Keep => {
                let mut body = Vec::new();
                super::kept_wire::encode_registry(&worker.metrics, &mut body);
                FromWorker::KeptFrame(body)
            }
            ToWorker::Status => worker.status(),
            ToWorker::Counts {
                generation,
                fingerprint,
            } => worker.counts(generation, fingerprint),
            ToWorker::StopAccepting => {
                plane = on_loop(plane, |mut p| async move {
                    p.stop().await;
                    (p, ())
                })
                .0;
                FromWorker::Stopped
            }
            ToWorker::Shutdown {
                graceful,
                drain_timeout_ms,
            } => {
                let timeout = Duration::from_millis(drain_timeout_ms);
                on_loop(plane, move |p| drain(p, graceful, timeout));
                let _ = channel.send(&FromWorker::Drained, &[]);
                return Ok(());
            }
        };
        channel.send_reply(&reply)?;
    }
}

/// What crosses the channel when this worker's plane refused a commit.
fn refused(e: ApplyError) -> WorkerError {
    match e {
        ApplyError::Bind(addr, e) => WorkerError::Listener {
            addr,
            cause: e.to_string(),
        },
        ApplyError::ShuttingDown => WorkerError::ShuttingDown,
        // A worker runs no workers of its own.
        ApplyError::Workers(e) => WorkerError::Other(e.to_string()),
    }
}

/// Runs one step of the plane as a task on the local runtime and waits for it here, then
/// gives the plane back: its deadlines (the drain timeout) are queued from the loop's own
/// thread, like every other task's, never from this control thread.
fn on_loop<T, F>(plane: LocalPlane, step: impl FnOnce(LocalPlane) -> F) -> (LocalPlane, T)
where
    F: std::future::Future<Output = (LocalPlane, T)> + Send + 'static,
    T: Send + 'static,
{
    rt::block_on(rt::spawn(step(plane)))
}

/// Serves a prepared config: the listeners its sockets were given for start, the others are
/// retargeted or stopped. The generation now served.
async fn commit(mut plane: LocalPlane, p: Pending) -> (LocalPlane, Result<u64, ApplyError>) {
    let plan = plane.plan_for(&p.table);
    let bound = match crate::actors::supervisor::given(&plan, p.sockets) {
        Ok(bound) => bound,
        Err(e) => return (plane, Err(e)),
    };
    let table = Arc::new(p.table);
    let generation = table.generation();
    let change = Change {
        table,
        bundle: p.bundle,
        plan,
        bound,
    };
    let result = plane.serve(change).await.map(|started| {
        tracing::debug!(generation, started = ?started, "config applied in this worker");
        generation
    });
    (plane, result)
}

/// Stops accepting, then drains like `tcpmap run` does.
async fn drain(mut plane: LocalPlane, graceful: bool, timeout: Duration) -> (LocalPlane, ()) {
    plane.stop().await;
    tracing::debug!(graceful, open = plane.open(), "shutting down");
    if plane.wait_drained(graceful, timeout).await {
        tracing::debug!("drained: every connection finished");
    }
    (plane, ())
}
