//! The control channel's messages and their wire format (pure: bytes in, values out).
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of JSON — or, for a
//! worker's `Counts` reply only, a 0 byte (never the first byte of JSON) and the binary form of
//! `status_wire.rs` (its `encode_reply` and `decode_reply`); for its `Kept` reply, a 1 byte
//! and the binary form of `kept_wire.rs`. File
//! descriptors (listening sockets, the shared counters) travel beside the bytes as
//! `SCM_RIGHTS` (`channel.rs`); a message says how many it carries and in which order.
//!
//! The bytes come from another process, so [`decode`] is total: any input yields a
//! message, "need more bytes" or a [`CodecError`], never a panic, and a length above
//! [`MAX_FRAME`] is refused before anything is buffered for it.
//!
//! Must not: touch sockets or file descriptors (that is `channel.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::status_wire::{WorkerCounts, decode_reply};
use crate::config::Bundle;
use crate::state::ticket_keys::TicketKeys;

/// The largest frame either side accepts (a config with its certificates fits many times).
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CodecError {
    /// The length prefix exceeds [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the limit")]
    TooLong(usize),
    /// The body is not a message of the expected type.
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Why a worker could not carry out a request: the reason in [`FromWorker::Failed`], typed
/// across the process boundary (not a formatted string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub(crate) enum WorkerError {
    /// A second `Hello`.
    #[error("already started")]
    AlreadyStarted,
    /// The session-ticket keys could not be installed.
    #[error("cannot take the session-ticket keys: {0}")]
    TicketKeys(String),
    /// The config of `Prepare` does not build here (its error lines).
    #[error("the config does not build: {}", .0.join("; "))]
    Config(Vec<String>),
    /// `Commit` without a prepared config.
    #[error("nothing prepared")]
    NothingPrepared,
    /// A listening socket it was given cannot serve.
    #[error("cannot serve {addr}: {cause}")]
    Listener {
        /// The listener's address.
        addr: SocketAddr,
        /// The I/O error, in words.
        cause: String,
    },
    /// The worker is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// A fault-injection build was told to fail here.
    #[error("fault injection: this worker cannot apply it")]
    Injected,
    /// A reason from a worker of another binary (only its words arrived).
    #[error("{0}")]
    Other(String),
}

/// Why the pool could not carry out a request over the control channels: what the
/// Supervisor's side of the channel reports (never sent; [`WorkerError`] is what crosses).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    /// Worker `id` refused, for `error`.
    #[error("worker {id}: {error}")]
    Refused {
        /// The worker's slot.
        id: u32,
        /// Its reason.
        error: WorkerError,
    },
    /// Worker `id` answered something other than what the request expects.
    #[error("worker {id}: unexpected reply {reply:?}")]
    Unexpected {
        /// The worker's slot.
        id: u32,
        /// The reply.
        reply: Box<FromWorker>,
    },
    /// Worker `id`'s channel failed (it died, or did not answer in time).
    #[error("worker {id}: {source}")]
    Channel {
        /// The worker's slot.
        id: u32,
        /// The channel's error.
        source: std::io::Error,
    },
    /// Worker `id` is not running.
    #[error("worker {0} is gone")]
    Gone(u32),
    /// A descriptor to send could not be duplicated.
    #[error("cannot pass a descriptor: {0}")]
    Descriptor(std::io::Error),
    /// The pool is shutting down (or gone).
    #[error("the worker pool is shutting down")]
    ShuttingDown,
}

impl PoolError {
    /// `Ok` when worker `id`'s `reply` passes `ok`; else why not.
    pub(crate) fn expect(
        id: u32,
        reply: std::io::Result<FromWorker>,
        ok: impl FnOnce(&FromWorker) -> bool,
    ) -> Result<(), PoolError> {
        match reply {
            Ok(r) if ok(&r) => Ok(()),
            Ok(FromWorker::Failed { message, error }) => Err(PoolError::Refused {
                id,
                error: error.unwrap_or(WorkerError::Other(message)),
            }),
            Ok(reply) => Err(PoolError::Unexpected {
                id,
                reply: Box::new(reply),
            }),
            Err(source) => Err(PoolError::Channel { id, source }),
        }
    }
}

