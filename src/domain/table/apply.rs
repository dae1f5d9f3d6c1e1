//! `Table::apply`: folds one event into the table. Total and rule-free:
//! every event it sees was decided valid before it was appended, and an
//! event that does not fit (a key that does not exist, say) changes nothing
//! rather than failing.

use super::index::SlotIndex;
use super::key::{Key, Legacy, Rare, Status, Text, Usage};
use super::{Org, Table, id_hash, position_by_id};
use crate::domain::event::{Change, Event, KeyChange, RoleChange};
use crate::domain::history::Apply;
use crate::domain::id::{KeyId, Seq};
use crate::domain::time::Timestamp;
use crate::domain::token::TokenHash;

/// The same fold, for `History`.
impl Apply for Table {
    fn apply(&mut self, seq: Seq, event: &Event) {
        Table::apply(self, seq, event);
    }
}

impl Table {
    /// Folds one event into the table. Total: never fails, never panics.
    pub fn apply(&mut self, seq: Seq, event: &Event) {
        self.applied = seq;
        self.last_time = Some(event.time);
        let t = event.time;
        if let Change::OrgCreated(s) | Change::OrgUpdated(s) = &event.change
            && s.pepper_fingerprint.is_some()
            && !event.org.is_tenant()
        {
            self.pepper = s.pepper_fingerprint;
        }
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
            Change::Key(id, change @ (KeyChange::Created(c) | KeyChange::Imported(c))) => {
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
                if matches!(change, KeyChange::Imported(_)) {
                    self.release_legacy_grace(&c.key_hash);
                }
                let key = Key {
                    hash: c.key_hash,
                    id: *id,
                    status: Status::Active,
                    legacy: Legacy { current: matches!(change, KeyChange::Imported(_)), grace: false },
                    expires_at: c.expires_at,
                    org,
                    scopes: self.shared.scopes(&c.scopes),
                    allowed_cidrs: self.shared.cidrs(&c.allowed_cidrs),
                    roles: self.roles.slots(&event.org, &c.roles),
                    rare: Rare::with(None, |r| r.meta = c.meta.clone()),
                    text: Text::new(&c.name, &c.description, &c.owner, &c.display_prefix),
                    created_by: self.shared.actor(&event.actor),
                    created_at: t,
                    updated_at: t,
                    version: seq,
                    usage: None,
                };
                self.insert_key(key);
            }
            Change::Key(id, change) => self.apply_to_key(seq, t, id, change),
            Change::Role(RoleChange::Created(d) | RoleChange::Updated(d)) => {
                self.roles.define(&event.org, d, &event.actor, seq, t);
            }
            Change::Role(RoleChange::Deleted(d)) => {
                if let Some(slot) = self.roles.remove(&event.org, d) {
                    self.drop_role(&event.org, slot, seq, t);
                }
            }
            Change::CatalogUpdated(c) => self.roles.set_catalog(&event.org, c),
        }
    }

    /// A key that kept this legacy secret for a grace period lets go of it:
    /// an import of the secret takes it over (decided only once the grace
    /// has ended), and the secret must name one key.
    fn release_legacy_grace(&mut self, hash: &TokenHash) {
        let keys = &self.keys;
        let held = |slot: u32| keys[slot as usize].grace().is_some_and(|g| g.0 == *hash);
        if let Some(slot) = self.by_legacy.get(hash.prefix(), held) {
            self.by_legacy.remove(hash.prefix(), slot);
            let key = &mut self.keys[slot as usize];
            key.rare = Rare::with(key.rare.take(), |r| r.grace = None);
            key.legacy.grace = false;
        }
    }

    pub(super) fn hashes(&mut self, legacy: bool) -> &mut SlotIndex {
        index_of(&mut self.by_hash, &mut self.by_legacy, legacy)
    }

    /// Adds a new key to `keys` and every index.
    pub(super) fn insert_key(&mut self, key: Key) {
        let slot = self.keys.len() as u32;
        self.by_id.insert(id_hash(&key.id), slot);
        self.hashes(key.legacy.current).insert(key.hash.prefix(), slot);
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
            if let Some((origin, n)) = a.origin_and_number() {
                let mark = self.reports.entry(origin.to_owned()).or_default();
                *mark = (*mark).max(n);
            }
            // Use is not a change to the key: no new version, no updated_at,
            // so an If-Match taken before a verify still holds after it.
            key.usage.get_or_insert_default().record(a);
            if let Some(org) = self.orgs.get_mut(&key.org) {
                org.usage.record(a);
            }
            return;
        }
        let counted_before = key.status.counts_against_limit();
        let expiring_before = expiry_entry(key);
        match change {
            KeyChange::Created(_) | KeyChange::Imported(_) | KeyChange::Accessed(_) => {}
            KeyChange::RolesEdited(r) => key.roles = self.roles.slots(&key.org, &r.roles),
            KeyChange::Updated(u) => {
                key.text = Text::new(&u.name, &u.description, &u.owner, key.display_prefix());
                key.expires_at = u.expires_at;
                key.rare = Rare::with(key.rare.take(), |r| r.meta = u.meta.clone());
            }
            KeyChange::ScopesEdited(s) => key.scopes = self.shared.scopes(&s.scopes),
            KeyChange::IpsEdited(i) => key.allowed_cidrs = self.shared.cidrs(&i.allowed_cidrs),
            KeyChange::Disabled => key.status = Status::Disabled,
            KeyChange::Enabled => key.status = Status::Active,
            KeyChange::Revoked(_) => key.status = Status::Revoked,
            KeyChange::Deleted(_) => key.status = Status::Deleted,
            KeyChange::Expired(_) => key.status = Status::Expired,
            KeyChange::Rotated(r) => {
                // The new secret is keyreg's own; a legacy one, current or in
                // grace, stays in the legacy index for as long as it works.
                let was = key.legacy;
                if let Some(old) = key.grace() {
                    key.rare = Rare::with(key.rare.take(), |r| r.grace = None);
                    index_of(&mut self.by_hash, &mut self.by_legacy, was.grace).remove(old.0.prefix(), slot);
                }
                let previous = std::mem::replace(&mut key.hash, r.key_hash);
                match r.previous_valid_until {
                    Some(until) => key.rare = Rare::with(key.rare.take(), |r| r.grace = Some((previous, until))),
                    None => {
                        index_of(&mut self.by_hash, &mut self.by_legacy, was.current).remove(previous.prefix(), slot)
                    }
                }
                key.legacy = Legacy { current: false, grace: key.grace().is_some() && was.current };
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

/// The index that holds a secret's hash: the legacy one for legacy secrets.
/// Takes the two fields rather than the table so a key may stay borrowed.
fn index_of<'a>(native: &'a mut SlotIndex, legacy: &'a mut SlotIndex, is_legacy: bool) -> &'a mut SlotIndex {
    if is_legacy { legacy } else { native }
}

/// The key's place in the expiry index, if it has one.
pub(super) fn expiry_entry(key: &Key) -> Option<(Timestamp, KeyId)> {
    match key.status {
        Status::Active | Status::Disabled => key.expires_at.map(|at| (at, key.id)),
        _ => None,
    }
}
