//! A key's life: create, edit, disable, enable, revoke, delete, rotate,
//! expire, and the access reports that count its use.

use super::grant::{check_catalog, check_grant, check_not_empty, permissions_of, roles};
use super::{invalid, not_found};
use crate::domain::cidr::Cidr;
use crate::domain::command::{Context, Decision, Expiry, KeyEdit, NewKey, NewSecret, Refusal};
use crate::domain::event::{
    Change, Expired, IpsEdited, KeyAccessed, KeyChange, KeyCreated, KeyRotated, KeyUpdated, Reason, RolesEdited,
    ScopesEdited,
};
use crate::domain::id::{KeyId, Seq};
use crate::domain::permission::Permissions;
use crate::domain::scope::Scope;
use crate::domain::table::{Action, Key, Role, Status, Table, union};
use crate::domain::time::Timestamp;
use crate::domain::validate::*;

fn one(ctx: &Context, id: &KeyId, change: KeyChange) -> Result<Decision, Refusal> {
    Ok(Decision::of(&ctx.org, vec![Change::Key(*id, change)]))
}

pub(super) fn create(table: &Table, ctx: &Context, new: &NewKey) -> Result<Decision, Refusal> {
    new_key(table, ctx, new, KeyChange::Created)
}

/// A legacy secret names one key: the legacy index is looked up across orgs,
/// and a secret still known from a rotation must not come back as another key.
pub(super) fn import(table: &Table, ctx: &Context, new: &NewKey) -> Result<Decision, Refusal> {
    if table.legacy_hash_taken(&new.secret.hash, ctx.now) {
        return Err(Refusal::Conflict("this secret was already imported; a legacy secret names one key only".into()));
    }
    new_key(table, ctx, new, KeyChange::Imported)
}

fn new_key(
    table: &Table,
    ctx: &Context,
    new: &NewKey,
    change: fn(KeyCreated) -> KeyChange,
) -> Result<Decision, Refusal> {
    let org = table.org(&ctx.org).ok_or_else(|| not_found("organization", ctx.org.as_str()))?;
    let roles = roles(table, &ctx.org, &new.roles)?;
    let created = new_key_event(new, &roles, ctx.now)?;
    check_not_empty(&created.scopes, &roles)?;
    check_catalog(table, &ctx.org, &created.scopes, &[])?;
    check_grant(table, ctx, Permissions::default(), permissions_of(&created.scopes, &roles))?;
    if table.key(&new.id).is_some() {
        return Err(Refusal::Conflict(format!("the key id {} is taken", new.id)));
    }
    if org.counted_keys >= org.max_keys {
        return Err(Refusal::KeyLimit { max_keys: org.max_keys });
    }
    let after = union(&created.scopes, &roles);
    let warnings = warnings(None, &after, &created.allowed_cidrs, created.expires_at, ctx.now);
    let mut decision = one(ctx, &new.id, change(created))?;
    decision.warnings = warnings;
    Ok(decision)
}

/// The first key of the log or of a new org: keyreg's own to give, so the
/// grant rule does not apply (the caller of `POST /v1/orgs` needs
/// `orgs:create`, not the permissions of the org's admin key).
pub(super) fn first_key(new: &NewKey, now: Timestamp) -> Result<KeyCreated, Refusal> {
    let created = new_key_event(new, &[], now)?;
    check_not_empty(&created.scopes, &[])?;
    Ok(created)
}

