//! ListenerActor: one per `(address, port)`.
//!
//! Owns the bound socket and the current [`Generation`] (swapped by `Retarget`, so open
//! connections keep the generation they started with). Waits for the socket to be readable,
//! then accepts one connection per readiness report and spawns a ConnectionActor for it: no
//! accept ever comes back EAGAIN, because the listener is only asked once the reactor said a
//! connection is queued, and re-arming it (the `epoll_ctl` every wait costs anyway) reports
//! it ready again at once while more are queued. Accept errors such as EMFILE back off
//! instead of spinning.
//!
//! Messages (from the Supervisor only): `Retarget(generation)`, `Stop`.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_io::Async;
use futures_lite::FutureExt;

use super::admission::Admission;
use super::ratelog::RateLimitedLog;
use super::{Generation, Shared, connection};
use crate::close::CloseReason;
use crate::net::socket;
use crate::rt::{self, DrainToken, Receiver, Sender};

/// Messages a ListenerActor takes.
#[derive(Debug)]
pub(crate) enum ListenerMsg {
    /// Route new connections with this generation from now on.
    Retarget(Arc<Generation>),
    /// Stop accepting and close the socket; open connections run on. The reply comes
    /// once the socket is closed.
    Stop(Sender<()>),
}

/// The Supervisor's handle to a running listener.
#[derive(Debug, Clone)]
pub(crate) struct ListenerHandle {
    tx: Sender<ListenerMsg>,
}

impl ListenerHandle {
    /// Starts accepting on an already bound socket.
    pub(crate) fn spawn(
        socket: Async<TcpListener>,
        generation: Arc<Generation>,
        shared: Arc<Shared>,
        token: DrainToken,
    ) -> io::Result<ListenerHandle> {
        let addr = socket.get_ref().local_addr()?;
        let (tx, rx) = rt::mailbox(8);
        let actor = ListenerActor {
            socket,
            addr,
            generation,
            shared,
            token,
            rx,
            stopped: None,
            rejected_log: RateLimitedLog::new(Duration::from_secs(1)),
        };
        rt::detach(actor.supervised());
        Ok(ListenerHandle { tx })
    }

    /// Swaps the routes for new connections.
    pub(crate) async fn retarget(&self, generation: Arc<Generation>) -> bool {
        self.tx
            .send_async(ListenerMsg::Retarget(generation))
            .await
            .is_ok()
    }

    /// Stops accepting; returns once the socket is closed (the port refuses new connections).
    pub(crate) async fn stop(&self) {
        let (ack, closed) = rt::oneshot();
        // A send or receive error means the actor is already gone, which is what we want.
        if self.tx.send_async(ListenerMsg::Stop(ack)).await.is_ok() {
            let _ = closed.recv_async().await;
        }
    }
}

struct ListenerActor {
    socket: Async<TcpListener>,
    addr: SocketAddr,
    generation: Arc<Generation>,
    shared: Arc<Shared>,
    token: DrainToken,
    rx: Receiver<ListenerMsg>,
    /// Answered after the socket is closed.
    stopped: Option<Sender<()>>,
    /// At most one line per second about refused connections.
    rejected_log: RateLimitedLog,
}

enum Event {
    Msg(Option<ListenerMsg>),
    /// The socket is readable: a connection is queued (or an error is pending).
    Ready(io::Result<()>),
}

impl ListenerActor {
    /// Runs the accept loop; a panic inside it is caught, counted and the loop restarted
    /// with backoff, keeping the socket (the Supervisor's restart policy for listeners).
    async fn supervised(mut self) {
        let mut backoff = Duration::from_millis(50);
        loop {
            match AssertUnwindSafe(self.run()).catch_unwind().await {
                Ok(()) => break,
                Err(_) => {
                    tracing::error!(listener = %self.addr, "listener actor panicked; restarting");
                    self.shared.metrics.actor_restart("listener");
                    rt::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::debug!(listener = %self.addr, "listener stopped");
        let stopped = self.stopped.take();
        drop(self); // closes the socket
        if let Some(ack) = stopped {
            let _ = ack.send(());
        }
    }

    async fn run(&mut self) {
        let mut accept_backoff = Duration::from_millis(10);
        loop {
            let event = async { Event::Msg(self.rx.recv_async().await.ok()) }
                .or(async { Event::Ready(self.socket.readable().await) })
                .await;
            let accepted = match event {
                Event::Msg(Some(ListenerMsg::Retarget(generation))) => {
                    self.generation = generation;
                    continue;
                }
                Event::Msg(Some(ListenerMsg::Stop(ack))) => {
                    self.stopped = Some(ack);
                    return;
                }
                Event::Msg(None) => return,
                Event::Ready(Err(e)) => Err(e),
                Event::Ready(Ok(())) => socket::accept(&self.socket),
            };
            match accepted {
                Ok((stream, peer)) => {
                    accept_backoff = Duration::from_millis(10);
                    #[cfg(feature = "fault-injection")]
                    crate::fault::on_accept();
                    self.start_connection(stream, peer);
                }
                // Readiness without a connection (another process took it, or the client
                // gave up before we got to it): wait again.
                Err(e) if is_transient_accept_error(&e) => {}
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: wait for resources instead of spinning.
                    tracing::warn!(listener = %self.addr, error = %e, backoff_ms = accept_backoff.as_millis() as u64, "accept failed; backing off");
                    self.shared.metrics.internal_error("accept");
                    rt::sleep(accept_backoff).await;
                    accept_backoff = (accept_backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    fn start_connection(&self, stream: Async<TcpStream>, peer: SocketAddr) {
        let Some(admission) = Admission::enter(self.shared.clone()) else {
            if let (Some(max), Some(held_back)) = (
                self.shared.limits.max_connections,
                self.rejected_log.allow(Instant::now()),
            ) {
                log_rejected(self.addr, peer, max, held_back);
            }
            return;
        };
        let generation = self.generation.clone();
        let token = self.token.clone();
        let listener = self.addr;
        rt::detach(async move {
            // A panic unwinds out of `serve`, dropping its state: the admission ends the
            // connection's metrics (as `internal`, counting the internal error) and frees
            // its slots on the way. Only the log line is left to do here.
            let served = AssertUnwindSafe(connection::serve(
                stream, peer, listener, generation, admission,
            ))
            .catch_unwind()
            .await;
            if served.is_err() {
                tracing::error!(listener = %listener, client = %peer, end = CloseReason::Internal.as_str(), "connection task panicked");
            }
            drop(token);
        });
    }
}

/// Errors that concern one failed handshake, not the listener (retry at once).
fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// The rate-limited line about connections refused by `--max-connections`.
fn log_rejected(listener: SocketAddr, client: SocketAddr, max: usize, held_back: u64) {
    tracing::warn!(
        listener = %listener,
        client = %client,
        max_connections = max,
        suppressed = held_back,
        end = CloseReason::Limit.as_str(),
        "connection refused: --max-connections reached (at most one such line per second; `suppressed` counts the refusals not logged since the last line)"
    );
}
