//! The worker pool: the Supervisor's data plane when tcpmap runs worker processes.
//!
//! One actor owns the listening sockets, the shared counters, the last config every worker
//! serves and one [`Link`] per worker. Its messages come from the Supervisor (`Apply`,
//! `Shutdown`), the admin endpoint (`Metrics`, `Status`) and the monitor thread of each
//! worker process (`Exited`). One message at a time, so a replacement worker can never start
//! on a config that a reload is replacing.
//!
//! Apply is two-phase: every worker builds the config from the Supervisor's bundle and holds
//! it (`Prepare`); only when all have, each is told to serve it (`Commit`). One failure
//! aborts the others and the reload fails whole.
//!
//! The pool also owns the session-ticket keys the workers share: every worker gets them in
//! `Hello` (a replacement too) and again after each rotation (`RotateTickets`, when the current
//! key is 6 hours old), so a ticket issued by one worker resumes on any other.
//!
//! This file holds the handle, the actor's state and message loop, the ticket rotation and
//! the metrics and status it gathers; `apply.rs` the two-phase apply, `lifecycle.rs` the
//! worker processes' start, replacement and shutdown.

mod apply;
mod lifecycle;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::codec::{FromWorker, PoolError, Settings, Slot, ToWorker};
use super::link::Link;
use super::merge::{self, Retired};
use super::shm::Counters;
use super::status_wire::WorkerCounts;
use crate::admin::status::MappingTotals;
use crate::admin::status::index::{Dynamic, StatusIndex};
use crate::config::Bundle;
use crate::route::MappingId;
use crate::rt::{self, Receiver, Sender};
use crate::state::ticket_keys::{TicketKeys, unix_now};
use crate::state::tickets;

/// How often the pool snapshots every worker's counters (the most of its counter increments a
/// SIGKILLed worker can lose; docs/operations.md, "What a worker crash costs").
const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);

/// How the pool starts its workers.
#[derive(Debug, Clone)]
pub(crate) struct PoolConfig {
    /// Worker processes to run.
    pub(crate) workers: usize,
    /// The binary to start them from (this one, found at startup).
    pub(crate) exe: PathBuf,
    /// Arguments before the worker's own (`worker --log-format text`).
    pub(crate) args: Vec<String>,
    /// What each worker is told in `Hello`.
    pub(crate) settings: Settings,
}

/// One worker as `/config` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct WorkerStatus {
    pub(crate) id: u32,
    pub(crate) pid: u32,
    pub(crate) generation: u64,
    pub(crate) active_connections: u64,
    /// Its endpoint sets (the status page merges them; not shown in `/config`).
    #[serde(skip)]
    pub(crate) endpoints: Vec<crate::state::endpoints::EndpointSet>,
    /// Its counters per mapping, sorted (the status page sums them; not shown in `/config`).
    #[serde(skip)]
    pub(crate) mappings: Vec<MappingTotals>,
    /// Its counters and endpoints by place in the index asked for (then `endpoints` and
    /// `mappings` are empty; not shown in `/config`).
    #[serde(skip)]
    pub(crate) counts: Option<Arc<Dynamic>>,
}

/// What the status page reads of the pool: every live worker, and the counters the workers
/// that died left behind (so the totals never go backwards when a worker is replaced).
#[derive(Debug, Clone, Default)]
pub(crate) struct PoolStatus {
    pub(crate) workers: Vec<WorkerStatus>,
    /// Sorted as the workers' `mappings`, with no open connections.
    pub(crate) retired: Arc<Vec<MappingTotals>>,
}

