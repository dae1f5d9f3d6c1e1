//! The key table: the current state of every organization and key, folded
//! from the log by one total `apply` (`apply.rs`).
//!
//! The same `Table::apply` builds the registry's live table, a verifier
//! replica's table and the table "as of" any past time, so the three cannot
//! disagree. Here: the table's layout and its lookups. `key.rs` holds the
//! compact key record, `index.rs` the open-addressing index behind the two
//! lookups a verify makes, `digest.rs` the canonical digest.

mod apply;
mod digest;
pub mod index;
mod key;
mod role;
mod snapshot;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;

use serde::Serialize;

pub use key::{Action, EXPIRING_WITHIN, Key, KeyView, Status, Usage};
pub use role::{Role, RoleView, union};

use crate::domain::cidr::Cidr;
use crate::domain::event::KeyAccessed;
use crate::domain::id::{Actor, KeyId, OrgId, Seq};
use crate::domain::scope::Scope;
use crate::domain::time::Timestamp;
use crate::domain::token::{PepperFingerprint, TokenHash};
use index::SlotIndex;

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

/// The state of every organization and key after `applied`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    applied: Seq,
    /// The pepper's fingerprint, as the `_system` org's settings record it.
    pepper: Option<PepperFingerprint>,
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
    /// The same for legacy secrets (imported keys), apart so that a token
    /// not in keyreg's format costs no lookup while no legacy key exists.
    by_legacy: SlotIndex,
    /// Each org's keys' slots in key id order: listings and their cursors
    /// walk this.
    by_org: HashMap<OrgId, Vec<u32>>,
    /// Active and disabled keys that have an expiry, by expiry: what the
    /// sweeper will have to record, found without a scan.
    expiring: BTreeSet<(Timestamp, KeyId)>,
    /// The highest access-report number recorded per origin (node and
    /// process), so a report delivered twice is recognised.
    reports: HashMap<String, u64>,
    /// Every org's roles and catalogue of actions.
    roles: role::Roles,
    /// The distinct scope and address sets and creators of keys, so keys
    /// that have the same ones share them.
    shared: Shared,
}

/// Interned scope and address sets. A cache, not state: it never makes two
/// tables differ.
#[derive(Clone, Debug, Default)]
struct Shared {
    scopes: HashSet<Arc<[Scope]>>,
    cidrs: HashSet<Arc<[Cidr]>>,
    actors: HashSet<Arc<Actor>>,
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

