//! The `log` crate's records (rustls, notify, async-std) into `tracing`, with rustls' warnings
//! rate-limited.
//!
//! rustls writes its diagnostics through `log`, and a remote client can trigger its warnings
//! at will ("Illegal SNI extension: ignoring IP address presented as hostname", "TLS alert
//! warning received", ...), one per connection. Those pass at most once per second, with the
//! number held back since the last one in `suppressed`, like the proxy's own refusal lines.
//! Every record becomes an event on target `tcpmap::log` with the record's own target in
//! `origin` (`RUST_LOG=tcpmap::log=debug` shows rustls' debug lines).
//!
//! The daemon installs it instead of `tracing-log`'s bridge; an embedder may call
//! [`forward_log_records`] after setting its own subscriber.

use std::time::{Duration, Instant};

use crate::state::ratelog::RateLimitedLog;

/// Routes `log` records into `tracing` (see the module docs). Call it once, after the global
/// subscriber is set (the subscriber's most verbose level becomes `log`'s). False when another
/// `log` logger is already installed.
pub fn forward_log_records() -> bool {
    let bridge = Bridge {
        rustls: RateLimitedLog::new(Duration::from_secs(1)),
    };
    if log::set_boxed_logger(Box::new(bridge)).is_err() {
        return false;
    }
    use tracing::level_filters::LevelFilter;
    log::set_max_level(match LevelFilter::current() {
        LevelFilter::OFF => log::LevelFilter::Off,
        LevelFilter::ERROR => log::LevelFilter::Error,
        LevelFilter::WARN => log::LevelFilter::Warn,
        LevelFilter::INFO => log::LevelFilter::Info,
        LevelFilter::DEBUG => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    });
    true
}

struct Bridge {
    /// One line per second for rustls' warnings and errors.
    rustls: RateLimitedLog,
}

impl Bridge {
    /// Whether a record from `origin` at `level` is written at `now`, and with how many held
    /// back before it (`None`: held back).
    fn admit(&self, origin: &str, level: log::Level, now: Instant) -> Option<u64> {
        let from_rustls = origin == "rustls" || origin.starts_with("rustls::");
        if from_rustls && level <= log::Level::Warn {
            self.rustls.allow(now)
        } else {
            Some(0)
        }
    }
}

impl log::Log for Bridge {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let origin = record.target();
        let Some(suppressed) = self.admit(origin, record.level(), Instant::now()) else {
            return;
        };
        let msg = record.args();
        match record.level() {
            log::Level::Error => {
                tracing::error!(target: "tcpmap::log", origin, suppressed, "{msg}")
            }
            log::Level::Warn => tracing::warn!(target: "tcpmap::log", origin, suppressed, "{msg}"),
            log::Level::Info => tracing::info!(target: "tcpmap::log", origin, "{msg}"),
            log::Level::Debug => tracing::debug!(target: "tcpmap::log", origin, "{msg}"),
            log::Level::Trace => tracing::trace!(target: "tcpmap::log", origin, "{msg}"),
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_warnings_pass_once_a_second_and_the_rest_always() {
        let b = Bridge {
            rustls: RateLimitedLog::new(Duration::from_secs(1)),
        };
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let warn = log::Level::Warn;
        assert_eq!(b.admit("rustls::msgs::handshake", warn, at(0)), Some(0));
        for i in 1..50 {
            assert_eq!(b.admit("rustls::msgs::handshake", warn, at(i)), None);
            assert_eq!(b.admit("rustls::conn", log::Level::Error, at(i)), None);
            // rustls' debug lines (shown only when asked for) and other crates are not limited.
            assert_eq!(
                b.admit("rustls::server::hs", log::Level::Debug, at(i)),
                Some(0)
            );
            assert_eq!(b.admit("notify::inotify", warn, at(i)), Some(0));
            assert_eq!(b.admit("rustlsx", warn, at(i)), Some(0));
        }
        assert_eq!(b.admit("rustls", warn, at(1000)), Some(98));
    }
}
