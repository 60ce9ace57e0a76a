//! The embedding API: [`ProxyBuilder`] → [`ProxyBuilder::start`] → [`ProxyHandle`].
//!
//! The embedder owns signals and decides when to reload or shut down; the daemon binary is
//! one such embedder (`src/daemon.rs`). This module must not install signal handlers, watch
//! files or print: it only starts the actors and talks to them.
//!
//! The proxy's actors run on their own executor threads, so the handle's futures can be
//! awaited from any executor, or from plain threads with [`block_on`]:
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::{TcpListener, TcpStream};
//!
//! // An upstream that answers "hi", and a free port for the proxy.
//! let upstream = TcpListener::bind("127.0.0.1:0")?;
//! let upstream_port = upstream.local_addr()?.port();
//! std::thread::spawn(move || {
//!     if let Ok((mut s, _)) = upstream.accept() {
//!         let _ = s.write_all(b"hi");
//!     }
//! });
//! let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
//!
//! let yaml = format!(
//!     "apiVersion: getambassador.io/v2\nkind: TCPMapping\nname: demo\n\
//!      address: 127.0.0.1\nport: {port}\nservice: 127.0.0.1:{upstream_port}\n"
//! );
//! let proxy = tcpmap::ProxyBuilder::new().config_yaml("demo.yaml", yaml).start_blocking()?;
//! assert!(proxy.ready());
//!
//! let mut client = TcpStream::connect(("127.0.0.1", port))?;
//! let mut got = String::new();
//! client.read_to_string(&mut got)?;
//! assert_eq!(got, "hi");
//! drop(client);
//!
//! // Graceful: waits (up to the drain timeout, 30 s by default) for open connections.
//! tcpmap::block_on(proxy.shutdown(true))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::Result;
use crate::actors::config::{ConfigHandle, ReloadReport};
use crate::actors::resolver::{ResolverConfig, ResolverHandle};
use crate::actors::supervisor::plane::DataPlane;
use crate::actors::supervisor::{Status, SupervisorHandle, ThreadsPlane};
use crate::actors::{Limits, Shared};
use crate::config::ConfigInput;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::route::Routes;
use crate::rt::{self, Receiver};

mod admin;
mod status;
use admin::{AdminServer, start_admin};

/// Configures and starts a proxy.
///
/// Settings default to what `tcpmap run` uses without flags; nothing is read or bound until
/// [`ProxyBuilder::start`] (or [`ProxyBuilder::start_blocking`]).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
/// let yaml = format!(
///     "apiVersion: ambassador/v1\nkind: TCPMapping\nname: ssh_mapping\n\
///      address: 127.0.0.1\nport: {port}\nservice: upstream:22\n"
/// );
/// let proxy = tcpmap::block_on(
///     tcpmap::ProxyBuilder::new()
///         .config_yaml("ssh.yaml", yaml)
///         .drain_timeout(std::time::Duration::from_secs(5))
///         .start(),
/// )?;
/// assert_eq!(proxy.local_addrs(), vec![format!("127.0.0.1:{port}").parse()?]);
/// tcpmap::block_on(proxy.reload())?;
/// tcpmap::block_on(proxy.shutdown(true))?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ProxyBuilder {
    input: ConfigInput,
    admin: Option<SocketAddr>,
    drain_timeout: Duration,
    max_connections: Option<usize>,
    handshake_timeout: Duration,
    zero_copy: bool,
    /// `--drain-strategy spread`.
    drain_spread: bool,
    /// `--dont-log-null`.
    dont_log_null: bool,
    resolver: ResolverConfig,
    /// Data-plane threads in this process (`None`: as many as CPUs it may use).
    threads: Option<usize>,
    /// Worker processes (the daemon's `--workers` > 1) instead of threads.
    pool: Option<crate::workers::pool::PoolConfig>,
    /// Sockets a hot upgrade handed over (the daemon only); taken once by `start`.
    inherited: Option<Arc<std::sync::Mutex<crate::workers::upgrade::Inherited>>>,
}