pub(super) fn edit(
    table: &Table,
    ctx: &Context,
    id: &KeyId,
    expected: Option<Seq>,
    edit: &KeyEdit,
) -> Result<Decision, Refusal> {
    let key = admitting(table, ctx, id, expected, Action::Edit)?;
    let roles_before = table.roles_of_key(key);
    let roles_after = match &edit.roles {
        Some(names) => roles(table, &ctx.org, names)?,
        None => roles_before.clone(),
    };
    let scopes_after = match &edit.scopes {
        Some(s) => check_scopes(s)?,
        None => key.scopes.to_vec(),
    };
    let mut changes = attribute_changes(key, edit, ctx.now)?;
    let cidrs = edit.allowed_cidrs.as_deref().map(check_cidrs).transpose()?;
    check_not_empty(&scopes_after, &roles_after)?;
    check_catalog(table, &ctx.org, &scopes_after, &key.scopes)?;
    check_grant(table, ctx, table.permissions(key), permissions_of(&scopes_after, &roles_after))?;
    if scopes_after[..] != key.scopes[..] {
        changes.push(Change::Key(*id, KeyChange::ScopesEdited(ScopesEdited { scopes: scopes_after.clone() })));
    }
    let names = |roles: &[&Role]| roles.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    if names(&roles_after) != names(&roles_before) {
        changes.push(Change::Key(*id, KeyChange::RolesEdited(RolesEdited { roles: names(&roles_after) })));
    }
    if let Some(allowed_cidrs) = cidrs.filter(|c| c[..] != key.allowed_cidrs[..]) {
        changes.push(Change::Key(*id, KeyChange::IpsEdited(IpsEdited { allowed_cidrs })));
    }
    let cidrs_after = changes
        .iter()
        .find_map(|c| match c {
            Change::Key(_, KeyChange::IpsEdited(i)) => Some(&i.allowed_cidrs[..]),
            _ => None,
        })
        .unwrap_or(&key.allowed_cidrs);
    let expiry_after = changes
        .iter()
        .find_map(|c| match c {
            Change::Key(_, KeyChange::Updated(u)) => Some(u.expires_at),
            _ => None,
        })
        .unwrap_or(key.expires_at);
    let before = (key, &table.effective_scopes(key)[..]);
    let warnings = warnings(Some(before), &union(&scopes_after, &roles_after), cidrs_after, expiry_after, ctx.now);
    Ok(Decision { org: ctx.org.clone(), changes, warnings })
}

pub(super) fn disable(table: &Table, ctx: &Context, id: &KeyId, expected: Option<Seq>) -> Result<Decision, Refusal> {
    admitting(table, ctx, id, expected, Action::Disable)?;
    one(ctx, id, KeyChange::Disabled)
}

pub(super) fn enable(table: &Table, ctx: &Context, id: &KeyId, expected: Option<Seq>) -> Result<Decision, Refusal> {
    admitting(table, ctx, id, expected, Action::Enable)?;
    one(ctx, id, KeyChange::Enabled)
}

pub(super) fn revoke(
    table: &Table,
    ctx: &Context,
    id: &KeyId,
    expected: Option<Seq>,
    reason: &Option<String>,
) -> Result<Decision, Refusal> {
    admitting(table, ctx, id, expected, Action::Revoke)?;
    one(ctx, id, KeyChange::Revoked(Reason { reason: check_reason(reason)? }))
}

pub(super) fn delete(
    table: &Table,
    ctx: &Context,
    id: &KeyId,
    confirm: &str,
    reason: &Option<String>,
) -> Result<Decision, Refusal> {
    let key = key_in(table, ctx, id, None)?;
    if confirm != key.name() {
        return Err(invalid("confirm", "must equal the key's name exactly"));
    }
    check_admits(key, ctx.now, Action::Delete)?;
    one(ctx, id, KeyChange::Deleted(Reason { reason: check_reason(reason)? }))
}

pub(super) fn bulk_revoke(
    table: &Table,
    ctx: &Context,
    ids: &[KeyId],
    reason: &Option<String>,
    delete: bool,
) -> Result<Decision, Refusal> {
    if ids.is_empty() || ids.len() > MAX_BULK {
        return Err(invalid("ids", format!("give 1 to {MAX_BULK} key ids")));
    }
    let reason = Reason { reason: check_reason(reason)? };
    let mut seen = std::collections::HashSet::new();
    let mut changes = Vec::with_capacity(ids.len());
    for id in ids {
        if !seen.insert(id) {
            return Err(invalid("ids", format!("{id} is listed twice")));
        }
        let action = if delete { Action::Delete } else { Action::Revoke };
        admitting(table, ctx, id, None, action)?;
        let change = if delete { KeyChange::Deleted(reason.clone()) } else { KeyChange::Revoked(reason.clone()) };
        changes.push(Change::Key(*id, change));
    }
    Ok(Decision::of(&ctx.org, changes))
}

/// Every key of `owner` in the org that is not revoked yet (expired and
/// disabled ones included), revoked in one decision: one batch, so every
/// node sees them go together. An owner with no such keys is no error.
pub(super) fn offboard(
    table: &Table,
    ctx: &Context,
    owner: &str,
    reason: &Option<String>,
) -> Result<Decision, Refusal> {
    if owner.trim().is_empty() {
        return Err(invalid("owner", "name the owner whose keys to revoke"));
    }
    let owner = check_text("owner", owner, MAX_OWNER)?;
    let reason = Reason { reason: check_reason(reason)? };
    let mut keys: Vec<&Key> = table
        .keys_of(&ctx.org, None)
        .filter(|k| k.owner() == owner && Action::Revoke.admitted(k.status_at(ctx.now)))
        .collect();
    keys.reverse();
    let changes = keys.iter().map(|k| Change::Key(k.id, KeyChange::Revoked(reason.clone()))).collect();
    Ok(Decision::of(&ctx.org, changes))
}

