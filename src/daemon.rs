//! The foreground daemon (`tcpmap run`): the library plus signals and a file watch.
//!
//! `SIGHUP` → reload (and the `--session-ticket-keys` file read again); a change under any
//! config path, the secrets dir or the key file → the same (debounced);
//! `SIGTERM`/`SIGINT` → graceful drain, exit 0; a second one → exit at once.

mod log_bridge;
mod nofile;

pub use log_bridge::forward_log_records;

use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::rt::{SIGHUP, SIGINT, SIGTERM, SIGUSR2};
use anyhow::Context as _;
use futures_lite::{Stream, StreamExt};

use crate::cli::RunArgs;
use crate::config::ConfigInput;
use crate::rt;
use crate::{ProxyBuilder, ProxyHandle};

/// Runs the proxy until a shutdown signal; returns once drained.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.workers.resolve() == 1 {
        // One process serves the traffic itself: its tasks run on the local runtime, as a
        // worker's do (one thread runs them and drives the reactor and the coarse clock).
        rt::local::install().context("cannot start the runtime")?;
    }
    rt::block_on(run_async(args))
}

/// Runs a worker process (`tcpmap worker`, started by `tcpmap run --workers N`).
pub fn run_worker() -> anyhow::Result<()> {
    crate::workers::worker::run()
}

async fn run_async(args: RunArgs) -> anyhow::Result<()> {
    // Found now: after an upgrade replaced the file, this process's own image is "(deleted)".
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let upgrade = crate::workers::upgrade::receive().context("cannot take over the sockets")?;
    // After the handover: the file's keys win over the ones the old binary handed over.
    if let Some(path) = &args.session_ticket_keys {
        let keys = crate::state::ticket_file::read(path).map_err(anyhow::Error::msg)?;
        let count = keys.len();
        crate::state::tickets::use_file(keys).map_err(anyhow::Error::msg)?;
        tracing::info!(file = %path.display(), keys = count, "session-ticket keys from the file");
    }
    let tickets = args.session_ticket_keys.clone();
    let input = args.config.input();
    let workers = args.workers.resolve();
    // Before the workers start: they inherit the raised limit.
    let nofile = nofile::raise();
    let max_connections = match (args.max_connections, nofile) {
        (Some(max), _) => Some(max as usize),
        (None, Some(n)) => {
            let max = nofile::default_max_connections(n);
            tracing::info!(
                max_connections = max,
                nofile = n,
                "no --max-connections: the descriptor limit allows this many connections"
            );
            Some(max)
        }
        (None, None) => None,
    };
    let mut builder = builder(&args, input.clone(), &exe, workers, max_connections);
    let upgrade = upgrade.map(|(channel, sockets)| {
        builder = builder.clone().inherit(sockets);
        channel
    });
    // Register signals before starting so none is lost in between.
    let signals = rt::signals(&[SIGHUP, SIGTERM, SIGINT, SIGUSR2])
        .context("cannot install signal handlers")?;
    let proxy = builder.start().await?;
    let mut watched: Vec<PathBuf> = input.paths.clone();
    watched.extend(input.secrets_dir.iter().cloned());
    watched.extend(tickets.iter().cloned());
    let _watcher = watch(&watched, proxy.clone(), tickets.clone());
    // Logged once the watch is in place: a change after this line is seen.
    tracing::info!(admin = ?proxy.admin_addr(), workers, "tcpmap running");
    if let Some(channel) = &upgrade {
        // The old binary drains once it reads this.
        if let Err(e) = crate::workers::upgrade::ready(channel) {
            tracing::warn!(error = %e, "could not tell the old binary that this one serves");
        }
    }
    drop(upgrade);
    serve_signals(signals, &proxy, &exe, tickets.as_deref()).await;
    Ok(())
}

