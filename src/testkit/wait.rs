//! Polling with a deadline: the one `eventually` of the test harness.

use std::time::{Duration, Instant};

/// Polls `f` every 20 ms until it returns true or `within` passes; the last try is after
/// the deadline, so a slow machine still gets one look at the final state.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}
