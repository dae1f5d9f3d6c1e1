//! The audit history: which events touched which key, by which actor, of
//! which type, when. An index of sequence numbers; the events themselves
//! stay in the log and are served from there byte for byte.
//!
//! Entries are kept in log order, one per event, so an entry's sequence is
//! its position; the log's times never go backwards, so "since"/"until"
//! are binary searches and a cursor is a sequence number. An entry is 16
//! bytes, and each event adds one more position to its org's list (and its
//! key's): the index grows with the log, by about 24 bytes an event.

use rustc_hash::FxHashMap as HashMap;

use crate::domain::event::{Event, TYPES};
use crate::domain::id::{Actor, KeyId, OrgId, Seq};
use crate::domain::snapshot::{Decoder, Encoder, SnapshotError, damaged};
use crate::domain::time::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Entry {
    time: Timestamp,
    actor: u32,
    type_index: u8,
}

/// Interns repeated strings (orgs, actors, keys) as small numbers, so an
/// entry is a few machine words however long the ids are.
#[derive(Clone, Debug, PartialEq)]
struct Interner<T: std::hash::Hash + Eq + Clone> {
    ids: HashMap<T, u32>,
    /// The values in the order of their numbers.
    values: Vec<T>,
}

impl<T: std::hash::Hash + Eq + Clone> Default for Interner<T> {
    fn default() -> Self {
        Interner { ids: HashMap::default(), values: vec![] }
    }
}

impl<T: std::hash::Hash + Eq + Clone> Interner<T> {
    fn intern(&mut self, value: &T) -> u32 {
        let next = self.values.len() as u32;
        *self.ids.entry(value.clone()).or_insert_with(|| {
            self.values.push(value.clone());
            next
        })
    }

