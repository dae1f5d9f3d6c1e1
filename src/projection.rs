//! The key table: the current state of every organization and key, folded
//! from the log by one total `apply`.
//!
//! The same `Table::apply` builds the registry's live table, a verifier
//! replica's table and the table "as of" any past time, so the three cannot
//! disagree. `apply` holds no rules: every event it sees was decided valid
//! before it was appended, and an event that does not fit (a key that does
//! not exist, say) changes nothing rather than failing, which keeps the fold
//! total.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::cidr::{self, Cidr};
use crate::event::{Change, Event, KeyChange};
use crate::id::{Actor, FastHasher, KeyId, OrgId, Seq};
use crate::index::SlotIndex;
use crate::scope::Scope;
use crate::time::Timestamp;
use crate::token::TokenHash;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Disabled,
    Expired,
    Revoked,
    Deleted,
}

impl Status {
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "active" => Status::Active,
            "disabled" => Status::Disabled,
            "expired" => Status::Expired,
            "revoked" => Status::Revoked,
            "deleted" => Status::Deleted,
            _ => return None,
        })
    }

    /// Keys in these states count against `max_keys`.
    pub fn counts_against_limit(self) -> bool {
        !matches!(self, Status::Revoked | Status::Deleted)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Org {
    pub id: OrgId,
    pub name: String,
    pub max_keys: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: Seq,
    /// Keys that count against `max_keys`: kept as a counter so the limit
    /// check on create does not scan the org.
    #[serde(skip)]
    pub counted_keys: u32,
    #[serde(skip)]
    pub usage: Usage,
}

/// Verifications that found a key (or any key of an org), from `key.accessed`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Usage {
    pub total: u64,
    pub last_used_at: Option<Timestamp>,
    pub last_ip: Option<String>,
    /// Days since the epoch (UTC) to counts, by the day of each report's `last_at`.
    pub per_day: BTreeMap<i64, u64>,
}

/// What a key that was never used reports.
static UNUSED: Usage = Usage { total: 0, last_used_at: None, last_ip: None, per_day: BTreeMap::new() };

impl Usage {
    fn record(&mut self, count: u64, last_at: Timestamp, last_ip: Option<&String>) {
        self.total += count;
        *self.per_day.entry(last_at.day()).or_default() += count;
        if self.last_used_at.is_none_or(|t| t <= last_at) {
            self.last_used_at = Some(last_at);
            if last_ip.is_some() {
                self.last_ip = last_ip.cloned();
            }
        }
    }
}

/// One key. Kept small (a table may hold millions, and a verify at that
/// size is bound by cache misses): the fields a verify reads come first and
/// share two cache lines, ids are inline, scope and address sets are shared
/// between the keys that have the same ones, the descriptive text is one
/// allocation, and what most keys lack (a grace period, any use) is boxed.
#[derive(Clone, Debug, PartialEq)]
#[repr(C)]
pub struct Key {
    pub hash: TokenHash,
    pub id: KeyId,
    /// The status as events set it; `status_at` adds expiry by the clock.
    pub status: Status,
    pub expires_at: Option<Timestamp>,
    pub org: OrgId,
    pub scopes: Arc<[Scope]>,
    pub allowed_cidrs: Arc<[Cidr]>,
    /// The previous secret's hash and the instant it stops working, after a
    /// rotation with a grace period.
    grace: Option<Box<(TokenHash, Timestamp)>>,
    text: Text,
    pub created_by: Actor,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: Seq,
    usage: Option<Box<Usage>>,
}

/// A key's name, description, owner and display prefix, in one allocation:
/// each of the first three after its length in bytes (LEB128), the display
/// prefix last. Sixteen bytes in the key, and one small block on the heap.
#[derive(Clone, Debug, PartialEq)]
struct Text(Box<[u8]>);

impl Text {
    fn new(name: &str, description: &str, owner: &str, display_prefix: &str) -> Text {
        let mut all = Vec::with_capacity(name.len() + description.len() + owner.len() + display_prefix.len() + 6);
        for part in [name, description, owner] {
            let mut len = part.len();
            while len >= 0x80 {
                all.push(len as u8 | 0x80);
                len >>= 7;
            }
            all.push(len as u8);
            all.extend_from_slice(part.as_bytes());
        }
        all.extend_from_slice(display_prefix.as_bytes());
        Text(all.into_boxed_slice())
    }

