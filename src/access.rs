//! Access accounting: verifications that found a key, counted in memory by
//! outcome and flushed as coalesced `key.accessed` events, one per key per
//! flush window.
//!
//! Counts are exact: each verify adds one to exactly one pending report, and
//! `take` hands every pending report out exactly once, with an id unique to
//! this node and process (`<node>-<boot micros>-<n>`) so that a consumer can
//! append each report once. A report whose delivery failed goes back with
//! `retry` and comes out of the next `take` under the same id: if the first
//! delivery did land (an acknowledgement lost on the way back), the
//! consumer recognises the id and does not count it twice. Counts still in
//! memory when the process dies are lost, and so are at most one flush
//! window of them; graceful shutdown flushes first.

use rustc_hash::FxHashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::event::KeyAccessed;
use crate::domain::id::{KeyId, OrgId};
use crate::domain::time::Timestamp;
use crate::domain::verifier::Code;

#[derive(Debug)]
struct Pending {
    org: OrgId,
    count: u64,
    /// By outcome, in `Code::ALL`'s order.
    outcomes: [u64; Code::ALL.len()],
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
    pending: Mutex<FxHashMap<KeyId, Pending>>,
    /// Reports handed out whose delivery failed, kept whole (id included).
    retries: Mutex<Vec<Report>>,
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
            retries: Mutex::default(),
        }
    }

    /// The node the reports are from.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn record(&self, org: &OrgId, key: &KeyId, code: Code, at: Timestamp, ip: Option<IpAddr>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get_mut(key) {
            Some(p) => {
                p.count = p.count.saturating_add(1);
                p.outcomes[code as usize] = p.outcomes[code as usize].saturating_add(1);
                p.first_at = p.first_at.min(at);
                if at >= p.last_at {
                    p.last_at = at;
                    if ip.is_some() {
                        p.last_ip = ip;
                    }
                }
            }
            None => {
                let mut outcomes = [0; Code::ALL.len()];
                outcomes[code as usize] = 1;
                pending.insert(
                    *key,
                    Pending { org: org.clone(), count: 1, outcomes, first_at: at, last_at: at, last_ip: ip },
                );
            }
        }
    }

    /// Reports to deliver: those to retry, under their first ids, then every
    /// pending count as a new report with a new id. The counter starts again
    /// from zero.
    pub fn take(&self) -> Vec<Report> {
        let mut reports = std::mem::take(&mut *self.retries.lock().unwrap_or_else(|e| e.into_inner()));
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        reports.extend(pending.into_iter().map(|(key, p)| {
            let n = self.reports.fetch_add(1, Ordering::Relaxed) + 1;
            let outcomes = Code::ALL.into_iter().zip(p.outcomes).filter(|(_, n)| *n > 0).collect();
            let report = KeyAccessed {
                count: p.count,
                outcomes,
                first_at: p.first_at,
                last_at: p.last_at,
                last_ip: p.last_ip.map(|ip| ip.to_string()),
                node: self.node.clone(),
                report_id: format!("{}-{}-{n}", self.node, self.boot),
            };
            (p.org, key, report)
        }));
        reports
    }

    /// Keeps a report whose delivery failed, to go out again with the next
    /// `take`, unchanged.
    pub fn retry(&self, report: Report) {
        self.retries.lock().unwrap_or_else(|e| e.into_inner()).push(report);
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::id::IdGenerator;

    #[test]
    fn counts_coalesce_per_key_and_are_taken_once() {
        let c = AccessCounter::new("n1", Timestamp::from_micros(5));
        let org = OrgId::parse("acme").unwrap();
        let mut ids = IdGenerator::default();
        let (a, b) = (ids.key_id(Timestamp::from_micros(0)), ids.key_id(Timestamp::from_micros(0)));
        for (t, code) in [(3, Code::Valid), (1, Code::ForbiddenScope), (2, Code::Valid)] {
            c.record(&org, &a, code, Timestamp::from_micros(t), Some("10.0.0.1".parse().unwrap()));
        }
        c.record(&org, &b, Code::Expired, Timestamp::from_micros(9), None);
        let mut reports = c.take();
        reports.sort_by_key(|x| x.1);
        assert_eq!(reports.len(), 2);
        let r = &reports[0].2;
        assert_eq!((r.count, r.first_at.micros(), r.last_at.micros()), (3, 1, 3));
        assert_eq!(r.outcomes, [(Code::Valid, 2), (Code::ForbiddenScope, 1)].into());
        assert_eq!(reports[1].2.outcomes, [(Code::Expired, 1)].into());
        assert_ne!(reports[0].2.report_id, reports[1].2.report_id);
        assert!(c.take().is_empty());
    }

    /// A report that may have landed is sent again as it was: same id, same
    /// count, never merged into newer counts under a new id.
    #[test]
    fn a_retried_report_keeps_its_id() {
        let c = AccessCounter::new("n1", Timestamp::from_micros(5));
        let org = OrgId::parse("acme").unwrap();
        let key = IdGenerator::default().key_id(Timestamp::from_micros(0));
        c.record(&org, &key, Code::Valid, Timestamp::from_micros(1), None);
        let first = c.take().remove(0);
        c.retry(first.clone());
        c.record(&org, &key, Code::Valid, Timestamp::from_micros(2), None);
        let again = c.take();
        assert_eq!(again.len(), 2);
        assert_eq!(again[0], first);
        assert_ne!(again[1].2.report_id, first.2.report_id);
        assert_eq!(again[1].2.count, 1);
    }
}