enum PoolMsg {
    /// Take every worker's counters now (the once-a-second snapshot: a worker killed later
    /// loses at most the last second of its counter increments).
    Snapshot,
    Apply {
        generation: u64,
        bundle: Arc<Bundle>,
        mappings: Vec<MappingId>,
        new: Vec<(SocketAddr, TcpListener)>,
        stop: Vec<SocketAddr>,
        respond_to: Sender<Result<(), PoolError>>,
    },
    Metrics {
        own: String,
        respond_to: Sender<String>,
    },
    Status {
        index: Option<Arc<StatusIndex>>,
        respond_to: Sender<PoolStatus>,
    },
    Exited {
        id: u32,
        pid: u32,
        status: String,
    },
    Respawn {
        id: u32,
    },
    /// The ticket keys' rotation time has come.
    RotateTickets,
    StopAccepting {
        respond_to: Sender<()>,
    },
    Shutdown {
        graceful: bool,
        drain_timeout: Duration,
        respond_to: Sender<()>,
    },
}

/// The Supervisor's handle to the pool.
#[derive(Clone)]
pub(crate) struct PoolHandle {
    tx: Sender<PoolMsg>,
}

impl std::fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolHandle").finish_non_exhaustive()
    }
}

impl PoolHandle {
    /// Creates the shared counters and starts the workers (they serve nothing until the first
    /// apply).
    pub(crate) fn spawn(config: PoolConfig) -> std::io::Result<PoolHandle> {
        let counters = Counters::create(config.workers)?;
        // The process's keys: after a hot upgrade, the ones the old binary handed over.
        let tickets = tickets::current().map_err(std::io::Error::other)?;
        let (tx, rx) = rt::mailbox(64);
        let mut pool = Pool {
            config,
            counters,
            tx: tx.clone(),
            rx,
            workers: BTreeMap::new(),
            sockets: BTreeMap::new(),
            own: BTreeMap::new(),
            current: None,
            slots: BTreeMap::new(),
            restarts: 0,
            retired: Retired::default(),
            retired_counts: Arc::default(),
            shutting_down: false,
            quick_deaths: BTreeMap::new(),
            tickets,
        };
        for id in 0..pool.config.workers as u32 {
            pool.start(id)?;
        }
        rt::detach(pool.run());
        let ticks = tx.downgrade();
        rt::detach(async move {
            loop {
                rt::sleep(SNAPSHOT_EVERY).await;
                let Some(tx) = ticks.upgrade() else { break };
                // A full mailbox skips a tick: the pool is busy and snapshots at the next.
                if tx.try_send(PoolMsg::Snapshot).is_err() && tx.is_disconnected() {
                    break;
                }
            }
        });
        Ok(PoolHandle { tx })
    }

    async fn ask<T>(&self, msg: impl FnOnce(Sender<T>) -> PoolMsg) -> Option<T> {
        let (respond_to, rx) = rt::oneshot();
        self.tx.send_async(msg(respond_to)).await.ok()?;
        rx.recv_async().await.ok()
    }

    /// Makes every worker serve `bundle` (see the module docs); `new` are the sockets this
    /// config adds, `stop` the addresses it removes.
    pub(crate) async fn apply(
        &self,
        generation: u64,
        bundle: Arc<Bundle>,
        mappings: Vec<MappingId>,
        new: Vec<(SocketAddr, TcpListener)>,
        stop: Vec<SocketAddr>,
    ) -> Result<(), PoolError> {
        self.ask(|respond_to| PoolMsg::Apply {
            generation,
            bundle,
            mappings,
            new,
            stop,
            respond_to,
        })
        .await
        .unwrap_or(Err(PoolError::ShuttingDown))
    }

    /// `/metrics`: `own` (the Supervisor's OpenMetrics text) plus every worker's.
    pub(crate) async fn metrics(&self, own: String) -> String {
        let fallback = own.clone();
        self.ask(|respond_to| PoolMsg::Metrics { own, respond_to })
            .await
            .unwrap_or(fallback)
    }

    /// The workers as `/config` lists them.
    pub(crate) async fn status(&self) -> Vec<WorkerStatus> {
        self.status_page(None).await.workers
    }

    /// The workers with their endpoint sets and counters (by place in `index` when given and
    /// the worker serves its table, else by name), and the dead workers' counters.
    pub(crate) async fn status_page(&self, index: Option<Arc<StatusIndex>>) -> PoolStatus {
        self.ask(|respond_to| PoolMsg::Status { index, respond_to })
            .await
            .unwrap_or_default()
    }

