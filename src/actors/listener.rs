//! ListenerActor: one per `(address, port)`.
//!
//! Owns the bound socket and the current [`Generation`] (swapped by `Retarget`, so open
//! connections keep the generation they started with). Waits for an edge on the socket, then
//! accepts until EAGAIN ([`ACCEPT_BATCH`] at a time, yielding between rounds) and
//! spawns a ConnectionActor for each. The reactor is edge-triggered (`rt::reactor`): a round
//! that did not end in EAGAIN is followed by another without waiting, since the connections
//! still queued may bring no new edge. Accept errors such as EMFILE back off, then retry.
//!
//! Messages (from the Supervisor only): `Retarget(generation)`, `Stop`.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::rt::Async;
use futures_lite::FutureExt;

use super::{Admission, Generation, Shared, connection};
use crate::close::CloseReason;
use crate::net::socket;
use crate::rt::{self, DrainToken, Receiver, Sender};
use crate::state::ratelog::RateLimitedLog;

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
        // Connections may still be queued: the last round stopped at its batch or after an
        // error, not at an EAGAIN, so the next edge may never come (edge-triggered readiness).
        let mut queued = false;
        loop {
            let event = if queued {
                // Let the connections just started (and everyone else) run first.
                futures_lite::future::yield_now().await;
                match rt::try_recv(&self.rx) {
                    rt::TryRecv::Msg(msg) => Event::Msg(Some(msg)),
                    rt::TryRecv::Closed => Event::Msg(None),
                    rt::TryRecv::Empty => Event::Ready(Ok(())),
                }
            } else {
                async { Event::Msg(self.rx.recv_async().await.ok()) }
                    .or(async { Event::Ready(self.socket.readable().await) })
                    .await
            };
            let ready = match event {
                Event::Msg(Some(ListenerMsg::Retarget(generation))) => {
                    self.generation = generation;
                    continue;
                }
                Event::Msg(Some(ListenerMsg::Stop(ack))) => {
                    self.stopped = Some(ack);
                    return;
                }
                Event::Msg(None) => return,
                Event::Ready(ready) => ready,
            };
            let mut taken = 0;
            queued = true;
            let failed = match ready {
                Err(e) => Some(e),
                Ok(()) => loop {
                    if taken == ACCEPT_BATCH {
                        break None;
                    }
                    let tick = self.socket.read_tick();
                    match socket::accept(&self.socket) {
                        Ok((stream, peer)) => {
                            taken += 1;
                            accept_backoff = Duration::from_millis(10);
                            #[cfg(feature = "fault-injection")]
                            crate::fault::on_accept();
                            // The rate limit, when the peer is the client: a refusal costs
                            // no task and no reactor registration.
                            let routes = self.generation.table.listeners().get(&self.addr);
                            let Some(stream) = connection::rate::refuse_at_accept(
                                &self.shared,
                                routes,
                                stream,
                                self.addr,
                                peer,
                            ) else {
                                continue;
                            };
                            match Async::new_nonblocking(stream) {
                                Ok(stream) => self.start_connection(stream, peer),
                                Err(e) => break Some(e),
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            self.socket.read_drained(tick);
                            queued = false;
                            break None;
                        }
                        // A connection that died before we took it: take the next one.
                        Err(e) if is_transient_accept_error(&e) => {}
                        Err(e) => break Some(e),
                    }
                },
            };
            if let Some(e) = failed {
                // EMFILE, ENFILE, ENOBUFS, ENOMEM: wait for resources instead of spinning
                // (then try again without waiting for an edge: the queue is still there).
                tracing::warn!(listener = %self.addr, error = %e, backoff_ms = accept_backoff.as_millis() as u64, "accept failed; backing off");
                self.shared.metrics.internal_error("accept");
                rt::sleep(accept_backoff).await;
                accept_backoff = (accept_backoff * 2).min(Duration::from_secs(1));
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

/// Connections accepted in one round before the listener lets the other tasks of its process
/// run. One, as nginx does without `multi_accept`: between two accepts the connections already
/// taken make progress, so a worker busy with handshakes accepts more slowly and the other
/// workers, sharing the accept queue, take the rest (measured: docs/benchmarks.md, "Balance").
/// Costs no syscall: the round after is tried without waiting, until one ends in EAGAIN.
const ACCEPT_BATCH: usize = 1;

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
