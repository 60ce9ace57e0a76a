//! The data plane as the Supervisor drives it: one interface, two implementations.
//!
//! ```text
//!   Supervisor ── apply(Change) / stop_accepting / drain / status ──▶ dyn DataPlane
//!                                                                      ├─ ThreadsPlane (threads.rs): N threads of this process,
//!                                                                      │  each running a LocalPlane (local.rs): ListenerActors
//!                                                                      └─ the worker pool (crate::workers): N worker processes,
//!                                                                         each running a LocalPlane of its own
//! ```
//!
//! The Supervisor builds the route table once, diffs it once against the active one, binds the
//! new listeners (`sockets.rs`) and hands the plane the result; the plane never binds and
//! never diffs tables. An apply is all or nothing: on `Err` the plane serves what it served.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::ApplyError;
use crate::config::Bundle;
use crate::route::RouteTable;
use crate::route::diff::ListenerPlan;

/// A boxed future the data plane returns (its methods are called once per reload or
/// shutdown, never per connection).
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One config to serve.
#[derive(Debug)]
pub(crate) struct Change {
    /// The new table, numbered.
    pub(crate) table: Arc<RouteTable>,
    /// What it was built from (a worker process builds the identical table from it).
    pub(crate) bundle: Arc<Bundle>,
    /// From the active table to this one.
    pub(crate) plan: ListenerPlan,
    /// A bound socket for each address of `plan.start`.
    pub(crate) bound: Vec<(SocketAddr, TcpListener)>,
}

/// What a data plane says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlaneStatus {
    /// Where connections run, for the log lines: `"this process"` or `"every worker"`.
    pub(crate) runs_in: &'static str,
    /// Listeners and connections still open here (`None` when they are counted elsewhere:
    /// in the worker processes).
    pub(crate) open: Option<usize>,
}

/// Where connections run: the Supervisor's only way to start, change and stop them.
pub(crate) trait DataPlane: Send {
    /// Serves `change.table`: starts `change.bound`, retargets the kept listeners, stops the
    /// removed ones (their connections run on). `Ok` with the listeners started.
    fn apply(&mut self, change: Change) -> BoxFuture<'_, Result<Vec<SocketAddr>, ApplyError>>;

    /// Closes every listener (the ports refuse); open connections run on.
    fn stop_accepting(&mut self) -> BoxFuture<'_, ()>;

    /// After [`Self::stop_accepting`]: waits for open connections (when `graceful`, up to
    /// `timeout`), then closes the rest; returns when done.
    fn drain(&mut self, graceful: bool, timeout: Duration) -> BoxFuture<'_, ()>;

    /// Where connections run and how many are open.
    fn status(&self) -> PlaneStatus;
}
