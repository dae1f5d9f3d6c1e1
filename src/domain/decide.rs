//! The one decision function: every business rule of keyreg.
//!
//! `decide(table, ctx, command)` looks at the current table and either
//! returns a `Decision` or a `Refusal` saying why not. It is pure: the same
//! inputs always give the same answer, and a refused command has touched
//! nothing. Field rules are in `validate`; the warnings are decided here,
//! against the same table, so they describe exactly what is recorded.

use crate::domain::cidr::Cidr;
use crate::domain::command::{Command, Context, Decision, KeyEdit, NewKey, Refusal};
use crate::domain::event::{
    Change, Expired, IpsEdited, KeyChange, KeyCreated, KeyRotated, KeyUpdated, OrgSettings, Reason, ScopesEdited,
};
use crate::domain::id::{KeyId, OrgId, Seq};
use crate::domain::scope::Scope;
use crate::domain::table::{Key, Status, Table};
use crate::domain::time::Timestamp;
use crate::domain::validate::*;

pub fn decide(table: &Table, ctx: &Context, command: &Command) -> Result<Decision, Refusal> {
    let key_change = |id: &KeyId, c: KeyChange| Change::Key(*id, c);
    let one = |id: &KeyId, c: KeyChange| Ok(Decision::of(&ctx.org, vec![key_change(id, c)]));
    match command {
        Command::Init { admin, pepper } => {
            if table.applied() != Seq(0) {
                return Err(Refusal::Conflict("the log is already initialised".into()));
            }
            let settings =
                OrgSettings { name: "System".into(), max_keys: DEFAULT_MAX_KEYS, pepper_fingerprint: Some(*pepper) };
            let created = new_key_event(admin, ctx.now)?;
            let system = OrgId::system();
            Ok(Decision::of(
                &system,
                vec![Change::OrgCreated(settings), key_change(&admin.id, KeyChange::Created(created))],
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
        Command::CreateOrg { id, name, max_keys, admin } => {
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
            let created = new_key_event(admin, ctx.now)?;
            Ok(Decision::of(id, vec![Change::OrgCreated(settings), key_change(&admin.id, KeyChange::Created(created))]))
        }
        Command::UpdateOrg { name, max_keys } => {
            let org = table.org(&ctx.org).ok_or_else(|| not_found("organization", ctx.org.as_str()))?;
            let settings = OrgSettings {
                name: match name {
                    Some(n) => check_name("name", n)?,
                    None => org.name.clone(),
                },
                max_keys: check_max_keys(max_keys.unwrap_or(org.max_keys))?,
                // The settings after the change are whole: the system org's
                // keep its pepper's fingerprint.
                pepper_fingerprint: if ctx.org.is_tenant() { None } else { table.pepper_fingerprint() },
            };
            let unchanged = settings.name == org.name && settings.max_keys == org.max_keys;
            let changes = if unchanged { vec![] } else { vec![Change::OrgUpdated(settings)] };
            Ok(Decision::of(&ctx.org, changes))
        }
        Command::CreateKey(new) => {
            let org = table.org(&ctx.org).ok_or_else(|| not_found("organization", ctx.org.as_str()))?;
            let created = new_key_event(new, ctx.now)?;
            if table.key(&new.id).is_some() {
                return Err(Refusal::Conflict(format!("the key id {} is taken", new.id)));
            }
            if org.counted_keys >= org.max_keys {
                return Err(Refusal::KeyLimit { max_keys: org.max_keys });
            }
            let warnings = warnings(None, &created.scopes, &created.allowed_cidrs, created.expires_at, ctx.now);
            let mut decision = one(&new.id, KeyChange::Created(created))?;
            decision.warnings = warnings;
            Ok(decision)
        }
        Command::EditKey { id, expected, edit } => {
            let key = live_key(table, ctx, id, *expected)?;
            let changes = edit_changes(key, edit, ctx.now)?;
            let mut after = (&key.scopes[..], &key.allowed_cidrs[..], key.expires_at);
            for change in &changes {
                match change {
                    Change::Key(_, KeyChange::ScopesEdited(s)) => after.0 = &s.scopes,
                    Change::Key(_, KeyChange::IpsEdited(i)) => after.1 = &i.allowed_cidrs,
                    Change::Key(_, KeyChange::Updated(u)) => after.2 = u.expires_at,
                    _ => {}
                }
            }
            let warnings = warnings(Some(key), after.0, after.1, after.2, ctx.now);
            Ok(Decision { org: ctx.org.clone(), changes, warnings })
        }
        Command::Disable { id, expected } => {
            let key = live_key(table, ctx, id, *expected)?;
            if key.status == Status::Disabled {
                return Err(Refusal::Conflict(format!("the key {id} is already disabled")));
            }
            one(id, KeyChange::Disabled)
        }
        Command::Enable { id, expected } => {
            let key = live_key(table, ctx, id, *expected)?;
            if key.status != Status::Disabled {
                return Err(Refusal::Conflict(format!("the key {id} is not disabled")));
            }
            one(id, KeyChange::Enabled)
        }
        Command::Revoke { id, expected, reason } => {
            let key = key_in(table, ctx, id, *expected)?;
            check_revocable(key, false)?;
            one(id, KeyChange::Revoked(Reason { reason: check_reason(reason)? }))
        }
        Command::Delete { id, confirm, reason } => {
            let key = key_in(table, ctx, id, None)?;
            if *confirm != key.name() {
                return Err(invalid("confirm", "must equal the key's name exactly"));
            }
            check_revocable(key, true)?;
            one(id, KeyChange::Deleted(Reason { reason: check_reason(reason)? }))
        }
        Command::BulkRevoke { ids, reason, delete } => {
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
                check_revocable(key_in(table, ctx, id, None)?, *delete)?;
                let change =
                    if *delete { KeyChange::Deleted(reason.clone()) } else { KeyChange::Revoked(reason.clone()) };
                changes.push(key_change(id, change));
            }
            Ok(Decision::of(&ctx.org, changes))
        }
        Command::Rotate { id, expected, secret, grace_seconds } => {
            live_key(table, ctx, id, *expected)?;
            if *grace_seconds > MAX_GRACE_SECONDS {
                return Err(invalid("grace_seconds", format!("at most {MAX_GRACE_SECONDS} (30 days)")));
            }
            let until = (*grace_seconds > 0).then(|| ctx.now.plus_seconds(*grace_seconds as i64));
            one(
                id,
                KeyChange::Rotated(KeyRotated {
                    display_prefix: secret.display_prefix.clone(),
                    key_hash: secret.hash,
                    previous_valid_until: until,
                }),
            )
        }
        Command::Expire { id } => {
            let key = key_in(table, ctx, id, None)?;
            match key.expires_at {
                Some(at) if matches!(key.status, Status::Active | Status::Disabled) && at <= ctx.now => {
                    one(id, KeyChange::Expired(Expired { expires_at: at }))
                }
                _ => Err(Refusal::Conflict(format!("the key {id} is not due to expire"))),
            }
        }
        Command::RecordAccess { id, report } => {
            key_in(table, ctx, id, None)?;
            if table.has_report(report) {
                return Err(Refusal::Conflict(format!("the access report {} is already recorded", report.report_id)));
            }
            if report.count == 0 || report.first_at > report.last_at {
                return Err(invalid(
                    "report",
                    "an access report counts at least one verification, first_at <= last_at",
                ));
            }
            one(id, KeyChange::Accessed(report.clone()))
        }
    }
}

fn not_found(what: &'static str, id: &str) -> Refusal {
    Refusal::NotFound { what, id: id.chars().take(80).collect() }
}

/// The key, in the caller's org, at the expected version if one was given.
fn key_in<'a>(table: &'a Table, ctx: &Context, id: &KeyId, expected: Option<Seq>) -> Result<&'a Key, Refusal> {
    let key = table.key_in(&ctx.org, id).ok_or_else(|| not_found("key", id.as_str()))?;
    match expected {
        Some(e) if e != key.version => Err(Refusal::VersionMismatch { expected: e, actual: key.version }),
        _ => Ok(key),
    }
}

