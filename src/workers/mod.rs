//! Worker processes: `tcpmap run --workers N` (N > 1) runs the data plane in N processes.
//!
//! ```text
//!                    ┌──────────────────────── Supervisor process ───────────────────────┐
//!   signals, files ─▶│ ConfigActor ─▶ Supervisor ─▶ pool (this module) ─▶ one Link each  │◀─ admin
//!                    │  (reads once)   (binds every    owns the sockets,   (a thread on a  │
//!                    │                  listener)      the shared counters  socketpair)   │
//!                    └───────────────────────────────────────────────┬───────────────────┘
//!                  control channel: length-prefixed JSON + SCM_RIGHTS │ (stdin of each worker)
//!                      ┌──────────────────────────────┬──────────────┘
//!                      ▼                              ▼
//!          ┌─ worker 0 (tcpmap worker) ─┐   ┌─ worker 1 ──────────────────┐
//!          │ LocalPlane ─▶ ListenerActor│   │ the same, on the same        │
//!          │  ─▶ ConnectionActor ─▶ …   │   │ listening sockets (one shared│
//!          │ ResolverActor              │   │ accept queue per port)       │
//!          └────────────────────────────┘   └──────────────────────────────┘
//!                 shared memory (memfd): --max-connections and circuit-breaker counts
//! ```
//!
//! - `codec` (pure): the messages and their frames; `status_wire` (pure): the binary
//!   `Counts` reply (the status page's numbers by place); `kept_wire` (pure): the binary `Kept`
//!   reply (a worker's counters by place, what the pool keeps of it); `merge` (pure): `/metrics` totals;
//!   `cpus`: what `auto` means.
//! - `channel`: one end of a control channel; `shm`: the shared counters (the crate's only
//!   `unsafe`); `pool`: the Supervisor's side (`link`: one worker's channel as it uses it;
//!   `plane`: the pool as the Supervisor's `DataPlane`);
//!   `worker`: the worker's side.
//! - The pool also owns the session-ticket keys: every worker gets them in `Hello` and again
//!   after each rotation (`ToWorker::TicketKeys`), so a ticket resumes on any worker;
//!   `upgrade` hands them to a new binary.
//!
//! The library API never starts workers: they are a daemon feature (`tcpmap run`).

pub(crate) mod channel;
pub(crate) mod codec;
pub(crate) mod cpus;
#[cfg(test)]
mod kept_bench;
pub(crate) mod kept_wire;
pub(crate) mod link;
pub(crate) mod merge;
pub(crate) mod plane;
pub(crate) mod pool;
pub(crate) mod shm;
pub(crate) mod status_wire;
pub(crate) mod upgrade;
pub(crate) mod worker;
