//! ResolverActor: turns a mapping's `service` host into socket addresses for the
//! ConnectionActors, with a TTL cache, the family policy and a bounded lookup time.
//!
//! ```text
//! ConnectionActor ── ResolverHandle::resolve(host, port, families)
//!   ├─ IP literal ───────────────► answered in the handle (no actor round trip)
//!   ├─ hosts-file name ──────────► answered in the handle from the shared parsed file
//!   └─ Resolve{name, families} ──► actor (bounded mailbox; owns cache + waiters)
//!        ├─ cache hit ───────────► reply at once
//!        └─ miss ─ spawn lookup task (one per (name, families); later askers wait on it)
//!                    └─ Store{key, outcome} ─► actor (separate channel) ─► cache + every waiter
//! ```
//!
//! The actor never awaits a lookup or sends on a bounded channel that could be full: replies
//! are one-shot, and lookup tasks report on their own channel that only the actor reads, so
//! there is no cycle of bounded sends. A slow or dead nameserver delays only the names that
//! need it, and never longer than `lookup_timeout`. The DNS rules live in `crate::dns`, the
//! sockets in `crate::net::dns`; this file is only the actor, its handle and its messages.

mod files;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub(crate) use crate::dns::ResolveError;
use crate::dns::cache::{Cache, CacheKey, CachePolicy};
use crate::dns::{Resolved, order_by_family};
use crate::route::{Families, ServiceHost};
use crate::rt::{self, Receiver, Sender};
use files::Files;

/// Requests queued before `resolve` callers wait for room.
const MAILBOX: usize = 1024;
/// Lookup reports queued before lookup tasks wait (they never block the actor).
const STORE_MAILBOX: usize = 256;
/// Cached names kept at most.
const CACHE_CAPACITY: usize = 4096;
/// Shortest time a positive answer is cached, whatever its TTL.
const MIN_TTL: Duration = Duration::from_secs(1);
/// Extra time a caller waits for the actor beyond `lookup_timeout` before giving up.
const REPLY_GRACE: Duration = Duration::from_millis(500);

/// Where the resolver reads its configuration and how long it waits and caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolverConfig {
    /// The resolv.conf to use (`--resolv-conf`); default `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// The hosts file to use; default `/etc/hosts`.
    pub hosts_file: PathBuf,
    /// Total time one lookup may take, across nameservers, retries and search candidates.
    pub lookup_timeout: Duration,
    /// How long NXDOMAIN / no-data answers are cached.
    pub negative_ttl: Duration,
    /// Upper bound for caching a positive answer (record TTLs above it are cut).
    pub max_ttl: Duration,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            hosts_file: PathBuf::from("/etc/hosts"),
            lookup_timeout: Duration::from_secs(2),
            negative_ttl: Duration::from_secs(5),
            max_ttl: Duration::from_secs(300),
        }
    }
}

/// Counters of the resolver, read without a round trip.
// Read by the resolver tests (cache hits, queries sent); the data plane counts lookups in metrics.
#[cfg(test)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ResolverStats {
    /// `resolve` calls.
    pub(crate) lookups: u64,
    /// `resolve` calls that returned an error.
    pub(crate) failures: u64,
    /// Answers served from the cache (positive or negative).
    pub(crate) cache_hits: u64,
    /// DNS questions sent (one per record type and search candidate).
    pub(crate) queries: u64,
}

#[derive(Debug, Default)]
struct Counters {
    lookups: AtomicU64,
    failures: AtomicU64,
    cache_hits: AtomicU64,
    queries: AtomicU64,
}

/// State shared by the handles and the actor (no cache here: the actor owns that).
#[derive(Debug)]
struct Shared {
    config: ResolverConfig,
    files: Mutex<Files>,
    counters: Counters,
}

impl Shared {
    fn files(&self) -> std::sync::MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Addresses and when they expire (`None`: never, for IP literals).
type Answer = Result<(Vec<IpAddr>, Option<Instant>), ResolveError>;

/// How long a hosts-file answer is used before the file is asked again (it is re-read
/// when it changes, checked at most this often).
const HOSTS_TTL: Duration = Duration::from_secs(1);

/// A service's endpoint addresses and how long they are valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolution {
    /// Every address, preferred family first, each with the service port.
    pub(crate) addrs: Vec<SocketAddr>,
    /// When to ask again (the record TTL, clamped; `None` for an IP literal).
    pub(crate) expires: Option<Instant>,
}