    /// Part `i`: 0 name, 1 description, 2 owner, 3 display prefix.
    fn part(&self, i: usize) -> &str {
        let mut rest = &self.0[..];
        for _ in 0..i {
            rest = Text::split_first_part(rest).1;
        }
        let part = if i < 3 { Text::split_first_part(rest).0 } else { rest };
        // Built from `&str`s only, so every part is UTF-8.
        std::str::from_utf8(part).unwrap_or_default()
    }

    /// A length-prefixed part and what follows it.
    fn split_first_part(mut bytes: &[u8]) -> (&[u8], &[u8]) {
        let (mut len, mut shift) = (0usize, 0);
        while let Some((&b, tail)) = bytes.split_first() {
            bytes = tail;
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        bytes.split_at(len.min(bytes.len()))
    }
}

impl Key {
    pub fn name(&self) -> &str {
        self.text.part(0)
    }

    pub fn description(&self) -> &str {
        self.text.part(1)
    }

    pub fn owner(&self) -> &str {
        self.text.part(2)
    }

    pub fn display_prefix(&self) -> &str {
        self.text.part(3)
    }

    pub fn usage(&self) -> &Usage {
        self.usage.as_deref().unwrap_or(&UNUSED)
    }

    /// The previous secret's hash and when it stops working, during a grace period.
    pub fn grace(&self) -> Option<(TokenHash, Timestamp)> {
        self.grace.as_deref().copied()
    }

    /// The status at `now`: an active or disabled key whose `expires_at` has
    /// passed is expired, whether or not `key.expired` was written yet.
    pub fn status_at(&self, now: Timestamp) -> Status {
        match self.status {
            Status::Active | Status::Disabled if self.expires_at.is_some_and(|e| e <= now) => Status::Expired,
            s => s,
        }
    }

    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        cidr::allows(&self.allowed_cidrs, ip)
    }

    pub fn grants(&self, action: &str, resource: Option<&str>) -> bool {
        self.scopes.iter().any(|s| s.grants(action, resource))
    }

    /// The public view of the key at `now`: everything but its hashes.
    pub fn view(&self, now: Timestamp) -> KeyView<'_> {
        KeyView {
            id: &self.id,
            org: &self.org,
            name: self.name(),
            description: self.description(),
            owner: self.owner(),
            created_by: &self.created_by,
            created_at: self.created_at,
            updated_at: self.updated_at,
            last_used_at: self.usage().last_used_at,
            expires_at: self.expires_at,
            scopes: &self.scopes,
            allowed_cidrs: &self.allowed_cidrs,
            status: self.status_at(now),
            display_prefix: self.display_prefix(),
            version: self.version,
        }
    }
}

/// A key as users see it (HTTP responses, `keyreg replay`); never a hash.
#[derive(Serialize)]
pub struct KeyView<'a> {
    pub id: &'a KeyId,
    pub org: &'a OrgId,
    pub name: &'a str,
    pub description: &'a str,
    pub owner: &'a str,
    pub created_by: &'a Actor,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub scopes: &'a [Scope],
    pub allowed_cidrs: &'a [Cidr],
    pub status: Status,
    pub display_prefix: &'a str,
    pub version: Seq,
}

/// The state of every organization and key after `applied`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    applied: Seq,
    last_time: Option<Timestamp>,
    orgs: HashMap<OrgId, Org>,
    /// Every key ever created, in creation order (keys are never removed:
    /// deleted keys keep their history). Indexes point into it, so a verify
    /// is one probe of `by_hash` and one slot read.
    keys: Vec<Key>,
    /// Key ids to their slot in `keys`.
    by_id: SlotIndex,
    /// Current and in-grace secret hashes to their key's slot: the verify lookup.
    by_hash: SlotIndex,
    /// Each org's keys' slots in key id order: listings and their cursors
    /// walk this.
    by_org: HashMap<OrgId, Vec<u32>>,
    /// Active and disabled keys that have an expiry, by expiry: what the
    /// sweeper will have to record, found without a scan.
    expiring: BTreeSet<(Timestamp, KeyId)>,
    /// The highest access-report number recorded per origin (node and
    /// process), so a report delivered twice is recognised.
    reports: HashMap<String, u64>,
    /// The distinct scope and address sets of keys, so keys that have the
    /// same ones share them.
    shared: Shared,
}