impl Default for ProxyBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ProxyBuilder {
    /// A builder with no config yet, namespace and ambassador id `default`.
    pub fn new() -> Self {
        ProxyBuilder {
            input: ConfigInput::default(),
            admin: None,
            drain_timeout: Duration::from_secs(30),
            max_connections: None,
            handshake_timeout: Duration::from_secs(10),
            zero_copy: true,
            drain_spread: false,
            dont_log_null: false,
            resolver: ResolverConfig::default(),
            threads: None,
            pool: None,
            inherited: None,
        }
    }

    /// Takes these listening and admin sockets instead of binding their addresses (the new
    /// binary of a hot upgrade).
    pub(crate) fn inherit(mut self, sockets: crate::workers::upgrade::Inherited) -> Self {
        self.inherited = Some(Arc::new(std::sync::Mutex::new(sockets)));
        self
    }

    /// Serves the listeners from worker processes (`tcpmap run --workers N`, N > 1).
    pub(crate) fn worker_processes(mut self, pool: crate::workers::pool::PoolConfig) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Whether this proxy's plain connections splice: its [`Self::zero_copy`] setting, unless
    /// `TCPMAP_NO_SPLICE=1` turns zero-copy off for the process. The one place the builder
    /// reads the variable, for its own threads and for worker processes alike.
    fn splices(&self) -> bool {
        self.zero_copy && !crate::net::splice::splice_disabled_by_env()
    }

    /// The settings a worker process runs with (what `tcpmap run` was given).
    pub(crate) fn worker_settings(&self) -> crate::workers::codec::Settings {
        crate::workers::codec::Settings {
            max_connections: self.max_connections.map(|m| m as u64),
            handshake_timeout_ms: self.handshake_timeout.as_millis() as u64,
            zero_copy: self.splices(),
            resolv_conf: self.resolver.resolv_conf.clone(),
            drain_timeout_ms: self.drain_timeout.as_millis() as u64,
            drain_spread: self.drain_spread,
            dont_log_null: self.dont_log_null,
        }
    }

    /// Data-plane threads serving connections (default: the CPUs this process may run on, its
    /// affinity mask capped by its cgroup CPU quota; at least 1).
    ///
    /// Each thread runs its connections start to end on a reactor and a coarse clock of its
    /// own, and every thread accepts on every listening socket (the first to accept a
    /// connection keeps it), as `tcpmap run --workers N` does with processes. The threads are
    /// the process's: a second proxy in the same process runs on the same ones.
    ///
    /// ```
    /// let proxy = tcpmap::ProxyBuilder::new().workers(2).start_blocking()?;
    /// tcpmap::block_on(proxy.shutdown(false))?;
    /// # Ok::<(), tcpmap::Error>(())
    /// ```
    pub fn workers(mut self, threads: usize) -> Self {
        self.threads = Some(threads.max(1));
        self
    }

    /// Replaces the whole config input (paths, inline YAML, secrets dir, namespace, id).
    pub fn input(mut self, input: ConfigInput) -> Self {
        self.input = input;
        self
    }

