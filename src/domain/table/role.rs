//! Roles in the table: an org's named bundles of scopes, and the catalogue
//! of its actions. Keys hold roles by slot; a key's effective scopes are
//! its own and its roles', so editing a role changes every key holding it
//! at once, on every node, with the one event.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::{Key, Table};
use crate::domain::event::{Catalog, RoleDefined, RoleDeleted};
use crate::domain::id::{Actor, OrgId, RoleName, Seq};
use crate::domain::permission::Permissions;
use crate::domain::scope::Scope;
use crate::domain::time::Timestamp;

/// One role, as its last event left it.
#[derive(Clone, Debug, PartialEq)]
pub struct Role {
    pub org: OrgId,
    pub name: RoleName,
    pub description: String,
    pub scopes: Arc<[Scope]>,
    pub created_by: Actor,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: Seq,
}

/// A role as users see it.
#[derive(Serialize)]
pub struct RoleView<'a> {
    pub name: &'a RoleName,
    pub description: &'a str,
    pub scopes: &'a [Scope],
    pub created_by: &'a Actor,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: Seq,
}

impl Role {
    pub fn view(&self) -> RoleView<'_> {
        RoleView {
            name: &self.name,
            description: &self.description,
            scopes: &self.scopes,
            created_by: &self.created_by,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        }
    }
}

/// Every role ever made, by slot (a deleted role keeps its slot, so a key's
/// slots never point at another role), and the live ones by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Roles {
    slab: Vec<Role>,
    live: HashMap<(OrgId, RoleName), u32>,
    catalogs: HashMap<OrgId, Catalog>,
}

/// The parts of `Roles`, for a snapshot.
pub(super) struct RolesParts<'a> {
    pub(super) slab: &'a [Role],
    pub(super) live: &'a HashMap<(OrgId, RoleName), u32>,
    pub(super) catalogs: &'a HashMap<OrgId, Catalog>,
}

impl Roles {
    pub(super) fn parts(&self) -> RolesParts<'_> {
        RolesParts { slab: &self.slab, live: &self.live, catalogs: &self.catalogs }
    }

    pub(super) fn from_parts(
        slab: Vec<Role>,
        live: HashMap<(OrgId, RoleName), u32>,
        catalogs: HashMap<OrgId, Catalog>,
    ) -> Self {
        Roles { slab, live, catalogs }
    }

    /// Slots ever used.
    pub(super) fn len(&self) -> usize {
        self.slab.len()
    }

    pub(super) fn get(&self, slot: u32) -> &Role {
        &self.slab[slot as usize]
    }

    pub(super) fn slot(&self, org: &OrgId, name: &RoleName) -> Option<u32> {
        self.live.get(&(org.clone(), name.clone())).copied()
    }

    /// The slots of `names` in `org`; names of no live role are left out.
    pub(super) fn slots(&self, org: &OrgId, names: &[RoleName]) -> Box<[u32]> {
        names.iter().filter_map(|n| self.slot(org, n)).collect()
    }

    pub(super) fn define(&mut self, org: &OrgId, d: &RoleDefined, actor: &Actor, seq: Seq, t: Timestamp) {
        match self.slot(org, &d.name) {
            Some(slot) => {
                let role = &mut self.slab[slot as usize];
                role.description = d.description.clone();
                role.scopes = d.scopes.as_slice().into();
                role.updated_at = t;
                role.version = seq;
            }
            None => {
                self.live.insert((org.clone(), d.name.clone()), self.slab.len() as u32);
                self.slab.push(Role {
                    org: org.clone(),
                    name: d.name.clone(),
                    description: d.description.clone(),
                    scopes: d.scopes.as_slice().into(),
                    created_by: actor.clone(),
                    created_at: t,
                    updated_at: t,
                    version: seq,
                });
            }
        }
    }

    /// Removes a role from its org's live roles; its slot, if it had one.
    pub(super) fn remove(&mut self, org: &OrgId, d: &RoleDeleted) -> Option<u32> {
        self.live.remove(&(org.clone(), d.name.clone()))
    }

    pub(super) fn set_catalog(&mut self, org: &OrgId, catalog: &Catalog) {
        self.catalogs.insert(org.clone(), catalog.clone());
    }

    /// Every live role, in org and name order: the digest's.
    pub(super) fn all(&self) -> Vec<&Role> {
        let mut v: Vec<&Role> = self.live.values().map(|&s| self.get(s)).collect();
        v.sort_by(|a, b| (&a.org, &a.name).cmp(&(&b.org, &b.name)));
        v
    }

    pub(super) fn catalogs(&self) -> Vec<(&OrgId, &Catalog)> {
        let mut v: Vec<_> = self.catalogs.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }
}