/// A key that may still be changed: active or disabled, not past expiry.
fn live_key<'a>(table: &'a Table, ctx: &Context, id: &KeyId, expected: Option<Seq>) -> Result<&'a Key, Refusal> {
    let key = key_in(table, ctx, id, expected)?;
    match key.status_at(ctx.now) {
        Status::Active | Status::Disabled => Ok(key),
        s => Err(Refusal::Conflict(format!("the key {id} is {} and can no longer be changed", s.as_str()))),
    }
}

fn check_revocable(key: &Key, deleting: bool) -> Result<(), Refusal> {
    match key.status {
        Status::Deleted => Err(Refusal::Conflict(format!("the key {} is already deleted", key.id))),
        Status::Revoked if !deleting => Err(Refusal::Conflict(format!("the key {} is already revoked", key.id))),
        _ => Ok(()),
    }
}

fn new_key_event(new: &NewKey, now: Timestamp) -> Result<KeyCreated, Refusal> {
    Ok(KeyCreated {
        name: check_name("name", &new.name)?,
        description: check_text("description", &new.description, MAX_DESCRIPTION)?,
        owner: check_text("owner", &new.owner, MAX_OWNER)?,
        scopes: check_scopes(&new.scopes)?,
        allowed_cidrs: check_cidrs(&new.allowed_cidrs)?,
        expires_at: check_expiry(new.expiry.at(now), now)?,
        display_prefix: new.secret.display_prefix.clone(),
        key_hash: new.secret.hash,
    })
}