    /// Adds a config file or directory (repeatable).
    pub fn config_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.input.paths.push(path.into());
        self
    }

    /// Adds in-memory YAML (one or many `---` documents); `name` stands for the file in errors.
    pub fn config_yaml(mut self, name: impl Into<String>, yaml: impl Into<String>) -> Self {
        self.input.inline.push((name.into(), yaml.into()));
        self
    }

    /// Where Kubernetes-style TLS secrets live (`<dir>/NAME/tls.crt`, `tls.key`).
    pub fn secrets_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.input.secrets_dir = Some(dir.into());
        self
    }

    /// The proxy's own namespace (`AMBASSADOR_NAMESPACE`).
    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.input.namespace = ns.into();
        self
    }

    /// The `ambassador_id` resources must name to apply (`AMBASSADOR_ID`).
    pub fn ambassador_id(mut self, id: impl Into<String>) -> Self {
        self.input.ambassador_id = id.into();
        self
    }

    /// The Gateway API `gatewayClassName` whose Gateways are served (default `tcpmap`; the
    /// daemon's `--gateway-class`).
    pub fn gateway_class(mut self, class: impl Into<String>) -> Self {
        self.input.gateway_class = class.into();
        self
    }

    /// Serves the admin endpoints on this address (off by default). The server stops with the
    /// proxy: [`ProxyHandle::shutdown`] closes it once the drain is over.
    pub fn admin(mut self, addr: SocketAddr) -> Self {
        self.admin = Some(addr);
        self
    }

    /// How long a graceful shutdown waits for open connections (default 30 s).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// How a graceful shutdown closes open connections: `false` (the default, `wait`) lets
    /// them run until the drain timeout; `true` (`spread`) closes those idle for a second at
    /// once and every other one at its own random instant spread evenly over the timeout, so
    /// its clients reconnect a few at a time (SPEC section 15).
    pub fn spread_drain(mut self, spread: bool) -> Self {
        self.drain_spread = spread;
        self
    }

    /// Writes no access line for a connection whose client sent no byte (HAProxy's
    /// `dontlognull`): a flood of empty connections then writes no line an attacker controls.
    /// Such connections are still counted in the metrics. Off by default.
    pub fn dont_log_null(mut self, on: bool) -> Self {
        self.dont_log_null = on;
        self
    }

    /// Open connections allowed overall; extra ones are closed at once.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max);
        self
    }

    /// Deadline for the SNI peek and for each TLS handshake (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The resolver configuration file (default `/etc/resolv.conf`).
    pub fn resolv_conf(mut self, path: impl Into<PathBuf>) -> Self {
        self.resolver.resolv_conf = path.into();
        self
    }

    /// The hosts file (default `/etc/hosts`).
    pub fn hosts_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.resolver.hosts_file = path.into();
        self
    }

    /// Per-lookup DNS timeout (default 2 s).
    pub fn lookup_timeout(mut self, timeout: Duration) -> Self {
        self.resolver.lookup_timeout = timeout;
        self
    }

    /// Moves plain↔plain bytes with splice(2) on Linux (default on; `TCPMAP_NO_SPLICE=1` in
    /// the environment turns it off for every proxy). Per proxy: two proxies in one process
    /// can differ. TLS on either side always copies through userspace buffers.
    pub fn zero_copy(mut self, on: bool) -> Self {
        self.zero_copy = on;
        self
    }

    /// [`ProxyBuilder::start`] for callers without an executor: blocks the current thread
    /// until the proxy serves (or fails to start).
    ///
    /// Do not call it from inside an async task (it would block that executor thread).
    ///
    /// ```
    /// let err = tcpmap::ProxyBuilder::new()
    ///     .config_yaml("bad.yaml", "apiVersion: ambassador/v1\nkind: TCPMapping\nname: x\n")
    ///     .start_blocking()
    ///     .unwrap_err();
    /// // Every problem is listed, as `FILE:LINE: KIND NAME: message`.
    /// assert!(err.to_string().contains("bad.yaml:"), "{err}");
    /// ```
    pub fn start_blocking(self) -> Result<ProxyHandle> {
        rt::block_on(self.start())
    }

    /// Loads and validates the config, binds every listener and starts serving.
    ///
    /// Fails with [`Error::Config`](crate::Error::Config) (every problem listed) or [`Error::Bind`](crate::Error::Bind); nothing keeps
    /// running after a failure.
    pub async fn start(self) -> Result<ProxyHandle> {
        let metrics = Metrics::new();
        let (kill, tripwire) = rt::tripwire();
        let endpoints = crate::state::endpoints::EndpointRegistry::new(metrics.clone());
        let shared = Shared::new(
            ResolverHandle::spawn_observed(self.resolver.clone(), Some(metrics.clone())),
            metrics.clone(),
            endpoints.clone(),
            Limits {
                max_connections: self.max_connections,
                handshake_timeout: self.handshake_timeout,
                zero_copy: self.splices(),
                drain_spread: self.drain_spread,
                dont_log_null: self.dont_log_null,
            },
            Default::default(),
            tripwire,
        );
        crate::actors::health::spawn(
            Arc::downgrade(&endpoints),
            shared.resolver.clone(),
            metrics.clone(),
        );
        let status = Arc::new(Status::default());
        let pool = match self.pool.clone() {
            Some(config) => Some(crate::workers::pool::PoolHandle::spawn(config)?),
            None => None,
        };
        // Where connections run: the worker processes, or threads of this process.
        let mut threads = None;
        let plane: Box<dyn DataPlane> = match &pool {
            Some(pool) => Box::new(pool.clone()),
            None => {
                let n = self.threads.unwrap_or_else(crate::workers::cpus::available);
                let plane = ThreadsPlane::new(shared.clone(), kill, n)?;
                threads = Some(plane.view());
                Box::new(plane)
            }
        };
        let inherited = self
            .inherited
            .as_ref()
            .map(|i| std::mem::take(&mut *i.lock().unwrap_or_else(|p| p.into_inner())))
            .unwrap_or_default();
        let supervisor =
            SupervisorHandle::spawn(plane, metrics.clone(), status.clone(), inherited.listeners);
        let config = ConfigHandle::spawn(self.input.clone(), supervisor.clone(), metrics.clone());
        // The first config takes the path of every reload; on failure nothing was bound, and
        // dropping the handles ends the actors.
        config.reload().await?;
        let (exit_tx, exit_rx) = rt::oneshot();
        let admin = match self.admin {
            Some(addr) => Some(
                start_admin(
                    addr,
                    inherited.admin,
                    metrics.clone(),
                    status.clone(),
                    endpoints.clone(),
                    pool,
                    threads,
                )
                .await?,
            ),
            None => None,
        };
        let admin_addr = admin.as_ref().map(|a| a.addr);
        Ok(ProxyHandle {
            inner: Arc::new(Inner {
                supervisor,
                config,
                status,
                metrics,
                drain_timeout: self.drain_timeout,
                exit_tx: std::sync::Mutex::new(Some(exit_tx)),
                exit_rx,
                admin_addr,
                admin: std::sync::Mutex::new(admin),
            }),
        })
    }
}

