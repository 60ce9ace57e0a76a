//! The data plane in this process: N data-plane threads (`rt::local`), each running a
//! [`LocalPlane`] of its own on its own reactor and coarse clock, all serving every listener.
//!
//! ```text
//!   Supervisor ── apply / stop_accepting / drain ──▶ ThreadsPlane
//!                                                     ├─ thread tcpmap-data-1: LocalPlane (a copy of every listening socket)
//!                                                     ├─ …
//!                                                     └─ thread tcpmap-data-N: LocalPlane
//! ```
//!
//! Like worker processes, the threads share each listening socket: every thread holds a copy
//! (`dup`) registered with its own reactor, every sleeping thread is woken by a new
//! connection, and the first to accept takes it. A connection then lives on the thread that
//! accepted it (its tasks, sockets and deadlines stay there). An apply is all or nothing:
//! every copy is made and registered before any thread changes what it serves, and once
//! registered, nothing can fail. The library runs this with as many threads as it may use
//! CPUs (`ProxyBuilder::workers`); `tcpmap run --workers 1` with one (the installed runtime,
//! which runs the control plane's tasks too).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::ApplyError;
use super::local::LocalPlane;
use super::plane::{BoxFuture, Change, DataPlane, PlaneStatus};
use crate::actors::{Generation, Shared};
use crate::rt::local::Runtime;
use crate::rt::{self, Async, DrainWait, Trigger};

/// What the status view shows of each thread (readable from any thread).
#[derive(Debug)]
struct ThreadView {
    name: String,
    drain: DrainWait,
    /// The plane's drain tokens that are not connections ([`LocalPlane::held`]), as of its
    /// last step.
    held: AtomicUsize,
}

impl ThreadView {
    fn connections(&self) -> usize {
        (self.drain.outstanding()).saturating_sub(self.held.load(Ordering::Relaxed))
    }
}

/// The data-plane threads of a proxy, for the status view (`/config`'s `threads`).
#[derive(Debug)]
pub(crate) struct ThreadsView {
    threads: Vec<ThreadView>,
}

impl ThreadsView {
    /// Each thread's name and the connections open on it.
    pub(crate) fn connections(&self) -> Vec<(String, usize)> {
        (self.threads.iter())
            .map(|t| (t.name.clone(), t.connections()))
            .collect()
    }
}

/// One thread's copies of an apply's new sockets, registered with its reactor.
type Registered = Vec<(SocketAddr, Async<TcpListener>)>;

/// One data-plane thread and the plane it runs (`None` only while a step runs there).
struct Thread {
    runtime: &'static Runtime,
    plane: Option<LocalPlane>,
}

/// Listeners and connections on N threads of this process.
pub(crate) struct ThreadsPlane {
    shared: Arc<Shared>,
    threads: Vec<Thread>,
    /// Fired when the drain timeout passes (trips `shared.kill` on every thread).
    kill: Option<Trigger>,
    stopped: bool,
    view: Arc<ThreadsView>,
}

impl ThreadsPlane {
    /// A plane on the first `n` data-plane threads of this process (started if need be);
    /// `kill` trips `shared.kill`.
    pub(crate) fn new(shared: Arc<Shared>, kill: Trigger, n: usize) -> std::io::Result<Self> {
        let mut threads = Vec::with_capacity(n);
        let mut views = Vec::with_capacity(n);
        for runtime in rt::local::threads(n)? {
            // Each thread's own trigger is never fired: the drain is this plane's.
            let plane = LocalPlane::new(shared.clone(), rt::tripwire().0);
            views.push(ThreadView {
                name: runtime.name().to_string(),
                drain: plane.drain_wait(),
                held: AtomicUsize::new(plane.held()),
            });
            threads.push(Thread {
                runtime,
                plane: Some(plane),
            });
        }
        let view = Arc::new(ThreadsView { threads: views });
        Ok(ThreadsPlane {
            shared,
            threads,
            kill: Some(kill),
            stopped: false,
            view,
        })
    }

    /// The threads as the status view shows them.
    pub(crate) fn view(&self) -> Arc<ThreadsView> {
        self.view.clone()
    }

    /// Runs `step` on every thread at once, each with its plane, and waits for all; gives the
    /// planes back.
    async fn on_every_thread<T, F>(
        &mut self,
        mut step: impl FnMut(usize, LocalPlane) -> F,
    ) -> Vec<T>
    where
        F: std::future::Future<Output = (LocalPlane, T)> + Send + 'static,
        T: Send + 'static,
    {
        let tasks: Vec<_> = (self.threads.iter_mut().enumerate())
            .filter_map(|(i, t)| Some((i, t.runtime.spawn(step(i, t.plane.take()?)))))
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for (i, task) in tasks {
            let (plane, value) = task.await;
            if let (Some(t), Some(v)) = (self.threads.get_mut(i), self.view.threads.get(i)) {
                v.held.store(plane.held(), Ordering::Relaxed);
                t.plane = Some(plane);
            }
            out.push(value);
        }
        out
    }

    /// A copy of each of `bound` for every thread, registered with that thread's reactor; the
    /// first failure drops them all (nothing changed).
    fn register(&self, bound: &[(SocketAddr, TcpListener)]) -> Result<Vec<Registered>, ApplyError> {
        let mut all = Vec::with_capacity(self.threads.len());
        for t in &self.threads {
            let mut mine = Vec::with_capacity(bound.len());
            for (addr, socket) in bound {
                let registered = socket.try_clone().and_then(|c| t.runtime.listener(c));
                match registered {
                    Ok(s) => mine.push((*addr, s)),
                    Err(e) => return Err(ApplyError::Bind(*addr, e)),
                }
            }
            all.push(mine);
        }
        Ok(all)
    }

