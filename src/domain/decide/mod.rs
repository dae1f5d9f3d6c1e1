//! The one decision function: every business rule of keyreg.
//!
//! `decide(table, ctx, command)` looks at the current table and either
//! returns a `Decision` or a `Refusal` saying why not. It is pure: the same
//! inputs always give the same answer, and a refused command has touched
//! nothing. Field rules are in `validate`; the warnings are decided here,
//! against the same table, so they describe exactly what is recorded.
//!
//! Organizations are decided here; `keys` decides a key's life, `roles`
//! roles and the catalogue, and `grant` what any of them may grant.

mod grant;
mod keys;
mod roles;

use crate::domain::command::{Acting, Command, Context, Decision, NewKey, Refusal};
use crate::domain::event::{Change, KeyChange, OrgSettings};
use crate::domain::id::{Actor, OrgId, Seq};
use crate::domain::permission::{Permission, Permissions};
use crate::domain::table::Table;
use crate::domain::validate::*;

pub fn decide(table: &Table, ctx: &Context, command: &Command) -> Result<Decision, Refusal> {
    match command {
        Command::Init { admin, pepper } => {
            if table.applied() != Seq(0) {
                return Err(Refusal::Conflict("the log is already initialised".into()));
            }
            let settings =
                OrgSettings { name: "System".into(), max_keys: DEFAULT_MAX_KEYS, pepper_fingerprint: Some(*pepper) };
            let created = keys::first_key(admin, ctx.now)?;
            Ok(Decision::of(
                &OrgId::system(),
                vec![Change::OrgCreated(settings), Change::Key(admin.id, KeyChange::Created(created))],
            ))
        }
        Command::RecordPepper(fingerprint) => {
            let system = OrgId::system();
            let org = table.org(&system).ok_or_else(|| not_found("organization", system.as_str()))?;
            if table.pepper_fingerprint().is_some() {
                return Err(Refusal::Conflict("the pepper's fingerprint is already recorded".into()));
            }
            let settings =
                OrgSettings { name: org.name.clone(), max_keys: org.max_keys, pepper_fingerprint: Some(*fingerprint) };
            Ok(Decision::of(&system, vec![Change::OrgUpdated(settings)]))
        }
        Command::Recover(new) => {
            let system = OrgId::system();
            if table.org(&system).is_none() {
                return Err(Refusal::Conflict(
                    "this log has no system org to recover: run keyreg init on a new data dir".into(),
                ));
            }
            // The fixed set `init` grants, never a copy of a key's current
            // scopes: a key narrowed since would make recovery useless.
            let admin = NewKey { scopes: Permissions::ALL.scopes(), ..new.clone() };
            let created = keys::first_key(&admin, ctx.now)?;
            Ok(Decision::of(&system, vec![Change::Key(admin.id, KeyChange::Created(created))]))
        }
        Command::CreateOrg { id, name, max_keys, admin } => {
            if !is_operator(table, &ctx.who, Permission::OrgsCreate) {
                return Err(Refusal::Forbidden(
                    "only keys of the _system org holding orgs:create may create organizations".into(),
                ));
            }
            // `_system` is made by `keyreg init`, as the log's first event.
            if !id.is_tenant() {
                return Err(invalid("id", "organization ids are [a-z0-9][a-z0-9-]{1,62}"));
            }
            if table.org(id).is_some() {
                return Err(Refusal::Conflict(format!("the organization {id} already exists")));
            }
            let settings = OrgSettings {
                name: check_name("name", name)?,
                max_keys: check_max_keys(max_keys.unwrap_or(DEFAULT_MAX_KEYS))?,
                pepper_fingerprint: None,
            };
            let created = keys::first_key(admin, ctx.now)?;
            Ok(Decision::of(id, vec![Change::OrgCreated(settings), Change::Key(admin.id, KeyChange::Created(created))]))
        }
        Command::UpdateOrg { name, max_keys } => update_org(table, ctx, name, *max_keys),
        Command::CreateKey(new) => keys::create(table, ctx, new),
        Command::ImportKey(new) => keys::import(table, ctx, new),
        Command::EditKey { id, expected, edit } => keys::edit(table, ctx, id, *expected, edit),
        Command::Disable { id, expected } => keys::disable(table, ctx, id, *expected),
        Command::Enable { id, expected } => keys::enable(table, ctx, id, *expected),
        Command::Revoke { id, expected, reason } => keys::revoke(table, ctx, id, *expected, reason),
        Command::Delete { id, confirm, reason } => keys::delete(table, ctx, id, confirm, reason),
        Command::BulkRevoke { ids, reason, delete } => keys::bulk_revoke(table, ctx, ids, reason, *delete),
        Command::Offboard { owner, reason } => keys::offboard(table, ctx, owner, reason),
        Command::Rotate { id, expected, secret, grace_seconds } => {
            keys::rotate(table, ctx, id, *expected, secret, *grace_seconds)
        }
        Command::Expire { id } => keys::expire(table, ctx, id),
        Command::RecordAccess { id, report } => keys::record_access(table, ctx, id, report),
        Command::CreateRole { name, description, scopes } => roles::create(table, ctx, name, description, scopes),
        Command::EditRole { name, expected, edit } => roles::edit(table, ctx, name, *expected, edit),
        Command::DeleteRole { name, expected, force } => roles::delete(table, ctx, name, *expected, *force),
        Command::SetCatalog(catalog) => roles::set_catalog(table, ctx, catalog),
    }
}

