//! Verification: may the holder of this secret do this action, on this
//! resource, from this address, now? One pure function over a `Table`, so
//! the registry and every replica answer with the same rules.
//!
//! The checks run in a fixed order and the first failure is the answer:
//! format and checksum (no lookup at all), then the lookup by keyed hash,
//! then revoked, expired (by the clock, before any `key.expired` event),
//! disabled, address, scope.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use std::borrow::Cow;
use std::sync::Arc;

use crate::domain::id::{KeyId, OrgId, RoleName, Seq};
use crate::domain::legacy;
use crate::domain::meta::Meta;
use crate::domain::scope::{self, Scope};
use crate::domain::table::{Key, Status, Table};
use crate::domain::time::Timestamp;
use crate::domain::token::{Pepper, TokenFormat, TokenHash};

/// A verify's outcome. Ordered as declared, which is also the order usage
/// lists outcomes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    Valid,
    Malformed,
    NotFound,
    Revoked,
    Expired,
    Disabled,
    ForbiddenIp,
    ForbiddenScope,
}

impl Code {
    pub const ALL: [Code; 8] = [
        Code::Valid,
        Code::Malformed,
        Code::NotFound,
        Code::Revoked,
        Code::Expired,
        Code::Disabled,
        Code::ForbiddenIp,
        Code::ForbiddenScope,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Valid => "VALID",
            Code::Malformed => "MALFORMED",
            Code::NotFound => "NOT_FOUND",
            Code::Revoked => "REVOKED",
            Code::Expired => "EXPIRED",
            Code::Disabled => "DISABLED",
            Code::ForbiddenIp => "FORBIDDEN_IP",
            Code::ForbiddenScope => "FORBIDDEN_SCOPE",
        }
    }

    /// Whether the answer refuses the key itself (there is no usable key:
    /// 401 at an HTTP edge) rather than what it was asked to do (403).
    pub fn refuses_the_key(self) -> bool {
        matches!(self, Code::Malformed | Code::NotFound | Code::Revoked | Code::Expired | Code::Disabled)
    }

    /// The code named as `as_str` names it.
    pub fn from_name(name: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The outcome as usage shows it to people.
    pub fn words(self) -> &'static str {
        match self {
            Code::Valid => "valid",
            Code::Malformed => "malformed",
            Code::NotFound => "not found",
            Code::Revoked => "revoked",
            Code::Expired => "expired",
            Code::Disabled => "disabled",
            Code::ForbiddenIp => "refused: address",
            Code::ForbiddenScope => "refused: action",
        }
    }

    /// An outcome named in a usage answer, in words: a code, or
    /// `UNRECORDED` for verifications from before outcomes were recorded.
    pub fn words_of(name: &str) -> &'static str {
        Code::from_name(name).map_or("outcome not recorded", Code::words)
    }
}

/// What is being asked, with the secret already reduced to its keyed hash.
#[derive(Clone, Copy, Debug, Default)]
pub struct Question<'a> {
    pub action: Option<&'a str>,
    pub resource: Option<&'a str>,
    /// The caller's address; a key with `allowed_cidrs` refuses a question
    /// that does not say where it comes from.
    pub ip: Option<IpAddr>,
}

/// Why a question cannot be asked: the same rules on every entry point
/// (HTTP on the registry and on replicas, an embedded replica).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadQuestion {
    #[error("action must be a verb or service:verb without wildcards")]
    Action,
    #[error("a resource needs an action")]
    ResourceWithoutAction,
    #[error("resource must be a /-separated path of non-empty segments without wildcards, '.', '..' or '%'")]
    Resource,
}

impl Question<'_> {
    /// A concrete action, and a concrete resource only with an action.
    pub fn check(&self) -> Result<(), BadQuestion> {
        if self.action.is_some_and(|a| !scope::is_concrete_action(a)) {
            return Err(BadQuestion::Action);
        }
        match (self.resource, self.action) {
            (Some(_), None) => Err(BadQuestion::ResourceWithoutAction),
            (Some(r), Some(_)) if !scope::is_concrete_resource(r) => Err(BadQuestion::Resource),
            _ => Ok(()),
        }
    }
}

/// The key a verify found, as the answer reports it: its effective scopes
/// (its own and its roles') and its roles.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Found {
    pub key_id: KeyId,
    pub org: OrgId,
    /// Who the key is for, when it says (a person, a team, a customer).
    pub owner: Option<Box<str>>,
    pub scopes: Arc<[Scope]>,
    pub roles: Box<[RoleName]>,
    pub expires_at: Option<Timestamp>,
    /// What the org attached to the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
}

