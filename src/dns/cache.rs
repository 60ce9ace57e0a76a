//! The answer cache: positive answers for their (clamped) TTL, NXDOMAIN / no-data for a
//! short negative TTL. Keyed by (lower-cased name, family policy); the port is not part of
//! the key. Time is passed in, so expiry is unit-tested without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{ResolveError, Resolved, clamp_ttl};
use crate::route::Families;

/// Cache key: the name as asked (lower-cased, trailing dot kept) and the family policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    /// The lower-cased name.
    pub(crate) name: String,
    /// Allowed families.
    pub(crate) families: Families,
}

impl CacheKey {
    /// The key for `name` under `families`.
    pub(crate) fn new(name: &str, families: Families) -> CacheKey {
        CacheKey {
            name: name.to_ascii_lowercase(),
            families,
        }
    }
}

/// How long entries live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CachePolicy {
    /// Lower bound for a positive TTL.
    pub(crate) min_ttl: Duration,
    /// Upper bound for a positive TTL.
    pub(crate) max_ttl: Duration,
    /// Lifetime of NXDOMAIN / no-data answers.
    pub(crate) negative_ttl: Duration,
    /// Entries kept at most (expired ones are purged first, then the soonest to expire).
    pub(crate) capacity: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    answer: Result<Vec<IpAddr>, ResolveError>,
    expires: Instant,
}

/// The cache itself, owned by the resolver actor.
#[derive(Debug)]
pub(crate) struct Cache {
    policy: CachePolicy,
    entries: HashMap<CacheKey, Entry>,
}

impl Cache {
    /// An empty cache.
    pub(crate) fn new(policy: CachePolicy) -> Cache {
        Cache {
            policy,
            entries: HashMap::new(),
        }
    }

    /// The live answer for `key` at `now`, if any.
    #[cfg(test)]
    pub(crate) fn get(
        &self,
        key: &CacheKey,
        now: Instant,
    ) -> Option<Result<Vec<IpAddr>, ResolveError>> {
        self.get_until(key, now).map(|a| a.map(|(addrs, _)| addrs))
    }

    /// Like [`Cache::get`], with the instant a positive answer expires.
    pub(crate) fn get_until(
        &self,
        key: &CacheKey,
        now: Instant,
    ) -> Option<Result<(Vec<IpAddr>, Instant), ResolveError>> {
        self.entries
            .get(key)
            .filter(|e| e.expires > now)
            .map(|e| e.answer.clone().map(|a| (a, e.expires)))
    }

    /// How long a positive answer lives (its TTL clamped by the policy).
    pub(crate) fn lifetime(&self, resolved: &Resolved) -> Duration {
        clamp_ttl(resolved.ttl, self.policy.min_ttl, self.policy.max_ttl)
    }

    /// Stores the outcome of a lookup; timeouts and I/O errors are not stored.
    pub(crate) fn put(
        &mut self,
        key: CacheKey,
        outcome: &Result<Resolved, ResolveError>,
        now: Instant,
    ) {
        let (answer, lifetime) = match outcome {
            Ok(resolved) => {
                let ttl = clamp_ttl(resolved.ttl, self.policy.min_ttl, self.policy.max_ttl);
                (Ok(resolved.addrs.clone()), ttl)
            }
            Err(err) if err.is_negative_answer() => (Err(err.clone()), self.policy.negative_ttl),
            Err(_) => {
                self.entries.remove(&key);
                return;
            }
        };
        if lifetime.is_zero() {
            return;
        }
        if self.entries.len() >= self.policy.capacity && !self.entries.contains_key(&key) {
            self.make_room(now);
        }
        self.entries.insert(
            key,
            Entry {
                answer,
                expires: now + lifetime,
            },
        );
    }

    /// Number of stored entries (live or not yet purged).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn make_room(&mut self, now: Instant) {
        self.entries.retain(|_, e| e.expires > now);
        while self.entries.len() >= self.policy.capacity.max(1) {
            let soonest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(k, _)| k.clone());
            match soonest {
                Some(key) => self.entries.remove(&key),
                None => break,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: Families = Families::new(true, false).unwrap();
    const BOTH: Families = Families::new(true, true).unwrap();

    fn policy() -> CachePolicy {
        CachePolicy {
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(5),
            capacity: 3,
        }
    }

    fn found(ttl: u32) -> Result<Resolved, ResolveError> {
        Ok(Resolved {
            addrs: vec!["10.0.0.1".parse().unwrap()],
            ttl: Some(ttl),
        })
    }

    #[test]
    fn positive_answers_live_for_their_clamped_ttl() {
        let now = Instant::now();
        let mut cache = Cache::new(policy());
        let key = CacheKey::new("Web.Test", V4);
        cache.put(key.clone(), &found(60), now);
        assert!(cache.get(&key, now + Duration::from_secs(59)).is_some());
        assert!(cache.get(&key, now + Duration::from_secs(60)).is_none());
        cache.put(key.clone(), &found(0), now);
        assert!(
            cache.get(&key, now + Duration::from_millis(999)).is_some(),
            "TTL 0 still caches 1 s"
        );
        cache.put(key.clone(), &found(100_000), now);
        assert!(
            cache.get(&key, now + Duration::from_secs(300)).is_none(),
            "TTL capped at 300 s"
        );
    }

    #[test]
    fn keys_fold_case_and_separate_family_policies() {
        let now = Instant::now();
        let mut cache = Cache::new(policy());
        cache.put(CacheKey::new("web.test", V4), &found(60), now);
        assert!(cache.get(&CacheKey::new("WEB.TEST", V4), now).is_some());
        assert!(cache.get(&CacheKey::new("web.test", BOTH), now).is_none());
    }

    #[test]
    fn negative_answers_use_the_negative_ttl_and_failures_are_not_cached() {
        let now = Instant::now();
        let mut cache = Cache::new(policy());
        let key = CacheKey::new("gone.test", V4);
        cache.put(
            key.clone(),
            &Err(ResolveError::NotFound("gone.test".into())),
            now,
        );
        assert_eq!(
            cache.get(&key, now + Duration::from_secs(4)),
            Some(Err(ResolveError::NotFound("gone.test".into())))
        );
        assert_eq!(cache.get(&key, now + Duration::from_secs(5)), None);
        cache.put(
            key.clone(),
            &Err(ResolveError::Timeout("gone.test".into())),
            now,
        );
        assert_eq!(cache.get(&key, now), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let now = Instant::now();
        let mut cache = Cache::new(policy());
        for (i, ttl) in [50, 10, 70, 90].into_iter().enumerate() {
            cache.put(CacheKey::new(&format!("n{i}.test"), V4), &found(ttl), now);
        }
        assert_eq!(cache.len(), 3);
        assert!(
            cache.get(&CacheKey::new("n1.test", V4), now).is_none(),
            "the soonest to expire went first"
        );
        assert!(cache.get(&CacheKey::new("n3.test", V4), now).is_some());
    }
}