    fn get(&self, value: &T) -> Option<u32> {
        self.ids.get(value).copied()
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditIndex {
    /// The sequence of `entries[0]` (the log's first event: 1).
    first: Seq,
    entries: Vec<Entry>,
    orgs: Interner<OrgId>,
    actors: Interner<Actor>,
    keys: Interner<KeyId>,
    /// The org of each interned key: a key belongs to one org for good.
    key_org: Vec<u32>,
    /// Positions in `entries`, per org and per key: the two lists a query
    /// starts from (every query is inside one org).
    by_org: HashMap<u32, Vec<u32>>,
    by_key: HashMap<u32, Vec<u32>>,
    /// Per org, the positions of its events that are about no key (the
    /// org, its roles, its catalogue): what every key's past starts from.
    /// Derived from `by_org`, so not written to snapshots.
    org_only: HashMap<u32, Vec<u32>>,
    /// Per org, every key it ever had (deleted ones too), by key id: the
    /// listing order, for a listing as of a past time.
    org_keys: HashMap<u32, Vec<u32>>,
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
    /// Indexes the event at `seq`: the next one, since the index holds every
    /// event of the log in order.
    pub fn apply(&mut self, seq: Seq, event: &Event) {
        if self.entries.is_empty() {
            self.first = seq;
        }
        let position = self.entries.len() as u32;
        let org = self.orgs.intern(&event.org);
        let entry = Entry {
            time: event.time,
            actor: self.actors.intern(&event.actor),
            type_index: TYPES.iter().position(|t| *t == event.change.type_name()).unwrap_or(0) as u8,
        };
        self.entries.push(entry);
        self.by_org.entry(org).or_default().push(position);
        match event.key_id() {
            Some(k) => {
                let key = self.keys.intern(k);
                if key as usize == self.key_org.len() {
                    self.key_org.push(org);
                    self.add_org_key(org, key);
                }
                self.by_key.entry(key).or_default().push(position);
            }
            None => self.org_only.entry(org).or_default().push(position),
        }
    }

    /// Ids increase with creation time, so this is nearly always a push.
    fn add_org_key(&mut self, org: u32, key: u32) {
        let ids = &self.keys.values;
        let list = self.org_keys.entry(org).or_default();
        match list.last() {
            Some(&last) if ids[last as usize] > ids[key as usize] => {
                let at = list.partition_point(|k| ids[*k as usize] < ids[key as usize]);
                list.insert(at, key);
            }
            _ => list.push(key),
        }
    }

    fn seq(&self, position: u32) -> Seq {
        Seq(self.first.0 + u64::from(position))
    }

    /// How many events of `org` there are up to `up_to` (inclusive), and the
    /// last of them.
    pub fn org_events(&self, org: &OrgId, up_to: Seq) -> (u64, Option<Seq>) {
        let list = self.orgs.get(org).and_then(|o| self.by_org.get(&o)).map(Vec::as_slice).unwrap_or_default();
        let n = list.partition_point(|p| self.seq(*p) <= up_to);
        (n as u64, n.checked_sub(1).map(|i| self.seq(list[i])))
    }

    /// The sequences of `org`'s events after `after`, at most `limit`, in
    /// log order: a tenant's page of raw events, without a scan of the log.
    pub fn org_events_after(&self, org: &OrgId, after: Seq, limit: usize) -> Vec<Seq> {
        let list = self.orgs.get(org).and_then(|o| self.by_org.get(&o)).map(Vec::as_slice).unwrap_or_default();
        let start = list.partition_point(|p| self.seq(*p) <= after);
        list[start..].iter().take(limit).map(|p| self.seq(*p)).collect()
    }

    /// The org's own past up to `up_to` (inclusive): its events that are
    /// about no key, in log order.
    pub fn org_history(&self, org: &OrgId, up_to: Seq) -> Vec<Seq> {
        let list = self.orgs.get(org).and_then(|o| self.org_only.get(&o)).map(Vec::as_slice).unwrap_or_default();
        self.seqs_up_to(list, up_to).collect()
    }

    /// What the past of some of `org`'s keys needs, up to `up_to`: the
    /// org's own past and those keys' events, in log order. Keys of other
    /// orgs are left out (their past is not this org's to see).
    pub fn keys_history(&self, org: &OrgId, keys: &[KeyId], up_to: Seq) -> Vec<Seq> {
        let Some(o) = self.orgs.get(org) else {
            return vec![];
        };
        let mut seqs = self.org_history(org, up_to);
        for key in keys {
            if let Some(k) = self.keys.get(key).filter(|k| self.key_org[*k as usize] == o) {
                seqs.extend(self.seqs_up_to(self.by_key.get(&k).map(Vec::as_slice).unwrap_or_default(), up_to));
            }
        }
        seqs.sort_unstable();
        seqs
    }

    /// The org's keys that existed at `up_to` (their first event is at or
    /// before it) and whose ids are below `before`, highest id first: the
    /// listing's order.
    pub fn keys_of(&self, org: &OrgId, up_to: Seq, before: Option<&KeyId>) -> impl Iterator<Item = &KeyId> + '_ {
        let ids = &self.keys.values;
        let list = self.orgs.get(org).and_then(|o| self.org_keys.get(&o)).map(Vec::as_slice).unwrap_or_default();
        let end = before.map_or(list.len(), |b| list.partition_point(|k| ids[*k as usize] < *b));
        list[..end]
            .iter()
            .rev()
            .filter(move |k| self.by_key.get(k).and_then(|l| l.first()).is_some_and(|p| self.seq(*p) <= up_to))
            .map(|k| &ids[*k as usize])
    }

    fn seqs_up_to<'a>(&'a self, positions: &'a [u32], up_to: Seq) -> impl Iterator<Item = Seq> + 'a {
        positions.iter().map(|p| self.seq(*p)).take_while(move |s| *s <= up_to)
    }

    /// The last sequence whose time is at or before `t` (0 if none).
    pub fn last_seq_at(&self, t: Timestamp) -> Seq {
        let n = self.entries.partition_point(|e| e.time <= t);
        if n == 0 { Seq(0) } else { self.seq(n as u32 - 1) }
    }

    /// Matching sequence numbers in the query's order, at most `limit`, and
    /// whether more follow.
    pub fn query(&self, q: &Query) -> (Vec<Seq>, bool) {
        let Some(org) = self.orgs.get(&q.org) else {
            return (vec![], false);
        };
        // Another org's key is answered as if it had no history.
        let list: &[u32] = match &q.key {
            Some(k) => match self.keys.get(k) {
                Some(k) if self.key_org[k as usize] == org => self.by_key.get(&k).map(Vec::as_slice).unwrap_or(&[]),
                _ => &[],
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
            q.since.is_some_and(|s| entry(p).time < s)
                || (q.order == Order::Asc && q.after.is_some_and(|a| self.seq(*p) <= a))
        });
        let hi = list.partition_point(|p| {
            q.until.is_none_or(|u| entry(p).time <= u)
                && (q.order == Order::Asc || q.after.is_none_or(|a| self.seq(*p) < a))
        });
        let slice = if lo < hi { &list[lo..hi] } else { &[][..] };
        let keep = |p: &&u32| {
            let e = entry(p);
            actor.is_none_or(|a| e.actor == a) && type_index.is_none_or(|t| e.type_index == t)
        };
        let mut out: Vec<Seq> = match q.order {
            Order::Asc => slice.iter().filter(keep).take(q.limit + 1).map(|p| self.seq(*p)).collect(),
            Order::Desc => slice.iter().rev().filter(keep).take(q.limit + 1).map(|p| self.seq(*p)).collect(),
        };
        let more = out.len() > q.limit;
        out.truncate(q.limit);
        (out, more)
    }
}

impl<T: std::hash::Hash + Eq + Clone> Interner<T> {
    fn from_order(values: Vec<T>) -> Self {
        Interner { ids: values.iter().enumerate().map(|(n, t)| (t.clone(), n as u32)).collect(), values }
    }
}

/// The index in a snapshot: every field as it is, ids as text.
impl AuditIndex {
    pub fn encode(&self, w: &mut Encoder) {
        w.u64(self.first.0);
        w.len(self.entries.len());
        for e in &self.entries {
            w.time(e.time);
            w.u32(e.actor);
            w.u8(e.type_index);
        }
        let orgs = &self.orgs.values;
        w.len(orgs.len());
        orgs.iter().for_each(|o| w.str(o.as_str()));
        let actors = &self.actors.values;
        w.len(actors.len());
        actors.iter().for_each(|a| w.str(&a.to_string()));
        let keys = &self.keys.values;
        w.len(keys.len());
        keys.iter().for_each(|k| w.raw(k.as_str().as_bytes()));
        w.len(self.key_org.len());
        self.key_org.iter().for_each(|o| w.u32(*o));
        for lists in [&self.by_org, &self.by_key, &self.org_keys] {
            let mut sorted: Vec<(&u32, &Vec<u32>)> = lists.iter().collect();
            sorted.sort_unstable_by_key(|(n, _)| **n);
            w.len(sorted.len());
            for (n, positions) in sorted {
                w.u32(*n);
                w.len(positions.len());
                positions.iter().for_each(|p| w.u32(*p));
            }
        }
    }

