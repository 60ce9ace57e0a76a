//! Rate limiting for log lines a peer can trigger at will (refused connections).
//!
//! A flood of connections over a limit must not become a flood of log lines: at most one
//! line per interval is let through, and it carries how many were held back since the
//! previous one. Pure bookkeeping: the caller passes the time and writes the line.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets one event per `interval` be logged and counts the rest.
#[derive(Debug)]
pub(crate) struct RateLimitedLog {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    /// At most one line per `interval`.
    pub(crate) fn new(interval: Duration) -> Self {
        RateLimitedLog {
            interval,
            state: Mutex::new(State::default()),
        }
    }

    /// Records an event at `now`: `Some(held_back)` when a line may be written (with the
    /// number of events not logged since the last line), `None` when this one is held back.
    pub(crate) fn allow(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let due = match s.last {
            None => true,
            Some(last) => now.saturating_duration_since(last) >= self.interval,
        };
        if due {
            s.last = Some(now);
            Some(std::mem::take(&mut s.suppressed))
        } else {
            s.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let log = RateLimitedLog::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(log.allow(t0), Some(0));
        for i in 1..=99u64 {
            assert_eq!(log.allow(t0 + Duration::from_millis(i * 5)), None);
        }
        assert_eq!(log.allow(t0 + Duration::from_millis(999)), None);
        assert_eq!(log.allow(t0 + Duration::from_secs(1)), Some(100));
        assert_eq!(log.allow(t0 + Duration::from_millis(1500)), None);
        assert_eq!(log.allow(t0 + Duration::from_secs(3)), Some(1));
    }
}