/// Interned scope and address sets. A cache, not state: it never makes two
/// tables differ.
#[derive(Clone, Debug, Default)]
struct Shared {
    scopes: HashSet<Arc<[Scope]>>,
    cidrs: HashSet<Arc<[Cidr]>>,
}

impl PartialEq for Shared {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Shared {
    fn scopes(&mut self, scopes: &[Scope]) -> Arc<[Scope]> {
        intern(&mut self.scopes, scopes)
    }

    fn cidrs(&mut self, cidrs: &[Cidr]) -> Arc<[Cidr]> {
        intern(&mut self.cidrs, cidrs)
    }
}

fn intern<T: Clone + Eq + std::hash::Hash>(set: &mut HashSet<Arc<[T]>>, items: &[T]) -> Arc<[T]> {
    if let Some(shared) = set.get(items) {
        return shared.clone();
    }
    let shared: Arc<[T]> = items.into();
    set.insert(shared.clone());
    shared
}

/// Where a key id sits in `by_id`. Ids are made by keyreg (or checked
/// against its grammar on the way in), so a fast non-keyed hash is enough.
fn id_hash(id: &KeyId) -> u64 {
    std::hash::BuildHasherDefault::<FastHasher>::default().hash_one(id)
}

impl Table {
    fn slot_of(&self, id: &KeyId) -> Option<u32> {
        self.by_id.get(id_hash(id), |slot| self.keys[slot as usize].id == *id)
    }

    fn slot(&self, id: &KeyId) -> Option<&Key> {
        self.slot_of(id).map(|i| &self.keys[i as usize])
    }

    pub fn applied(&self) -> Seq {
        self.applied
    }

    /// The time of the last applied event, if any.
    pub fn last_time(&self) -> Option<Timestamp> {
        self.last_time
    }

    pub fn org(&self, id: &OrgId) -> Option<&Org> {
        self.orgs.get(id)
    }

    pub fn orgs(&self) -> impl Iterator<Item = &Org> {
        self.orgs.values()
    }

    pub fn key(&self, id: &KeyId) -> Option<&Key> {
        self.slot(id)
    }

    /// The key in `org` with this id; another org's key is `None`, exactly as
    /// if it did not exist.
    pub fn key_in(&self, org: &OrgId, id: &KeyId) -> Option<&Key> {
        self.slot(id).filter(|k| &k.org == org)
    }

    /// The key a presented secret belongs to at `now`: its current secret, or
    /// its previous one while the rotation grace period lasts.
    pub fn key_by_hash(&self, hash: &TokenHash, now: Timestamp) -> Option<&Key> {
        let mut in_grace = false;
        let slot = self.by_hash.get(hash.prefix(), |slot| {
            let key = &self.keys[slot as usize];
            in_grace = key.hash != *hash;
            !in_grace || key.grace.as_ref().is_some_and(|g| g.0 == *hash)
        })?;
        let key = &self.keys[slot as usize];
        match key.grace() {
            Some((_, until)) if in_grace && now >= until => None,
            _ => Some(key),
        }
    }

    /// Starts loading what `key_by_hash(hash, ..)` will read first.
    pub fn prefetch(&self, hash: &TokenHash) {
        self.by_hash.prefetch(hash.prefix());
    }

    /// An org's keys, newest first, starting after `before` (exclusive).
    pub fn keys_of<'a>(&'a self, org: &OrgId, before: Option<&'a KeyId>) -> impl Iterator<Item = &'a Key> + 'a {
        let slots = self.by_org.get(org).map(Vec::as_slice).unwrap_or_default();
        let end = before.map_or(slots.len(), |b| position_by_id(&self.keys, slots, b));
        slots[..end].iter().rev().map(|&s| &self.keys[s as usize])
    }

    /// Keys whose expiry has passed at `now` but whose `key.expired` is not
    /// recorded yet, oldest expiry first.
    pub fn due_to_expire(&self, now: Timestamp) -> Vec<(OrgId, KeyId)> {
        self.expiring
            .range(..=(now, KeyId::max()))
            .filter_map(|(_, id)| self.slot(id).map(|k| (k.org.clone(), *id)))
            .collect()
    }

