//! Access accounting: verifications that found a key, counted in memory and
//! flushed as coalesced `key.accessed` events, one per key per flush window.
//!
//! Counts are exact: each verify adds one to exactly one pending report, and
//! `take` hands every pending report out exactly once, with an id unique to
//! this node and process (`<node>-<boot micros>-<n>`) so that a consumer can
//! append each report once. Counts still in memory when the process dies are
//! lost, and so are at most one flush window of them; graceful shutdown
//! flushes first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::event::KeyAccessed;
use crate::id::{KeyId, OrgId};
use crate::time::Timestamp;

#[derive(Debug)]
struct Pending {
    org: OrgId,
    count: u64,
    first_at: Timestamp,
    last_at: Timestamp,
    last_ip: Option<IpAddr>,
}

pub struct AccessCounter {
    node: String,
    boot: i64,
    reports: AtomicU64,
    /// Pending counts by key; swapped out whole by `take`, so a verify never
    /// waits for a flush.
    pending: Mutex<HashMap<KeyId, Pending>>,
}

/// One report ready to be recorded: the key's org, the key, the event data.
pub type Report = (OrgId, KeyId, KeyAccessed);

impl AccessCounter {
    pub fn new(node: &str, boot: Timestamp) -> Self {
        AccessCounter {
            node: node.to_owned(),
            boot: boot.micros(),
            reports: AtomicU64::new(0),
            pending: Mutex::default(),
        }
    }

    pub fn record(&self, org: &OrgId, key: &KeyId, at: Timestamp, ip: Option<IpAddr>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get_mut(key) {
            Some(p) => {
                p.count += 1;
                p.first_at = p.first_at.min(at);
                if at >= p.last_at {
                    p.last_at = at;
                    if ip.is_some() {
                        p.last_ip = ip;
                    }
                }
            }
            None => {
                pending.insert(*key, Pending { org: org.clone(), count: 1, first_at: at, last_at: at, last_ip: ip });
            }
        }
    }

    /// Every pending count as a report, each with a new id; the counter
    /// starts again from zero.
    pub fn take(&self) -> Vec<Report> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        pending
            .into_iter()
            .map(|(key, p)| {
                let n = self.reports.fetch_add(1, Ordering::Relaxed) + 1;
                let report = KeyAccessed {
                    count: p.count,
                    first_at: p.first_at,
                    last_at: p.last_at,
                    last_ip: p.last_ip.map(|ip| ip.to_string()),
                    node: self.node.clone(),
                    report_id: format!("{}-{}-{n}", self.node, self.boot),
                };
                (p.org, key, report)
            })
            .collect()
    }

    /// Puts a report that could not be recorded back into the pending
    /// counts, to go out with the next flush under a new id.
    pub fn restore(&self, (org, key, report): Report) {
        let ip = report.last_ip.as_deref().and_then(|s| s.parse().ok());
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let p = pending.entry(key).or_insert(Pending {
            org,
            count: 0,
            first_at: report.first_at,
            last_at: report.last_at,
            last_ip: ip,
        });
        p.count += report.count;
        p.first_at = p.first_at.min(report.first_at);
        p.last_at = p.last_at.max(report.last_at);
    }
}

/// Splits a report id `<origin>-<n>` into its origin (node and process) and
/// its number, which increases within the origin. `None` for other ids.
pub fn report_number(report_id: &str) -> Option<(&str, u64)> {
    let (origin, n) = report_id.rsplit_once('-')?;
    Some((origin, n.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::IdGenerator;

    #[test]
    fn counts_coalesce_per_key_and_are_taken_once() {
        let c = AccessCounter::new("n1", Timestamp::from_micros(5));
        let org = OrgId::parse("acme").unwrap();
        let mut ids = IdGenerator::default();
        let (a, b) = (ids.key_id(Timestamp::from_micros(0)), ids.key_id(Timestamp::from_micros(0)));
        for t in [3, 1, 2] {
            c.record(&org, &a, Timestamp::from_micros(t), Some("10.0.0.1".parse().unwrap()));
        }
        c.record(&org, &b, Timestamp::from_micros(9), None);
        let mut reports = c.take();
        reports.sort_by_key(|x| x.1);
        assert_eq!(reports.len(), 2);
        let r = &reports[0].2;
        assert_eq!((r.count, r.first_at.micros(), r.last_at.micros()), (3, 1, 3));
        assert_ne!(reports[0].2.report_id, reports[1].2.report_id);
        assert!(c.take().is_empty());
        c.restore(reports.remove(0));
        assert_eq!(c.take()[0].2.count, 3);
    }
}