/// The actor's protocol.
enum ResolverMsg {
    /// Resolve `name` (not an IP literal) under `families`.
    Resolve {
        name: String,
        families: Families,
        respond_to: Sender<Answer>,
    },
    /// A lookup task finished: cache the outcome and answer everyone waiting for `key`.
    Store {
        key: CacheKey,
        outcome: Result<Resolved, ResolveError>,
    },
}

/// The way in to the ResolverActor; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct ResolverHandle {
    mailbox: Sender<ResolverMsg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ResolverMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolverMsg::Resolve { name, families, .. } => {
                write!(f, "Resolve({name}, {families:?})")
            }
            ResolverMsg::Store { key, outcome } => write!(f, "Store({key:?}, {outcome:?})"),
        }
    }
}

impl ResolverHandle {
    /// Reads the files, starts the actor task and returns its handle, restarts not counted
    /// (the tests'; the data plane counts them: [`ResolverHandle::spawn_observed`]). The actor
    /// stops when the last handle is dropped.
    #[cfg(test)]
    pub(crate) fn spawn(config: ResolverConfig) -> ResolverHandle {
        Self::spawn_observed(config, None)
    }

    /// Reads the files, starts the actor task and returns its handle; restarts after a panic
    /// are counted in `metrics` (`tcpmap_actor_restarts_total{actor="resolver"}`). The actor
    /// stops when the last handle is dropped.
    pub(crate) fn spawn_observed(
        config: ResolverConfig,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> ResolverHandle {
        let files = Files::load(
            config.resolv_conf.clone(),
            config.hosts_file.clone(),
            Instant::now(),
        );
        let policy = CachePolicy {
            min_ttl: MIN_TTL,
            max_ttl: config.max_ttl,
            negative_ttl: config.negative_ttl,
            capacity: CACHE_CAPACITY,
        };
        let shared = Arc::new(Shared {
            config,
            files: Mutex::new(files),
            counters: Counters::default(),
        });
        let (mailbox, inbox) = rt::mailbox(MAILBOX);
        let (store_tx, stores) = rt::mailbox(STORE_MAILBOX);
        let actor = ResolverActor {
            inbox,
            stores,
            store_tx,
            cache: Cache::new(policy),
            waiting: HashMap::new(),
            shared: Arc::clone(&shared),
        };
        rt::detach(actor.supervised(metrics));
        ResolverHandle { mailbox, shared }
    }

    /// The addresses of `host`, each with `port`, preferred family first (IPv6 when both
    /// are allowed). IP literals and hosts-file names never wait for DNS.
    #[cfg(test)]
    pub(crate) async fn resolve(
        &self,
        host: &ServiceHost,
        port: u16,
        families: Families,
    ) -> Result<Vec<SocketAddr>, ResolveError> {
        self.resolve_endpoints(host, port, families)
            .await
            .map(|r| r.addrs)
    }

    /// Every address of `host` (with `port`) and when the answer expires: the endpoints of
    /// a service, as the connect stage and the health checks keep them.
    pub(crate) async fn resolve_endpoints(
        &self,
        host: &ServiceHost,
        port: u16,
        families: Families,
    ) -> Result<Resolution, ResolveError> {
        let counters = &self.shared.counters;
        counters.lookups.fetch_add(1, Ordering::Relaxed);
        let result = self.resolve_ips(host, families).await;
        if result.is_err() {
            counters.failures.fetch_add(1, Ordering::Relaxed);
        }
        result.map(|(ips, expires)| Resolution {
            addrs: ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect(),
            expires,
        })
    }

    /// The counters so far.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> ResolverStats {
        let c = &self.shared.counters;
        ResolverStats {
            lookups: c.lookups.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            queries: c.queries.load(Ordering::Relaxed),
        }
    }

    async fn resolve_ips(&self, host: &ServiceHost, families: Families) -> Answer {
        let name = match host {
            ServiceHost::Ip(ip) => return literal(*ip, families),
            ServiceHost::Dns(name) => name,
        };
        let bare = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return literal(ip, families);
        }
        let hosts = self.shared.files().hosts(Instant::now());
        if let Some(addrs) = hosts.lookup(name) {
            // A name listed only with the other family falls through to DNS, as with glibc.
            let allowed = order_by_family(addrs, families);
            if !allowed.is_empty() {
                return Ok((allowed, Some(Instant::now() + HOSTS_TTL)));
            }
        }
        let (respond_to, reply) = rt::oneshot();
        let msg = ResolverMsg::Resolve {
            name: name.clone(),
            families,
            respond_to,
        };
        self.mailbox
            .send_async(msg)
            .await
            .map_err(|_| ResolveError::ActorGone)?;
        match rt::timeout(
            self.shared.config.lookup_timeout + REPLY_GRACE,
            reply.recv_async(),
        )
        .await
        {
            Some(Ok(answer)) => answer,
            Some(Err(_)) => Err(ResolveError::ActorGone),
            None => Err(ResolveError::Timeout(name.clone())),
        }
    }
}