    /// Makes every worker close its listeners; returns once all did (the ports refuse).
    pub(crate) async fn stop_accepting(&self) {
        let _ = self
            .ask(|respond_to| PoolMsg::StopAccepting { respond_to })
            .await;
    }

    /// Drains every worker and returns once all have exited.
    pub(crate) async fn shutdown(&self, graceful: bool, drain_timeout: Duration) {
        let _ = self
            .ask(|respond_to| PoolMsg::Shutdown {
                graceful,
                drain_timeout,
                respond_to,
            })
            .await;
    }
}

/// The config every worker serves, kept to bring replacements up to it.
struct Current {
    generation: u64,
    bundle: Arc<Bundle>,
    slots: Vec<Slot>,
}

/// A running worker.
struct Worker {
    pid: u32,
    link: Link,
    generation: u64,
    started: Instant,
    /// Its last counters (retired when it dies, so counters never go backwards).
    last_metrics: LastMetrics,
    /// Its counters of its last `Status` or `Counts` reply (retired with `last_metrics`, the
    /// newer of each).
    last_counts: LastCounts,
    /// Completes when the process has exited.
    exited: Receiver<()>,
    /// It said it reads `ToWorker::Counts` (in a `Status` reply; a worker is asked by name
    /// until then).
    counts: bool,
    /// It said it reads `ToWorker::Keep` (in its `Committed` reply; the snapshot asks an older
    /// binary's worker for its metrics text).
    keeps: bool,
}

/// A worker's counters as the pool last took them.
#[derive(Debug)]
enum LastMetrics {
    /// Its metrics text (`/metrics` asked for it, or a worker that does not read `Keep`).
    Text(String),
    /// By place (the snapshot's `Keep`).
    Kept(Box<crate::metrics::Kept>),
}

impl Default for LastMetrics {
    fn default() -> Self {
        LastMetrics::Text(String::new())
    }
}

impl LastMetrics {
    /// As OpenMetrics text (what `merge::Retired` and the status page's counters read).
    fn text(&self) -> String {
        match self {
            LastMetrics::Text(t) => t.clone(),
            LastMetrics::Kept(k) => k.text(),
        }
    }
}

struct Pool {
    config: PoolConfig,
    counters: Counters,
    tx: Sender<PoolMsg>,
    rx: Receiver<PoolMsg>,
    workers: BTreeMap<u32, Worker>,
    sockets: BTreeMap<SocketAddr, TcpListener>,
    /// With `TCPMAP_REUSEPORT=1`: each worker's own socket per address (worker ≥ 1).
    own: BTreeMap<(SocketAddr, u32), TcpListener>,
    current: Option<Current>,
    /// Each mapping's slot in the shared counters, stable across reloads.
    slots: BTreeMap<MappingId, u32>,
    restarts: u64,
    retired: Retired,
    /// The status page's counters of the workers that died (`counters::sum` of each one's last).
    retired_counts: Arc<Vec<MappingTotals>>,
    shutting_down: bool,
    /// Per worker slot: deaths in a row soon after a start (the backoff's exponent).
    quick_deaths: BTreeMap<u32, u32>,
    /// The session-ticket keys every worker has (changed only by `rotate_tickets`).
    tickets: TicketKeys,
}

