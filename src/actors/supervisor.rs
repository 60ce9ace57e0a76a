//! Supervisor: owns the active route table and the ListenerActors.
//!
//! Messages: `Apply(table)` and `Rejected(errors)` from the ConfigActor (a reload: applied
//! whole or not at all), `Shutdown` from the handle. It is the only writer of
//! the [`Status`] snapshot (table, generation, readiness, last reload) that the admin
//! endpoint and the handle read. Apply is one step (docs/operations.md "Reload semantics"): bind every new
//! listener first — one failure closes those just bound and rejects the reload — then
//! retarget kept listeners, start the new ones, stop the removed ones. Open connections keep
//! the generation they started with.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::listener::ListenerHandle;
use super::{Generation, ReloadResult, Shared, Snapshot};
use crate::config::Bundle;
use crate::net::socket;
use crate::route::{RouteTable, diff::diff};
use crate::rt::{self, DrainToken, DrainWait, Receiver, Sender, Trigger};
use crate::workers::pool::PoolHandle;

/// What a successful apply changed.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    /// The new generation number.
    pub generation: u64,
    /// Listeners bound by this apply.
    pub started: Vec<SocketAddr>,
    /// Listeners that stopped accepting.
    pub stopped: Vec<SocketAddr>,
    /// Listeners that kept their socket and took the new routes.
    pub retargeted: Vec<SocketAddr>,
}

/// Why an apply was rejected (nothing changed).
#[derive(Debug)]
pub(crate) enum ApplyError {
    Bind(SocketAddr, std::io::Error),
    /// A worker process could not apply the config (every worker keeps the old one).
    Workers(crate::workers::codec::PoolError),
    ShuttingDown,
}

/// What a worker process's Supervisor is given instead of binding: the listening sockets
/// (the pool's Supervisor bound them) and the generation number the pool's Supervisor gave
/// the config.
#[derive(Debug)]
pub(crate) struct Given {
    pub(crate) generation: u64,
    pub(crate) sockets: HashMap<SocketAddr, TcpListener>,
}

/// Where the Supervisor publishes its [`Snapshot`]; everyone else only reads it.
#[derive(Debug, Default)]
pub(crate) struct Status {
    current: Mutex<Arc<Snapshot>>,
}

impl Status {
    /// The latest snapshot.
    pub(crate) fn get(&self) -> Arc<Snapshot> {
        // A poisoned lock only means a panic elsewhere; the value is a plain Arc.
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the snapshot (private to this module: the Supervisor is the only writer).
    fn publish(&self, snapshot: Snapshot) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(snapshot);
    }
}

pub(crate) enum SupervisorMsg {
    Apply {
        table: RouteTable,
        warnings: Vec<String>,
        /// What the table was built from (for worker processes).
        bundle: Option<Arc<Bundle>>,
        /// In a worker: the sockets and generation to use.
        given: Option<Given>,
        respond_to: Sender<Result<ApplyReport, ApplyError>>,
    },
    Rejected {
        errors: Vec<String>,
        warnings: Vec<String>,
        respond_to: Sender<()>,
    },
    Shutdown {
        graceful: bool,
        drain_timeout: Duration,
        respond_to: Sender<()>,
    },
    /// Stop every listener (the ports refuse), keep the connections; a worker's first step
    /// of a drain.
    StopAccepting { respond_to: Sender<()> },
    /// Copies of the listening sockets, for a hot upgrade.
    Handover {
        respond_to: Sender<std::io::Result<Vec<(SocketAddr, TcpListener)>>>,
    },
}

/// The only way to talk to the Supervisor.
#[derive(Clone)]
pub(crate) struct SupervisorHandle {
    tx: Sender<SupervisorMsg>,
}

impl SupervisorHandle {
    /// Spawns the Supervisor with an empty table. With a `pool`, the listeners run in worker
    /// processes (`crate::workers`) instead of here.
    pub(crate) fn spawn(
        shared: Arc<Shared>,
        status: Arc<Status>,
        kill: Trigger,
        pool: Option<PoolHandle>,
        inherited: HashMap<SocketAddr, TcpListener>,
    ) -> Self {
        let (tx, rx) = rt::mailbox(16);
        let (token, drain) = rt::drain_pair();
        let actor = Supervisor {
            rx,
            shared,
            status,
            table: Arc::new(RouteTable::default()),
            listeners: BTreeMap::new(),
            token: Some(token),
            drain,
            kill: Some(kill),
            pool,
            inherited,
            handover: BTreeMap::new(),
        };
        rt::detach(actor.run());
        SupervisorHandle { tx }
    }

    /// Applies a validated table (see the module docs); `warnings` are the config's, shown
    /// with the reload's outcome.
    pub(crate) async fn apply(
        &self,
        table: RouteTable,
        warnings: Vec<String>,
        bundle: Option<Arc<Bundle>>,
    ) -> Result<Result<ApplyReport, ApplyError>, crate::Error> {
        self.send_apply(table, warnings, bundle, None).await
    }