/// Runs a future to completion on the current thread: the way to call [`ProxyHandle`]'s async
/// methods from synchronous code. Must not be called from inside an async task.
///
/// ```
/// let answer = tcpmap::block_on(async { 6 * 7 });
/// assert_eq!(answer, 42);
/// ```
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    rt::block_on(future)
}

struct Inner {
    supervisor: SupervisorHandle,
    config: ConfigHandle,
    status: Arc<Status>,
    metrics: Arc<Metrics>,
    drain_timeout: Duration,
    exit_tx: std::sync::Mutex<Option<rt::Sender<()>>>,
    exit_rx: Receiver<()>,
    admin_addr: Option<SocketAddr>,
    /// Taken and stopped by the first shutdown, once the drain is over; dropping it (the last
    /// handle gone) stops the server too.
    admin: std::sync::Mutex<Option<AdminServer>>,
}

/// A cloneable handle to a running proxy.
#[derive(Clone)]
pub struct ProxyHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ProxyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyHandle").finish_non_exhaustive()
    }
}

impl ProxyHandle {
    /// Re-reads every config source and secret and applies the result whole, or keeps the
    /// old routes and returns every error.
    pub async fn reload(&self) -> Result<ReloadReport> {
        self.inner.config.reload().await
    }

    /// Replaces the config with in-memory YAML (later reloads re-read it) and applies it.
    ///
    /// Like a reload, it is all or nothing: an invalid config or a port that cannot be bound
    /// leaves the old routes serving and returns every problem.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let free = || std::net::TcpListener::bind("127.0.0.1:0")?.local_addr();
    /// let mapping = |port: u16| format!(
    ///     "apiVersion: ambassador/v1\nkind: TCPMapping\nname: m{port}\n\
    ///      address: 127.0.0.1\nport: {port}\nservice: 127.0.0.1:9\n"
    /// );
    /// let (a, b) = (free()?.port(), free()?.port());
    /// let proxy = tcpmap::ProxyBuilder::new().config_yaml("a.yaml", mapping(a)).start_blocking()?;
    ///
    /// let report = tcpmap::block_on(proxy.apply(mapping(b)))?;
    /// assert_eq!(report.applied.started, proxy.local_addrs());
    /// assert_eq!(report.applied.stopped[0].port(), a);
    ///
    /// // A broken config is rejected whole; the routes stay as they were.
    /// assert!(tcpmap::block_on(proxy.apply("kind: TCPMapping\n")).is_err());
    /// let routes = tcpmap::block_on(proxy.routes())?;
    /// assert_eq!(routes.listeners().first().map(|a| a.port()), Some(b));
    /// tcpmap::block_on(proxy.shutdown(false))?;
    /// # Ok(()) }
    /// ```
    pub async fn apply(&self, yaml: impl Into<String>) -> Result<ReloadReport> {
        self.inner
            .config
            .apply_yaml("<inline>".to_string(), yaml.into())
            .await
    }

