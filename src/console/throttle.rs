//! Failed sign-ins, counted per client address and per sign-in form, so
//! that nobody can try keys through the console at the speed of a loop.
//!
//! Each address (and each sign-in form, by its cookie) has a bucket of
//! `BURST` failures that refills one every `REFILL`; a sign-in from an
//! empty bucket is refused before its key is even looked at. Only failures
//! are counted: people who sign in are never slowed down. Full buckets are
//! forgotten once there are many, so the table stays small.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failures allowed in a burst.
const BURST: f64 = 10.0;
/// One more failure allowed this often.
const REFILL: Duration = Duration::from_secs(6);
/// Buckets kept before the full ones are forgotten.
const KEEP: usize = 10_000;

#[derive(Default)]
pub struct Throttle {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Throttle {
    /// How long the first of `who` (an address, a form) to have run out
    /// must wait; `None` when all may try.
    pub fn wait(&self, who: &[&str]) -> Option<Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        who.iter()
            .filter_map(|w| {
                let left = level(buckets.get_mut(*w)?, now);
                (left < 1.0).then(|| REFILL.mul_f64(1.0 - left))
            })
            .max()
    }

    /// Counts a failure against each of `who`.
    pub fn failed(&self, who: &[&str]) {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if buckets.len() > KEEP {
            buckets.retain(|_, b| level(b, now) < BURST);
        }
        for w in who {
            let bucket = buckets.entry((*w).to_owned()).or_insert((BURST, now));
            bucket.0 = level(bucket, now) - 1.0;
        }
    }
}

/// A bucket's level now, refilled since it was last seen.
fn level(bucket: &mut (f64, Instant), now: Instant) -> f64 {
    let refilled = now.duration_since(bucket.1).as_secs_f64() / REFILL.as_secs_f64();
    *bucket = ((bucket.0 + refilled).min(BURST), now);
    bucket.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_failures_then_a_wait_for_that_address_alone() {
        let t = Throttle::default();
        for _ in 0..10 {
            assert!(t.wait(&["ip:1.2.3.4"]).is_none());
            t.failed(&["ip:1.2.3.4", "form:a"]);
        }
        let wait = t.wait(&["ip:1.2.3.4"]).expect("the address ran out");
        assert!(wait > Duration::ZERO && wait <= REFILL, "{wait:?}");
        assert!(t.wait(&["ip:5.6.7.8", "form:b"]).is_none(), "another address and form may try");
        assert!(t.wait(&["ip:5.6.7.8", "form:a"]).is_some(), "the same form from elsewhere may not");
    }
}
