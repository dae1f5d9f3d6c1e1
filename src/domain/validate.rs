//! The rules a single field must meet, whatever the command: lengths,
//! blanks, repeats, ranges. `decide` applies them; each refusal names the
//! field.

use crate::domain::cidr::Cidr;
use crate::domain::command::Refusal;
use crate::domain::scope::Scope;
use crate::domain::time::Timestamp;

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

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Refusal {
    Refusal::Validation { field, message: message.into() }
}

pub(crate) fn check_name(field: &'static str, name: &str) -> Result<String, Refusal> {
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME || name.trim().is_empty() {
        return Err(invalid(field, format!("must be 1 to {MAX_NAME} characters, not blank")));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(name.to_owned())
}

pub(crate) fn check_len(field: &'static str, value: &str, max: usize) -> Result<String, Refusal> {
    if value.chars().count() > max {
        return Err(invalid(field, format!("must be at most {max} characters")));
    }
    Ok(value.to_owned())
}

pub(crate) fn check_reason(reason: &Option<String>) -> Result<Option<String>, Refusal> {
    reason.as_deref().map(|r| check_len("reason", r, MAX_REASON)).transpose()
}

pub(crate) fn check_max_keys(n: u32) -> Result<u32, Refusal> {
    if n == 0 || n > MAX_MAX_KEYS {
        return Err(invalid("max_keys", format!("must be 1 to {MAX_MAX_KEYS}")));
    }
    Ok(n)
}

/// At least one scope, at most `MAX_SCOPES`; repeats are dropped, order kept.
pub(crate) fn check_scopes(scopes: &[Scope]) -> Result<Vec<Scope>, Refusal> {
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

pub(crate) fn check_cidrs(cidrs: &[Cidr]) -> Result<Vec<Cidr>, Refusal> {
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

pub(crate) fn check_expiry(at: Option<Timestamp>, now: Timestamp) -> Result<Option<Timestamp>, Refusal> {
    match at {
        Some(t) if t <= now => Err(invalid("expires_at", "must be in the future")),
        other => Ok(other),
    }
}