    /// In a worker process: applies a table on the sockets and generation the pool's
    /// Supervisor chose.
    pub(crate) async fn apply_given(
        &self,
        table: RouteTable,
        given: Given,
    ) -> Result<Result<ApplyReport, ApplyError>, crate::Error> {
        self.send_apply(table, Vec::new(), None, Some(given)).await
    }

    async fn send_apply(
        &self,
        table: RouteTable,
        warnings: Vec<String>,
        bundle: Option<Arc<Bundle>>,
        given: Option<Given>,
    ) -> Result<Result<ApplyReport, ApplyError>, crate::Error> {
        let (respond_to, rx) = rt::oneshot();
        self.tx
            .send_async(SupervisorMsg::Apply {
                table,
                warnings,
                bundle,
                given,
                respond_to,
            })
            .await
            .map_err(|_| crate::Error::ActorGone)?;
        rx.recv_async().await.map_err(|_| crate::Error::ActorGone)
    }

    /// Records a reload that failed validation (nothing changes but the last reload's result).
    pub(crate) async fn rejected(
        &self,
        errors: Vec<String>,
        warnings: Vec<String>,
    ) -> Result<(), crate::Error> {
        let (respond_to, rx) = rt::oneshot();
        self.tx
            .send_async(SupervisorMsg::Rejected {
                errors,
                warnings,
                respond_to,
            })
            .await
            .map_err(|_| crate::Error::ActorGone)?;
        rx.recv_async().await.map_err(|_| crate::Error::ActorGone)
    }

    /// Stops every listener (the ports refuse); open connections run on.
    pub(crate) async fn stop_accepting(&self) -> Result<(), crate::Error> {
        let (respond_to, rx) = rt::oneshot();
        self.tx
            .send_async(SupervisorMsg::StopAccepting { respond_to })
            .await
            .map_err(|_| crate::Error::ActorGone)?;
        rx.recv_async().await.map_err(|_| crate::Error::ActorGone)
    }

    /// Copies of every listening socket of the active config (for a hot upgrade's new binary).
    pub(crate) async fn handover(&self) -> Result<Vec<(SocketAddr, TcpListener)>, crate::Error> {
        let (respond_to, rx) = rt::oneshot();
        self.tx
            .send_async(SupervisorMsg::Handover { respond_to })
            .await
            .map_err(|_| crate::Error::ActorGone)?;
        Ok(rx
            .recv_async()
            .await
            .map_err(|_| crate::Error::ActorGone)??)
    }

    /// Stops accepting, drains (graceful) or closes everything, and returns when done.
    pub(crate) async fn shutdown(
        &self,
        graceful: bool,
        drain_timeout: Duration,
    ) -> Result<(), crate::Error> {
        let (respond_to, rx) = rt::oneshot();
        self.tx
            .send_async(SupervisorMsg::Shutdown {
                graceful,
                drain_timeout,
                respond_to,
            })
            .await
            .map_err(|_| crate::Error::ActorGone)?;
        rx.recv_async().await.map_err(|_| crate::Error::ActorGone)
    }
}

struct Supervisor {
    rx: Receiver<SupervisorMsg>,
    shared: Arc<Shared>,
    status: Arc<Status>,
    table: Arc<RouteTable>,
    listeners: BTreeMap<SocketAddr, ListenerHandle>,
    /// Source of drain tokens for new listeners; dropped at shutdown.
    token: Option<DrainToken>,
    drain: DrainWait,
    /// Fired when the drain timeout passes.
    kill: Option<Trigger>,
    /// The worker processes that serve the listeners, when tcpmap runs them.
    pool: Option<PoolHandle>,
    /// Listening sockets a hot upgrade handed over, taken instead of binding their address.
    inherited: HashMap<SocketAddr, TcpListener>,
    /// A copy of every listening socket of the active table, for a hot upgrade to hand over
    /// (dropped at shutdown before the listeners stop, so the ports then refuse).
    handover: BTreeMap<SocketAddr, TcpListener>,
}