    fn actor(&mut self, actor: &Actor) -> Arc<Actor> {
        if let Some(shared) = self.actors.get(actor) {
            return shared.clone();
        }
        let shared = Arc::new(actor.clone());
        self.actors.insert(shared.clone());
        shared
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
    rustc_hash::FxBuildHasher.hash_one(id)
}

/// Where `id` goes in `slots`, a list of slots kept in key id order.
fn position_by_id(keys: &[Key], slots: &[u32], id: &KeyId) -> usize {
    slots.partition_point(|&s| keys[s as usize].id < *id)
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

    /// The fingerprint of the pepper this log's hashes were made with, once
    /// recorded.
    pub fn pepper_fingerprint(&self) -> Option<PepperFingerprint> {
        self.pepper
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
        self.find_secret(&self.by_hash, hash, now)
    }

    /// The same for a legacy secret's hash (`legacy::hash_secret`).
    pub fn key_by_legacy_hash(&self, hash: &TokenHash, now: Timestamp) -> Option<&Key> {
        self.find_secret(&self.by_legacy, hash, now)
    }

    /// Whether any key has a legacy secret that may still work: if none
    /// does, a token not in keyreg's format is malformed without a lookup.
    pub fn has_legacy(&self) -> bool {
        !self.by_legacy.is_empty()
    }

    /// Whether some key, of any org and in any state, holds this legacy
    /// secret hash: as its own, or kept for a grace period that has not
    /// ended at `now`. (Once the grace has ended the secret is free: an
    /// import of it takes it over, and another tenant learns nothing of
    /// the key that once held it.)
    pub fn legacy_hash_taken(&self, hash: &TokenHash, now: Timestamp) -> bool {
        match self.holder(&self.by_legacy, hash) {
            Some((key, true)) => key.grace().is_some_and(|(_, until)| now < until),
            Some((_, false)) => true,
            None => false,
        }
    }

    fn find_secret(&self, index: &SlotIndex, hash: &TokenHash, now: Timestamp) -> Option<&Key> {
        let (key, in_grace) = self.holder(index, hash)?;
        match key.grace() {
            Some((_, until)) if in_grace && now >= until => None,
            _ => Some(key),
        }
    }

    /// The key whose current secret, or previous one kept for a grace
    /// period (ended or not: `true`), has this hash.
    fn holder(&self, index: &SlotIndex, hash: &TokenHash) -> Option<(&Key, bool)> {
        let mut in_grace = false;
        let slot = index.get(hash.prefix(), |slot| {
            let key = &self.keys[slot as usize];
            in_grace = key.hash != *hash;
            !in_grace || key.grace().is_some_and(|g| g.0 == *hash)
        })?;
        Some((&self.keys[slot as usize], in_grace))
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
    pub fn has_report(&self, report: &KeyAccessed) -> bool {
        report.origin_and_number().is_some_and(|(origin, n)| self.reports.get(origin).is_some_and(|mark| n <= *mark))
    }

    /// Every key, in id order.
    pub fn all_keys(&self) -> Vec<&Key> {
        let mut v: Vec<&Key> = self.keys.iter().collect();
        v.sort_by_key(|a| a.id);
        v
    }

    /// A table holding only `org`, the keys `ids` (as they are now) and every
    /// role, for previewing a command's effect without touching the live
    /// table.
    pub fn scratch(&self, org: &OrgId, ids: &[KeyId]) -> Table {
        let mut t =
            Table { applied: self.applied, last_time: self.last_time, roles: self.roles.clone(), ..Table::default() };
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{Change, Event, KeyChange, KeyCreated, KeyRotated, OrgSettings};
    use crate::domain::id::{Actor, IdGenerator};
    use crate::domain::token::{Pepper, TokenFormat};

    fn ev(t: i64, org: &OrgId, change: Change) -> Event {
        let time = Timestamp::from_micros(t);
        Event {
            id: IdGenerator::default().event_id(time),
            time,
            org: org.clone(),
            actor: Actor::system("test"),
            via: None,
            batch_rest: 0,
            change,
        }
    }

    /// Ids from another process's generator can arrive out of order: an
    /// org's listing still runs newest id first, and its cursor still cuts.
    /// A table holding only the org `org` (max_keys 10), at seq 1.
    fn with_org(org: &OrgId) -> Table {
        let mut t = Table::default();
        let settings = OrgSettings { name: "Acme".into(), max_keys: 10, ..OrgSettings::default() };
        t.apply(Seq(1), &ev(1, org, Change::OrgCreated(settings)));
        t
    }

    #[test]
    fn listings_follow_id_order_whatever_the_creation_order() {
        let org = OrgId::parse("acme").unwrap();
        let mut ids: Vec<KeyId> =
            (0..6).map(|i| IdGenerator::default().key_id(Timestamp::from_micros(i * 1000))).collect();
        let mut t = with_org(&org);
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
                roles: vec![],
                meta: None,
            };
            t.apply(Seq(n as u64 + 2), &ev(2, &org, Change::Key(ids[i], KeyChange::Created(created))));
        }
        ids.reverse();
        assert_eq!(t.keys_of(&org, None).map(|k| k.id).collect::<Vec<_>>(), ids);
        assert_eq!(t.keys_of(&org, Some(&ids[2])).map(|k| k.id).collect::<Vec<_>>(), ids[3..]);
    }

    #[test]
    fn rotation_keeps_the_old_secret_only_during_grace() {
        let pepper = Pepper::generate();
        let f = TokenFormat::default();
        let (old, new) = (f.generate(), f.generate());
        let org = OrgId::parse("acme").unwrap();
        let id = IdGenerator::default().key_id(Timestamp::from_micros(0));
        let mut t = with_org(&org);
        let created = KeyCreated {
            name: "ci".into(),
            description: String::new(),
            owner: String::new(),
            scopes: vec![Scope::parse("*").unwrap()],
            allowed_cidrs: vec![],
            expires_at: None,
            display_prefix: old.display_prefix(),
            key_hash: old.hash(&pepper),
            roles: vec![],
            meta: None,
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