/// The org's name, and its `max_keys`: the operator's, so only keyreg
/// itself or a `_system` key holding `orgs:admin` names it at all.
fn update_org(table: &Table, ctx: &Context, name: &Option<String>, max_keys: Option<u32>) -> Result<Decision, Refusal> {
    let org = table.org(&ctx.org).ok_or_else(|| not_found("organization", ctx.org.as_str()))?;
    let own = ctx.who.key().and_then(|id| table.key(&id)).is_some_and(|k| k.org == ctx.org);
    let operator = is_operator(table, &ctx.who, Permission::OrgsAdmin);
    if !own && !operator {
        return Err(Refusal::Forbidden("only keys of the _system org holding orgs:admin change another org".into()));
    }
    if max_keys.is_some() && !operator {
        return Err(Refusal::Forbidden(
            "max_keys is the operator's: a _system key holding orgs:admin sets it (PATCH /v1/orgs/{id})".into(),
        ));
    }
    let max_keys = check_max_keys(max_keys.unwrap_or(org.max_keys))?;
    let settings = OrgSettings {
        name: match name {
            Some(n) => check_name("name", n)?,
            None => org.name.clone(),
        },
        max_keys,
        // The settings after the change are whole: the system org's keep
        // its pepper's fingerprint.
        pepper_fingerprint: if ctx.org.is_tenant() { None } else { table.pepper_fingerprint() },
    };
    let unchanged = settings.name == org.name && settings.max_keys == org.max_keys;
    let mut decision = Decision::of(&ctx.org, if unchanged { vec![] } else { vec![Change::OrgUpdated(settings)] });
    if org.counted_keys > max_keys {
        decision.warnings.push(format!(
            "the organization has {} keys that are not revoked or deleted, more than max_keys {max_keys}: \
             creating keys is refused until it has fewer",
            org.counted_keys
        ));
    }
    Ok(decision)
}

/// keyreg itself, or a key of `_system` holding `permission` (acting
/// itself or for a person): the operator's powers over organizations.
fn is_operator(table: &Table, who: &Acting, permission: Permission) -> bool {
    match (&who.actor, who.key()) {
        (Actor::System(_), _) => true,
        (_, Some(id)) => table.key(&id).is_some_and(|k| !k.org.is_tenant() && table.permissions(k).has(permission)),
        (_, None) => false,
    }
}

fn not_found(what: &'static str, id: &str) -> Refusal {
    Refusal::NotFound { what, id: id.chars().take(80).collect() }
}

#[cfg(test)]
mod tests;
