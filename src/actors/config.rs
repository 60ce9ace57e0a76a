//! ConfigActor: turns reload requests into validated route tables for the Supervisor.
//!
//! Messages: `Reload` (SIGHUP, file watch, `ProxyHandle::reload`) and `ApplyYaml`
//! (`ProxyHandle::apply`). Each one re-reads config and secrets, validates completely
//! (`crate::config::load`, on a blocking thread), then sends `Apply` to the Supervisor — or
//! keeps the old table and reports every error. One reload at a time, in order.

use std::sync::Arc;

use super::supervisor::{ApplyError, ApplyReport, SupervisorHandle};
use crate::config::{ConfigError, ConfigInput};
use crate::metrics::Metrics;
use crate::rt::{self, Receiver, Sender};

/// The outcome of a successful reload.
#[derive(Debug, Clone)]
pub struct ReloadReport {
    /// What the Supervisor changed.
    pub applied: ApplyReport,
    /// Warnings of the new config.
    pub warnings: Vec<ConfigError>,
}

pub(crate) enum ConfigMsg {
    Reload {
        respond_to: Sender<crate::Result<ReloadReport>>,
    },
    ApplyYaml {
        name: String,
        yaml: String,
        respond_to: Sender<crate::Result<ReloadReport>>,
    },
}

/// The only way to talk to the ConfigActor.
#[derive(Clone)]
pub(crate) struct ConfigHandle {
    tx: Sender<ConfigMsg>,
}

impl ConfigHandle {
    /// Starts the actor; nothing is loaded until the first [`Self::reload`], which is how the
    /// proxy starts (the first config takes the same path as every later one).
    pub(crate) fn spawn(
        input: ConfigInput,
        supervisor: SupervisorHandle,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (tx, rx) = rt::mailbox(16);
        rt::detach(
            ConfigActor {
                input,
                supervisor,
                metrics,
                first: true,
                rx,
            }
            .run(),
        );
        ConfigHandle { tx }
    }

    /// Re-reads every config source and secret and applies the result.
    pub(crate) async fn reload(&self) -> crate::Result<ReloadReport> {
        let (respond_to, rx) = rt::oneshot();
        self.tx
            .send_async(ConfigMsg::Reload { respond_to })
            .await
            .map_err(|_| crate::Error::ActorGone)?;
        rx.recv_async().await.map_err(|_| crate::Error::ActorGone)?
    }

    /// Replaces the config sources with in-memory YAML and applies it.
    pub(crate) async fn apply_yaml(
        &self,
        name: String,
        yaml: String,
    ) -> crate::Result<ReloadReport> {
        let (respond_to, rx) = rt::oneshot();
        self.tx
            .send_async(ConfigMsg::ApplyYaml {
                name,
                yaml,
                respond_to,
            })
            .await
            .map_err(|_| crate::Error::ActorGone)?;
        rx.recv_async().await.map_err(|_| crate::Error::ActorGone)?
    }
}

struct ConfigActor {
    input: ConfigInput,
    supervisor: SupervisorHandle,
    metrics: Arc<Metrics>,
    /// No config applied yet (the proxy is starting).
    first: bool,
    rx: Receiver<ConfigMsg>,
}

impl ConfigActor {
    async fn run(mut self) {
        while let Ok(msg) = self.rx.recv_async().await {
            match msg {
                ConfigMsg::Reload { respond_to } => {
                    let input = self.input.clone();
                    let _ = respond_to.send(self.load_and_apply(input).await);
                }
                ConfigMsg::ApplyYaml {
                    name,
                    yaml,
                    respond_to,
                } => {
                    let mut input = self.input.clone();
                    input.paths.clear();
                    input.inline = vec![(name, yaml)];
                    let result = self.load_and_apply(input.clone()).await;
                    if result.is_ok() {
                        // Later reloads re-read this in-memory config (and the secrets).
                        self.input = input;
                    }
                    let _ = respond_to.send(result);
                }
            }
        }
    }

    /// Loads, validates and applies `input`; records the outcome (status, reload counter).
    async fn load_and_apply(&mut self, input: ConfigInput) -> crate::Result<ReloadReport> {
        let result = self.try_load_and_apply(input).await;
        self.metrics.reload(result.is_ok());
        if result.is_ok() {
            self.first = false;
        }
        result
    }

    async fn try_load_and_apply(&self, input: ConfigInput) -> crate::Result<ReloadReport> {
        let (loaded, bundle) = rt::spawn_blocking(move || {
            let (bundle, problems) = crate::config::read(&input);
            (crate::config::build_bundle(&bundle, problems), bundle)
        })
        .await;
        let loaded = match loaded {
            Ok(l) => l,
            Err(problems) => {
                let (errors, warnings): (Vec<_>, Vec<_>) =
                    problems.into_iter().partition(|p| p.is_error());
                if self.first {
                    tracing::error!(errors = errors.len(), "config invalid; nothing started");
                } else {
                    tracing::warn!(
                        errors = errors.len(),
                        "config rejected; the old routes keep serving"
                    );
                }
                for e in &errors {
                    tracing::warn!("{e}");
                }
                self.supervisor
                    .rejected(strings(&errors), strings(&warnings))
                    .await?;
                return Err(crate::Error::Config(errors));
            }
        };
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        let warnings = strings(&loaded.warnings);
        let bundle = Arc::new(bundle);
        match self
            .supervisor
            .apply(loaded.table, warnings, bundle)
            .await?
        {
            Ok(applied) => Ok(ReloadReport {
                applied,
                warnings: loaded.warnings,
            }),
            Err(ApplyError::Bind(addr, source)) => Err(crate::Error::Bind { addr, source }),
            Err(ApplyError::Workers(e)) => Err(crate::Error::Workers(e.to_string())),
            Err(ApplyError::ShuttingDown) => Err(crate::Error::ActorGone),
        }
    }
}

/// The problems as the lines `/config` shows.
fn strings(problems: &[ConfigError]) -> Vec<String> {
    problems.iter().map(ToString::to_string).collect()
}