/// What the Supervisor tells a worker. Each request gets exactly one [`FromWorker`] reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// The first message: who the worker is and how it runs. Carries one descriptor, the
    /// shared counters (`shm.rs`). Reply: `Ready`.
    Hello {
        /// The worker's slot number (0-based, reused by its replacement).
        id: u32,
        /// The run settings.
        settings: Settings,
        /// The session-ticket keys every worker seals and opens tickets with (their `Debug`
        /// shows no secret). Always sent; optional so that a worker of a newer binary (the
        /// file replaced before a hot upgrade) still starts under an older Supervisor.
        #[serde(default)]
        tickets: Option<TicketKeys>,
    },
    /// The ticket keys after a rotation (the Supervisor rotates for all workers). Reply:
    /// `TicketKeysTaken`.
    TicketKeys {
        /// The new set (the current key and the one before it).
        keys: TicketKeys,
    },
    /// Build this config and hold it; carries one listening socket per entry of
    /// `listeners`, in order. Reply: `Prepared` or `Failed` (the worker keeps serving the
    /// old one either way until `Commit`).
    Prepare {
        /// The generation number the Supervisor gave the config.
        generation: u64,
        /// What the Supervisor read; the worker builds the identical table from it.
        bundle: Box<Bundle>,
        /// The listener addresses of the config, one socket each.
        listeners: Vec<SocketAddr>,
        /// The shared circuit-breaker slot of each mapping.
        slots: Vec<Slot>,
    },
    /// Serve the prepared config. Reply: `Committed` or `Failed`.
    Commit,
    /// Drop the prepared config (another worker failed to prepare). Reply: `Aborted`.
    Abort,
    /// Reply: `Metrics` (the worker's registry as OpenMetrics text).
    Metrics,
    /// The once-a-second snapshot: the worker's counters and histograms by place, asked only
    /// of a worker whose `Committed` said it reads this request (`keeps: true`). Reply: `Kept`.
    Keep,
    /// Reply: `Status`.
    Status,
    /// The status page's numbers by place, asked only of a worker whose `Status` said it reads
    /// this request (`counts: true`; an older binary's would take it for a broken channel).
    /// Reply: `Counts` when the worker serves
    /// `generation` and its index of that table has `fingerprint` (the Supervisor's), else
    /// `Status` (by name: the Supervisor places what it can).
    Counts {
        /// The Supervisor's active generation.
        generation: u64,
        /// Its index's fingerprint.
        fingerprint: u64,
    },
    /// Stop every listener (the ports refuse once all workers did), keep the connections.
    /// Reply: `Stopped`.
    StopAccepting,
    /// Stop accepting, drain (up to the timeout, `graceful`) and exit. Reply: `Drained`,
    /// sent just before the process exits.
    Shutdown {
        /// Wait for open connections (else close them at once).
        graceful: bool,
        /// How long the drain may take.
        drain_timeout_ms: u64,
    },
}

/// A worker's answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// `Hello` taken.
    Ready,
    /// `TicketKeys` taken: new tickets use the new current key.
    TicketKeysTaken,
    /// The config of `Prepare` is built and held.
    Prepared,
    /// A request could not be carried out (the worker's state is unchanged): build it with
    /// [`FromWorker::failed`].
    Failed {
        /// Why, in words: what a Supervisor of an older binary reads.
        message: String,
        /// Why (absent from a worker of an older binary: then `message` is all there is).
        #[serde(default)]
        error: Option<WorkerError>,
    },
    /// The prepared config serves.
    Committed {
        /// Its generation.
        generation: u64,
        /// The worker answers `ToWorker::Keep` (absent from a worker of an older binary: the
        /// pool snapshots its metrics text instead).
        #[serde(default)]
        keeps: bool,
    },
    /// The prepared config is dropped.
    Aborted,
    /// The worker's metrics.
    Metrics {
        /// OpenMetrics text of its registry.
        text: String,
    },
    /// What `/config` shows of the worker.
    Status {
        /// The generation it serves (0 before the first commit).
        generation: u64,
        /// Connections open in this worker.
        active: u64,
        /// Its endpoint sets with their state and counts (the status page; absent from a
        /// worker of an older binary).
        #[serde(default)]
        endpoints: Vec<crate::state::endpoints::EndpointSet>,
        /// Its counters per mapping, sorted (the status page sums them over the workers; absent
        /// from a worker of an older binary).
        #[serde(default)]
        mappings: Vec<crate::admin::status::MappingTotals>,
        /// The worker answers `ToWorker::Counts` (absent from a worker of an older binary,
        /// which cannot read that request: the pool asks it by name only).
        #[serde(default)]
        counts: bool,
    },
    /// The status page's numbers by place (`ToWorker::Counts`): travels as a binary frame
    /// (`status_wire::encode_reply`), never as JSON.
    #[serde(skip)]
    Counts(Box<WorkerCounts>),
    /// The worker's counters and histograms by place (`ToWorker::Keep`): a binary frame
    /// (`kept_wire.rs`), never JSON.
    #[serde(skip)]
    Kept(Box<crate::metrics::Kept>),
    /// What a worker sends for `Kept`: its body already written from the registry
    /// (`kept_wire::encode_registry`); it reads back as `Kept`.
    #[serde(skip)]
    KeptFrame(Vec<u8>),
    /// Every listener is closed.
    Stopped,
    /// Drained; the process exits next.
    Drained,
}

