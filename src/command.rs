//! Commands and the one decision function: every business rule of keyreg.
//!
//! `decide(table, ctx, command)` looks at the current table and either
//! returns the changes to record or a `Refusal` saying why not. It is pure:
//! ids, secrets' hashes and the time come in through the command and the
//! context, so the same inputs always give the same answer, and a refused
//! command has touched nothing.

use crate::cidr::Cidr;
use crate::event::{
    Change, Expired, IpsEdited, KeyAccessed, KeyChange, KeyCreated, KeyRotated, KeyUpdated, OrgSettings, Reason,
    ScopesEdited,
};
use crate::id::{Actor, KeyId, OrgId, Seq};
use crate::projection::{Key, Status, Table};
use crate::scope::Scope;
use crate::time::Timestamp;
use crate::token::TokenHash;

pub const DEFAULT_MAX_KEYS: u32 = 1000;
pub const MAX_MAX_KEYS: u32 = 10_000_000;
pub const MAX_NAME: usize = 100;
pub const MAX_DESCRIPTION: usize = 1000;
pub const MAX_OWNER: usize = 320;
pub const MAX_REASON: usize = 1000;
pub const MAX_SCOPES: usize = 100;
pub const MAX_CIDRS: usize = 100;
pub const MAX_BULK: usize = 100;
pub const MAX_GRACE_SECONDS: u64 = 30 * 86_400;

/// Who acts, for which organization, and when.
#[derive(Clone, Debug)]
pub struct Context {
    pub actor: Actor,
    pub org: OrgId,
    pub now: Timestamp,
}

/// The hash and display prefix of a freshly generated secret.
#[derive(Clone, Debug)]
pub struct NewSecret {
    pub hash: TokenHash,
    pub display_prefix: String,
}

#[derive(Clone, Debug)]
pub struct NewKey {
    pub id: KeyId,
    pub secret: NewSecret,
    pub name: String,
    pub description: String,
    pub owner: String,
    pub scopes: Vec<Scope>,
    pub allowed_cidrs: Vec<Cidr>,
    pub expires_at: Option<Timestamp>,
}

/// A partial edit: `None` leaves a field as it is. `expires_at: Some(None)`
/// removes the expiry.
#[derive(Clone, Debug, Default)]
pub struct KeyEdit {
    pub name: Option<String>,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub expires_at: Option<Option<Timestamp>>,
    pub scopes: Option<Vec<Scope>>,
    pub allowed_cidrs: Option<Vec<Cidr>>,
}

#[derive(Clone, Debug)]
pub enum Command {
    /// A new organization and its first admin key.
    CreateOrg {
        id: OrgId,
        name: String,
        max_keys: Option<u32>,
        admin: NewKey,
    },
    UpdateOrg {
        name: Option<String>,
        max_keys: Option<u32>,
    },
    CreateKey(NewKey),
    EditKey {
        id: KeyId,
        expected: Option<Seq>,
        edit: KeyEdit,
    },
    Disable {
        id: KeyId,
        expected: Option<Seq>,
    },
    Enable {
        id: KeyId,
        expected: Option<Seq>,
    },
    Revoke {
        id: KeyId,
        expected: Option<Seq>,
        reason: Option<String>,
    },
    /// Revoke and hide; `confirm` must equal the key's name.
    Delete {
        id: KeyId,
        confirm: String,
        reason: Option<String>,
    },
    BulkRevoke {
        ids: Vec<KeyId>,
        reason: Option<String>,
        delete: bool,
    },
    Rotate {
        id: KeyId,
        expected: Option<Seq>,
        secret: NewSecret,
        grace_seconds: u64,
    },
    /// The sweeper's: record that a key's `expires_at` has passed.
    Expire {
        id: KeyId,
    },
    RecordAccess {
        id: KeyId,
        report: KeyAccessed,
    },
}

