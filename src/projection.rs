//! The key table: the current state of every organization and key, folded
//! from the log by one total `apply`.
//!
//! The same `Table::apply` builds the registry's live table, a verifier
//! replica's table and the table "as of" any past time, so the three cannot
//! disagree. `apply` holds no rules: every event it sees was decided valid
//! before it was appended, and an event that does not fit (a key that does
//! not exist, say) changes nothing rather than failing, which keeps the fold
//! total.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use serde::Serialize;

use crate::cidr::{self, Cidr};
use crate::event::{Change, Event, KeyChange};
use crate::id::FastMap;
use crate::id::{Actor, KeyId, OrgId, Seq};
use crate::scope::Scope;
use crate::time::Timestamp;
use crate::token::{HashIndex, TokenHash};

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

#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub id: KeyId,
    pub org: OrgId,
    pub name: String,
    pub description: String,
    pub owner: String,
    pub created_by: Actor,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    /// Shared: a verify's answer names them without copying.
    pub scopes: std::sync::Arc<[Scope]>,
    pub allowed_cidrs: Vec<Cidr>,
    /// The status as events set it; `status_at` adds expiry by the clock.
    pub status: Status,
    pub display_prefix: String,
    pub version: Seq,
    pub hash: TokenHash,
    /// The previous secret's hash and the instant it stops working, after a
    /// rotation with a grace period.
    pub grace: Option<(TokenHash, Timestamp)>,
    pub usage: Usage,
}

impl Key {
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
            name: &self.name,
            description: &self.description,
            owner: &self.owner,
            created_by: &self.created_by,
            created_at: self.created_at,
            updated_at: self.updated_at,
            last_used_at: self.usage.last_used_at,
            expires_at: self.expires_at,
            scopes: &self.scopes,
            allowed_cidrs: &self.allowed_cidrs,
            status: self.status_at(now),
            display_prefix: &self.display_prefix,
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
    slots: FastMap<KeyId, u32>,
    /// Current and in-grace secret hashes to their key's slot: the verify lookup.
    by_hash: HashIndex<u32>,
    /// Each org's keys in id order, which is creation order: listings and
    /// their cursors walk this.
    by_org: HashMap<OrgId, BTreeSet<KeyId>>,
    /// Active and disabled keys that have an expiry, by expiry: what the
    /// sweeper will have to record, found without a scan.
    expiring: BTreeSet<(Timestamp, KeyId)>,
    /// The highest access-report number recorded per origin (node and
    /// process), so a report delivered twice is recognised.
    reports: HashMap<String, u64>,
}

impl Table {
    fn slot(&self, id: &KeyId) -> Option<&Key> {
        self.slots.get(id).map(|&i| &self.keys[i as usize])
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
        let key = &self.keys[*self.by_hash.get(hash)? as usize];
        if key.hash == *hash {
            return Some(key);
        }
        match key.grace {
            Some((old, until)) if old == *hash && now < until => Some(key),
            _ => None,
        }
    }

