//! The data plane of one data-plane thread: one ListenerActor per listening socket, its
//! ConnectionActors, the drain tokens they hold and the kill wire. In the library and
//! `tcpmap run --workers 1` the Supervisor's `ThreadsPlane` (`threads.rs`) drives one per
//! thread; a worker process drives its one directly (its pool's Supervisor decided the table
//! and bound the sockets). Its steps run on the thread it serves (as tasks there).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use super::ApplyError;
use super::plane::Change;
use crate::actors::listener::ListenerHandle;
use crate::actors::{Generation, Shared};
use crate::route::RouteTable;
use crate::route::diff::ListenerPlan;
use crate::rt::{self, DrainToken, DrainWait, Trigger};

/// Listeners and connections in this process.
pub(crate) struct LocalPlane {
    shared: Arc<Shared>,
    listeners: BTreeMap<SocketAddr, ListenerHandle>,
    /// Source of drain tokens for new listeners; dropped once the plane stops accepting.
    token: Option<DrainToken>,
    drain: DrainWait,
    /// Fired when the drain timeout passes.
    kill: Option<Trigger>,
}

impl LocalPlane {
    /// An empty plane; `kill` trips `shared.kill` (remaining connections end).
    pub(crate) fn new(shared: Arc<Shared>, kill: Trigger) -> Self {
        let (token, drain) = rt::drain_pair();
        LocalPlane {
            shared,
            listeners: BTreeMap::new(),
            token: Some(token),
            drain,
            kill: Some(kill),
        }
    }

    /// The plan from what this plane serves to `table` (a worker process, whose pool's
    /// Supervisor chose the table and gave it a socket for every listener).
    pub(crate) fn plan_for(&self, table: &RouteTable) -> ListenerPlan {
        let mut plan = ListenerPlan::default();
        for addr in table.listeners().keys() {
            if self.listeners.contains_key(addr) {
                plan.retarget.push(*addr);
            } else {
                plan.start.push(*addr);
            }
        }
        plan.stop = (self.listeners.keys())
            .filter(|a| !table.listeners().contains_key(a))
            .copied()
            .collect();
        plan
    }

    /// Serves `change` (see `DataPlane::apply`).
    pub(crate) async fn serve(&mut self, change: Change) -> Result<Vec<SocketAddr>, ApplyError> {
        if self.token.is_none() {
            return Err(ApplyError::ShuttingDown);
        }
        // 1. Register every new socket with the reactor; a failure changes nothing.
        let mut sockets = Vec::with_capacity(change.bound.len());
        for (addr, socket) in change.bound {
            match rt::Async::listener(socket) {
                Ok(s) => sockets.push((addr, s)),
                Err(e) => return Err(ApplyError::Bind(addr, e)),
            }
        }
        let generation = Arc::new(Generation::new(
            change.table,
            &self.shared.metrics,
            &self.shared.endpoints,
        ));
        Ok(self.start(generation, &change.plan, sockets).await)
    }