impl FromWorker {
    /// The reply for a request that failed for `error`.
    pub(crate) fn failed(error: WorkerError) -> FromWorker {
        FromWorker::Failed {
            message: error.to_string(),
            error: Some(error),
        }
    }
}

/// The hot upgrade's channel: the old Supervisor to the new binary it started, and back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Upgrade {
    /// Old → new: the listening sockets (one descriptor each, in order), then the admin
    /// endpoint's socket when `admin` is true.
    Handover {
        /// The listener addresses.
        listeners: Vec<SocketAddr>,
        /// One more descriptor follows: the admin socket.
        admin: bool,
        /// The session-ticket keys, so tickets the old binary issued resume on the new one
        /// (absent from a binary that predates it: the new one makes its own).
        #[serde(default)]
        tickets: Option<TicketKeys>,
    },
    /// New → old: serving; the old one drains now.
    Ready {
        /// The new Supervisor's process id.
        pid: u32,
    },
}

/// How a worker runs: the `tcpmap run` flags that concern the data plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Settings {
    /// `--max-connections` (counted over all workers in the shared counters).
    pub(crate) max_connections: Option<u64>,
    /// `--handshake-timeout`, in milliseconds.
    pub(crate) handshake_timeout_ms: u64,
    /// Splice plain↔plain relays.
    pub(crate) zero_copy: bool,
    /// `--resolv-conf`.
    pub(crate) resolv_conf: PathBuf,
    /// `--drain-timeout`, in milliseconds (used when the Supervisor goes away).
    pub(crate) drain_timeout_ms: u64,
    /// `--drain-strategy spread` (absent from an older Supervisor: `wait`).
    #[serde(default)]
    pub(crate) drain_spread: bool,
    /// `--dont-log-null` (absent from an older Supervisor: off).
    #[serde(default)]
    pub(crate) dont_log_null: bool,
}

/// A mapping's circuit-breaker counter in the shared memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Slot {
    /// The mapping's name.
    pub(crate) name: String,
    /// Its namespace.
    pub(crate) namespace: String,
    /// Its listener port.
    pub(crate) port: u16,
    /// Its SNI host (empty when none).
    pub(crate) host: String,
    /// The counter's index.
    pub(crate) index: u32,
}

/// One frame holding `msg`.
pub(crate) fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    let body = serde_json::to_vec(msg).map_err(|e| CodecError::Malformed(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(CodecError::TooLong(body.len()));
    }
    let len = u32::try_from(body.len()).map_err(|_| CodecError::TooLong(body.len()))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// The first message in `buf` and the bytes it took, or `None` when `buf` does not yet hold
/// a whole frame. Total: never panics, whatever `buf` holds.
pub(crate) fn decode<T: DeserializeOwned>(buf: &[u8]) -> Result<Option<(T, usize)>, CodecError> {
    let Some(len) = frame_len(buf)? else {
        return Ok(None);
    };
    let Some(body) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    let msg = serde_json::from_slice(body).map_err(|e| CodecError::Malformed(e.to_string()))?;
    Ok(Some((msg, 4 + len)))
}

/// The body length announced by `buf`'s prefix (`None`: fewer than 4 bytes so far).
pub(crate) fn frame_len(buf: &[u8]) -> Result<Option<usize>, CodecError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let mut be = [0u8; 4];
    be.copy_from_slice(prefix);
    let len = u32::from_be_bytes(be) as usize;
    if len > MAX_FRAME {
        return Err(CodecError::TooLong(len));
    }
    Ok(Some(len))
}

/// Decodes `bytes` as a stream of frames — as requests, and as replies — until a frame is
/// incomplete or malformed; the number of messages decoded. The entry point of the
/// `control_frame` fuzz target (through `tcpmap::internals`): it must never panic.
pub fn decode_all(bytes: &[u8]) -> usize {
    let mut decoded = 0;
    for as_request in [true, false] {
        let mut rest = bytes;
        loop {
            let step = if as_request {
                decode::<ToWorker>(rest).map(|m| m.map(|(_, used)| used))
            } else {
                decode_reply(rest).map(|m| m.map(|(_, used)| used))
            };
            match step {
                Ok(Some(used)) => {
                    decoded += 1;
                    rest = rest.get(used..).unwrap_or_default();
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    decoded
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