    /// An org's keys, newest first, starting after `before` (exclusive).
    pub fn keys_of<'a>(&'a self, org: &OrgId, before: Option<&'a KeyId>) -> impl Iterator<Item = &'a Key> + 'a {
        let ids = self.by_org.get(org);
        let range = ids.into_iter().flat_map(move |set| match before {
            Some(b) => Box::new(set.range(..b.clone()).rev()) as Box<dyn Iterator<Item = &KeyId>>,
            None => Box::new(set.iter().rev()),
        });
        range.filter_map(|id| self.slot(id))
    }

    /// Keys whose expiry has passed at `now` but whose `key.expired` is not
    /// recorded yet, oldest expiry first.
    pub fn due_to_expire(&self, now: Timestamp) -> Vec<(OrgId, KeyId)> {
        self.expiring
            .range(..=(now, KeyId::max()))
            .filter_map(|(_, id)| self.slot(id).map(|k| (k.org.clone(), id.clone())))
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
                k.name,
                k.description,
                k.owner,
                k.created_by,
                k.created_at,
                k.updated_at,
                k.expires_at,
                k.scopes,
                k.allowed_cidrs,
                k.status,
                k.display_prefix,
                k.version,
                k.hash,
                k.grace,
                k.usage
            ]);
            h.update(line.to_string().as_bytes());
            h.update(b"\n");
        }
        h.finalize()
    }

    /// Every key, in id order.
    pub fn all_keys(&self) -> Vec<&Key> {
        let mut v: Vec<&Key> = self.keys.iter().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
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
                let slot = t.keys.len() as u32;
                t.keys.push(k.clone());
                t.slots.insert(id.clone(), slot);
                t.by_hash.insert(k.hash, slot);
                t.by_org.entry(k.org.clone()).or_default().insert(id.clone());
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
                if self.slots.contains_key(id) {
                    return;
                }
                let slot = self.keys.len() as u32;
                self.slots.insert(id.clone(), slot);
                self.by_hash.insert(c.key_hash, slot);
                if let Some(at) = c.expires_at {
                    self.expiring.insert((at, id.clone()));
                }
                self.by_org.entry(event.org.clone()).or_default().insert(id.clone());
                if let Some(org) = self.orgs.get_mut(&event.org) {
                    org.counted_keys += 1;
                }
                self.keys.push(Key {
                    id: id.clone(),
                    org: event.org.clone(),
                    name: c.name.clone(),
                    description: c.description.clone(),
                    owner: c.owner.clone(),
                    created_by: event.actor.clone(),
                    created_at: t,
                    updated_at: t,
                    expires_at: c.expires_at,
                    scopes: c.scopes.as_slice().into(),
                    allowed_cidrs: c.allowed_cidrs.clone(),
                    status: Status::Active,
                    display_prefix: c.display_prefix.clone(),
                    version: seq,
                    hash: c.key_hash,
                    grace: None,
                    usage: Usage::default(),
                });
            }
            Change::Key(id, change) => self.apply_to_key(seq, t, id, change),
        }
    }

    fn apply_to_key(&mut self, seq: Seq, t: Timestamp, id: &KeyId, change: &KeyChange) {
        let Some(&slot) = self.slots.get(id) else {
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
            key.usage.record(a.count, a.last_at, a.last_ip.as_ref());
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
                key.name = u.name.clone();
                key.description = u.description.clone();
                key.owner = u.owner.clone();
                key.expires_at = u.expires_at;
            }
            KeyChange::ScopesEdited(s) => key.scopes = s.scopes.as_slice().into(),
            KeyChange::IpsEdited(i) => key.allowed_cidrs = i.allowed_cidrs.clone(),
            KeyChange::Disabled => key.status = Status::Disabled,
            KeyChange::Enabled => key.status = Status::Active,
            KeyChange::Revoked(_) => key.status = Status::Revoked,
            KeyChange::Deleted(_) => key.status = Status::Deleted,
            KeyChange::Expired(_) => key.status = Status::Expired,
            KeyChange::Rotated(r) => {
                if let Some((old, _)) = key.grace.take() {
                    self.by_hash.remove(&old);
                }
                let previous = std::mem::replace(&mut key.hash, r.key_hash);
                match r.previous_valid_until {
                    Some(until) => key.grace = Some((previous, until)),
                    None => {
                        self.by_hash.remove(&previous);
                    }
                }
                key.display_prefix = r.display_prefix.clone();
                self.by_hash.insert(r.key_hash, slot);
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

/// The key's place in the expiry index, if it has one.
fn expiry_entry(key: &Key) -> Option<(Timestamp, KeyId)> {
    match key.status {
        Status::Active | Status::Disabled => key.expires_at.map(|at| (at, key.id.clone())),
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
        t.apply(Seq(2), &ev(2, &org, Change::Key(id.clone(), KeyChange::Created(created))));
        assert_eq!(t.org(&org).unwrap().counted_keys, 1);
        let rotated = KeyRotated {
            display_prefix: new.display_prefix(),
            key_hash: new.hash(&pepper),
            previous_valid_until: Some(Timestamp::from_micros(100)),
        };
        t.apply(Seq(3), &ev(3, &org, Change::Key(id.clone(), KeyChange::Rotated(rotated))));
        let at = Timestamp::from_micros;
        assert!(t.key_by_hash(&old.hash(&pepper), at(99)).is_some());
        assert!(t.key_by_hash(&old.hash(&pepper), at(100)).is_none());
        assert_eq!(t.key_by_hash(&new.hash(&pepper), at(1000)).unwrap().version, Seq(3));
    }
}
