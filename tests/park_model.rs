//! A loom model of the local runtime's sleep/wake-up handshake (`src/rt/park.rs`, compiled here
//! again against loom's atomics): a task queued for the loop from another thread while the
//! loop goes to sleep is never left without a wake-up, and neither is a deadline queued on
//! the coarse clock. loom explores every interleaving and the weak-memory outcomes its model
//! allows; it treats `SeqCst` loads and stores as acquire/release, but models `fence(SeqCst)`,
//! so these pass because of the handshake's fences (without them the first model finds the
//! lost wake-up).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};

/// What `park.rs` is written against.
use loom::sync::atomic;

// `woke` is the loop's after its wait, which these models do not need.
#[allow(dead_code)]
#[path = "../src/rt/park.rs"]
mod park;

use park::Park;

#[test]
fn a_task_queued_while_the_loop_goes_to_sleep_wakes_it() {
    loom::model(|| {
        let park = Arc::new(Park::new());
        // The run queue, as weakly ordered as a queue may be: a release push, an acquire look.
        let queued = Arc::new(AtomicUsize::new(0));
        // Eventfd writes.
        let woken = Arc::new(AtomicUsize::new(0));
        let other = {
            let (park, queued, woken) = (park.clone(), queued.clone(), woken.clone());
            loom::thread::spawn(move || {
                queued.fetch_add(1, Ordering::Release);
                if park.unpark() {
                    woken.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        // The loop: says it will sleep, then looks at the queue a last time.
        park.will_sleep();
        let sleeps = queued.load(Ordering::Acquire) == 0;
        other.join().unwrap();
        if sleeps {
            assert_eq!(
                woken.load(Ordering::Relaxed),
                1,
                "the loop sleeps with a task queued and nobody woke it"
            );
        }
    });
}

#[test]
fn a_deadline_queued_while_the_loop_goes_to_sleep_wakes_it() {
    // The clock: the earliest queued deadline (a tick, 0 = none) and whether the loop's waker
    // is in it (taken by the first insert earlier than what the loop armed).
    struct Clock {
        next: usize,
        armed: usize,
        waker: bool,
    }
    loom::model(|| {
        let park = Arc::new(Park::new());
        let clock = Arc::new(Mutex::new(Clock {
            next: 0,
            armed: 0,
            waker: true,
        }));
        let woken = Arc::new(AtomicUsize::new(0));
        let other = {
            let (park, clock, woken) = (park.clone(), clock.clone(), woken.clone());
            loom::thread::spawn(move || {
                // `Clock::register`: queue tick 5; earlier than what the loop armed (or it
                // armed nothing): take its waker, and wake it outside the lock.
                let wake = {
                    let mut c = clock.lock().unwrap();
                    c.next = 5;
                    let earlier = c.armed == 0 || 5 < c.armed;
                    earlier && std::mem::take(&mut c.waker)
                };
                if wake && park.unpark() {
                    woken.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        // The loop (`park_timeout`): says it will sleep, then reads the clock and gives it
        // its waker back (`Clock::rearm`).
        park.will_sleep();
        let timeout = {
            let mut c = clock.lock().unwrap();
            c.armed = c.next;
            c.waker = true;
            c.next
        };
        other.join().unwrap();
        if timeout == 0 {
            assert_eq!(
                woken.load(Ordering::Relaxed),
                1,
                "the loop sleeps without the deadline and nobody woke it"
            );
        }
    });
}