impl Found {
    pub fn of(key: &Key, table: &Table) -> Found {
        // Most keys hold no role: their scopes are shared, not copied.
        let scopes = match table.effective_scopes(key) {
            Cow::Borrowed(_) => key.scopes.clone(),
            Cow::Owned(all) => all.into(),
        };
        let roles = table.role_names(key).into_iter().cloned().collect();
        let owner = Some(key.owner()).filter(|o| !o.is_empty()).map(Box::from);
        let meta = key.meta().cloned();
        Found { key_id: key.id, org: key.org.clone(), owner, scopes, roles, expires_at: key.expires_at, meta }
    }
}

/// A verify's outcome, borrowing the key it found from the table: deciding
/// copies nothing, and the caller takes what it needs while it holds the table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verdict<'a> {
    pub code: Code,
    /// Present whenever a key was found, whatever the code.
    pub key: Option<&'a Key>,
}

impl Verdict<'_> {
    /// The answer that reports this verdict, reached on `table`.
    pub fn answer(&self, table: &Table) -> Answer {
        let code = self.code;
        Answer { valid: code == Code::Valid, code, found: self.key.map(|k| Found::of(k, table)), seq: table.applied() }
    }
}

/// A verify's answer, as `POST /v1/verify` and an embedded replica give it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Answer {
    pub valid: bool,
    pub code: Code,
    #[serde(flatten)]
    pub found: Option<Found>,
    /// The last log sequence the answering node had applied.
    pub seq: Seq,
}

/// A presented token reduced to what the lookup needs, before any lookup
/// (and before a node takes its table lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presented {
    /// A token in keyreg's format with a good checksum: its keyed hash.
    Native(TokenHash),
    /// Not in keyreg's shape but possibly an imported secret: its legacy hash.
    Legacy(TokenHash),
    Malformed,
}

impl Presented {
    pub fn of(format: &TokenFormat, pepper: &Pepper, token: &str) -> Presented {
        match format.hash_presented(pepper, token) {
            Ok(hash) => Presented::Native(hash),
            Err(_) => Presented::legacy(format, pepper, token),
        }
    }

    fn legacy(format: &TokenFormat, pepper: &Pepper, token: &str) -> Presented {
        if legacy::is_shaped(token) && !format.is_shaped(token) {
            Presented::Legacy(legacy::hash_secret(pepper, token))
        } else {
            Presented::Malformed
        }
    }
}

/// The whole verify of a presented token against `table` at `now`: format
/// and checksum, lookup, rules. The in-process path (an embedded replica),
/// where the table is at hand while hashing, so the lookup's first memory
/// access can overlap the checksum.
pub fn verify<'a>(
    table: &'a Table,
    format: &TokenFormat,
    pepper: &Pepper,
    presented: &str,
    question: &Question<'_>,
    now: Timestamp,
) -> Verdict<'a> {
    let presented = match format.hash_presented_then(pepper, presented, |hash| table.prefetch(hash)) {
        Ok(hash) => Presented::Native(hash),
        // Hashing a legacy candidate is wasted work while no legacy key exists.
        Err(_) if table.has_legacy() => Presented::legacy(format, pepper, presented),
        Err(_) => Presented::Malformed,
    };
    check(table, &presented, question, now)
}

/// Checks a presented secret against the table at `now`. A legacy
/// candidate is `MALFORMED` without a lookup while the table holds no
/// legacy key.
pub fn check<'a>(table: &'a Table, presented: &Presented, question: &Question<'_>, now: Timestamp) -> Verdict<'a> {
    let found = match presented {
        Presented::Native(hash) => table.key_by_hash(hash, now),
        Presented::Legacy(hash) if table.has_legacy() => table.key_by_legacy_hash(hash, now),
        Presented::Legacy(_) | Presented::Malformed => return Verdict { code: Code::Malformed, key: None },
    };
    let Some(key) = found else {
        return Verdict { code: Code::NotFound, key: None };
    };
    let code = match key.status_at(now) {
        Status::Revoked | Status::Deleted => Code::Revoked,
        Status::Expired => Code::Expired,
        Status::Disabled => Code::Disabled,
        Status::Active => {
            if !key.allowed_cidrs.is_empty() && !question.ip.is_some_and(|ip| key.allows_ip(ip)) {
                Code::ForbiddenIp
            } else if question.action.is_some_and(|a| !table.grants(key, a, question.resource)) {
                Code::ForbiddenScope
            } else {
                Code::Valid
            }
        }
    };
    Verdict { code, key: Some(key) }
}