    /// A read-only view of the active routes.
    pub async fn routes(&self) -> Result<Routes> {
        Ok(Routes::new(self.inner.status.get().table.clone()))
    }

    /// True once every listener of the active config is bound (false while shutting down).
    pub fn ready(&self) -> bool {
        self.inner.status.get().ready
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// The Prometheus text exposition of the metrics.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render()
    }

    /// The listener addresses of the active config, sorted (all bound once
    /// [`ProxyBuilder::start`], [`ProxyHandle::reload`] or [`ProxyHandle::apply`] returned `Ok`).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.inner
            .status
            .get()
            .table
            .listeners()
            .keys()
            .copied()
            .collect()
    }

    /// The address the admin endpoint is bound to, when enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.inner.admin_addr
    }

    /// Stops accepting; `graceful` waits up to the drain timeout for open connections,
    /// then closes the rest. Returns when done; [`ProxyHandle::wait`] then returns too.
    ///
    /// The admin endpoint keeps answering during the drain (`check_alive` 200, `check_ready`
    /// 503) and is closed when the drain is over: once this returns, its port refuses
    /// connections and can be bound again.
    pub async fn shutdown(&self, graceful: bool) -> Result<()> {
        let r = self
            .inner
            .supervisor
            .shutdown(graceful, self.inner.drain_timeout)
            .await;
        // Taken out before awaiting: the guard must not live across the await.
        let admin = self
            .inner
            .admin
            .lock()
            .map(|mut g| g.take())
            .unwrap_or_else(|p| p.into_inner().take());
        if let Some(admin) = admin {
            admin.stop().await;
        }
        let tx = self
            .inner
            .exit_tx
            .lock()
            .map(|mut g| g.take())
            .unwrap_or(None);
        drop(tx);
        r
    }

    /// Copies of the listening sockets and of the admin socket, for a hot upgrade.
    pub(crate) async fn handover(
        &self,
    ) -> Result<(
        Vec<(SocketAddr, std::net::TcpListener)>,
        Option<std::net::TcpListener>,
    )> {
        let listeners = self.inner.supervisor.handover().await?;
        let admin = match self
            .inner
            .admin
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some(a) => Some(a.copy.try_clone()?),
            None => None,
        };
        Ok((listeners, admin))
    }

    /// Waits until the proxy has shut down.
    pub async fn wait(&self) {
        while self.inner.exit_rx.recv_async().await.is_ok() {}
    }
}