/// Reads the `--session-ticket-keys` file again and uses its keys when they changed (the
/// worker pool hands them to its workers within a second); a bad file is refused with one
/// warning and the keys in use stay.
fn reread_tickets(path: Option<&Path>) {
    let Some(path) = path else { return };
    match crate::state::ticket_file::read(path)
        .and_then(|keys| Ok((keys.len(), crate::state::tickets::use_file(keys)?)))
    {
        Ok((count, true)) => {
            tracing::info!(file = %path.display(), keys = count, "session-ticket keys changed")
        }
        Ok((_, false)) => {}
        Err(e) => tracing::warn!("session-ticket keys not reloaded, the old keys stay: {e}"),
    }
}

/// The library's builder for `tcpmap run`'s arguments: the config `input`, timeouts and
/// limits (`max_connections`: the flag's, or the descriptor limit's), and where connections run (`workers` processes started from `exe`, or, for one,
/// the installed runtime's thread).
fn builder(
    args: &RunArgs,
    input: ConfigInput,
    exe: &Path,
    workers: usize,
    max_connections: Option<usize>,
) -> ProxyBuilder {
    let mut builder = ProxyBuilder::new()
        .input(input)
        .drain_timeout(Duration::from_secs(args.drain_timeout))
        .spread_drain(args.drain_strategy == crate::cli::DrainStrategy::Spread)
        .dont_log_null(args.dont_log_null)
        .resolv_conf(args.resolv_conf.clone())
        .handshake_timeout(Duration::from_secs_f64(args.handshake_timeout));
    if let Some(addr) = args.admin {
        builder = builder.admin(addr);
    }
    if let Some(max) = max_connections {
        builder = builder.max_connections(max);
    }
    if workers > 1 {
        let pool = crate::workers::pool::PoolConfig {
            workers,
            exe: exe.to_path_buf(),
            args: vec![
                "worker".to_string(),
                "--log-format".to_string(),
                match args.log_format {
                    crate::cli::LogFormat::Text => "text",
                    crate::cli::LogFormat::Json => "json",
                }
                .to_string(),
            ],
            settings: builder.worker_settings(),
        };
        builder.worker_processes(pool)
    } else {
        // N = 1 of the library's plane: the installed runtime's one thread.
        builder.workers(1)
    }
}

/// Serves the signals until one ends the process: `SIGHUP` reloads, `SIGUSR2` hands over to
/// a new binary (then drains this one), `SIGTERM`/`SIGINT` drain (a second one exits at once).
async fn serve_signals<S>(mut signals: S, proxy: &ProxyHandle, exe: &Path, tickets: Option<&Path>)
where
    S: Stream<Item = c_int> + Unpin,
{
    while let Some(signal) = signals.next().await {
        match signal {
            SIGHUP => {
                tracing::info!("SIGHUP: reloading");
                reread_tickets(tickets);
                report("sighup", proxy.reload().await);
            }
            SIGUSR2 => {
                tracing::info!(exe = %exe.display(), "SIGUSR2: starting a new binary to take over");
                match hot_upgrade(proxy, exe).await {
                    Ok(pid) => {
                        tracing::info!(pid, "upgrade: the new binary serves; draining this one");
                        let _ = proxy.shutdown(true).await;
                        return;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "upgrade failed; this binary keeps serving")
                    }
                }
            }
            SIGTERM | SIGINT => {
                tracing::info!(
                    signal,
                    "shutting down gracefully (a second signal exits at once)"
                );
                drain_unless_signalled(&mut signals, proxy).await;
                return;
            }
            _ => {}
        }
    }
}

/// Drains the proxy, unless a second `SIGTERM`/`SIGINT` comes first: then returns at once.
async fn drain_unless_signalled<S>(signals: &mut S, proxy: &ProxyHandle)
where
    S: Stream<Item = c_int> + Unpin,
{
    let drain = proxy.shutdown(true);
    let second = async {
        while let Some(s) = signals.next().await {
            if s == SIGTERM || s == SIGINT {
                return;
            }
        }
    };
    use futures_lite::FutureExt;
    let done = async { Some(drain.await) }.or(async {
        second.await;
        None
    });
    if done.await.is_none() {
        tracing::warn!("second signal: exiting now");
    }
}