/// Scopes and roles' scopes as one list: `own` first, then each role's
/// that is not already there.
pub fn union(own: &[Scope], roles: &[&Role]) -> Vec<Scope> {
    let mut all = own.to_vec();
    for scope in roles.iter().flat_map(|r| r.scopes.iter()) {
        if !all.contains(scope) {
            all.push(scope.clone());
        }
    }
    all
}

impl Table {
    pub fn role(&self, org: &OrgId, name: &RoleName) -> Option<&Role> {
        self.roles.slot(org, name).map(|s| self.roles.get(s))
    }

    /// An org's live roles, by name.
    pub fn roles_of(&self, org: &OrgId) -> Vec<&Role> {
        self.roles.all().into_iter().filter(|r| &r.org == org).collect()
    }

    /// The org's catalogue of actions, once one was set.
    pub fn catalog(&self, org: &OrgId) -> Option<&Catalog> {
        self.roles.catalogs.get(org)
    }

    /// The keys of `org` that hold the role `name` (of any status), newest
    /// first.
    pub fn keys_with_role(&self, org: &OrgId, name: &RoleName) -> Vec<&Key> {
        let Some(slot) = self.roles.slot(org, name) else { return vec![] };
        self.keys_of(org, None).filter(|k| k.roles.contains(&slot)).collect()
    }

    /// The keys holding the role that can still be used or enabled again
    /// (active or disabled at `now`): what "held by" counts, and what a
    /// change to the role reaches.
    pub fn live_keys_with_role(&self, org: &OrgId, name: &RoleName, now: Timestamp) -> Vec<&Key> {
        let live = |k: &&Key| matches!(k.status_at(now), super::Status::Active | super::Status::Disabled);
        self.keys_with_role(org, name).into_iter().filter(live).collect()
    }

    /// A key's roles.
    pub fn roles_of_key(&self, key: &Key) -> Vec<&Role> {
        key.roles.iter().map(|&s| self.roles.get(s)).collect()
    }

    /// The names of a key's roles.
    pub fn role_names(&self, key: &Key) -> Vec<&RoleName> {
        key.roles.iter().map(|&s| &self.roles.get(s).name).collect()
    }

    /// A key's effective scopes: its own and its roles'.
    pub fn effective_scopes<'a>(&'a self, key: &'a Key) -> Cow<'a, [Scope]> {
        if key.roles.is_empty() {
            return Cow::Borrowed(&key.scopes);
        }
        Cow::Owned(union(&key.scopes, &self.roles_of_key(key)))
    }

    /// The management permissions a key holds, through its scopes or roles.
    pub fn permissions(&self, key: &Key) -> Permissions {
        Permissions::granted_by(
            key.scopes.iter().chain(key.roles.iter().flat_map(|&r| self.roles.get(r).scopes.iter())),
        )
    }

    /// Whether the key's own scopes or one of its roles' grant `action` on
    /// `resource`.
    pub fn grants(&self, key: &Key, action: &str, resource: Option<&str>) -> bool {
        key.scopes.iter().any(|s| s.grants(action, resource))
            || key.roles.iter().any(|&r| self.roles.get(r).scopes.iter().any(|s| s.grants(action, resource)))
    }

    /// Takes a deleted role's slot from every key of its org that held it
    /// (the ones its `role.deleted` names): each of them changed.
    pub(super) fn drop_role(&mut self, org: &OrgId, slot: u32, seq: Seq, t: Timestamp) {
        let holders: Vec<u32> = self
            .by_org
            .get(org)
            .map(|slots| slots.iter().copied().filter(|&k| self.keys[k as usize].roles.contains(&slot)).collect())
            .unwrap_or_default();
        for k in holders {
            let key = &mut self.keys[k as usize];
            key.roles = key.roles.iter().copied().filter(|&r| r != slot).collect();
            key.version = seq;
            key.updated_at = t;
        }
    }
}
