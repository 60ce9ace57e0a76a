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

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::channel;
use super::codec::{FromWorker, PoolError, Settings, Slot, ToWorker};
use super::link::Link;
use super::merge::{self, Retired};
use super::shm::{Counters, SLOTS};
use crate::config::Bundle;
use crate::route::MappingId;
use crate::rt::{self, Receiver, Sender};
use crate::state::ticket_keys::{TicketKeys, unix_now};
use crate::state::tickets;

/// How often the pool snapshots every worker's metrics (the most of its counter increments a
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
}

enum PoolMsg {
    /// Take every worker's metrics text now (the once-a-second snapshot: a worker killed
    /// later loses at most the last second of its counter increments).
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
        respond_to: Sender<Vec<WorkerStatus>>,
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
        self.ask(|respond_to| PoolMsg::Status { respond_to })
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
    /// Its last metrics text (retired when it dies, so counters never go backwards).
    last_metrics: String,
    /// Completes when the process has exited.
    exited: Receiver<()>,
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
                PoolMsg::Snapshot => self.snapshot().await,
                PoolMsg::Metrics { own, respond_to } => {
                    let _ = respond_to.send(self.metrics(own).await);
                }
                PoolMsg::Status { respond_to } => {
                    let _ = respond_to.send(self.status().await);
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

    /// Starts worker `id`'s process and says hello (no config yet).
    fn start(&mut self, id: u32) -> std::io::Result<()> {
        let (ours, theirs) = channel::pair()?;
        let mut cmd = Command::new(&self.config.exe);
        cmd.args(&self.config.args)
            .env("ASYNC_STD_THREAD_COUNT", "1")
            // Its own process group: a terminal's Ctrl-C reaches the Supervisor, which
            // drains the workers, instead of killing them.
            .stdin(Stdio::from(theirs.into_fd()))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn()?;
        let pid = child.id();
        let (exited_tx, exited) = rt::oneshot::<()>();
        let tx = self.tx.clone();
        std::thread::Builder::new()
            .name(format!("tcpmap-worker-{id}"))
            .spawn(move || {
                let status = match child.wait() {
                    Ok(s) => describe(s),
                    Err(e) => format!("unknown ({e})"),
                };
                drop(exited_tx);
                let _ = tx.send(PoolMsg::Exited { id, pid, status });
            })?;
        let link = Link::spawn(ours, id)?;
        self.workers.insert(
            id,
            Worker {
                pid,
                link,
                generation: 0,
                started: Instant::now(),
                last_metrics: String::new(),
                exited,
            },
        );
        tracing::debug!(worker = id, pid, "worker started");
        Ok(())
    }

    /// Sends `Hello` to a fresh worker and, when a config serves, brings it up to it.
    async fn hello(&mut self, id: u32) -> Result<(), PoolError> {
        let Some(w) = self.workers.get(&id) else {
            return Err(PoolError::Gone(id));
        };
        let fd = self
            .counters
            .fd()
            .try_clone_to_owned()
            .map_err(PoolError::Descriptor)?;
        let hello = ToWorker::Hello {
            id,
            settings: self.config.settings.clone(),
            tickets: Some(self.tickets.clone()),
        };
        PoolError::expect(id, w.link.call(hello, vec![fd]).await, |r| {
            *r == FromWorker::Ready
        })?;
        let Some(current) = &self.current else {
            return Ok(());
        };
        let prepare = self.prepare_msg(current.generation, &current.bundle, &current.slots);
        let generation = current.generation;
        let fds = self.socket_fds(id).map_err(PoolError::Descriptor)?;
        let Some(w) = self.workers.get(&id) else {
            return Err(PoolError::Gone(id));
        };
        PoolError::expect(id, w.link.call(prepare, fds).await, |r| {
            *r == FromWorker::Prepared
        })?;
        PoolError::expect(id, w.link.call(ToWorker::Commit, Vec::new()).await, |r| {
            matches!(r, FromWorker::Committed { .. })
        })?;
        if let Some(w) = self.workers.get_mut(&id) {
            w.generation = generation;
        }
        Ok(())
    }

    fn prepare_msg(&self, generation: u64, bundle: &Arc<Bundle>, slots: &[Slot]) -> ToWorker {
        ToWorker::Prepare {
            generation,
            bundle: Box::new((**bundle).clone()),
            listeners: self.sockets.keys().copied().collect(),
            slots: slots.to_vec(),
        }
    }

    /// Copies of the listening sockets for worker `id`, in address order: the shared ones,
    /// or with `TCPMAP_REUSEPORT=1` (a measurement knob, docs/architecture.md "Balance")
    /// worker `id`'s own `SO_REUSEPORT` socket of each address (worker 0 takes the shared one).
    fn socket_fds(&mut self, id: u32) -> std::io::Result<Vec<OwnedFd>> {
        let mut out = Vec::with_capacity(self.sockets.len());
        for (addr, shared) in &self.sockets {
            if id == 0 || !crate::net::socket::reuseport() {
                out.push(shared.as_fd().try_clone_to_owned()?);
                continue;
            }
            let own = match self.own.get(&(*addr, id)) {
                Some(s) => s,
                None => {
                    let s = crate::net::socket::bind(*addr)?.into_inner()?;
                    self.own.entry((*addr, id)).or_insert(s)
                }
            };
            out.push(own.as_fd().try_clone_to_owned()?);
        }
        self.own
            .retain(|(addr, _), _| self.sockets.contains_key(addr));
        Ok(out)
    }

    async fn apply(
        &mut self,
        generation: u64,
        bundle: Arc<Bundle>,
        mappings: Vec<MappingId>,
        new: Vec<(SocketAddr, TcpListener)>,
        stop: Vec<SocketAddr>,
    ) -> Result<(), PoolError> {
        if self.shutting_down {
            return Err(PoolError::ShuttingDown);
        }
        // The sockets of the new config: the kept ones and the new ones.
        let mut sockets = std::mem::take(&mut self.sockets);
        let mut removed = BTreeMap::new();
        for addr in &stop {
            if let Some(s) = sockets.remove(addr) {
                removed.insert(*addr, s);
            }
        }
        let added: Vec<SocketAddr> = new.iter().map(|(a, _)| *a).collect();
        sockets.extend(new);
        let slots = self.slots_for(&mappings);
        self.sockets = sockets;
        let result = self.prepare_all(generation, &bundle, &slots).await;
        if let Err(e) = result {
            // Put the old sockets back; the new ones close.
            for addr in &added {
                self.sockets.remove(addr);
            }
            self.sockets.extend(removed);
            return Err(e);
        }
        self.current = Some(Current {
            generation,
            bundle,
            slots,
        });
        let ids: Vec<u32> = self.workers.keys().copied().collect();
        let commits = ids.iter().filter_map(|id| {
            let link = self.workers.get(id)?.link.clone();
            Some(rt::spawn(async move {
                link.call(ToWorker::Commit, Vec::new()).await
            }))
        });
        let commits: Vec<_> = commits.collect();
        for (id, task) in ids.iter().zip(commits) {
            match task.await {
                Ok(FromWorker::Committed { generation }) => {
                    if let Some(w) = self.workers.get_mut(id) {
                        w.generation = generation;
                    }
                }
                // It died between prepare and commit: its replacement starts on this config.
                other => tracing::warn!(worker = id, reply = ?other, "worker did not commit"),
            }
        }
        // `removed` closes here: every worker has stopped those listeners.
        drop(removed);
        Ok(())
    }

    /// Asks every worker to prepare; on any failure, aborts the ones that did.
    async fn prepare_all(
        &mut self,
        generation: u64,
        bundle: &Arc<Bundle>,
        slots: &[Slot],
    ) -> Result<(), PoolError> {
        let mut tasks = Vec::new();
        let ids: Vec<u32> = self.workers.keys().copied().collect();
        for id in ids {
            let msg = self.prepare_msg(generation, bundle, slots);
            let fds = self.socket_fds(id).map_err(PoolError::Descriptor)?;
            let Some(w) = self.workers.get(&id) else {
                continue;
            };
            let link = w.link.clone();
            tasks.push((id, rt::spawn(async move { link.call(msg, fds).await })));
        }
        let mut failure = None;
        let mut prepared = Vec::new();
        for (id, task) in tasks {
            match PoolError::expect(id, task.await, |r| *r == FromWorker::Prepared) {
                Ok(()) => prepared.push(id),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        let Some(failure) = failure else {
            return Ok(());
        };
        for id in prepared {
            if let Some(w) = self.workers.get(&id) {
                let _ = w.link.call(ToWorker::Abort, Vec::new()).await;
            }
        }
        tracing::warn!(%failure, "a worker could not apply the config; every worker keeps the old one");
        Err(failure)
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
        self.schedule_rotation();
    }

    /// The shared-counter slot of each mapping (new mappings get the next free one).
    fn slots_for(&mut self, mappings: &[MappingId]) -> Vec<Slot> {
        let mut out = Vec::new();
        for id in mappings {
            let next = self.slots.len() as u32 + 1;
            let index = match self.slots.get(id) {
                Some(i) => *i,
                None if (next as usize) < SLOTS => {
                    self.slots.insert(id.clone(), next);
                    next
                }
                None => {
                    tracing::warn!(mapping = %id.name, "no shared circuit-breaker slot left; counted per worker");
                    continue;
                }
            };
            out.push(Slot {
                name: id.name.clone(),
                namespace: id.namespace.clone(),
                port: id.port,
                host: id.host.clone(),
                index,
            });
        }
        out
    }

    /// Stores every live worker's metrics text as its last (what is kept when it dies).
    async fn snapshot(&mut self) {
        for w in self.workers.values_mut() {
            if let Ok(FromWorker::Metrics { text }) =
                w.link.call(ToWorker::Metrics, Vec::new()).await
            {
                w.last_metrics = text;
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
                    w.last_metrics = text.clone();
                    text
                }
                // Gone or slow: show what it last reported (its replacement starts at zero).
                _ => w.last_metrics.clone(),
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

    async fn status(&self) -> Vec<WorkerStatus> {
        let mut out = Vec::new();
        for (id, w) in &self.workers {
            let active = match w.link.call(ToWorker::Status, Vec::new()).await {
                Ok(FromWorker::Status { active, .. }) => active,
                _ => 0,
            };
            out.push(WorkerStatus {
                id: *id,
                pid: w.pid,
                generation: w.generation,
                active_connections: active,
            });
        }
        out
    }

    async fn exited(&mut self, id: u32, pid: u32, status: String) {
        // A stale report (the slot already holds a newer process) changes nothing.
        if self.workers.get(&id).is_none_or(|w| w.pid != pid) {
            return;
        }
        let Some(dead) = self.workers.remove(&id) else {
            return;
        };
        if self.shutting_down {
            tracing::info!(worker = id, pid, %status, "worker exited");
            return;
        }
        self.retired.add(&dead.last_metrics);
        // Its connections are gone: so are their slots under the limits.
        self.counters.release_worker(id);
        let quick = dead.started.elapsed() < Duration::from_secs(5);
        let streak = self.quick_deaths.entry(id).or_insert(0);
        *streak = if quick { *streak + 1 } else { 0 };
        let quick_deaths = *streak;
        let backoff = match quick_deaths {
            0 | 1 => Duration::ZERO,
            n => Duration::from_millis(100u64 << (n - 2).min(7)).min(Duration::from_secs(10)),
        };
        tracing::error!(
            worker = id,
            pid,
            %status,
            restart_in_ms = backoff.as_millis() as u64,
            "worker died; replacing it (only its own connections are lost)"
        );
        self.restarts += 1;
        if backoff.is_zero() {
            self.respawn(id).await;
        } else {
            let tx = self.tx.clone();
            rt::detach(async move {
                rt::sleep(backoff).await;
                let _ = tx.send_async(PoolMsg::Respawn { id }).await;
            });
        }
    }

    async fn respawn(&mut self, id: u32) {
        if self.shutting_down {
            return;
        }
        if let Err(e) = self.start(id) {
            tracing::error!(worker = id, error = %e, "cannot start a worker; retrying");
            self.retry_later(id);
            return;
        }
        if let Err(e) = self.hello(id).await {
            tracing::error!(worker = id, error = %e, "new worker failed to take the config");
            // Its exit (if it died) brings another; if it hangs, kill it so it does.
            if let Some(w) = self.workers.get(&id) {
                let _ = rustix::process::kill_process(
                    rustix::process::Pid::from_raw(w.pid as i32)
                        .unwrap_or(rustix::process::Pid::INIT),
                    rustix::process::Signal::KILL,
                );
            }
            return;
        }
        tracing::info!(
            worker = id,
            pid = self.workers.get(&id).map(|w| w.pid),
            "worker replaced"
        );
    }

    fn retry_later(&self, id: u32) {
        let tx = self.tx.clone();
        rt::detach(async move {
            rt::sleep(Duration::from_secs(1)).await;
            let _ = tx.send_async(PoolMsg::Respawn { id }).await;
        });
    }

    /// Drops the pool's socket copies and has every worker close its listeners.
    async fn stop_accepting(&mut self) {
        self.shutting_down = true;
        self.sockets.clear();
        self.own.clear();
        let mut tasks = Vec::new();
        for (id, w) in &self.workers {
            let link = w.link.clone();
            tasks.push((
                *id,
                rt::spawn(async move { link.call(ToWorker::StopAccepting, Vec::new()).await }),
            ));
        }
        for (id, task) in tasks {
            if let Err(e) = task.await {
                tracing::warn!(worker = id, error = %e, "worker did not stop accepting");
            }
        }
    }

    async fn shutdown(&mut self, graceful: bool, drain_timeout: Duration) {
        if !self.shutting_down {
            self.stop_accepting().await;
        }
        let msg = ToWorker::Shutdown {
            graceful,
            drain_timeout_ms: drain_timeout.as_millis() as u64,
        };
        let mut tasks = Vec::new();
        for (id, w) in &self.workers {
            let link = w.link.clone();
            let msg = msg.clone();
            tasks.push((
                *id,
                rt::spawn(async move { link.call(msg, Vec::new()).await }),
            ));
        }
        for (id, task) in tasks {
            if let Err(e) = task.await {
                tracing::warn!(worker = id, error = %e, "worker did not report its drain");
            }
        }
        // Wait for the processes themselves (a few seconds beyond the drain at most).
        for (id, w) in std::mem::take(&mut self.workers) {
            let gone = async { while w.exited.recv_async().await.is_ok() {} };
            if rt::timeout(Duration::from_secs(5), gone).await.is_none() {
                tracing::warn!(
                    worker = id,
                    pid = w.pid,
                    "worker still running after its drain"
                );
            }
        }
        self.sockets.clear();
    }
}

/// An exit status in words: `exit code 3`, `killed by signal 9`.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}