pub(super) fn rotate(
    table: &Table,
    ctx: &Context,
    id: &KeyId,
    expected: Option<Seq>,
    secret: &NewSecret,
    grace_seconds: u64,
) -> Result<Decision, Refusal> {
    let key = admitting(table, ctx, id, expected, Action::Rotate)?;
    // The new secret is the key's power handed to the caller: under the
    // grant rule as if the caller made the key anew.
    check_grant(table, ctx, Permissions::default(), table.permissions(key))?;
    if grace_seconds > MAX_GRACE_SECONDS {
        return Err(invalid("grace_seconds", format!("at most {MAX_GRACE_SECONDS} (30 days)")));
    }
    let until = (grace_seconds > 0).then(|| ctx.now.plus_seconds(grace_seconds as i64));
    let rotated = KeyRotated {
        display_prefix: secret.display_prefix.clone(),
        key_hash: secret.hash,
        previous_valid_until: until,
    };
    one(ctx, id, KeyChange::Rotated(rotated))
}

pub(super) fn expire(table: &Table, ctx: &Context, id: &KeyId) -> Result<Decision, Refusal> {
    let key = key_in(table, ctx, id, None)?;
    match key.expires_at {
        Some(at) if matches!(key.status, Status::Active | Status::Disabled) && at <= ctx.now => {
            one(ctx, id, KeyChange::Expired(Expired { expires_at: at }))
        }
        _ => Err(Refusal::Conflict(format!("the key {id} is not due to expire"))),
    }
}

pub(super) fn record_access(
    table: &Table,
    ctx: &Context,
    id: &KeyId,
    report: &KeyAccessed,
) -> Result<Decision, Refusal> {
    key_in(table, ctx, id, None)?;
    check_report(report, ctx.now)?;
    if table.has_report(report) {
        return Err(Refusal::Conflict(format!("the access report {} is already recorded", report.report_id)));
    }
    one(ctx, id, KeyChange::Accessed(report.clone()))
}

/// A relative expiry is some time in the next hundred years.
fn check_relative_expiry(expiry: Expiry) -> Result<Expiry, Refusal> {
    match expiry {
        Expiry::AfterSeconds(s) if s <= 0 || s > MAX_EXPIRES_IN_DAYS * 86_400 => {
            Err(invalid("expires_in_days", format!("must be a positive number of days, at most {MAX_EXPIRES_IN_DAYS}")))
        }
        e => Ok(e),
    }
}

/// The key, in the caller's org, at the expected version if one was given.
fn key_in<'a>(table: &'a Table, ctx: &Context, id: &KeyId, expected: Option<Seq>) -> Result<&'a Key, Refusal> {
    let key = table.key_in(&ctx.org, id).ok_or_else(|| not_found("key", id.as_str()))?;
    match expected {
        Some(e) if e != key.version => Err(Refusal::VersionMismatch { what: "key", expected: e, actual: key.version }),
        _ => Ok(key),
    }
}

/// A key that may still be changed: active or disabled, not past expiry.
/// The key, if it admits `action` now (`Action::admitted`, the one rule).
fn admitting<'a>(
    table: &'a Table,
    ctx: &Context,
    id: &KeyId,
    expected: Option<Seq>,
    action: Action,
) -> Result<&'a Key, Refusal> {
    let key = key_in(table, ctx, id, expected)?;
    check_admits(key, ctx.now, action)?;
    Ok(key)
}

fn check_admits(key: &Key, now: Timestamp, action: Action) -> Result<(), Refusal> {
    let status = key.status_at(now);
    if action.admitted(status) {
        return Ok(());
    }
    let id = key.id;
    Err(Refusal::Conflict(match (action, status) {
        (Action::Disable, Status::Disabled) => format!("the key {id} is already disabled"),
        (Action::Enable, Status::Active) => format!("the key {id} is not disabled"),
        (_, Status::Deleted) => format!("the key {id} is already deleted"),
        (Action::Revoke, Status::Revoked) => format!("the key {id} is already revoked"),
        (_, s) => format!("the key {id} is {} and can no longer be changed", s.as_str()),
    }))
}

