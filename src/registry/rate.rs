//! How fast one tenant may grow the log: events and bytes per org per
//! minute, so that no tenant fills the disk (a few megabytes a second of
//! catalogue edits would) or the stream that every replica reads.
//!
//! A token bucket per org for each: it holds at most a minute's allowance
//! and refills continuously. A command is admitted while both buckets have
//! something left, then charged what its events really weighed once they
//! are encoded; so one command may overdraw a bucket (by at most one
//! decision's events), and the org waits until it has refilled. Only
//! commands of keys and people count: keyreg's own (the sweeper, access
//! reports, recovery) and the operator's `_system` org never wait.

use std::collections::HashMap;
use std::time::Duration;

use crate::domain::id::OrgId;
use crate::domain::time::Timestamp;

/// The allowance of one org. Zero means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrgRate {
    pub events_per_minute: u64,
    pub bytes_per_minute: u64,
}

impl OrgRate {
    /// No limit at all (what embedding code and the benchmarks use).
    pub const UNLIMITED: OrgRate = OrgRate { events_per_minute: 0, bytes_per_minute: 0 };
    /// What `keyreg serve` enforces unless told otherwise: far above what a
    /// tenant managing keys by hand or by script does, far below what
    /// fills a disk.
    pub const DEFAULT: OrgRate = OrgRate { events_per_minute: 60_000, bytes_per_minute: 64 * 1024 * 1024 };
}

/// One org's two buckets, as they stood at `at`.
struct Bucket {
    events: f64,
    bytes: f64,
    at: Timestamp,
}

pub(super) struct Buckets {
    rate: OrgRate,
    orgs: HashMap<OrgId, Bucket>,
}

impl Buckets {
    pub fn new(rate: OrgRate) -> Buckets {
        Buckets { rate, orgs: HashMap::new() }
    }

    /// Admits a command of `org` at `now`, or says how long to wait.
    pub fn admit(&mut self, org: &OrgId, now: Timestamp) -> Result<(), Duration> {
        let rate = self.rate;
        let Some(bucket) = self.refilled(org, now) else { return Ok(()) };
        let wait = |left: f64, per_minute: u64| -> f64 {
            if per_minute == 0 || left >= 1.0 { 0.0 } else { (1.0 - left) * 60.0 / per_minute as f64 }
        };
        let secs = wait(bucket.events, rate.events_per_minute).max(wait(bucket.bytes, rate.bytes_per_minute));
        if secs > 0.0 { Err(Duration::from_secs_f64(secs)) } else { Ok(()) }
    }

    /// Charges `org` what a command appended.
    pub fn charge(&mut self, org: &OrgId, now: Timestamp, events: usize, bytes: usize) {
        if let Some(bucket) = self.refilled(org, now) {
            bucket.events -= events as f64;
            bucket.bytes -= bytes as f64;
        }
    }

    /// The org's buckets refilled up to `now`; `None` when no limit applies.
    fn refilled(&mut self, org: &OrgId, now: Timestamp) -> Option<&mut Bucket> {
        if self.rate == OrgRate::UNLIMITED || !org.is_tenant() {
            return None;
        }
        let rate = self.rate;
        let full = |per_minute: u64| if per_minute == 0 { f64::INFINITY } else { per_minute as f64 };
        let bucket = self.orgs.entry(org.clone()).or_insert(Bucket {
            events: full(rate.events_per_minute),
            bytes: full(rate.bytes_per_minute),
            at: now,
        });
        let minutes = (now.micros() - bucket.at.micros()).max(0) as f64 / 60e6;
        bucket.events = (bucket.events + minutes * full(rate.events_per_minute)).min(full(rate.events_per_minute));
        bucket.bytes = (bucket.bytes + minutes * full(rate.bytes_per_minute)).min(full(rate.bytes_per_minute));
        bucket.at = now;
        Some(bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_790_000_000_000_000;

    fn at(seconds: f64) -> Timestamp {
        Timestamp::from_micros(T0 + (seconds * 1e6) as i64)
    }

    #[test]
    fn an_org_that_spends_its_minute_waits_for_the_bucket_to_refill() {
        let mut b = Buckets::new(OrgRate { events_per_minute: 60, bytes_per_minute: 6000 });
        let acme = OrgId::parse("acme").unwrap();
        for _ in 0..60 {
            b.admit(&acme, at(0.0)).unwrap();
            b.charge(&acme, at(0.0), 1, 10);
        }
        let wait = b.admit(&acme, at(0.0)).unwrap_err();
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-6, "{wait:?}");
        b.admit(&acme, at(1.0)).unwrap();
        // Another org has its own allowance; the operator's has none.
        b.admit(&OrgId::parse("beta").unwrap(), at(0.0)).unwrap();
        b.charge(&OrgId::system(), at(0.0), 1_000_000, 1 << 40);
        b.admit(&OrgId::system(), at(0.0)).unwrap();
    }

    #[test]
    fn one_large_command_overdraws_the_bytes_and_the_org_waits_it_off() {
        let mut b = Buckets::new(OrgRate { events_per_minute: 1000, bytes_per_minute: 60_000 });
        let acme = OrgId::parse("acme").unwrap();
        b.admit(&acme, at(0.0)).unwrap();
        b.charge(&acme, at(0.0), 1, 120_000);
        let wait = b.admit(&acme, at(0.0)).unwrap_err();
        assert!((wait.as_secs_f64() - 60.001).abs() < 1e-3, "{wait:?}");
        assert!(b.admit(&acme, at(59.0)).is_err());
        b.admit(&acme, at(61.0)).unwrap();
        let mut unlimited = Buckets::new(OrgRate::UNLIMITED);
        unlimited.charge(&acme, at(0.0), usize::MAX, usize::MAX);
        unlimited.admit(&acme, at(0.0)).unwrap();
    }
}
