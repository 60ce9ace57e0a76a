//! Supervisor: owns the active route table, the listening sockets and the data plane.
//!
//! Messages: `Apply(table)` and `Rejected(errors)` from the ConfigActor (a reload: applied
//! whole or not at all), `Shutdown` and `Handover` from the handle. It is the only writer of
//! the [`Status`] snapshot (table, generation, readiness, last reload) that the admin
//! endpoint and the handle read. Apply is one step (docs/operations.md "Reload semantics"):
//! diff the new table against the active one, bind every new listener (`sockets.rs`) — one
//! failure closes those just bound and rejects the reload — then hand the data plane the
//! table and the sockets (`plane.rs`): it retargets kept listeners, starts the new ones and
//! stops the removed ones, on every data-plane thread of this process (`threads.rs`, a
//! `local.rs` plane per thread) or in every worker process
//! (`crate::workers`, through the same interface). Open connections keep the generation they
//! started with.

mod local;
pub(crate) mod plane;
mod sockets;
pub(crate) mod spread;
mod threads;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) use local::{LocalPlane, given};
use plane::{Change, DataPlane, PlaneStatus};
use sockets::Sockets;
pub(crate) use threads::{ThreadsPlane, ThreadsView};

use super::{ReloadResult, Snapshot};
use crate::config::Bundle;
use crate::metrics::Metrics;
use crate::route::{RouteTable, diff::diff};
use crate::rt::{self, Receiver, Sender};

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

/// Why an apply was rejected (nothing changed); its words are the reload's error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    /// A listener's address could not be bound (or its socket not served).
    #[error("cannot bind {0}: {1}")]
    Bind(SocketAddr, #[source] std::io::Error),
    /// A worker process could not apply the config (every worker keeps the old one): the
    /// pool's typed error (`crate::workers::codec::PoolError`), which says which worker and
    /// why.
    #[error("{0}")]
    Workers(Box<dyn std::error::Error + Send + Sync>),
    /// The proxy is shutting down.
    #[error("shutting down")]
    ShuttingDown,
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
        /// What the table was built from (worker processes build theirs from it).
        bundle: Arc<Bundle>,
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
    /// Spawns the Supervisor with an empty table, driving `plane`; `inherited` are the
    /// listening sockets a hot upgrade handed over.
    pub(crate) fn spawn(
        plane: Box<dyn DataPlane>,
        metrics: Arc<Metrics>,
        status: Arc<Status>,
        inherited: HashMap<SocketAddr, TcpListener>,
    ) -> Self {
        let (tx, rx) = rt::mailbox(16);
        let actor = Supervisor {
            rx,
            metrics,
            status,
            table: Arc::new(RouteTable::default()),
            plane,
            sockets: Sockets::new(inherited),
            stopping: false,
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
        bundle: Arc<Bundle>,
    ) -> Result<Result<ApplyReport, ApplyError>, crate::Error> {
        let (respond_to, rx) = rt::oneshot();
        self.tx
            .send_async(SupervisorMsg::Apply {
                table,
                warnings,
                bundle,
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
    metrics: Arc<Metrics>,
    status: Arc<Status>,
    table: Arc<RouteTable>,
    /// Where connections run: this process or the worker processes.
    plane: Box<dyn DataPlane>,
    /// The listening sockets: bound here, handed to the plane, copied for a hot upgrade.
    sockets: Sockets,
    /// Shutting down: no apply is taken, readiness is false.
    stopping: bool,
}

impl Supervisor {
    async fn run(mut self) {
        while let Ok(msg) = self.rx.recv_async().await {
            match msg {
                SupervisorMsg::Apply {
                    table,
                    warnings,
                    bundle,
                    respond_to,
                } => {
                    let result = self.apply(table, bundle).await;
                    let outcome = match &result {
                        Ok(report) => {
                            ReloadResult::now(true, report.generation, Vec::new(), warnings)
                        }
                        Err(e) => {
                            let errors = vec![e.to_string()];
                            ReloadResult::now(false, self.generation(), errors, warnings)
                        }
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
                SupervisorMsg::Handover { respond_to } => {
                    let _ = respond_to.send(self.sockets.handover());
                }
            }
        }
    }

    /// The active generation: the applied table's number (0 before the first apply).
    fn generation(&self) -> u64 {
        self.table.generation()
    }

    /// Publishes the current state; `outcome` replaces the last reload's result when given.
    /// Ready means: the table is applied (every listener bound) and not shutting down.
    fn publish(&self, outcome: Option<ReloadResult>) {
        let last_reload = outcome.or_else(|| self.status.get().last_reload.clone());
        self.status.publish(Snapshot {
            table: self.table.clone(),
            ready: !self.stopping && self.generation() > 0,
            last_reload,
        });
    }

    async fn apply(
        &mut self,
        mut table: RouteTable,
        bundle: Arc<Bundle>,
    ) -> Result<ApplyReport, ApplyError> {
        if self.stopping {
            return Err(ApplyError::ShuttingDown);
        }
        let plan = diff(&self.table, &table);
        // 1. Bind every new listener; any failure rejects the whole reload.
        let bound = self.sockets.bind(&plan.start, self.generation() == 0)?;
        table.set_generation(self.generation() + 1);
        let copies = Sockets::copies(&bound);
        // 2. The plane serves it (all or nothing).
        let table = Arc::new(table);
        let change = Change {
            table: table.clone(),
            bundle,
            plan: plan.clone(),
            bound,
        };
        let started = self.plane.apply(change).await?;
        self.sockets.keep(&plan.stop, copies);
        // 3. The new table is the active one, the gauges say so, and one line reports it.
        self.table = table;
        self.metrics.set_generation(self.generation());
        self.metrics.listeners(self.table.listeners().len());
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
            by = self.plane.status().runs_in,
            "config applied"
        );
        Ok(report)
    }

    async fn shutdown(&mut self, graceful: bool, drain_timeout: Duration) {
        if self.stopping {
            return;
        }
        // The copies first: once the listeners stop, nothing holds the ports open.
        self.sockets.clear();
        self.plane.stop_accepting().await;
        self.stopping = true;
        self.publish(None);
        let drain_timeout_s = drain_timeout.as_secs_f64();
        match self.plane.status() {
            PlaneStatus {
                open: Some(open), ..
            } => tracing::info!(graceful, open, drain_timeout_s, "shutting down"),
            PlaneStatus { runs_in, .. } => {
                tracing::info!(
                    graceful,
                    drain_timeout_s,
                    connections_in = runs_in,
                    "shutting down"
                )
            }
        }
        self.plane.drain(graceful, drain_timeout).await;
    }
}

#[cfg(test)]
mod tests;