impl Pool {
    async fn run(mut self) {
        self.schedule_rotation();
        let ids: Vec<u32> = self.workers.keys().copied().collect();
        for id in ids {
            if let Err(e) = self.hello(id).await {
                tracing::error!(worker = id, error = %e, "worker did not start");
            }
        }
        while let Ok(msg) = self.rx.recv_async().await {
            match msg {
                PoolMsg::Apply {
                    generation,
                    bundle,
                    mappings,
                    new,
                    stop,
                    respond_to,
                } => {
                    let r = self.apply(generation, bundle, mappings, new, stop).await;
                    let _ = respond_to.send(r);
                }
                PoolMsg::Snapshot => {
                    // A key file read again (SIGHUP, file watch) reaches the workers here.
                    self.share_tickets().await;
                    self.snapshot().await
                }
                PoolMsg::Metrics { own, respond_to } => {
                    let _ = respond_to.send(self.metrics(own).await);
                }
                PoolMsg::Status { index, respond_to } => {
                    let _ = respond_to.send(self.status(index).await);
                }
                PoolMsg::Exited { id, pid, status } => self.exited(id, pid, status).await,
                PoolMsg::Respawn { id } => self.respawn(id).await,
                PoolMsg::RotateTickets => self.rotate_tickets().await,
                PoolMsg::StopAccepting { respond_to } => {
                    self.stop_accepting().await;
                    let _ = respond_to.send(());
                }
                PoolMsg::Shutdown {
                    graceful,
                    drain_timeout,
                    respond_to,
                } => {
                    self.shutdown(graceful, drain_timeout).await;
                    let _ = respond_to.send(());
                }
            }
        }
    }

    /// Sends `RotateTickets` when the current ticket key is due (at least a second from now, so
    /// a clock set back cannot make it spin).
    fn schedule_rotation(&self) {
        let wait = Duration::from_secs(self.tickets.secs_until_due(unix_now()).max(1));
        let tx = self.tx.clone();
        rt::detach(async move {
            rt::sleep(wait).await;
            let _ = tx.send_async(PoolMsg::RotateTickets).await;
        });
    }

    /// Rotates the ticket keys (when due by the wall clock) and gives every worker the new
    /// set; a worker that does not take it keeps the old keys (its tickets resume only on
    /// itself until it is replaced).
    async fn rotate_tickets(&mut self) {
        self.share_tickets().await;
        self.schedule_rotation();
    }

