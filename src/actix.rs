//! The actix adapter (cargo feature `actix`): [`ProxyActor`], an actix actor wrapping a
//! [`ProxyHandle`], and its messages ([`Reload`], [`Apply`], [`Routes`], [`GetMetrics`],
//! [`Shutdown`]).
//!
//! actix runs its actors on tokio; tcpmap's actors run on their own runtime. The adapter never
//! polls a tcpmap future on a tokio thread: each request is moved to a task on tcpmap's runtime
//! (`rt::bridge`) and the actix side awaits the reply on a one-shot channel. Config changes
//! ([`Reload`], [`Apply`]) and [`Shutdown`] are atomic responses, handled one at a time in
//! arrival order; [`Routes`] runs concurrently; [`GetMetrics`] is answered at once.
//! This module must not name the runtime or the channel crate (that is `rt`'s job).
//!
//! ```
//! use tcpmap::actix::{ProxyActor, Reload, Shutdown};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
//! let yaml = format!(
//!     "apiVersion: ambassador/v1\nkind: TCPMapping\nname: ssh\n\
//!      address: 127.0.0.1\nport: {port}\nservice: upstream:22\n"
//! );
//! let system = actix::System::new();
//! system.block_on(async move {
//!     let builder = tcpmap::ProxyBuilder::new().config_yaml("ssh.yaml", yaml);
//!     let proxy = ProxyActor::launch(builder).await?;
//!     let report = proxy.send(Reload).await??;
//!     assert_eq!(report.applied.retargeted.len(), 1);
//!     proxy.send(Shutdown { graceful: true }).await??;
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(()) }
//! ```

use std::future::Future;

use ::actix::{Actor, ActorFutureExt, AtomicResponse, Context, Handler, Message, MessageResult};
use ::actix::{Addr, ResponseFuture, WrapFuture};

use crate::metrics::MetricsSnapshot;
use crate::route::Routes as RoutesView;
use crate::{Error, ProxyBuilder, ProxyHandle, ReloadReport, Result};

/// An actix actor that owns a [`ProxyHandle`] and forwards messages to the proxy.
#[derive(Debug, Clone)]
pub struct ProxyActor {
    handle: ProxyHandle,
}

impl ProxyActor {
    /// Wraps a running proxy (started with [`ProxyBuilder::start_blocking`] or elsewhere).
    pub fn new(handle: ProxyHandle) -> Self {
        ProxyActor { handle }
    }

    /// Starts a proxy from `builder` on tcpmap's runtime, then starts its actor in the
    /// current actix system. Call it from inside a running `actix::System`.
    pub async fn launch(builder: ProxyBuilder) -> Result<Addr<ProxyActor>> {
        let handle = on_proxy_runtime(builder.start()).await?;
        Ok(ProxyActor::new(handle).start())
    }

    /// The wrapped handle (for calls the messages do not cover, e.g. `admin_addr`).
    pub fn handle(&self) -> &ProxyHandle {
        &self.handle
    }
}

impl Actor for ProxyActor {
    type Context = Context<Self>;
}

/// Runs a tcpmap future on tcpmap's runtime and awaits its result from the actix side.
async fn on_proxy_runtime<T, F>(future: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    crate::rt::bridge(future)
        .await
        .unwrap_or(Err(Error::ActorGone))
}

/// Re-read every config source and secret; see [`ProxyHandle::reload`].
#[derive(Debug, Clone, Copy)]
pub struct Reload;

impl Message for Reload {
    type Result = Result<ReloadReport>;
}

/// Replace the config with in-memory YAML; see [`ProxyHandle::apply`].
#[derive(Debug, Clone)]
pub struct Apply(pub String);

impl Message for Apply {
    type Result = Result<ReloadReport>;
}

/// Ask for the active route table; see [`ProxyHandle::routes`].
#[derive(Debug, Clone, Copy)]
pub struct Routes;

impl Message for Routes {
    type Result = Result<RoutesView>;
}

/// Ask for a snapshot of the counters; see [`ProxyHandle::metrics`].
#[derive(Debug, Clone, Copy)]
pub struct GetMetrics;

impl Message for GetMetrics {
    type Result = MetricsSnapshot;
}

/// Stop the proxy; see [`ProxyHandle::shutdown`]. The actor stops too.
#[derive(Debug, Clone, Copy)]
pub struct Shutdown {
    /// Wait up to the drain timeout for open connections.
    pub graceful: bool,
}

impl Message for Shutdown {
    type Result = Result<()>;
}

impl Handler<Reload> for ProxyActor {
    type Result = AtomicResponse<Self, Result<ReloadReport>>;

    fn handle(&mut self, _: Reload, _: &mut Context<Self>) -> Self::Result {
        let handle = self.handle.clone();
        let fut = on_proxy_runtime(async move { handle.reload().await });
        AtomicResponse::new(Box::pin(fut.into_actor(self)))
    }
}

impl Handler<Apply> for ProxyActor {
    type Result = AtomicResponse<Self, Result<ReloadReport>>;

    fn handle(&mut self, msg: Apply, _: &mut Context<Self>) -> Self::Result {
        let handle = self.handle.clone();
        let fut = on_proxy_runtime(async move { handle.apply(msg.0).await });
        AtomicResponse::new(Box::pin(fut.into_actor(self)))
    }
}

impl Handler<Routes> for ProxyActor {
    type Result = ResponseFuture<Result<RoutesView>>;

    fn handle(&mut self, _: Routes, _: &mut Context<Self>) -> Self::Result {
        let handle = self.handle.clone();
        Box::pin(on_proxy_runtime(async move { handle.routes().await }))
    }
}

impl Handler<GetMetrics> for ProxyActor {
    type Result = MessageResult<GetMetrics>;

    fn handle(&mut self, _: GetMetrics, _: &mut Context<Self>) -> Self::Result {
        // A read of atomics: nothing to bridge.
        MessageResult(self.handle.metrics())
    }
}

impl Handler<Shutdown> for ProxyActor {
    type Result = AtomicResponse<Self, Result<()>>;

    fn handle(&mut self, msg: Shutdown, _: &mut Context<Self>) -> Self::Result {
        let handle = self.handle.clone();
        let fut = on_proxy_runtime(async move { handle.shutdown(msg.graceful).await });
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(
            |result, _actor, ctx: &mut Context<Self>| {
                use ::actix::ActorContext;
                ctx.stop();
                result
            },
        )))
    }
}
