//! Roles and the catalogue: an org's named bundles of scopes, and its list
//! of actions. A role edit changes every key holding the role, so its
//! warnings name the keys it may break.

use super::grant::{check_catalog, check_grant};
use super::keys::{NARROWING_BUDGET, narrows, used_recently};
use super::{invalid, not_found};
use crate::domain::catalog;
use crate::domain::command::{Context, Decision, Refusal, RoleEdit};
use crate::domain::event::{Catalog, Change, RoleChange, RoleDefined, RoleDeleted};
use crate::domain::id::{RoleName, Seq};
use crate::domain::permission::Permissions;
use crate::domain::scope::Scope;
use crate::domain::table::{Key, Role, Table, union};
use crate::domain::validate::{MAX_DESCRIPTION, MAX_ROLES, check_scopes, check_text};

pub(super) fn create(
    table: &Table,
    ctx: &Context,
    name: &RoleName,
    description: &str,
    scopes: &[Scope],
) -> Result<Decision, Refusal> {
    table.org(&ctx.org).ok_or_else(|| not_found("organization", ctx.org.as_str()))?;
    let defined = RoleDefined {
        name: name.clone(),
        description: check_text("description", description, MAX_DESCRIPTION)?,
        scopes: check_role_scopes(scopes)?,
        changed: vec![],
    };
    check_catalog(table, &ctx.org, &defined.scopes, &[])?;
    check_grant(table, ctx, Permissions::default(), Permissions::granted_by(&defined.scopes))?;
    if table.role(&ctx.org, name).is_some() {
        return Err(Refusal::Conflict(format!("the role {name} already exists")));
    }
    if table.roles_of(&ctx.org).len() >= MAX_ROLES {
        return Err(Refusal::Conflict(format!("the organization already has {MAX_ROLES} roles, the most it may have")));
    }
    Ok(Decision::of(&ctx.org, vec![Change::Role(RoleChange::Created(defined))]))
}

pub(super) fn edit(
    table: &Table,
    ctx: &Context,
    name: &RoleName,
    expected: Option<Seq>,
    edit: &RoleEdit,
) -> Result<Decision, Refusal> {
    let role = role_in(table, ctx, name, expected)?;
    let description = match &edit.description {
        Some(d) => check_text("description", d, MAX_DESCRIPTION)?,
        None => role.description.clone(),
    };
    let scopes = match &edit.scopes {
        Some(s) => check_role_scopes(s)?,
        None => role.scopes.to_vec(),
    };
    check_catalog(table, &ctx.org, &scopes, &role.scopes)?;
    check_grant(table, ctx, Permissions::granted_by(role.scopes.iter()), Permissions::granted_by(&scopes))?;
    let mut changed = vec![];
    if description != role.description {
        changed.push("description".to_owned());
    }
    if scopes[..] != role.scopes[..] {
        changed.push("scopes".to_owned());
    }
    if changed.is_empty() {
        return Ok(Decision::of(&ctx.org, vec![]));
    }
    // The holders whose effective scopes this narrows, among those in use:
    // only what the role drops can be lost, and only if the holder's other
    // scopes do not cover it. One budget for all holders.
    let mut budget = NARROWING_BUDGET;
    let dropped: Vec<Scope> =
        role.scopes.iter().filter(|old| narrows(std::slice::from_ref(*old), &scopes, &mut budget)).cloned().collect();
    let narrowed: Vec<&Key> = if dropped.is_empty() {
        vec![]
    } else {
        table
            .live_keys_with_role(&ctx.org, name, ctx.now)
            .into_iter()
            .filter(|key| used_recently(key, ctx.now))
            .filter(|key| {
                if budget == 0 {
                    return true;
                }
                let others: Vec<&Role> = table.roles_of_key(key).into_iter().filter(|r| r.name != *name).collect();
                let mut after = union(&key.scopes, &others);
                after.extend(scopes.iter().cloned());
                narrows(&dropped, &after, &mut budget)
            })
            .collect()
    };
    let mut decision = Decision::of(
        &ctx.org,
        vec![Change::Role(RoleChange::Updated(RoleDefined { name: name.clone(), description, scopes, changed }))],
    );
    if !narrowed.is_empty() {
        decision.warnings.push(format!(
            "the role is narrowed for keys used in the last 24 hours: this can break calls made with {}",
            some_keys(&narrowed)
        ));
    }
    Ok(decision)
}

pub(super) fn delete(
    table: &Table,
    ctx: &Context,
    name: &RoleName,
    expected: Option<Seq>,
    force: bool,
) -> Result<Decision, Refusal> {
    role_in(table, ctx, name, expected)?;
    let live = table.live_keys_with_role(&ctx.org, name, ctx.now);
    if !live.is_empty() && !force {
        return Err(Refusal::RoleInUse { role: name.clone(), keys: live.len() });
    }
    let mut decision = Decision::of(
        &ctx.org,
        vec![Change::Role(RoleChange::Deleted(RoleDeleted {
            name: name.clone(),
            removed_from: table.keys_with_role(&ctx.org, name).iter().map(|k| k.id).collect(),
        }))],
    );
    let in_use: Vec<&Key> = live.iter().copied().filter(|k| used_recently(k, ctx.now)).collect();
    if !in_use.is_empty() {
        decision.warnings.push(format!(
            "the role is taken from keys used in the last 24 hours: this can break calls made with {}",
            some_keys(&in_use)
        ));
    }
    let bare: Vec<&Key> = live.iter().copied().filter(|k| k.scopes.is_empty() && k.role_count() == 1).collect();
    if !bare.is_empty() {
        decision.warnings.push(format!("{} will grant nothing: the role was all they had", some_keys(&bare)));
    }
    Ok(decision)
}

pub(super) fn set_catalog(table: &Table, ctx: &Context, catalog: &Catalog) -> Result<Decision, Refusal> {
    table.org(&ctx.org).ok_or_else(|| not_found("organization", ctx.org.as_str()))?;
    let checked = catalog::check(catalog)?;
    let unchanged = table.catalog(&ctx.org).map_or(checked == Catalog::default(), |c| *c == checked);
    let changes = if unchanged { vec![] } else { vec![Change::CatalogUpdated(checked)] };
    Ok(Decision::of(&ctx.org, changes))
}

/// A role's scopes: at least one, at most `MAX_SCOPES`, each once.
fn check_role_scopes(scopes: &[Scope]) -> Result<Vec<Scope>, Refusal> {
    if scopes.is_empty() {
        return Err(invalid("scopes", "a role needs at least one scope"));
    }
    check_scopes(scopes)
}

/// The role, in the caller's org, at the expected version if one was given.
fn role_in<'a>(table: &'a Table, ctx: &Context, name: &RoleName, expected: Option<Seq>) -> Result<&'a Role, Refusal> {
    let role = table.role(&ctx.org, name).ok_or_else(|| not_found("role", name.as_str()))?;
    match expected {
        Some(e) if e != role.version => {
            Err(Refusal::VersionMismatch { what: "role", expected: e, actual: role.version })
        }
        _ => Ok(role),
    }
}

/// Up to five key ids, and how many more.
fn some_keys(keys: &[&Key]) -> String {
    let shown: Vec<String> = keys.iter().take(5).map(|k| k.id.to_string()).collect();
    match keys.len() {
        n if n > 5 => format!("{} and {} more keys", shown.join(", "), n - 5),
        _ => shown.join(", "),
    }
}
