//! A worker process (`tcpmap worker`, started by the pool; not for users).
//!
//! Its standard input is its end of the control channel. It runs the data-plane actors —
//! a Supervisor over ListenerActors and ConnectionActors, and a ResolverActor — on the local
//! runtime (`rt::local`: one thread runs every task and drives the reactor and the coarse
//! clock) while this thread answers the control channel, one request at a time:
//!
//! ```text
//! Hello{settings, tickets} + fd ─▶ take the ticket keys; build Shared (limits counted in
//!                                 the shared memory the fd maps)
//! TicketKeys{keys}              ─▶ seal new tickets with the rotated keys
//! Prepare{bundle} + socket fds  ─▶ config::build_bundle (the Supervisor's pure code) ─▶ held
//! Commit                        ─▶ Supervisor.apply(table, given sockets, generation)
//! Metrics / Status              ─▶ this worker's registry / generation and open connections
//! StopAccepting                 ─▶ close the listeners (the first step of a drain)
//! Shutdown                      ─▶ drain like `tcpmap run` does, reply, exit 0
//! ```
//!
//! When the Supervisor goes away (its end closes) the worker drains and exits.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use super::channel::Channel;
use super::codec::{FromWorker, ToWorker};
use super::shm::Counters;
use crate::actors::resolver::{ResolverConfig, ResolverHandle};
use crate::actors::supervisor::{Given, Status, SupervisorHandle};
use crate::actors::{Count, Limits, Shared};
use crate::metrics::Metrics;
use crate::route::{MappingId, RouteTable};
use crate::rt;

/// The config a `Prepare` built, waiting for `Commit`.
struct Pending {
    generation: u64,
    table: RouteTable,
    sockets: HashMap<SocketAddr, TcpListener>,
}

/// Runs the worker until the Supervisor tells it to stop (or goes away).
pub(crate) fn run() -> anyhow::Result<()> {
    // Every task of this process runs on one thread that also drives the reactor and the
    // coarse clock (`rt::local`); installed before anything spawns or registers a socket.
    rt::local::install()?;
    let control = std::io::stdin().as_fd().try_clone_to_owned()?;
    let mut channel = Channel::new(control);
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
        Some(keys) => crate::config::tls::tickets::install(keys).map_err(anyhow::Error::msg)?,
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
    // Every line this process logs from now on says `worker=N`, on whichever thread.
    crate::logwriter::tag_worker(id);
    let metrics = Metrics::new();
    let (kill, tripwire) = rt::tripwire();
    let resolver = ResolverConfig {
        resolv_conf: settings.resolv_conf.clone(),
        ..ResolverConfig::default()
    };
    let endpoints = crate::actors::endpoints::EndpointRegistry::new(metrics.clone());
    if let Some(table) = counters.clients(id) {
        endpoints.use_client_table(table);
    }
    let shared = Arc::new(Shared {
        endpoints: endpoints.clone(),
        proxy_log: crate::actors::ratelog::RateLimitedLog::new(Duration::from_secs(1)),
        resolver: rt::block_on(async {
            ResolverHandle::spawn_observed(resolver, Some(metrics.clone()))
        }),
        metrics: metrics.clone(),
        limits: Limits {
            max_connections: settings.max_connections.map(|m| m as usize),
            handshake_timeout: Duration::from_millis(settings.handshake_timeout_ms),
            zero_copy: settings.zero_copy,
        },
        active: Count::Shared {
            total: totals.count,
            mine: mine.count,
        },
        kill: tripwire,
        breaker_log: crate::actors::ratelog::RateLimitedLog::new(Duration::from_secs(1)),
    });
    // Each worker checks its own endpoints' health (docs/operations.md, "Worker processes").
    crate::actors::health::spawn(
        Arc::downgrade(&endpoints),
        shared.resolver.clone(),
        metrics.clone(),
    );
    let status = Arc::new(Status::default());
    let supervisor = rt::block_on(async {
        SupervisorHandle::spawn(shared.clone(), status.clone(), kill, None, HashMap::new())
    });
    channel.send(&FromWorker::Ready, &[])?;
    let mut pending: Option<Pending> = None;
    let drain_timeout = Duration::from_millis(settings.drain_timeout_ms);
    loop {
        let msg = match channel.recv::<ToWorker>() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "the Supervisor is gone; draining");
                let _ = rt::block_on(supervisor.shutdown(true, drain_timeout));
                return Ok(());
            }
        };
        let reply = match msg {
            ToWorker::Hello { .. } => FromWorker::Failed {
                message: "already started".into(),
            },
            ToWorker::TicketKeys { keys } => match crate::config::tls::tickets::install(keys) {
                Ok(()) => FromWorker::TicketKeysTaken,
                Err(message) => FromWorker::Failed { message },
            },
            ToWorker::Prepare {
                generation,
                bundle,
                listeners,
                slots,
            } => {
                let fds = channel.take_fds(listeners.len())?;
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
                    endpoints.share_clients(id.clone(), s.index);
                    if let (Some(total), Some(share)) = (totals.slot(s.index), mine.slot(s.index)) {
                        metrics.share_breaker(id, total, share);
                    }
                }
                match crate::config::build_bundle(&bundle, Vec::new()) {
                    #[cfg(feature = "fault-injection")]
                    Ok(loaded)
                        if crate::fault::on_prepare(
                            id,
                            crate::actors::mapping_ids(&loaded.table).map(|m| m.name.as_str()),
                        ) =>
                    {
                        FromWorker::Failed {
                            message: "fault injection: this worker cannot apply it".into(),
                        }
                    }
                    Ok(loaded) => {
                        pending = Some(Pending {
                            generation,
                            table: loaded.table,
                            sockets,
                        });
                        FromWorker::Prepared
                    }
                    Err(problems) => {
                        let lines: Vec<String> = problems
                            .iter()
                            .filter(|p| p.is_error())
                            .map(ToString::to_string)
                            .collect();
                        FromWorker::Failed {
                            message: lines.join("; "),
                        }
                    }
                }
            }
            ToWorker::Commit => match pending.take() {
                None => FromWorker::Failed {
                    message: "nothing prepared".into(),
                },
                Some(p) => {
                    let given = Given {
                        generation: p.generation,
                        sockets: p.sockets,
                    };
                    match rt::block_on(supervisor.apply_given(p.table, given)) {
                        Ok(Ok(report)) => FromWorker::Committed {
                            generation: report.generation,
                        },
                        Ok(Err(e)) => FromWorker::Failed {
                            message: format!("{e:?}"),
                        },
                        Err(e) => FromWorker::Failed {
                            message: e.to_string(),
                        },
                    }
                }
            },
            ToWorker::Abort => {
                pending = None;
                FromWorker::Aborted
            }
            ToWorker::Metrics => FromWorker::Metrics {
                text: metrics.render_openmetrics(),
            },
            ToWorker::Status => FromWorker::Status {
                generation: status.get().generation(),
                active: metrics
                    .snapshot()
                    .mappings
                    .iter()
                    .map(|m| m.active.max(0) as u64)
                    .sum(),
            },
            ToWorker::StopAccepting => {
                let _ = rt::block_on(supervisor.stop_accepting());
                FromWorker::Stopped
            }
            ToWorker::Shutdown {
                graceful,
                drain_timeout_ms,
            } => {
                let _ = rt::block_on(
                    supervisor.shutdown(graceful, Duration::from_millis(drain_timeout_ms)),
                );
                let _ = channel.send(&FromWorker::Drained, &[]);
                return Ok(());
            }
        };
        channel.send(&reply, &[])?;
    }
}