/// The events an edit produces: `key.updated` for the attributes,
/// `key.scopes_edited` and `key.ips_edited` for the grants. Fields given with
/// their current value change nothing, and an edit that changes nothing
/// records nothing.
fn edit_changes(key: &Key, edit: &KeyEdit, now: Timestamp) -> Result<Vec<Change>, Refusal> {
    let mut updated = KeyUpdated {
        name: key.name().to_owned(),
        description: key.description().to_owned(),
        owner: key.owner().to_owned(),
        expires_at: key.expires_at,
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
    let scopes = edit.scopes.as_deref().map(check_scopes).transpose()?;
    let cidrs = edit.allowed_cidrs.as_deref().map(check_cidrs).transpose()?;
    for (field, differs) in [
        ("name", updated.name != key.name()),
        ("description", updated.description != key.description()),
        ("owner", updated.owner != key.owner()),
        ("expires_at", updated.expires_at != key.expires_at),
    ] {
        if differs {
            updated.changed.push(field.to_owned());
        }
    }
    let mut changes = vec![];
    let id = &key.id;
    if !updated.changed.is_empty() {
        changes.push(Change::Key(*id, KeyChange::Updated(updated)));
    }
    if let Some(scopes) = scopes.filter(|s| s.as_slice() != &*key.scopes) {
        changes.push(Change::Key(*id, KeyChange::ScopesEdited(ScopesEdited { scopes })));
    }
    if let Some(allowed_cidrs) = cidrs.filter(|c| c[..] != key.allowed_cidrs[..]) {
        changes.push(Change::Key(*id, KeyChange::IpsEdited(IpsEdited { allowed_cidrs })));
    }
    Ok(changes)
}

/// Warnings a caller should see before relying on a key as created or
/// edited: `before` is the key before the change (`None` on create).
fn warnings(
    before: Option<&Key>,
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
    if let Some(key) = before {
        let used_recently = key.usage().last_used_at.is_some_and(|t| t > now.plus_seconds(-86_400));
        if used_recently {
            let narrowed = key.scopes.iter().any(|old| !after_scopes.iter().any(|new| old.covered_by(new)));
            if narrowed {
                w.push("the scopes are narrowed on a key used in the last 24 hours: this can break calls made with this key".to_owned());
            }
            if after_cidrs != &key.allowed_cidrs[..] {
                w.push(
                    "allowed_cidrs changed on a key used in the last 24 hours: this can break calls made with this key"
                        .to_owned(),
                );
            }
        }
    }
    if after_expiry.is_none() {
        w.push("this key never expires".to_owned());
    }
    w
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