    /// Whether an access report with this id was already recorded.
    pub fn has_report(&self, report_id: &str) -> bool {
        crate::access::report_number(report_id)
            .is_some_and(|(origin, n)| self.reports.get(origin).is_some_and(|mark| n <= *mark))
    }

    /// A blake3 digest of the table's canonical form: every org and key in id
    /// order, every field that events set (stored status, hashes, usage).
    /// Two nodes that applied the same log give the same digest, whatever
    /// their clocks say.
    pub fn digest(&self) -> blake3::Hash {
        let mut h = blake3::Hasher::new();
        let mut orgs: Vec<&Org> = self.orgs.values().collect();
        orgs.sort_by(|a, b| a.id.cmp(&b.id));
        for o in orgs {
            let line = serde_json::json!([
                o.id,
                o.name,
                o.max_keys,
                o.created_at,
                o.updated_at,
                o.version,
                o.counted_keys,
                o.usage
            ]);
            h.update(line.to_string().as_bytes());
            h.update(b"\n");
        }
        for k in self.all_keys() {
            let line = serde_json::json!([
                k.id,
                k.org,
                k.name(),
                k.description(),
                k.owner(),
                k.created_by,
                k.created_at,
                k.updated_at,
                k.expires_at,
                k.scopes,
                k.allowed_cidrs,
                k.status,
                k.display_prefix(),
                k.version,
                k.hash,
                k.grace(),
                k.usage()
            ]);
            h.update(line.to_string().as_bytes());
            h.update(b"\n");
        }
        h.finalize()
    }

    /// Every key, in id order.
    pub fn all_keys(&self) -> Vec<&Key> {
        let mut v: Vec<&Key> = self.keys.iter().collect();
        v.sort_by_key(|a| a.id);
        v
    }

    /// A table holding only `org` and the keys `ids` (as they are now), for
    /// previewing a command's effect without touching the live table.
    pub fn scratch(&self, org: &OrgId, ids: &[KeyId]) -> Table {
        let mut t = Table { applied: self.applied, last_time: self.last_time, ..Table::default() };
        if let Some(o) = self.orgs.get(org) {
            t.orgs.insert(org.clone(), o.clone());
        }
        for id in ids {
            if let Some(k) = self.slot(id) {
                t.insert_key(k.clone());
            }
        }
        t
    }

    /// Folds one event into the table. Total: never fails, never panics.
    pub fn apply(&mut self, seq: Seq, event: &Event) {
        self.applied = seq;
        self.last_time = Some(event.time);
        let t = event.time;
        match &event.change {
            Change::OrgCreated(s) => {
                self.orgs.entry(event.org.clone()).or_insert_with(|| Org {
                    id: event.org.clone(),
                    name: s.name.clone(),
                    max_keys: s.max_keys,
                    created_at: t,
                    updated_at: t,
                    version: seq,
                    counted_keys: 0,
                    usage: Usage::default(),
                });
            }
            Change::OrgUpdated(s) => {
                if let Some(org) = self.orgs.get_mut(&event.org) {
                    org.name = s.name.clone();
                    org.max_keys = s.max_keys;
                    org.updated_at = t;
                    org.version = seq;
                }
            }
            Change::Key(id, KeyChange::Created(c)) => {
                if self.slot_of(id).is_some() {
                    return;
                }
                if let Some(at) = c.expires_at {
                    self.expiring.insert((at, *id));
                }
                // The org's own id, so that its keys share it.
                let org = match self.orgs.get_mut(&event.org) {
                    Some(org) => {
                        org.counted_keys += 1;
                        org.id.clone()
                    }
                    None => event.org.clone(),
                };
                let key = Key {
                    hash: c.key_hash,
                    id: *id,
                    status: Status::Active,
                    expires_at: c.expires_at,
                    org,
                    scopes: self.shared.scopes(&c.scopes),
                    allowed_cidrs: self.shared.cidrs(&c.allowed_cidrs),
                    grace: None,
                    text: Text::new(&c.name, &c.description, &c.owner, &c.display_prefix),
                    created_by: event.actor.clone(),
                    created_at: t,
                    updated_at: t,
                    version: seq,
                    usage: None,
                };
                self.insert_key(key);
            }
            Change::Key(id, change) => self.apply_to_key(seq, t, id, change),
        }
    }