    /// Gives every worker the process's keys when they are not the ones the workers have
    /// (rotated here, or read again from `--session-ticket-keys`).
    async fn share_tickets(&mut self) {
        match tickets::current() {
            Ok(keys) if keys != self.tickets => {
                self.tickets = keys;
                let mut tasks = Vec::new();
                for (id, w) in &self.workers {
                    let link = w.link.clone();
                    let msg = ToWorker::TicketKeys {
                        keys: self.tickets.clone(),
                    };
                    tasks.push((
                        *id,
                        rt::spawn(async move { link.call(msg, Vec::new()).await }),
                    ));
                }
                for (id, task) in tasks {
                    if let Err(e) =
                        PoolError::expect(id, task.await, |r| *r == FromWorker::TicketKeysTaken)
                    {
                        tracing::warn!(worker = id, error = %e, "worker did not take the rotated session-ticket keys");
                    }
                }
                tracing::info!(workers = self.workers.len(), "session-ticket keys rotated");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot rotate the session-ticket keys"),
        }
    }

    /// Stores every live worker's counters as its last (what is kept when it dies): by place
    /// (`Keep`, tens of microseconds for 1,000 mappings; docs/benchmarks.md), or as text from a
    /// worker that does not read `Keep`.
    async fn snapshot(&mut self) {
        for w in self.workers.values_mut() {
            let ask = if w.keeps {
                ToWorker::Keep
            } else {
                ToWorker::Metrics
            };
            match w.link.call(ask, Vec::new()).await {
                Ok(FromWorker::Kept(k)) => w.last_metrics = LastMetrics::Kept(k),
                Ok(FromWorker::Metrics { text }) => w.last_metrics = LastMetrics::Text(text),
                _ => {}
            }
        }
    }

    async fn metrics(&mut self, own: String) -> String {
        let mut texts = Vec::new();
        let ids: Vec<u32> = self.workers.keys().copied().collect();
        for id in ids {
            let Some(w) = self.workers.get_mut(&id) else {
                continue;
            };
            let text = match w.link.call(ToWorker::Metrics, Vec::new()).await {
                Ok(FromWorker::Metrics { text }) => {
                    w.last_metrics = LastMetrics::Text(text.clone());
                    text
                }
                // Gone or slow: show what it last reported (its replacement starts at zero).
                _ => w.last_metrics.text(),
            };
            texts.push(text);
        }
        let extra = format!(
            "# HELP tcpmap_workers Worker processes running now.\n\
             # TYPE tcpmap_workers gauge\n\
             tcpmap_workers {}\n\
             # HELP tcpmap_worker_restarts Worker processes replaced after they died.\n\
             # TYPE tcpmap_worker_restarts counter\n\
             tcpmap_worker_restarts_total {}\n",
            self.workers.len(),
            self.restarts
        );
        merge::merge(&own, &texts, &self.retired, &extra)
    }

    /// Asks every worker at once for its status (typed counters, not its metrics text: the
    /// status page is cheap to build; docs/benchmarks.md), by place in `index` when given. A
    /// worker that does not answer shows no connections and the counters it last reported.
    async fn status(&mut self, index: Option<Arc<StatusIndex>>) -> PoolStatus {
        let calls: Vec<_> = self
            .workers
            .iter()
            .map(|(id, w)| {
                let ask = match &index {
                    Some(i) if w.counts => ToWorker::Counts {
                        generation: i.generation,
                        fingerprint: i.fingerprint,
                    },
                    _ => ToWorker::Status,
                };
                let link = w.link.clone();
                let call = rt::spawn(async move { link.call(ask, Vec::new()).await });
                (*id, call)
            })
            .collect();
        let mut workers = Vec::with_capacity(calls.len());
        for (id, call) in calls {
            let reply = call.await;
            let Some(w) = self.workers.get_mut(&id) else {
                continue;
            };
            let mut status = WorkerStatus {
                id,
                pid: w.pid,
                generation: w.generation,
                active_connections: 0,
                endpoints: Vec::new(),
                mappings: Vec::new(),
                counts: None,
            };
            match (reply, &index) {
                (Ok(FromWorker::Counts(c)), Some(index)) if fits(&c, index) => {
                    let numbers = Arc::new(c.numbers);
                    status.active_connections = numbers.active();
                    w.last_counts = LastCounts::Placed(index.clone(), numbers.clone());
                    status.counts = Some(numbers);
                }
                (
                    Ok(FromWorker::Status {
                        active,
                        endpoints,
                        mappings,
                        counts,
                        ..
                    }),
                    _,
                ) => {
                    let asked_counts = std::mem::replace(&mut w.counts, counts);
                    if let (Some(index), true) = (&index, asked_counts) {
                        // Another generation (a reload under way) or another binary's index.
                        tracing::debug!(
                            worker = id,
                            serves = w.generation,
                            asked = index.generation,
                            "worker answered the status page by name"
                        );
                    }
                    w.last_counts = LastCounts::Named(mappings.clone());
                    status.active_connections = active;
                    status.endpoints = endpoints;
                    status.mappings = mappings;
                }
                _ => match (&w.last_counts, &index) {
                    (LastCounts::Placed(i, numbers), Some(index)) if Arc::ptr_eq(i, index) => {
                        status.counts = Some(numbers.clone());
                    }
                    (last, _) => status.mappings = last.named(),
                },
            }
            workers.push(status);
        }
        PoolStatus {
            workers,
            retired: self.retired_counts.clone(),
        }
    }
}

/// Whether worker counts `c` are placed by `index` (its generation, its fingerprint, its shape).
pub(crate) fn fits(c: &WorkerCounts, index: &StatusIndex) -> bool {
    c.generation == index.generation
        && c.fingerprint == index.fingerprint
        && c.numbers.counts.len() == index.mappings.len()
        && c.numbers.ends.len() == index.sets.len()
}

/// A worker's counters as its last status reply gave them.
#[derive(Debug, Clone)]
enum LastCounts {
    /// By name (a `Status` reply; empty before the first).
    Named(Vec<MappingTotals>),
    /// By place in an index (a `Counts` reply).
    Placed(Arc<StatusIndex>, Arc<Dynamic>),
}

impl LastCounts {
    /// The counters by name, sorted (open connections included).
    fn named(&self) -> Vec<MappingTotals> {
        match self {
            LastCounts::Named(m) => m.clone(),
            LastCounts::Placed(index, numbers) => numbers.named(index).0,
        }
    }
}
