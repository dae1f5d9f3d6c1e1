//! What a change grants, checked before it is recorded: the grant rule (no
//! caller hands out a management permission it lacks), the roles a key is
//! given (each must exist), the catalogue (an enforced one refuses unknown
//! exact actions), and that a key is granted something at all.

use crate::domain::catalog;
use crate::domain::command::{Acting, Context, Refusal};
use crate::domain::id::{Actor, OrgId, RoleName};
use crate::domain::permission::Permissions;
use crate::domain::scope::Scope;
use crate::domain::table::{Role, Table, union};
use crate::domain::validate::invalid;

/// The most roles one key holds.
pub const MAX_ROLES_PER_KEY: usize = 50;

/// The management permissions of whoever acts: every one for keyreg itself
/// (`system:` actors: init, the sweeper, recovery); otherwise the acting
/// key's, or for a person the key acting for them.
fn held(table: &Table, who: &Acting) -> Permissions {
    match (&who.actor, who.key()) {
        (Actor::System(_), _) => Permissions::ALL,
        (_, Some(id)) => table.key(&id).map_or(Permissions::default(), |k| table.permissions(k)),
        (_, None) => Permissions::default(),
    }
}

/// The grant rule: of the permissions `after` has and `before` had not, the
/// caller must hold every one. A key editing itself is no exception.
pub(super) fn check_grant(
    table: &Table,
    ctx: &Context,
    before: Permissions,
    after: Permissions,
) -> Result<(), Refusal> {
    let missing = after.without(before).without(held(table, &ctx.who));
    if missing.is_empty() { Ok(()) } else { Err(Refusal::Escalation { permissions: missing }) }
}

/// The management permissions of scopes and roles together.
pub(super) fn permissions_of(scopes: &[Scope], roles: &[&Role]) -> Permissions {
    Permissions::granted_by(&union(scopes, roles))
}

/// The roles named, each once, in order; every one must exist in the org.
pub(super) fn roles<'a>(table: &'a Table, org: &OrgId, names: &[RoleName]) -> Result<Vec<&'a Role>, Refusal> {
    let mut roles: Vec<&Role> = Vec::with_capacity(names.len());
    for name in names {
        let role = table
            .role(org, name)
            .ok_or_else(|| invalid("roles", format!("there is no role {name} in this organization (GET /v1/roles)")))?;
        if !roles.iter().any(|r| r.name == *name) {
            roles.push(role);
        }
    }
    if roles.len() > MAX_ROLES_PER_KEY {
        return Err(invalid("roles", format!("a key holds at most {MAX_ROLES_PER_KEY} roles")));
    }
    Ok(roles)
}

/// A key must be granted something: a scope or a role.
pub(super) fn check_not_empty(scopes: &[Scope], roles: &[&Role]) -> Result<(), Refusal> {
    if scopes.is_empty() && roles.is_empty() {
        return Err(invalid("scopes", "a key needs at least one scope or role"));
    }
    Ok(())
}

/// The org's enforced catalogue lists every exact action in `scopes` that
/// `before` did not already have (an action dropped from the catalogue does
/// not block edits of keys that still hold it).
pub(super) fn check_catalog(table: &Table, org: &OrgId, scopes: &[Scope], before: &[Scope]) -> Result<(), Refusal> {
    catalog::check_known(table.catalog(org), scopes.iter().filter(|s| !before.contains(s)))
}