    /// The part of an apply that cannot fail: retargets kept listeners to `generation`, starts
    /// a listener on each of `sockets` (registered already, on this thread's reactor) and
    /// stops the removed ones. Run it on the thread the listeners are to run on. The listeners
    /// started (none once the plane stopped accepting).
    pub(crate) async fn start(
        &mut self,
        generation: Arc<Generation>,
        plan: &ListenerPlan,
        sockets: Vec<(SocketAddr, rt::Async<TcpListener>)>,
    ) -> Vec<SocketAddr> {
        let Some(token) = self.token.clone() else {
            return Vec::new();
        };
        // 2. Retarget kept listeners.
        for addr in &plan.retarget {
            if let Some(l) = self.listeners.get(addr) {
                l.retarget(generation.clone()).await;
            }
        }
        // 3. Start new listeners.
        let mut started = Vec::new();
        for (addr, socket) in sockets {
            let shared = self.shared.clone();
            match ListenerHandle::spawn(socket, generation.clone(), shared, token.clone()) {
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
        started
    }

    /// Closes every listener (see `DataPlane::stop_accepting`); no apply is taken afterwards.
    pub(crate) async fn stop(&mut self) {
        let listeners = std::mem::take(&mut self.listeners);
        for l in listeners.values() {
            l.stop().await;
        }
        self.token = None;
    }

    /// Waits for open connections, then kills the rest (see `DataPlane::drain`); true when
    /// every connection finished by itself (a worker process says so at debug: its
    /// Supervisor reports the drain).
    pub(crate) async fn wait_drained(&mut self, graceful: bool, timeout: Duration) -> bool {
        if graceful {
            super::spread::order(&self.shared, timeout);
            let held = self.held();
            let open = || self.drain.outstanding().saturating_sub(held);
            if super::spread::wait(&self.shared, timeout, self.drain.all_dropped(), open).await {
                return true;
            }
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
        false
    }

    /// Listeners and connections open here (the token source, until stopped, counts too).
    pub(crate) fn open(&self) -> usize {
        self.drain.outstanding()
    }

    /// The drain tokens that are not connections: one per listener, and the source until the
    /// plane stops accepting ([`Self::open`] minus these is the connections open here).
    pub(crate) fn held(&self) -> usize {
        self.listeners.len() + usize::from(self.token.is_some())
    }

    /// A waiter for every token of this plane (to wait from another thread).
    pub(crate) fn drain_wait(&self) -> DrainWait {
        self.drain.clone()
    }
}

/// The sockets a worker was given, as the change for its plane.
pub(crate) fn given(
    plan: &ListenerPlan,
    mut sockets: std::collections::HashMap<SocketAddr, TcpListener>,
) -> Result<Vec<(SocketAddr, TcpListener)>, ApplyError> {
    plan.start
        .iter()
        .map(|addr| {
            sockets.remove(addr).map(|s| (*addr, s)).ok_or_else(|| {
                ApplyError::Bind(
                    *addr,
                    std::io::Error::other("no socket given for this listener"),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::route::{HostMap, Listener};

    fn table(addrs: &[SocketAddr]) -> RouteTable {
        let mut t = RouteTable::default();
        for addr in addrs {
            let listener = Listener {
                addr: *addr,
                plain: None,
                hosts: HostMap::default(),
                proxy_protocol: Default::default(),
            };
            t.insert(listener);
        }
        t
    }

    #[test]
    fn a_worker_plane_starts_what_it_does_not_run_and_stops_what_is_gone() {
        let (kill, _) = rt::tripwire();
        let mut plane = LocalPlane::new(Shared::for_tests(None), kill);
        let sockets: Vec<TcpListener> = (0..2)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
        let given = addrs.iter().copied().zip(sockets).collect();
        addrs.sort();
        let first = table(&addrs);
        let plan = plane.plan_for(&first);
        assert_eq!((plan.start.len(), plan.retarget.len()), (2, 0));
        let bound = super::given(&plan, given).unwrap();
        let change = Change {
            table: Arc::new(first),
            bundle: Arc::new(crate::config::read(&Default::default()).0),
            plan,
            bound,
        };
        let started = rt::block_on(plane.serve(change)).unwrap();
        assert_eq!(started, addrs);
        // Connections are accepted on both.
        for a in &addrs {
            std::net::TcpStream::connect(a).unwrap();
        }
        let plan = plane.plan_for(&table(&addrs[..1]));
        assert_eq!(plan.retarget, addrs[..1]);
        assert_eq!(plan.stop, addrs[1..]);
        assert!(plan.start.is_empty());
        // A listener the plane has no socket for is refused, whole.
        let missing: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let plan = plane.plan_for(&table(&[missing]));
        assert!(matches!(
            super::given(&plan, Default::default()),
            Err(ApplyError::Bind(a, _)) if a == missing
        ));
        rt::block_on(plane.stop());
        assert!(
            std::net::TcpStream::connect(addrs[0]).is_err(),
            "the port refuses"
        );
    }
}
