//! The worker pool as the Supervisor's data plane: the same interface as connections in this
//! process (`actors::supervisor::plane`), carried out by every worker process in two phases.

use std::net::SocketAddr;
use std::time::Duration;

use super::pool::PoolHandle;
use crate::actors::supervisor::ApplyError;
use crate::actors::supervisor::plane::{BoxFuture, Change, DataPlane, PlaneStatus};

impl DataPlane for PoolHandle {
    fn apply(&mut self, change: Change) -> BoxFuture<'_, Result<Vec<SocketAddr>, ApplyError>> {
        Box::pin(async move {
            let started: Vec<SocketAddr> = change.bound.iter().map(|(a, _)| *a).collect();
            let mappings = change.table.mapping_ids().map(|m| (**m).clone()).collect();
            let generation = change.table.generation();
            PoolHandle::apply(
                self,
                generation,
                change.bundle,
                mappings,
                change.bound,
                change.plan.stop,
            )
            .await
            .map_err(|e| ApplyError::Workers(Box::new(e)))?;
            Ok(started)
        })
    }

    fn stop_accepting(&mut self) -> BoxFuture<'_, ()> {
        // Every worker stops accepting, so the ports refuse once this returns.
        Box::pin(PoolHandle::stop_accepting(self))
    }

    fn drain(&mut self, graceful: bool, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.shutdown(graceful, timeout).await;
            tracing::info!("drained: every worker finished");
        })
    }

    fn status(&self) -> PlaneStatus {
        PlaneStatus {
            runs_in: "every worker",
            open: None,
        }
    }
}