impl Supervisor {
    async fn run(mut self) {
        while let Ok(msg) = self.rx.recv_async().await {
            match msg {
                SupervisorMsg::Apply {
                    table,
                    warnings,
                    bundle,
                    given,
                    respond_to,
                } => {
                    let result = self.apply(table, bundle, given).await;
                    let outcome = match &result {
                        Ok(report) => {
                            ReloadResult::now(true, report.generation, Vec::new(), warnings)
                        }
                        Err(ApplyError::Bind(addr, e)) => ReloadResult::now(
                            false,
                            self.generation(),
                            vec![format!("cannot bind {addr}: {e}")],
                            warnings,
                        ),
                        Err(ApplyError::Workers(e)) => ReloadResult::now(
                            false,
                            self.generation(),
                            vec![e.to_string()],
                            warnings,
                        ),
                        Err(ApplyError::ShuttingDown) => ReloadResult::now(
                            false,
                            self.generation(),
                            vec!["shutting down".to_string()],
                            warnings,
                        ),
                    };
                    self.publish(Some(outcome));
                    let _ = respond_to.send(result);
                }
                SupervisorMsg::Rejected {
                    errors,
                    warnings,
                    respond_to,
                } => {
                    self.publish(Some(ReloadResult::now(
                        false,
                        self.generation(),
                        errors,
                        warnings,
                    )));
                    let _ = respond_to.send(());
                }
                SupervisorMsg::Shutdown {
                    graceful,
                    drain_timeout,
                    respond_to,
                } => {
                    self.shutdown(graceful, drain_timeout).await;
                    let _ = respond_to.send(());
                    // Keep answering until every handle is gone; new applies are refused.
                }
                SupervisorMsg::StopAccepting { respond_to } => {
                    self.handover.clear();
                    let listeners = std::mem::take(&mut self.listeners);
                    for l in listeners.values() {
                        l.stop().await;
                    }
                    let _ = respond_to.send(());
                }
                SupervisorMsg::Handover { respond_to } => {
                    let copies = self
                        .handover
                        .iter()
                        .map(|(addr, s)| s.try_clone().map(|s| (*addr, s)))
                        .collect();
                    let _ = respond_to.send(copies);
                }
            }
        }
    }

    /// The active generation: the applied table's number (0 before the first apply).
    fn generation(&self) -> u64 {
        self.table.generation
    }

    /// Publishes the current state; `outcome` replaces the last reload's result when given.
    /// Ready means: the table is applied (every listener bound) and not shutting down.
    fn publish(&self, outcome: Option<ReloadResult>) {
        let last_reload = outcome.or_else(|| self.status.get().last_reload.clone());
        self.status.publish(Snapshot {
            table: self.table.clone(),
            ready: self.token.is_some() && self.generation() > 0,
            last_reload,
        });
    }

    async fn apply(
        &mut self,
        mut table: RouteTable,
        bundle: Option<Arc<Bundle>>,
        mut given: Option<Given>,
    ) -> Result<ApplyReport, ApplyError> {
        let Some(token) = self.token.clone() else {
            return Err(ApplyError::ShuttingDown);
        };
        let plan = diff(&self.table, &table);
        // 1. Bind every new listener; any failure rejects the whole reload (the ones just
        //    bound close when `bound` drops). A worker takes the sockets it was given.
        let mut bound = Vec::with_capacity(plan.start.len());
        for addr in &plan.start {
            let socket = match &mut given {
                Some(g) => g.sockets.remove(addr).map_or_else(
                    || Err(std::io::Error::other("no socket given for this listener")),
                    crate::rt::Async::listener,
                ),
                // A hot upgrade's new binary takes the old one's socket for this address.
                None => match self.inherited.remove(addr) {
                    Some(s) => crate::rt::Async::listener(s),
                    None => socket::bind(*addr),
                },
            };
            match socket {
                Ok(s) => bound.push((*addr, s)),
                Err(e) => {
                    if self.generation() == 0 {
                        tracing::error!(listener = %addr, error = %e, "cannot bind; nothing started");
                    } else {
                        tracing::warn!(listener = %addr, error = %e, "cannot bind; reload rejected");
                    }
                    return Err(ApplyError::Bind(*addr, e));
                }
            }
        }
        table.generation = given
            .as_ref()
            .map_or(self.generation() + 1, |g| g.generation);
        // Copies for a hot upgrade (a worker has no use for them: its Supervisor has them).
        let mut copies = Vec::new();
        if given.is_none() {
            for (addr, s) in &bound {
                match s.get_ref().try_clone() {
                    Ok(c) => copies.push((*addr, c)),
                    Err(e) => {
                        tracing::warn!(listener = %addr, error = %e, "no copy for a hot upgrade")
                    }
                }
            }
        }
        if let Some(pool) = self.pool.clone() {
            let stopped = plan.stop.clone();
            let result = self
                .apply_to_workers(&pool, table, bundle, bound, plan)
                .await;
            if result.is_ok() {
                self.keep_copies(&stopped, copies);
            }
            return result;
        }
        self.keep_copies(&plan.stop, copies);
        let table = Arc::new(table);
        let generation = Arc::new(Generation::new(
            table.clone(),
            &self.shared.metrics,
            &self.shared.endpoints,
        ));

        // 2. Retarget kept listeners.
        for addr in &plan.retarget {
            if let Some(l) = self.listeners.get(addr) {
                l.retarget(generation.clone()).await;
            }
        }
        // 3. Start new listeners.
        let mut started = Vec::new();
        for (addr, socket) in bound {
            match ListenerHandle::spawn(
                socket,
                generation.clone(),
                self.shared.clone(),
                token.clone(),
            ) {
                Ok(handle) => {
                    started.push(addr);
                    self.listeners.insert(addr, handle);
                }
                Err(e) => tracing::error!(listener = %addr, error = %e, "listener failed to start"),
            }
        }
        // 4. Stop removed listeners (their open connections run on).
        for addr in &plan.stop {
            if let Some(l) = self.listeners.remove(addr) {
                l.stop().await;
            }
        }
        let listeners = self.listeners.len();
        Ok(self.applied(table, listeners, started, plan, "config applied"))
    }