    /// Adds a new key to `keys` and every index.
    fn insert_key(&mut self, key: Key) {
        let slot = self.keys.len() as u32;
        self.by_id.insert(id_hash(&key.id), slot);
        self.by_hash.insert(key.hash.prefix(), slot);
        let in_org = self.by_org.entry(key.org.clone()).or_default();
        // Ids increase with creation time, so this is nearly always a push,
        // decided by one comparison (a binary search would read a cold key
        // at every step).
        match in_org.last() {
            Some(&last) if self.keys[last as usize].id > key.id => {
                in_org.insert(position_by_id(&self.keys, in_org, &key.id), slot);
            }
            _ => in_org.push(slot),
        }
        self.keys.push(key);
    }

    fn apply_to_key(&mut self, seq: Seq, t: Timestamp, id: &KeyId, change: &KeyChange) {
        let Some(slot) = self.slot_of(id) else {
            return;
        };
        let key = &mut self.keys[slot as usize];
        if let KeyChange::Accessed(a) = change {
            if let Some((origin, n)) = crate::access::report_number(&a.report_id) {
                let mark = self.reports.entry(origin.to_owned()).or_default();
                *mark = (*mark).max(n);
            }
            // Use is not a change to the key: no new version, no updated_at,
            // so an If-Match taken before a verify still holds after it.
            key.usage.get_or_insert_default().record(a.count, a.last_at, a.last_ip.as_ref());
            if let Some(org) = self.orgs.get_mut(&key.org) {
                org.usage.record(a.count, a.last_at, a.last_ip.as_ref());
            }
            return;
        }
        let counted_before = key.status.counts_against_limit();
        let expiring_before = expiry_entry(key);
        match change {
            KeyChange::Created(_) | KeyChange::Accessed(_) => {}
            KeyChange::Updated(u) => {
                key.text = Text::new(&u.name, &u.description, &u.owner, key.display_prefix());
                key.expires_at = u.expires_at;
            }
            KeyChange::ScopesEdited(s) => key.scopes = self.shared.scopes(&s.scopes),
            KeyChange::IpsEdited(i) => key.allowed_cidrs = self.shared.cidrs(&i.allowed_cidrs),
            KeyChange::Disabled => key.status = Status::Disabled,
            KeyChange::Enabled => key.status = Status::Active,
            KeyChange::Revoked(_) => key.status = Status::Revoked,
            KeyChange::Deleted(_) => key.status = Status::Deleted,
            KeyChange::Expired(_) => key.status = Status::Expired,
            KeyChange::Rotated(r) => {
                if let Some(old) = key.grace.take() {
                    self.by_hash.remove(old.0.prefix(), slot);
                }
                let previous = std::mem::replace(&mut key.hash, r.key_hash);
                match r.previous_valid_until {
                    Some(until) => key.grace = Some(Box::new((previous, until))),
                    None => self.by_hash.remove(previous.prefix(), slot),
                }
                key.text = Text::new(key.name(), key.description(), key.owner(), &r.display_prefix);
                self.by_hash.insert(r.key_hash.prefix(), slot);
            }
        }
        key.version = seq;
        key.updated_at = t;
        let expiring_after = expiry_entry(key);
        if expiring_before != expiring_after {
            if let Some(e) = expiring_before {
                self.expiring.remove(&e);
            }
            if let Some(e) = expiring_after {
                self.expiring.insert(e);
            }
        }
        if counted_before
            && !key.status.counts_against_limit()
            && let Some(org) = self.orgs.get_mut(&key.org)
        {
            org.counted_keys = org.counted_keys.saturating_sub(1);
        }
    }
}

/// Where `id` goes in `slots`, a list of slots kept in key id order.
fn position_by_id(keys: &[Key], slots: &[u32], id: &KeyId) -> usize {
    slots.partition_point(|&s| keys[s as usize].id < *id)
}