/// An IP literal resolves to itself when its family is allowed.
fn literal(ip: IpAddr, families: Families) -> Answer {
    let allowed = order_by_family(&[ip], families);
    if allowed.is_empty() {
        Err(ResolveError::NoData(ip.to_string()))
    } else {
        Ok((allowed, None))
    }
}

/// The actor: owns the cache and the lists of callers waiting for an in-flight lookup.
struct ResolverActor {
    inbox: Receiver<ResolverMsg>,
    stores: Receiver<ResolverMsg>,
    store_tx: Sender<ResolverMsg>,
    cache: Cache,
    waiting: HashMap<CacheKey, Vec<Sender<Answer>>>,
    shared: Arc<Shared>,
}

impl ResolverActor {
    /// Runs the actor; a panic inside it is caught, counted and the loop restarted with
    /// backoff. The request being handled when it panicked is answered `ActorGone` (its
    /// reply channel is dropped); every other caller keeps waiting for its lookup.
    async fn supervised(mut self, metrics: Option<Arc<crate::metrics::Metrics>>) {
        use futures_lite::FutureExt;
        let mut backoff = Duration::from_millis(10);
        loop {
            match std::panic::AssertUnwindSafe(self.run())
                .catch_unwind()
                .await
            {
                Ok(()) => break,
                Err(_) => {
                    tracing::error!("resolver actor panicked; restarting");
                    if let Some(m) = &metrics {
                        m.actor_restart("resolver");
                    }
                    rt::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        tracing::debug!("resolver actor stopped");
    }

    async fn run(&mut self) {
        loop {
            // Finished lookups first: there are at most as many as lookups in flight.
            let stores = async { self.stores.recv_async().await.ok() };
            let inbox = async { self.inbox.recv_async().await.ok() };
            match futures_lite::future::or(stores, inbox).await {
                Some(msg) => self.handle(msg),
                // Every handle is gone: stop (waiters, if any, see ActorGone).
                None => break,
            }
        }
    }

    fn handle(&mut self, msg: ResolverMsg) {
        match msg {
            ResolverMsg::Resolve {
                name,
                families,
                respond_to,
            } => {
                #[cfg(feature = "fault-injection")]
                crate::fault::on_resolve();
                self.resolve(name, families, respond_to)
            }
            ResolverMsg::Store { key, outcome } => {
                let now = Instant::now();
                self.cache.put(key.clone(), &outcome, now);
                let answer = outcome.map(|resolved| {
                    let expires = now + self.cache.lifetime(&resolved);
                    (resolved.addrs, Some(expires))
                });
                for waiter in self.waiting.remove(&key).unwrap_or_default() {
                    // The caller may have given up (timeout, dropped connection): nothing to do.
                    let _ = waiter.try_send(answer.clone());
                }
            }
        }
    }

    fn resolve(&mut self, name: String, families: Families, respond_to: Sender<Answer>) {
        let key = CacheKey::new(&name, families);
        let now = Instant::now();
        if let Some(answer) = self.cache.get_until(&key, now) {
            self.shared
                .counters
                .cache_hits
                .fetch_add(1, Ordering::Relaxed);
            let _ = respond_to.try_send(answer.map(|(addrs, until)| (addrs, Some(until))));
            return;
        }
        if let Some(waiters) = self.waiting.get_mut(&key) {
            waiters.push(respond_to);
            return;
        }
        self.waiting.insert(key.clone(), vec![respond_to]);
        let conf = self.shared.files().conf(now);
        let deadline = now + self.shared.config.lookup_timeout;
        let shared = Arc::clone(&self.shared);
        let store = self.store_tx.clone();
        rt::detach(async move {
            use futures_lite::FutureExt;
            let lookup =
                crate::net::dns::lookup(&name, families, &conf, deadline, &shared.counters.queries);
            // A bug in the lookup must still answer the waiters (and free the key).
            let outcome = std::panic::AssertUnwindSafe(lookup)
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(ResolveError::Io(name.clone(), "internal error".into())));
            tracing::debug!(%name, ?families, ?outcome, "DNS lookup finished");
            // The actor reads this channel in every loop turn; if it stopped, nobody waits.
            let _ = store.send_async(ResolverMsg::Store { key, outcome }).await;
        });
    }
}
