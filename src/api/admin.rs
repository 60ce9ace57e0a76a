//! The library's admin server: started by [`super::ProxyBuilder::start`] when an admin address
//! is set, stopped by the first shutdown once the drain is over.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::actors::supervisor::{Status, ThreadsView};
use crate::metrics::Metrics;
use crate::rt;
use crate::{Error, Result};

/// The running admin server: its address, what stops it, and its task (done once the
/// listening socket is closed).
pub(super) struct AdminServer {
    pub(super) addr: SocketAddr,
    stop: rt::Trigger,
    task: rt::Task<()>,
    /// A copy of the listening socket for a hot upgrade (closed with the server).
    pub(super) copy: std::net::TcpListener,
}

impl AdminServer {
    /// Stops the server; returns once its listening socket is closed.
    pub(super) async fn stop(self) {
        self.stop.fire();
        self.task.await;
    }
}

pub(super) async fn start_admin(
    addr: SocketAddr,
    inherited: Option<std::net::TcpListener>,
    metrics: Arc<Metrics>,
    status: Arc<Status>,
    endpoints: Arc<crate::state::endpoints::EndpointRegistry>,
    pool: Option<crate::workers::pool::PoolHandle>,
    threads: Option<Arc<ThreadsView>>,
) -> Result<AdminServer> {
    let listener = match inherited {
        Some(l) => rt::ControlListener::from_std(l)?,
        None => crate::admin::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?,
    };
    let local = listener.get_ref().local_addr()?;
    let copy = listener.get_ref().try_clone()?;
    let ready_status = status.clone();
    let source = super::status::StatusSource {
        started: std::time::Instant::now(),
        status: status.clone(),
        metrics: metrics.clone(),
        endpoints: endpoints.clone(),
        pool: pool.clone(),
        threads: threads.clone(),
        layout: Default::default(),
    };
    let json_source = source.clone();
    let workers = pool.map(|pool| {
        let own = metrics.clone();
        let for_status = pool.clone();
        crate::admin::Workers {
            metrics: Arc::new(move || {
                let (pool, own) = (pool.clone(), own.render_openmetrics());
                Box::pin(async move { pool.metrics(own).await })
            }),
            status: Arc::new(move || {
                let pool = for_status.clone();
                Box::pin(
                    async move { serde_json::to_value(pool.status().await).unwrap_or_default() },
                )
            }),
        }
    });
    let state = crate::admin::AdminState {
        metrics,
        ready: Arc::new(move || ready_status.get().ready),
        config_json: Arc::new(move || config_json(&status, &endpoints, threads.as_deref())),
        workers,
        status: Arc::new(move || {
            let source = source.clone();
            Box::pin(async move { source.snapshot().await })
        }),
        status_json: Some(Arc::new(move || {
            let source = json_source.clone();
            Box::pin(async move { source.json().await })
        })),
    };
    let (stop, stopped) = rt::tripwire();
    let task = rt::spawn(crate::admin::serve(listener, state, stopped));
    Ok(AdminServer {
        addr: local,
        stop,
        task,
        copy,
    })
}

fn config_json(
    status: &Status,
    endpoints: &crate::state::endpoints::EndpointRegistry,
    threads: Option<&ThreadsView>,
) -> serde_json::Value {
    let snapshot = status.get();
    let mut json = serde_json::json!({
        "generation": snapshot.generation(),
        "ready": snapshot.ready,
        "routes": snapshot.table.to_json(),
        "status": snapshot.table.status().json,
        "endpoints": crate::state::endpoints::table_json(&snapshot.table, endpoints),
        "last_reload": snapshot.last_reload,
    });
    // In-process data planes: each thread and the connections open on it.
    if let (Some(threads), Some(obj)) = (threads, json.as_object_mut()) {
        let list = (threads.connections().into_iter())
            .map(|(name, open)| serde_json::json!({ "name": name, "connections": open }))
            .collect();
        obj.insert("threads".to_string(), serde_json::Value::Array(list));
    }
    json
}
