//! The actors of tcpmap: each owns its state and is reached only through its cloneable
//! `XHandle` (bounded mailbox in, one-shot replies out).
//!
//! ```text
//! ConnectionActor ──resolve──► ResolverActor ──spawns──► lookup tasks ──Store──┐
//!                                     ▲                                         │
//!                                     └─────────────────────────────────────────┘
//! ```
//!
//! Bounded sends only go down the data-flow chain; reports coming back use one-shot replies
//! or a channel only the receiving actor reads, so no cycle of bounded sends exists.

pub(crate) mod resolver;
