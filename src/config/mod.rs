//! The config pipeline (pure apart from reading files): sources → documents → raw resources →
//! validated model → [`RouteTable`](crate::route::RouteTable).
//!
//! ```text
//! --config PATH…  ─ source.rs ─▶ SourceDoc{file,line,yaml} ─ raw.rs ─▶ Raw{TCPMapping,TLSContext,Host,Module}
//!   inline YAML ──┘                                                        │ validate.rs (+ secrets.rs, tls.rs)
//!                                                                          ▼
//!                                              Loaded { table: RouteTable, warnings } | Vec<ConfigError>
//! ```

pub mod error;
pub mod tls;

pub use error::{ConfigError, Severity};