fn new_key_event(new: &NewKey, roles: &[&Role], now: Timestamp) -> Result<KeyCreated, Refusal> {
    Ok(KeyCreated {
        name: check_name("name", &new.name)?,
        description: check_text("description", &new.description, MAX_DESCRIPTION)?,
        owner: check_text("owner", &new.owner, MAX_OWNER)?,
        scopes: check_scopes(&new.scopes)?,
        roles: roles.iter().map(|r| r.name.clone()).collect(),
        allowed_cidrs: check_cidrs(&new.allowed_cidrs)?,
        expires_at: check_expiry(check_relative_expiry(new.expiry)?.at(now), now)?,
        display_prefix: new.secret.display_prefix.clone(),
        key_hash: new.secret.hash,
        meta: new.meta.clone(),
    })
}

/// `key.updated` for the five attributes, when one of them changes: fields
/// given with their current value change nothing.
fn attribute_changes(key: &Key, edit: &KeyEdit, now: Timestamp) -> Result<Vec<Change>, Refusal> {
    let mut updated = KeyUpdated {
        name: key.name().to_owned(),
        description: key.description().to_owned(),
        owner: key.owner().to_owned(),
        expires_at: key.expires_at,
        meta: key.meta().cloned(),
        changed: vec![],
    };
    if let Some(n) = &edit.name {
        updated.name = check_name("name", n)?;
    }
    if let Some(d) = &edit.description {
        updated.description = check_text("description", d, MAX_DESCRIPTION)?;
    }
    if let Some(o) = &edit.owner {
        updated.owner = check_text("owner", o, MAX_OWNER)?;
    }
    if let Some(e) = edit.expires_at {
        updated.expires_at = check_expiry(e, now)?;
    }
    if let Some(m) = &edit.meta {
        updated.meta = m.clone();
    }
    for (field, differs) in [
        ("name", updated.name != key.name()),
        ("description", updated.description != key.description()),
        ("owner", updated.owner != key.owner()),
        ("expires_at", updated.expires_at != key.expires_at),
        ("meta", updated.meta.as_ref() != key.meta()),
    ] {
        if differs {
            updated.changed.push(field.to_owned());
        }
    }
    Ok(if updated.changed.is_empty() { vec![] } else { vec![Change::Key(key.id, KeyChange::Updated(updated))] })
}

/// Whether a key was used in the 24 hours before `now`: then narrowing what
/// it may do can break calls in flight.
pub(super) fn used_recently(key: &Key, now: Timestamp) -> bool {
    key.usage().last_used_at.is_some_and(|t| t > now.plus_seconds(-86_400))
}

/// Scope comparisons one decision may spend on narrowing warnings: a
/// tenant controls how many scopes and role holders there are, and this
/// runs inside `decide`. Past it the answer is "it may narrow": a warning
/// too many, never one too few.
pub(super) const NARROWING_BUDGET: usize = 1_000_000;

/// Whether some scope of `before` is no longer covered by `after`, spending
/// at most `budget` comparisons (and answering true once it is spent).
pub(super) fn narrows(before: &[Scope], after: &[Scope], budget: &mut usize) -> bool {
    before.iter().any(|old| {
        let Some(left) = budget.checked_sub(after.len()) else {
            *budget = 0;
            return true;
        };
        *budget = left;
        !after.iter().any(|new| old.covered_by(new))
    })
}

/// Warnings a caller should see before relying on a key as created or
/// edited: `before` is the key and its effective scopes before the change
/// (`None` on create); `after_scopes` its effective scopes after.
pub(super) fn warnings(
    before: Option<(&Key, &[Scope])>,
    after_scopes: &[Scope],
    after_cidrs: &[Cidr],
    after_expiry: Option<Timestamp>,
    now: Timestamp,
) -> Vec<String> {
    let mut w = vec![];
    if after_cidrs.iter().any(Cidr::is_wildcard) {
        w.push(
            "allowed_cidrs contains a wildcard range (0.0.0.0/0 or ::/0) that allows a whole address family".to_owned(),
        );
    }
    if let Some((key, scopes)) = before
        && used_recently(key, now)
    {
        let mut budget = NARROWING_BUDGET;
        if narrows(scopes, after_scopes, &mut budget) {
            w.push(
                "the scopes are narrowed on a key used in the last 24 hours: this can break calls made with this key"
                    .to_owned(),
            );
        }
        if after_cidrs != &key.allowed_cidrs[..] {
            w.push(
                "allowed_cidrs changed on a key used in the last 24 hours: this can break calls made with this key"
                    .to_owned(),
            );
        }
    }
    if after_expiry.is_none() {
        w.push("this key never expires".to_owned());
    }
    w
}