    pub fn decode(r: &mut Decoder<'_>) -> Result<AuditIndex, SnapshotError> {
        let first = Seq(r.u64()?);
        let entries = (0..r.len(13)?)
            .map(|_| Ok(Entry { time: r.time()?, actor: r.u32()?, type_index: r.u8()? }))
            .collect::<Result<Vec<_>, SnapshotError>>()?;
        let orgs = (0..r.len(4)?).map(|_| OrgId::parse(r.str()?).map_err(damaged)).collect::<Result<Vec<_>, _>>()?;
        let actors = (0..r.len(4)?).map(|_| Actor::parse(r.str()?).map_err(damaged)).collect::<Result<Vec<_>, _>>()?;
        let keys = (0..r.len(KeyId::LEN)?)
            .map(|_| {
                let id = std::str::from_utf8(r.raw(KeyId::LEN)?).map_err(damaged)?;
                KeyId::parse(id).map_err(damaged)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let key_org = (0..r.len(4)?).map(|_| r.u32()).collect::<Result<Vec<_>, _>>()?;
        let mut lists = [HashMap::default(), HashMap::default(), HashMap::default()];
        for (list, bound) in lists.iter_mut().zip([entries.len(), entries.len(), keys.len()]) {
            for _ in 0..r.len(8)? {
                let n = r.u32()?;
                let items = (0..r.len(4)?).map(|_| r.u32()).collect::<Result<Vec<_>, _>>()?;
                if items.iter().any(|p| *p as usize >= bound) {
                    return Err(damaged("an audit position or key number past the end"));
                }
                list.insert(n, items);
            }
        }
        let [by_org, by_key, org_keys] = lists;
        if entries.iter().any(|e| e.actor as usize >= actors.len() || usize::from(e.type_index) >= TYPES.len())
            || key_org.len() != keys.len()
            || key_org.iter().chain(by_org.keys()).chain(org_keys.keys()).any(|o| *o as usize >= orgs.len())
            || by_key.keys().any(|k| *k as usize >= keys.len())
        {
            return Err(damaged("an audit entry names an org, actor or key the snapshot does not hold"));
        }
        // An event is about a key exactly when it is in a key's list, as
        // `apply` sorts them.
        let mut keyed = vec![false; entries.len()];
        by_key.values().flatten().for_each(|p| keyed[*p as usize] = true);
        let org_only = by_org
            .iter()
            .map(|(o, list)| (*o, list.iter().filter(|p| !keyed[**p as usize]).copied().collect()))
            .collect();
        Ok(AuditIndex {
            first,
            entries,
            orgs: Interner::from_order(orgs),
            actors: Interner::from_order(actors),
            keys: Interner::from_order(keys),
            key_org,
            by_org,
            by_key,
            org_only,
            org_keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{Change, KeyChange, OrgSettings};
    use crate::domain::id::IdGenerator;

    /// Events 1..=9: orgs a and b, keys of each, two actors, one a second.
    fn index() -> (AuditIndex, Vec<KeyId>) {
        let mut ids = IdGenerator::default();
        let keys: Vec<KeyId> = (0..3).map(|i| ids.key_id(Timestamp::from_micros(i))).collect();
        let (a, b) = (OrgId::parse("aa").unwrap(), OrgId::parse("bb").unwrap());
        let plan: [(&OrgId, &str, Option<usize>); 9] = [
            (&a, "system:init", None),
            (&a, "system:x", Some(0)),
            (&b, "system:init", None),
            (&b, "system:x", Some(1)),
            (&a, "system:x", Some(0)),
            (&a, "system:y", Some(2)),
            (&b, "system:y", Some(1)),
            (&a, "system:x", Some(0)),
            (&a, "system:y", Some(2)),
        ];
        let mut index = AuditIndex::default();
        for (i, (org, actor, key)) in plan.into_iter().enumerate() {
            let time = Timestamp::from_micros(i as i64 * 1_000_000);
            let change = match key {
                Some(k) => Change::Key(keys[k], KeyChange::Disabled),
                None => Change::OrgUpdated(OrgSettings::default()),
            };
            let event = Event {
                id: ids.event_id(time),
                time,
                org: org.clone(),
                actor: Actor::parse(actor).unwrap(),
                via: None,
                batch_rest: 0,
                change,
            };
            index.apply(Seq(i as u64 + 1), &event);
        }
        (index, keys)
    }

    fn query(org: &str) -> Query {
        Query {
            org: OrgId::parse(org).unwrap(),
            key: None,
            actor: None,
            type_name: None,
            since: None,
            until: None,
            after: None,
            order: Order::Desc,
            limit: 100,
        }
    }

    fn seqs(list: &[u64]) -> Vec<Seq> {
        list.iter().map(|s| Seq(*s)).collect()
    }

    #[test]
    fn queries_filter_and_page_within_one_org() {
        let (index, keys) = index();
        assert_eq!(index.query(&query("aa")).0, seqs(&[9, 8, 6, 5, 2, 1]));
        assert_eq!(index.query(&Query { key: Some(keys[0]), ..query("aa") }).0, seqs(&[8, 5, 2]));
        assert!(index.query(&Query { key: Some(keys[1]), ..query("aa") }).0.is_empty(), "another org's key");
        let by_y = Query { actor: Some(Actor::parse("system:y").unwrap()), ..query("aa") };
        assert_eq!(index.query(&by_y).0, seqs(&[9, 6]));
        let typed = Query { type_name: Some("org.updated".into()), ..query("bb") };
        assert_eq!(index.query(&typed).0, seqs(&[3]));
        let window = Query {
            since: Some(Timestamp::from_micros(2_000_000)),
            until: Some(Timestamp::from_micros(6_000_000)),
            order: Order::Asc,
            ..query("aa")
        };
        assert_eq!(index.query(&window).0, seqs(&[5, 6]));
        let (first, more) = index.query(&Query { limit: 2, ..query("aa") });
        assert_eq!((first.clone(), more), (seqs(&[9, 8]), true));
        let rest = index.query(&Query { after: Some(first[1]), ..query("aa") });
        assert_eq!(rest, (seqs(&[6, 5, 2, 1]), false));
        let asc = index.query(&Query { order: Order::Asc, after: Some(Seq(5)), ..query("aa") });
        assert_eq!(asc.0, seqs(&[6, 8, 9]));
    }

    #[test]
    fn positions_give_sequences_and_times() {
        let (index, _) = index();
        assert_eq!(index.org_events(&OrgId::parse("bb").unwrap(), Seq(6)), (2, Some(Seq(4))));
        assert_eq!(index.org_events(&OrgId::parse("cc").unwrap(), Seq(9)), (0, None));
        assert_eq!(index.last_seq_at(Timestamp::from_micros(4_500_000)), Seq(5));
        assert_eq!(index.last_seq_at(Timestamp::from_micros(-1)), Seq(0));
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }
}