/// Why a command was refused. These are expected outcomes, not failures:
/// nothing was recorded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The input breaks a rule of its own (length, syntax, range).
    #[error("{field}: {message}")]
    Validation { field: &'static str, message: String },
    /// No such key or org in the caller's organization.
    #[error("no {what} {id:?} in this organization")]
    NotFound { what: &'static str, id: String },
    /// The key's state does not allow this (revoked, already disabled, …).
    #[error("{0}")]
    Conflict(String),
    /// Creating the key would exceed the org's `max_keys`.
    #[error("the organization already has {max_keys} keys that are not revoked or deleted (max_keys)")]
    KeyLimit { max_keys: u32 },
    /// `If-Match` named a version that is no longer current.
    #[error("the key is at version {actual}, not {expected}")]
    VersionMismatch { expected: Seq, actual: Seq },
}

fn invalid(field: &'static str, message: impl Into<String>) -> Refusal {
    Refusal::Validation { field, message: message.into() }
}

/// What to record: changes, all in one organization.
#[derive(Debug, PartialEq)]
pub struct Decision {
    pub org: OrgId,
    pub changes: Vec<Change>,
}

pub fn decide(table: &Table, ctx: &Context, command: &Command) -> Result<Decision, Refusal> {
    let key_change = |id: &KeyId, c: KeyChange| Change::Key(*id, c);
    let one = |id: &KeyId, c: KeyChange| Ok(Decision { org: ctx.org.clone(), changes: vec![key_change(id, c)] });
    match command {
        Command::CreateOrg { id, name, max_keys, admin } => {
            // `_system` is made by `keyreg init` as the log's first event, never later.
            if !id.is_tenant() && table.applied() != Seq(0) {
                return Err(invalid("id", "organization ids are [a-z0-9][a-z0-9-]{1,62}"));
            }
            if table.org(id).is_some() {
                return Err(Refusal::Conflict(format!("the organization {id} already exists")));
            }
            let settings = OrgSettings {
                name: check_name("name", name)?,
                max_keys: check_max_keys(max_keys.unwrap_or(DEFAULT_MAX_KEYS))?,
            };
            let created = new_key_event(admin, ctx.now)?;
            Ok(Decision {
                org: id.clone(),
                changes: vec![Change::OrgCreated(settings), key_change(&admin.id, KeyChange::Created(created))],
            })
        }
        Command::UpdateOrg { name, max_keys } => {
            let org = table.org(&ctx.org).ok_or_else(|| not_found("organization", ctx.org.as_str()))?;
            let settings = OrgSettings {
                name: match name {
                    Some(n) => check_name("name", n)?,
                    None => org.name.clone(),
                },
                max_keys: check_max_keys(max_keys.unwrap_or(org.max_keys))?,
            };
            let unchanged = settings.name == org.name && settings.max_keys == org.max_keys;
            let changes = if unchanged { vec![] } else { vec![Change::OrgUpdated(settings)] };
            Ok(Decision { org: ctx.org.clone(), changes })
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
            one(&new.id, KeyChange::Created(created))
        }
        Command::EditKey { id, expected, edit } => {
            let key = live_key(table, ctx, id, *expected)?;
            Ok(Decision { org: ctx.org.clone(), changes: edit_changes(key, edit, ctx.now)? })
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
            Ok(Decision { org: ctx.org.clone(), changes })
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
            if table.has_report(&report.report_id) {
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
        s => Err(Refusal::Conflict(format!("the key {id} is {} and can no longer be changed", status_word(s)))),
    }
}

fn check_revocable(key: &Key, deleting: bool) -> Result<(), Refusal> {
    match key.status {
        Status::Deleted => Err(Refusal::Conflict(format!("the key {} is already deleted", key.id))),
        Status::Revoked if !deleting => Err(Refusal::Conflict(format!("the key {} is already revoked", key.id))),
        _ => Ok(()),
    }
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Active => "active",
        Status::Disabled => "disabled",
        Status::Expired => "expired",
        Status::Revoked => "revoked",
        Status::Deleted => "deleted",
    }
}

fn new_key_event(new: &NewKey, now: Timestamp) -> Result<KeyCreated, Refusal> {
    Ok(KeyCreated {
        name: check_name("name", &new.name)?,
        description: check_len("description", &new.description, MAX_DESCRIPTION)?,
        owner: check_len("owner", &new.owner, MAX_OWNER)?,
        scopes: check_scopes(&new.scopes)?,
        allowed_cidrs: check_cidrs(&new.allowed_cidrs)?,
        expires_at: check_expiry(new.expires_at, now)?,
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
        updated.description = check_len("description", d, MAX_DESCRIPTION)?;
    }
    if let Some(o) = &edit.owner {
        updated.owner = check_len("owner", o, MAX_OWNER)?;
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

fn check_name(field: &'static str, name: &str) -> Result<String, Refusal> {
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME || name.trim().is_empty() {
        return Err(invalid(field, format!("must be 1 to {MAX_NAME} characters, not blank")));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(name.to_owned())
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<String, Refusal> {
    if value.chars().count() > max {
        return Err(invalid(field, format!("must be at most {max} characters")));
    }
    Ok(value.to_owned())
}

fn check_reason(reason: &Option<String>) -> Result<Option<String>, Refusal> {
    reason.as_deref().map(|r| check_len("reason", r, MAX_REASON)).transpose()
}

fn check_max_keys(n: u32) -> Result<u32, Refusal> {
    if n == 0 || n > MAX_MAX_KEYS {
        return Err(invalid("max_keys", format!("must be 1 to {MAX_MAX_KEYS}")));
    }
    Ok(n)
}

/// At least one scope, at most `MAX_SCOPES`; repeats are dropped, order kept.
fn check_scopes(scopes: &[Scope]) -> Result<Vec<Scope>, Refusal> {
    if scopes.is_empty() {
        return Err(invalid("scopes", "a key needs at least one scope"));
    }
    if scopes.len() > MAX_SCOPES {
        return Err(invalid("scopes", format!("at most {MAX_SCOPES} scopes")));
    }
    let mut out: Vec<Scope> = Vec::with_capacity(scopes.len());
    for s in scopes {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

fn check_cidrs(cidrs: &[Cidr]) -> Result<Vec<Cidr>, Refusal> {
    if cidrs.len() > MAX_CIDRS {
        return Err(invalid("allowed_cidrs", format!("at most {MAX_CIDRS} ranges")));
    }
    let mut out: Vec<Cidr> = Vec::with_capacity(cidrs.len());
    for c in cidrs {
        if !out.contains(c) {
            out.push(*c);
        }
    }
    Ok(out)
}

fn check_expiry(at: Option<Timestamp>, now: Timestamp) -> Result<Option<Timestamp>, Refusal> {
    match at {
        Some(t) if t <= now => Err(invalid("expires_at", "must be in the future")),
        other => Ok(other),
    }
}

/// Warnings a caller should see before relying on a key as created or
/// edited: `before` is the key before the change (`None` on create).
pub fn warnings(
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
#[path = "command_tests.rs"]
mod tests;
