//! The audit history: which events touched which key, by which actor, of
//! which type, when. An index of sequence numbers; the events themselves
//! stay in the log and are served from there byte for byte.
//!
//! Entries are kept in log order, and the log's times never go backwards,
//! so "since"/"until" are binary searches and a cursor is a sequence number.

use std::collections::HashMap;

use crate::domain::event::{Event, TYPES};
use crate::domain::id::{Actor, KeyId, OrgId, Seq};
use crate::domain::time::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Entry {
    seq: Seq,
    time: Timestamp,
    org: u32,
    actor: u32,
    key: Option<u32>,
    type_index: u8,
}

/// Interns repeated strings (orgs, actors, keys) as small numbers, so an
/// entry is a few machine words however long the ids are.
#[derive(Clone, Debug, PartialEq)]
struct Interner<T: std::hash::Hash + Eq + Clone> {
    ids: HashMap<T, u32>,
}

impl<T: std::hash::Hash + Eq + Clone> Default for Interner<T> {
    fn default() -> Self {
        Interner { ids: HashMap::new() }
    }
}

impl<T: std::hash::Hash + Eq + Clone> Interner<T> {
    fn intern(&mut self, value: &T) -> u32 {
        let next = self.ids.len() as u32;
        *self.ids.entry(value.clone()).or_insert(next)
    }

    fn get(&self, value: &T) -> Option<u32> {
        self.ids.get(value).copied()
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditIndex {
    entries: Vec<Entry>,
    orgs: Interner<OrgId>,
    actors: Interner<Actor>,
    keys: Interner<KeyId>,
    /// Positions in `entries`, per org and per key: the two lists a query
    /// starts from (every query is inside one org).
    by_org: HashMap<u32, Vec<u32>>,
    by_key: HashMap<u32, Vec<u32>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

/// An audit query. Every query is inside one organization.
#[derive(Clone, Debug)]
pub struct Query {
    pub org: OrgId,
    pub key: Option<KeyId>,
    pub actor: Option<Actor>,
    pub type_name: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Continue after this sequence (in the query's order).
    pub after: Option<Seq>,
    pub order: Order,
    pub limit: usize,
}

impl AuditIndex {
    pub fn apply(&mut self, seq: Seq, event: &Event) {
        let position = self.entries.len() as u32;
        let org = self.orgs.intern(&event.org);
        let key = event.key_id().map(|k| self.keys.intern(k));
        let entry = Entry {
            seq,
            time: event.time,
            org,
            actor: self.actors.intern(&event.actor),
            key,
            type_index: TYPES.iter().position(|t| *t == event.change.type_name()).unwrap_or(0) as u8,
        };
        self.entries.push(entry);
        self.by_org.entry(org).or_default().push(position);
        if let Some(k) = key {
            self.by_key.entry(k).or_default().push(position);
        }
    }

    /// How many events of `org` there are up to `up_to` (inclusive), and the
    /// last of them.
    pub fn org_events(&self, org: &OrgId, up_to: Seq) -> (u64, Option<Seq>) {
        let list = self.orgs.get(org).and_then(|o| self.by_org.get(&o)).map(Vec::as_slice).unwrap_or_default();
        let n = list.partition_point(|p| self.entries[*p as usize].seq <= up_to);
        (n as u64, n.checked_sub(1).map(|i| self.entries[list[i] as usize].seq))
    }

    /// The last sequence whose time is at or before `t` (0 if none).
    pub fn last_seq_at(&self, t: Timestamp) -> Seq {
        let n = self.entries.partition_point(|e| e.time <= t);
        if n == 0 { Seq(0) } else { self.entries[n - 1].seq }
    }

    /// Matching sequence numbers in the query's order, at most `limit`, and
    /// whether more follow.
    pub fn query(&self, q: &Query) -> (Vec<Seq>, bool) {
        let Some(org) = self.orgs.get(&q.org) else {
            return (vec![], false);
        };
        let list: &[u32] = match &q.key {
            Some(k) => match self.keys.get(k) {
                Some(k) => self.by_key.get(&k).map(Vec::as_slice).unwrap_or(&[]),
                None => &[],
            },
            None => self.by_org.get(&org).map(Vec::as_slice).unwrap_or(&[]),
        };
        let actor = match &q.actor {
            Some(a) => match self.actors.get(a) {
                Some(a) => Some(a),
                None => return (vec![], false),
            },
            None => None,
        };
        let type_index = match &q.type_name {
            Some(t) => match TYPES.iter().position(|x| x == t) {
                Some(i) => Some(i as u8),
                None => return (vec![], false),
            },
            None => None,
        };
        let entry = |p: &u32| &self.entries[*p as usize];
        // Narrow by time and cursor with binary searches: both are monotonic.
        let lo = list.partition_point(|p| {
            let e = entry(p);
            q.since.is_some_and(|s| e.time < s) || (q.order == Order::Asc && q.after.is_some_and(|a| e.seq <= a))
        });
        let hi = list.partition_point(|p| {
            let e = entry(p);
            q.until.is_none_or(|u| e.time <= u) && (q.order == Order::Asc || q.after.is_none_or(|a| e.seq < a))
        });
        let slice = if lo < hi { &list[lo..hi] } else { &[][..] };
        let keep = |p: &&u32| {
            let e = entry(p);
            e.org == org && actor.is_none_or(|a| e.actor == a) && type_index.is_none_or(|t| e.type_index == t)
        };
        let mut out: Vec<Seq> = match q.order {
            Order::Asc => slice.iter().filter(keep).take(q.limit + 1).map(|p| entry(p).seq).collect(),
            Order::Desc => slice.iter().rev().filter(keep).take(q.limit + 1).map(|p| entry(p).seq).collect(),
        };
        let more = out.len() > q.limit;
        out.truncate(q.limit);
        (out, more)
    }
}