    async fn serve(&mut self, change: Change) -> Result<Vec<SocketAddr>, ApplyError> {
        if self.stopped {
            return Err(ApplyError::ShuttingDown);
        }
        // 1. Every copy of every new socket, registered where it will be served: the only
        // step that can fail. The Supervisor's originals close at the end of this call.
        let mut sockets: Vec<Option<_>> = self
            .register(&change.bound)?
            .into_iter()
            .map(Some)
            .collect();
        // 2. One generation for every thread (its close orders reach them all).
        let generation = Arc::new(Generation::new(
            change.table,
            &self.shared.metrics,
            &self.shared.endpoints,
        ));
        let plan = Arc::new(change.plan);
        let started = self
            .on_every_thread(|i, mut plane| {
                let (generation, plan) = (generation.clone(), plan.clone());
                let sockets = sockets
                    .get_mut(i)
                    .and_then(Option::take)
                    .unwrap_or_default();
                async move {
                    let started = plane.start(generation, &plan, sockets).await;
                    (plane, started)
                }
            })
            .await;
        Ok(started.into_iter().next().unwrap_or_default())
    }

    async fn stop(&mut self) {
        self.stopped = true;
        self.on_every_thread(|_, mut plane| async move {
            plane.stop().await;
            (plane, ())
        })
        .await;
    }

    async fn wait_drained(&mut self, graceful: bool, timeout: Duration) {
        let waits: Vec<DrainWait> = (self.threads.iter())
            .filter_map(|t| t.plane.as_ref().map(LocalPlane::drain_wait))
            .collect();
        let all_dropped = || async {
            for w in &waits {
                w.all_dropped().await;
            }
        };
        if graceful {
            super::spread::order(&self.shared, timeout);
            let open = || self.open();
            if super::spread::wait(&self.shared, timeout, all_dropped(), open).await {
                tracing::info!("drained: every connection finished");
                return;
            }
        }
        if let Some(kill) = self.kill.take() {
            kill.fire();
        }
        // Killed connections end at their next poll; give them a moment to log and close.
        if rt::timeout(Duration::from_secs(2), all_dropped())
            .await
            .is_none()
        {
            tracing::warn!(open = self.open(), "connections still open after kill");
        }
    }

    fn open(&self) -> usize {
        self.view
            .threads
            .iter()
            .map(|t| t.drain.outstanding())
            .sum()
    }
}

impl DataPlane for ThreadsPlane {
    fn apply(&mut self, change: Change) -> BoxFuture<'_, Result<Vec<SocketAddr>, ApplyError>> {
        Box::pin(self.serve(change))
    }

    fn stop_accepting(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(self.stop())
    }

    fn drain(&mut self, graceful: bool, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(self.wait_drained(graceful, timeout))
    }

    fn status(&self) -> PlaneStatus {
        PlaneStatus {
            runs_in: "this process",
            open: Some(self.open()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::route::diff::ListenerPlan;
    use crate::route::{HostMap, Listener, RouteTable};

    fn change(bound: Vec<(SocketAddr, TcpListener)>) -> Change {
        let mut table = RouteTable::default();
        for (addr, _) in &bound {
            let listener = Listener {
                addr: *addr,
                plain: None,
                hosts: HostMap::default(),
                proxy_protocol: Default::default(),
            };
            table.insert(listener);
        }
        Change {
            table: Arc::new(table),
            bundle: Arc::new(crate::config::read(&Default::default()).0),
            plan: ListenerPlan {
                start: bound.iter().map(|(a, _)| *a).collect(),
                ..Default::default()
            },
            bound,
        }
    }

    fn bind() -> (SocketAddr, TcpListener) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        (l.local_addr().unwrap(), l)
    }

    #[test]
    fn a_socket_no_thread_can_serve_rejects_the_whole_apply() {
        let (kill, _) = rt::tripwire();
        let mut plane = ThreadsPlane::new(Shared::for_tests(None), kill, 2).unwrap();
        let (old, socket) = bind();
        let started = rt::block_on(plane.apply(change(vec![(old, socket)]))).unwrap();
        assert_eq!(started, vec![old]);
        // A good socket and one epoll refuses (a regular file posing as a listener): every
        // thread's copies are made and registered first, so the good one is served nowhere.
        let (new, good) = bind();
        let file = std::fs::File::open("/dev/null").unwrap();
        let bad = TcpListener::from(std::os::fd::OwnedFd::from(file));
        let bad_addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let refused = rt::block_on(plane.apply(change(vec![(new, good), (bad_addr, bad)])));
        assert!(
            matches!(refused, Err(ApplyError::Bind(a, _)) if a == bad_addr),
            "{refused:?}"
        );
        assert!(
            std::net::TcpStream::connect(new).is_err(),
            "a thread serves a socket of a rejected apply"
        );
        // The old listener serves on.
        std::net::TcpStream::connect(old).unwrap();
        rt::block_on(plane.stop_accepting());
        assert!(
            std::net::TcpStream::connect(old).is_err(),
            "the port refuses"
        );
        // No apply once stopped.
        let (late, socket) = bind();
        let refused = rt::block_on(plane.apply(change(vec![(late, socket)])));
        assert!(
            matches!(refused, Err(ApplyError::ShuttingDown)),
            "{refused:?}"
        );
        rt::block_on(plane.drain(true, Duration::from_secs(1)));
        assert_eq!(plane.status().open, Some(0));
    }
}