    /// The common end of an apply: the new table is the active one, the gauges say so, and
    /// one log line reports what changed (`what`: in this process or by every worker).
    fn applied(
        &mut self,
        table: Arc<RouteTable>,
        listeners: usize,
        started: Vec<SocketAddr>,
        plan: crate::route::diff::ListenerPlan,
        what: &'static str,
    ) -> ApplyReport {
        self.table = table;
        self.shared.metrics.set_generation(self.generation());
        self.shared.metrics.listeners(listeners);
        let report = ApplyReport {
            generation: self.generation(),
            started,
            stopped: plan.stop,
            retargeted: plan.retarget,
        };
        tracing::info!(
            generation = report.generation,
            started = ?report.started,
            stopped = ?report.stopped,
            retargeted = report.retargeted.len(),
            "{what}"
        );
        report
    }

    /// Updates the hot-upgrade copies after an apply: `stopped` go, `copies` come.
    fn keep_copies(&mut self, stopped: &[SocketAddr], copies: Vec<(SocketAddr, TcpListener)>) {
        for addr in stopped {
            self.handover.remove(addr);
        }
        self.handover.extend(copies);
    }

    /// Apply with worker processes: the pool takes the new sockets and makes every worker
    /// serve the table (all or none).
    async fn apply_to_workers(
        &mut self,
        pool: &PoolHandle,
        table: RouteTable,
        bundle: Option<Arc<Bundle>>,
        bound: Vec<(SocketAddr, crate::rt::Async<TcpListener>)>,
        plan: crate::route::diff::ListenerPlan,
    ) -> Result<ApplyReport, ApplyError> {
        let Some(bundle) = bundle else {
            // Every apply of a pool's Supervisor comes from the ConfigActor, with its bundle.
            tracing::error!("no config bundle for the workers");
            return Err(ApplyError::ShuttingDown);
        };
        let mut new = Vec::with_capacity(bound.len());
        for (addr, socket) in bound {
            let socket = socket.into_inner().map_err(|e| ApplyError::Bind(addr, e))?;
            new.push((addr, socket));
        }
        let started: Vec<SocketAddr> = new.iter().map(|(a, _)| *a).collect();
        let mappings = table.mapping_ids().map(|m| (**m).clone()).collect();
        pool.apply(table.generation, bundle, mappings, new, plan.stop.clone())
            .await
            .map_err(ApplyError::Workers)?;
        let listeners = table.listeners.len();
        Ok(self.applied(
            Arc::new(table),
            listeners,
            started,
            plan,
            "config applied by every worker",
        ))
    }

    async fn shutdown(&mut self, graceful: bool, drain_timeout: Duration) {
        if self.token.is_none() {
            return;
        }
        // The copies first: once the listeners stop, nothing holds the ports open.
        self.handover.clear();
        if let Some(pool) = &self.pool {
            self.token = None;
            self.publish(None);
            // Every worker stops accepting first, so the ports refuse from this line on.
            pool.stop_accepting().await;
            tracing::info!(
                graceful,
                drain_timeout_s = drain_timeout.as_secs_f64(),
                "shutting down"
            );
            pool.shutdown(graceful, drain_timeout).await;
            tracing::info!("drained: every worker finished");
            return;
        }
        let listeners = std::mem::take(&mut self.listeners);
        for l in listeners.values() {
            l.stop().await;
        }
        self.token = None;
        self.publish(None);
        let open = self.drain.outstanding();
        tracing::info!(
            graceful,
            open,
            drain_timeout_s = drain_timeout.as_secs_f64(),
            "shutting down"
        );
        if graceful
            && rt::timeout(drain_timeout, self.drain.all_dropped())
                .await
                .is_some()
        {
            tracing::info!("drained: every connection finished");
            return;
        }
        if let Some(kill) = self.kill.take() {
            kill.fire();
        }
        // Killed connections end at their next poll; give them a moment to log and close.
        if rt::timeout(Duration::from_secs(2), self.drain.all_dropped())
            .await
            .is_none()
        {
            tracing::warn!(
                open = self.drain.outstanding(),
                "connections still open after kill"
            );
        }
    }
}