/// Starts `exe` again with this process's arguments, hands it the sockets and waits until
/// it serves; its pid.
async fn hot_upgrade(proxy: &ProxyHandle, exe: &Path) -> anyhow::Result<u32> {
    let (listeners, admin) = proxy.handover().await?;
    let exe = exe.to_path_buf();
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // The keys the workers (or this process) use now, so tickets resume on the new binary.
    let tickets = crate::state::tickets::current()
        .inspect_err(|e| tracing::warn!(error = %e, "no session-ticket keys to hand over"))
        .ok();
    let pid = rt::spawn_blocking(move || {
        crate::workers::upgrade::start_new(&exe, &args, listeners, admin, tickets)
    })
    .await?;
    Ok(pid)
}

/// One line per reload: what triggered it and what changed, or why it was rejected.
fn report(trigger: &'static str, result: crate::Result<crate::ReloadReport>) {
    match result {
        Ok(r) => tracing::info!(
            trigger,
            generation = r.applied.generation,
            started = r.applied.started.len(),
            stopped = r.applied.stopped.len(),
            retargeted = r.applied.retargeted.len(),
            warnings = r.warnings.len(),
            "reload applied"
        ),
        Err(crate::Error::Config(errors)) => {
            // One line: the ConfigActor has already logged each error on its own line.
            let joined: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            tracing::warn!(
                trigger,
                errors = errors.len(),
                "reload rejected, old config keeps serving: {}",
                joined.join("; ")
            );
        }
        Err(e) => tracing::warn!(trigger, "reload rejected, old config keeps serving: {e}"),
    }
}

/// Watches config paths and the secrets dir; debounces bursts (editors write, rename,
/// chmod; Kubernetes swaps `..data`) into one reload.
fn watch(
    paths: &[PathBuf],
    proxy: ProxyHandle,
    tickets: Option<PathBuf>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let (tx, rx) = rt::mailbox::<()>(1);
    let targets: Vec<PathBuf> = paths.iter().map(|p| absolute(p)).collect();
    let filter = targets.clone();
    let mut watcher =
        match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                tracing::trace!(kind = ?event.kind, paths = ?event.paths, "file event");
                if event.kind.is_access() {
                    return;
                }
                if event.paths.iter().any(|p| relevant(p, &filter)) {
                    // Full mailbox = a reload is already pending.
                    let _ = tx.try_send(());
                }
            }
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "file watch unavailable; reload with SIGHUP");
                return None;
            }
        };
    for t in &targets {
        // Watch a file's directory: editors and ConfigMaps replace files by rename.
        let (dir, mode) = if t.is_dir() {
            (t.clone(), RecursiveMode::Recursive)
        } else {
            (
                t.parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| t.clone()),
                RecursiveMode::NonRecursive,
            )
        };
        if let Err(e) = watcher.watch(&dir, mode) {
            tracing::warn!(path = %dir.display(), error = %e, "cannot watch");
        }
    }
    rt::detach(async move {
        while rx.recv_async().await.is_ok() {
            // Debounce: wait for 300 ms of quiet.
            loop {
                match rt::timeout(Duration::from_millis(300), rx.recv_async()).await {
                    Some(Ok(())) => continue,
                    Some(Err(_)) => return,
                    None => break,
                }
            }
            tracing::info!("config or secret changed: reloading");
            reread_tickets(tickets.as_deref());
            report("watch", proxy.reload().await);
        }
    });
    Some(watcher)
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// True when a changed path concerns one of the targets: inside a watched directory, the
/// file itself, or a Kubernetes `..data` swap next to it.
fn relevant(changed: &Path, targets: &[PathBuf]) -> bool {
    targets.iter().any(|t| {
        if changed.starts_with(t) {
            return true;
        }
        let same_dir = changed.parent() == t.parent();
        let name = changed.file_name().and_then(|n| n.to_str()).unwrap_or("");
        same_dir && (Some(changed.file_name()) == Some(t.file_name()) || name.starts_with(".."))
    })
}
