//! Pure values of the fleet attributes (ext, SPEC section 15): a connection rate limit and the
//! jittered maximum connection age.

use std::time::Duration;

/// What a connection rate limit counts connections of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RatePer {
    /// One bucket per client address (after the PROXY protocol).
    ClientIp,
    /// One bucket for the whole listener.
    Listener,
}

/// `connection_rate_limit: {rate, burst, per, dry_run}`: a token bucket of `burst` tokens
/// refilled at `rate` per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub(crate) struct RateLimit {
    /// Tokens per second.
    pub rate: u32,
    /// The bucket's size (connections allowed at once after a quiet time).
    pub burst: u32,
    /// Per client address or per listener.
    pub per: RatePer,
    /// Count and log, but let the connection through.
    pub dry_run: bool,
}

/// The age at which a connection of maximum age `max` closes, given `unit` in [0, 1): up to
/// 10 % earlier (`max` at `unit` 0, `0.9 * max` as `unit` nears 1), so connections opened
/// together do not all close together.
pub(crate) fn jittered(max: Duration, unit: f64) -> Duration {
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    max.mul_f64(1.0 - 0.1 * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jitter_stays_within_ten_percent_earlier() {
        let max = Duration::from_secs(100);
        assert_eq!(jittered(max, 0.0), max);
        assert_eq!(jittered(max, 0.5), Duration::from_secs(95));
        assert!(jittered(max, 0.999_999) > Duration::from_secs(90));
        assert_eq!(jittered(max, 7.0), Duration::from_secs(90));
        assert_eq!(jittered(max, f64::NAN), max);
    }
}
