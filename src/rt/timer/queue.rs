//! The coarse deadline queue: pure bookkeeping behind the runtime's one timer.
//!
//! Deadlines are counted in *ticks* (whole multiples of the clock's granularity since its
//! epoch) and a deadline is rounded **up** to its tick ([`tick_at_or_after`]), so it never fires
//! early and fires at most one tick late. Entries with the same tick expire together, which is
//! what lets one timer serve every connection: the driver sleeps until the first occupied tick,
//! not once per deadline. Insert, remove and expire are O(log n) (a B-tree keyed by
//! `(tick, sequence)`; the sequence makes every key unique and keeps insertion order within a
//! tick). No clock, no wakers, no I/O in here: ticks in, values out.

use std::collections::BTreeMap;
use std::time::Duration;

/// Identifies one queued deadline (unique for the queue's lifetime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    tick: u64,
    seq: u64,
}

impl Key {
    /// The tick this entry expires at.
    #[cfg(test)]
    pub(crate) fn tick(self) -> u64 {
        self.tick
    }
}

/// Deadlines by tick, each carrying a value (the waker of the task waiting for it).
#[derive(Debug)]
pub(crate) struct DeadlineQueue<T> {
    entries: BTreeMap<Key, T>,
    next_seq: u64,
}

impl<T> Default for DeadlineQueue<T> {
    fn default() -> Self {
        DeadlineQueue {
            entries: BTreeMap::new(),
            next_seq: 0,
        }
    }
}

impl<T> DeadlineQueue<T> {
    /// Queues `value` to expire at `tick`.
    pub(crate) fn insert(&mut self, tick: u64, value: T) -> Key {
        let key = Key {
            tick,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.entries.insert(key, value);
        key
    }

    /// Takes an entry out before it expires; `None` if it already expired or was removed.
    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        self.entries.remove(&key)
    }

    /// The entry's value while it is queued (`None` once expired or removed).
    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        self.entries.get_mut(&key)
    }

    /// The earliest occupied tick.
    pub(crate) fn next_tick(&self) -> Option<u64> {
        self.entries.keys().next().map(|k| k.tick)
    }

    /// Removes every entry whose tick is `now` or earlier, handing each to `fired` in tick order.
    pub(crate) fn expire(&mut self, now: u64, mut fired: impl FnMut(Key, T)) {
        while let Some(entry) = self.entries.first_entry() {
            if entry.key().tick > now {
                break;
            }
            let (key, value) = entry.remove_entry();
            fired(key, value);
        }
    }

    /// Entries queued.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The first tick at or after `offset` (time since the epoch) for a clock of `granularity`:
/// the ceiling, so a deadline is never rounded earlier. A zero granularity counts nanoseconds.
pub(crate) fn tick_at_or_after(offset: Duration, granularity: Duration) -> u64 {
    let g = granularity.as_nanos().max(1);
    let t = offset.as_nanos();
    let ticks = t / g + u128::from(t % g != 0);
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// The last tick at or before `offset`: the ticks whose deadlines have certainly passed.
pub(crate) fn tick_at_or_before(offset: Duration, granularity: Duration) -> u64 {
    let g = granularity.as_nanos().max(1);
    u64::try_from(offset.as_nanos() / g).unwrap_or(u64::MAX)
}

/// When a tick begins, as time since the epoch (saturating).
pub(crate) fn tick_start(tick: u64, granularity: Duration) -> Duration {
    let nanos = u128::from(tick).saturating_mul(granularity.as_nanos());
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS10: Duration = Duration::from_millis(10);

    #[test]
    fn rounding_never_fires_early_and_at_most_one_tick_late() {
        assert_eq!(tick_at_or_after(Duration::ZERO, MS10), 0);
        assert_eq!(tick_at_or_after(Duration::from_millis(10), MS10), 1);
        assert_eq!(tick_at_or_after(Duration::from_micros(10_001), MS10), 2);
        assert_eq!(tick_at_or_before(Duration::from_micros(19_999), MS10), 1);
        assert_eq!(tick_start(2, MS10), Duration::from_millis(20));
        assert_eq!(tick_at_or_after(Duration::MAX, Duration::ZERO), u64::MAX);
    }

    #[test]
    fn expires_in_tick_order_and_only_what_is_due() {
        let mut q = DeadlineQueue::default();
        let a = q.insert(5, "a");
        let b = q.insert(3, "b");
        let c = q.insert(5, "c");
        assert_eq!(q.next_tick(), Some(3));
        let mut fired = Vec::new();
        q.expire(4, |_, v| fired.push(v));
        assert_eq!(fired, ["b"]);
        assert_eq!(q.remove(b), None, "an expired entry is gone");
        assert_eq!(q.remove(c), Some("c"));
        q.expire(5, |_, v| fired.push(v));
        assert_eq!(fired, ["b", "a"]);
        assert_eq!(q.get_mut(a), None);
        assert_eq!((q.len(), q.next_tick()), (0, None));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        Remove(usize),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..200).prop_map(Op::Insert),
            any::<usize>().prop_map(Op::Remove),
            (0u64..40).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Against a model (a plain list): every entry expires exactly once unless removed,
        /// never before its tick, and as soon as the clock reaches its tick; `next_tick` is
        /// the smallest queued tick; `len` and removal agree.
        #[test]
        fn matches_a_model(ops in proptest::collection::vec(op(), 0..300)) {
            let mut q = DeadlineQueue::default();
            let mut model: Vec<(Key, u64, u32)> = Vec::new(); // (key, tick, id)
            let mut now = 0u64;
            let mut next_id = 0u32;
            let mut fired_ids = std::collections::HashSet::new();
            for op in ops {
                match op {
                    Op::Insert(dt) => {
                        let tick = now + dt;
                        let key = q.insert(tick, next_id);
                        prop_assert_eq!(key.tick(), tick);
                        model.push((key, tick, next_id));
                        next_id += 1;
                    }
                    Op::Remove(i) => {
                        if !model.is_empty() {
                            let (key, _, id) = model.remove(i % model.len());
                            prop_assert_eq!(q.remove(key), Some(id));
                            prop_assert_eq!(q.remove(key), None);
                        }
                    }
                    Op::Advance(dt) => {
                        now += dt;
                        let mut fired = Vec::new();
                        q.expire(now, |k, id| fired.push((k, id)));
                        let mut due: Vec<u32> = model.iter().filter(|e| e.1 <= now).map(|e| e.2).collect();
                        model.retain(|e| e.1 > now);
                        let mut got: Vec<u32> = fired.iter().map(|f| f.1).collect();
                        // Tick order: each fired key's tick is not below the previous one.
                        prop_assert!(fired.windows(2).all(|w| w[0].0.tick() <= w[1].0.tick()));
                        for (k, id) in &fired {
                            prop_assert!(k.tick() <= now, "fired early");
                            prop_assert!(fired_ids.insert(*id), "fired twice");
                        }
                        got.sort_unstable();
                        due.sort_unstable();
                        prop_assert_eq!(got, due);
                    }
                }
                prop_assert_eq!(q.len(), model.len());
                prop_assert_eq!(q.next_tick(), model.iter().map(|e| e.1).min());
            }
        }

        /// Rounding: the tick's start is never before the deadline, and less than one
        /// granularity after it.
        #[test]
        fn rounding_bounds(nanos in 0u64..u64::MAX / 4, g_us in 1u64..100_000) {
            let g = Duration::from_micros(g_us);
            let at = Duration::from_nanos(nanos);
            let tick = tick_at_or_after(at, g);
            let start = tick_start(tick, g);
            prop_assert!(start >= at);
            prop_assert!(start - at < g);
            prop_assert!(tick_at_or_before(at, g) <= tick);
            prop_assert!(tick - tick_at_or_before(at, g) <= 1);
        }
    }
}
