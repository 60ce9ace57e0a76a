//! The worker processes' lives: start one (its process, its monitor thread, its link) and
//! bring it up to the config that serves; replace one that died, with a backoff when it keeps
//! dying soon after its start; stop accepting and drain them all at shutdown.

use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{Pool, PoolMsg, Worker};
use crate::admin::status::counters;
use crate::rt;
use crate::workers::channel;
use crate::workers::codec::{FromWorker, PoolError, ToWorker};
use crate::workers::link::Link;

impl Pool {
    /// Starts worker `id`'s process and says hello (no config yet).
    pub(super) fn start(&mut self, id: u32) -> std::io::Result<()> {
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
                last_metrics: super::LastMetrics::default(),
                last_counts: super::LastCounts::Named(Vec::new()),
                exited,
                counts: false,
                keeps: false,
            },
        );
        tracing::debug!(worker = id, pid, "worker started");
        Ok(())
    }

    /// Sends `Hello` to a fresh worker and, when a config serves, brings it up to it.
    pub(super) async fn hello(&mut self, id: u32) -> Result<(), PoolError> {
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
        let mut keeps = false;
        PoolError::expect(id, w.link.call(ToWorker::Commit, Vec::new()).await, |r| {
            keeps = matches!(r, FromWorker::Committed { keeps: true, .. });
            matches!(r, FromWorker::Committed { .. })
        })?;
        if let Some(w) = self.workers.get_mut(&id) {
            w.generation = generation;
            w.keeps = keeps;
        }
        Ok(())
    }

    pub(super) async fn exited(&mut self, id: u32, pid: u32, status: String) {
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
        // Its counters as it last gave them (rendered as text only now, once).
        let text = dead.last_metrics.text();
        self.retired.add(&text);
        let last = counters::latest(dead.last_counts.named(), counters::from_openmetrics(&text));
        let before = std::mem::take(&mut self.retired_counts);
        self.retired_counts = std::sync::Arc::new(counters::sum([before.to_vec(), last]));
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

    pub(super) async fn respawn(&mut self, id: u32) {
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
    pub(super) async fn stop_accepting(&mut self) {
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

    pub(super) async fn shutdown(&mut self, graceful: bool, drain_timeout: Duration) {
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