/// The key's place in the expiry index, if it has one.
fn expiry_entry(key: &Key) -> Option<(Timestamp, KeyId)> {
    match key.status {
        Status::Active | Status::Disabled => key.expires_at.map(|at| (at, key.id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{KeyCreated, KeyRotated, OrgSettings};
    use crate::id::IdGenerator;
    use crate::token::{Pepper, TokenFormat};

    fn ev(t: i64, org: &OrgId, change: Change) -> Event {
        let time = Timestamp::from_micros(t);
        Event {
            id: IdGenerator::default().event_id(time),
            time,
            org: org.clone(),
            actor: Actor::system("test"),
            change,
        }
    }

    /// Ids from another process's generator can arrive out of order: an
    /// org's listing still runs newest id first, and its cursor still cuts.
    #[test]
    fn listings_follow_id_order_whatever_the_creation_order() {
        let org = OrgId::parse("acme").unwrap();
        let mut ids: Vec<KeyId> =
            (0..6).map(|i| IdGenerator::default().key_id(Timestamp::from_micros(i * 1000))).collect();
        let mut t = Table::default();
        t.apply(Seq(1), &ev(1, &org, Change::OrgCreated(OrgSettings { name: "Acme".into(), max_keys: 10 })));
        let pepper = Pepper::generate();
        for (n, i) in [3, 0, 5, 1, 4, 2].into_iter().enumerate() {
            let secret = TokenFormat::default().generate();
            let created = KeyCreated {
                name: format!("k{i}"),
                description: String::new(),
                owner: String::new(),
                scopes: vec![],
                allowed_cidrs: vec![],
                expires_at: None,
                display_prefix: secret.display_prefix(),
                key_hash: secret.hash(&pepper),
            };
            t.apply(Seq(n as u64 + 2), &ev(2, &org, Change::Key(ids[i], KeyChange::Created(created))));
        }
        ids.reverse();
        assert_eq!(t.keys_of(&org, None).map(|k| k.id).collect::<Vec<_>>(), ids);
        assert_eq!(t.keys_of(&org, Some(&ids[2])).map(|k| k.id).collect::<Vec<_>>(), ids[3..]);
    }

    #[test]
    fn a_keys_text_gives_back_each_part() {
        let long = "é".repeat(700);
        for parts in [["ci", "", "", "kr_a1B2c3"], ["", "", "", ""], [&long, "ü", &"o".repeat(128), "acme_xyzXYZ"]] {
            let text = Text::new(parts[0], parts[1], parts[2], parts[3]);
            assert_eq!([0, 1, 2, 3].map(|i| text.part(i)), parts);
        }
    }

    /// The memory budget (≤ 300 bytes per key with indexes and text, see
    /// BENCHMARKS.md) leaves about this much for the record itself.
    #[test]
    fn a_key_record_stays_small() {
        assert!(std::mem::size_of::<Key>() <= 224, "{}", std::mem::size_of::<Key>());
    }

    #[test]
    fn rotation_keeps_the_old_secret_only_during_grace() {
        let pepper = Pepper::generate();
        let f = TokenFormat::default();
        let (old, new) = (f.generate(), f.generate());
        let org = OrgId::parse("acme").unwrap();
        let id = IdGenerator::default().key_id(Timestamp::from_micros(0));
        let mut t = Table::default();
        t.apply(Seq(1), &ev(1, &org, Change::OrgCreated(OrgSettings { name: "Acme".into(), max_keys: 10 })));
        let created = KeyCreated {
            name: "ci".into(),
            description: String::new(),
            owner: String::new(),
            scopes: vec![Scope::parse("*").unwrap()],
            allowed_cidrs: vec![],
            expires_at: None,
            display_prefix: old.display_prefix(),
            key_hash: old.hash(&pepper),
        };
        t.apply(Seq(2), &ev(2, &org, Change::Key(id, KeyChange::Created(created))));
        assert_eq!(t.org(&org).unwrap().counted_keys, 1);
        let rotated = KeyRotated {
            display_prefix: new.display_prefix(),
            key_hash: new.hash(&pepper),
            previous_valid_until: Some(Timestamp::from_micros(100)),
        };
        t.apply(Seq(3), &ev(3, &org, Change::Key(id, KeyChange::Rotated(rotated))));
        let at = Timestamp::from_micros;
        assert!(t.key_by_hash(&old.hash(&pepper), at(99)).is_some());
        assert!(t.key_by_hash(&old.hash(&pepper), at(100)).is_none());
        assert_eq!(t.key_by_hash(&new.hash(&pepper), at(1000)).unwrap().version, Seq(3));
    }
}
