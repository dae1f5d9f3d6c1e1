//! Events: the facts the log records, their CloudEvents envelope, their exact
//! byte encoding, and the hash chain over those bytes.
//!
//! An event is encoded once, when it is appended, as compact one-line JSON in
//! a fixed field order. From then on the bytes are the event: they are
//! stored, published, served and exported unchanged, and the chain (`chain`)
//! is defined over them. Decoding never feeds a re-serialization back into
//! the chain.
//!
//! (Over 450 lines with its tests: every event type's data, its name, and
//! the envelope's encoding and decoding are kept together so that adding a
//! type touches one file.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::domain::chain::ChainHash;
use crate::domain::cidr::Cidr;
use crate::domain::id::{Actor, EventId, KeyId, OrgId, RoleName, Seq};
use crate::domain::meta::Meta;
use crate::domain::scope::Scope;
use crate::domain::time::Timestamp;
use crate::domain::token::{PepperFingerprint, TokenHash};
use crate::domain::verifier::Code;

/// One fact, before it has a place in the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub time: Timestamp,
    pub org: OrgId,
    pub actor: Actor,
    /// For a person (`user:` actor), the key that acted for them.
    pub via: Option<KeyId>,
    /// How many events after this one come from the same decision (a bulk
    /// revoke, an offboarding, an org and its first key): a fold applies
    /// them together, so no reader sees part of a decision.
    pub batch_rest: u32,
    pub change: Change,
}

/// What happened. Organization events have the org as their subject, key
/// events the key.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    OrgCreated(OrgSettings),
    OrgUpdated(OrgSettings),
    Key(KeyId, KeyChange),
    Role(RoleChange),
    CatalogUpdated(Catalog),
}

/// What happened to a role: an org's named bundle of scopes. Keys hold roles
/// by name, so one `role.updated` changes every key holding the role.
#[derive(Clone, Debug, PartialEq)]
pub enum RoleChange {
    Created(RoleDefined),
    Updated(RoleDefined),
    Deleted(RoleDeleted),
}

/// `role.created` and `role.updated`: the role after the change, and (on
/// update) which of its fields changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleDefined {
    pub name: RoleName,
    pub description: String,
    pub scopes: Vec<Scope>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
}

/// `role.deleted`: the role, and the keys that held it (a forced delete
/// takes it from them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleDeleted {
    pub name: RoleName,
    pub removed_from: Vec<KeyId>,
}

/// `key.roles_edited`: the key's roles after the change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolesEdited {
    pub roles: Vec<RoleName>,
}

/// `catalog.updated`: the org's whole catalogue of actions after the change.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub actions: Vec<CatalogAction>,
    /// Refuse scopes naming an exact action that is not listed.
    pub enforce: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogAction {
    pub action: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum KeyChange {
    Created(KeyCreated),
    /// A key that existed before keyreg, taken in with its legacy secret's
    /// hash: the same fields as `key.created`.
    Imported(KeyCreated),
    Updated(KeyUpdated),
    ScopesEdited(ScopesEdited),
    IpsEdited(IpsEdited),
    Disabled,
    Enabled,
    Revoked(Reason),
    Deleted(Reason),
    Expired(Expired),
    Rotated(KeyRotated),
    Accessed(KeyAccessed),
    RolesEdited(RolesEdited),
}

/// `org.created` and `org.updated` both carry the full settings after the
/// change. The `_system` org's also carry the pepper's fingerprint, once it
/// is recorded (at `keyreg init`, or on the first start of a data dir made
/// before fingerprints).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OrgSettings {
    pub name: String,
    pub max_keys: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pepper_fingerprint: Option<PepperFingerprint>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyCreated {
    pub name: String,
    pub description: String,
    pub owner: String,
    pub scopes: Vec<Scope>,
    pub allowed_cidrs: Vec<Cidr>,
    pub expires_at: Option<Timestamp>,
    pub display_prefix: String,
    /// The keyed hash of the secret; the secret itself is never recorded.
    pub key_hash: TokenHash,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<RoleName>,
    /// What the org attached to the key, returned by every verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
}

/// `key.updated` carries the four editable attributes after the change, and
/// which of them changed, so an auditor need not diff.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyUpdated {
    pub name: String,
    pub description: String,
    pub owner: String,
    pub expires_at: Option<Timestamp>,
    /// The metadata after the change (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    pub changed: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScopesEdited {
    pub scopes: Vec<Scope>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IpsEdited {
    pub allowed_cidrs: Vec<Cidr>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Expired {
    pub expires_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyRotated {
    pub display_prefix: String,
    pub key_hash: TokenHash,
    /// Until when the previous secret keeps working; null: it stopped at once.
    pub previous_valid_until: Option<Timestamp>,
}

/// A coalesced report of verifications that found the key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyAccessed {
    pub count: u64,
    /// The same verifications by outcome (`VALID`, `FORBIDDEN_SCOPE`, …),
    /// summing to `count`. Empty in reports from before outcomes were
    /// recorded, which keep the bytes (and so the hashes) they had.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outcomes: BTreeMap<Code, u64>,
    pub first_at: Timestamp,
    pub last_at: Timestamp,
    pub last_ip: Option<String>,
    pub node: String,
    /// Unique per report, so a report delivered twice is appended once.
    pub report_id: String,
}

impl KeyAccessed {
    /// A report id is `<origin>-<n>`: its origin (a node and one run of its
    /// process) and a number that increases within the origin, so a report
    /// delivered again is recognised by its number. `None` for other ids.
    pub fn origin_and_number(&self) -> Option<(&str, u64)> {
        let (origin, n) = self.report_id.rsplit_once('-')?;
        Some((origin, n.parse().ok()?))
    }
}

#[derive(Serialize, Deserialize)]
struct Empty {}

impl Change {
    /// The stable CloudEvents `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Change::OrgCreated(_) => "org.created",
            Change::OrgUpdated(_) => "org.updated",
            Change::Key(_, k) => match k {
                KeyChange::Created(_) => "key.created",
                KeyChange::Imported(_) => "key.imported",
                KeyChange::Updated(_) => "key.updated",
                KeyChange::ScopesEdited(_) => "key.scopes_edited",
                KeyChange::IpsEdited(_) => "key.ips_edited",
                KeyChange::Disabled => "key.disabled",
                KeyChange::Enabled => "key.enabled",
                KeyChange::Revoked(_) => "key.revoked",
                KeyChange::Deleted(_) => "key.deleted",
                KeyChange::Expired(_) => "key.expired",
                KeyChange::Rotated(_) => "key.rotated",
                KeyChange::Accessed(_) => "key.accessed",
                KeyChange::RolesEdited(_) => "key.roles_edited",
            },
            Change::Role(RoleChange::Created(_)) => "role.created",
            Change::Role(RoleChange::Updated(_)) => "role.updated",
            Change::Role(RoleChange::Deleted(_)) => "role.deleted",
            Change::CatalogUpdated(_) => "catalog.updated",
        }
    }

    fn data_json(&self) -> serde_json::Result<String> {
        match self {
            Change::OrgCreated(d) | Change::OrgUpdated(d) => serde_json::to_string(d),
            Change::Key(_, k) => match k {
                KeyChange::Created(d) | KeyChange::Imported(d) => serde_json::to_string(d),
                KeyChange::Updated(d) => serde_json::to_string(d),
                KeyChange::ScopesEdited(d) => serde_json::to_string(d),
                KeyChange::IpsEdited(d) => serde_json::to_string(d),
                KeyChange::Disabled | KeyChange::Enabled => serde_json::to_string(&Empty {}),
                KeyChange::Revoked(d) | KeyChange::Deleted(d) => serde_json::to_string(d),
                KeyChange::Expired(d) => serde_json::to_string(d),
                KeyChange::Rotated(d) => serde_json::to_string(d),
                KeyChange::Accessed(d) => serde_json::to_string(d),
                KeyChange::RolesEdited(d) => serde_json::to_string(d),
            },
            Change::Role(RoleChange::Created(d) | RoleChange::Updated(d)) => serde_json::to_string(d),
            Change::Role(RoleChange::Deleted(d)) => serde_json::to_string(d),
            Change::CatalogUpdated(d) => serde_json::to_string(d),
        }
    }
}

/// Every event type, in the order SPEC lists them; schemas and tests use it.
pub const TYPES: &[&str] = &[
    "org.created",
    "org.updated",
    "key.created",
    "key.updated",
    "key.scopes_edited",
    "key.ips_edited",
    "key.disabled",
    "key.enabled",
    "key.revoked",
    "key.deleted",
    "key.expired",
    "key.rotated",
    "key.accessed",
    "role.created",
    "role.updated",
    "role.deleted",
    "key.roles_edited",
    "catalog.updated",
    "key.imported",
];

impl Event {
    /// A key event's key; every other event's org.
    pub fn subject(&self) -> &str {
        match &self.change {
            Change::Key(id, _) => id.as_str(),
            Change::OrgCreated(_) | Change::OrgUpdated(_) | Change::Role(_) | Change::CatalogUpdated(_) => {
                self.org.as_str()
            }
        }
    }

    pub fn key_id(&self) -> Option<&KeyId> {
        match &self.change {
            Change::Key(id, _) => Some(id),
            _ => None,
        }
    }
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    specversion: &'static str,
    id: &'a EventId,
    source: &'static str,
    #[serde(rename = "type")]
    type_: &'static str,
    time: Timestamp,
    subject: &'a str,
    datacontenttype: &'static str,
    seq: Seq,
    org: &'a OrgId,
    actor: &'a Actor,
    #[serde(skip_serializing_if = "Option::is_none")]
    via: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    batchrest: u32,
    prevhash: String,
    data: &'a RawValue,
}

#[derive(Deserialize)]
struct EnvelopeIn<'a> {
    specversion: &'a str,
    id: EventId,
    source: &'a str,
    #[serde(rename = "type")]
    type_: &'a str,
    time: Timestamp,
    subject: &'a str,
    datacontenttype: &'a str,
    seq: Seq,
    org: OrgId,
    actor: Actor,
    #[serde(default)]
    via: Option<&'a str>,
    #[serde(default)]
    batchrest: u32,
    prevhash: &'a str,
    #[serde(borrow)]
    data: &'a RawValue,
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the event is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the event's {field} is {value:?}, which keyreg does not write")]
    Envelope { field: &'static str, value: String },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Encodes `event` as the log stores it at `seq` after `prevhash`.
///
/// Encoding cannot fail: the event types hold strings, numbers, ids and
/// timestamps only (no maps with non-string keys, no serializer that
/// errors), so a failure would be a bug in this file, and chaining a
/// placeholder instead of the event would corrupt the log for good.
pub fn encode(seq: Seq, prevhash: &ChainHash, event: &Event) -> Vec<u8> {
    const INFALLIBLE: &str = "keyreg's event types always serialize";
    let data = RawValue::from_string(event.change.data_json().expect(INFALLIBLE)).expect(INFALLIBLE);
    let envelope = EnvelopeOut {
        specversion: "1.0",
        id: &event.id,
        source: "keyreg",
        type_: event.change.type_name(),
        time: event.time,
        subject: event.subject(),
        datacontenttype: "application/json",
        seq,
        org: &event.org,
        actor: &event.actor,
        via: event.via.map(|id| format!("key:{id}")),
        batchrest: event.batch_rest,
        prevhash: prevhash.to_hex(),
        data: &data,
    };
    serde_json::to_vec(&envelope).expect(INFALLIBLE)
}

/// An event as read back from its stored bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    pub seq: Seq,
    pub prevhash: ChainHash,
    pub event: Event,
}

pub fn decode(bytes: &[u8]) -> Result<Decoded, EventError> {
    let env: EnvelopeIn = serde_json::from_slice(bytes)?;
    let bad =
        |field: &'static str, value: &str| EventError::Envelope { field, value: value.chars().take(80).collect() };
    if env.specversion != "1.0" {
        return Err(bad("specversion", env.specversion));
    }
    if env.source != "keyreg" {
        return Err(bad("source", env.source));
    }
    if env.datacontenttype != "application/json" {
        return Err(bad("datacontenttype", env.datacontenttype));
    }
    let prevhash = ChainHash::from_hex(env.prevhash).ok_or_else(|| bad("prevhash", env.prevhash))?;
    let data = env.data.get();
    let key = || KeyId::parse(env.subject).map_err(|_| bad("subject", env.subject));
    if !env.type_.starts_with("key.") && env.subject != env.org.as_str() {
        return Err(bad("subject", env.subject));
    }
    let change = match env.type_ {
        "org.created" => Change::OrgCreated(serde_json::from_str(data)?),
        "org.updated" => Change::OrgUpdated(serde_json::from_str(data)?),
        "role.created" => Change::Role(RoleChange::Created(serde_json::from_str(data)?)),
        "role.updated" => Change::Role(RoleChange::Updated(serde_json::from_str(data)?)),
        "role.deleted" => Change::Role(RoleChange::Deleted(serde_json::from_str(data)?)),
        "catalog.updated" => Change::CatalogUpdated(serde_json::from_str(data)?),
        "key.created" => Change::Key(key()?, KeyChange::Created(serde_json::from_str(data)?)),
        "key.imported" => Change::Key(key()?, KeyChange::Imported(serde_json::from_str(data)?)),
        "key.updated" => Change::Key(key()?, KeyChange::Updated(serde_json::from_str(data)?)),
        "key.scopes_edited" => Change::Key(key()?, KeyChange::ScopesEdited(serde_json::from_str(data)?)),
        "key.ips_edited" => Change::Key(key()?, KeyChange::IpsEdited(serde_json::from_str(data)?)),
        "key.disabled" => Change::Key(key()?, KeyChange::Disabled),
        "key.enabled" => Change::Key(key()?, KeyChange::Enabled),
        "key.revoked" => Change::Key(key()?, KeyChange::Revoked(serde_json::from_str(data)?)),
        "key.deleted" => Change::Key(key()?, KeyChange::Deleted(serde_json::from_str(data)?)),
        "key.expired" => Change::Key(key()?, KeyChange::Expired(serde_json::from_str(data)?)),
        "key.rotated" => Change::Key(key()?, KeyChange::Rotated(serde_json::from_str(data)?)),
        "key.accessed" => Change::Key(key()?, KeyChange::Accessed(serde_json::from_str(data)?)),
        "key.roles_edited" => Change::Key(key()?, KeyChange::RolesEdited(serde_json::from_str(data)?)),
        other => return Err(bad("type", other)),
    };
    // A person's change names the key that acted for them; nobody else's does.
    let via = match (&env.actor, env.via) {
        (Actor::User(_), Some(v)) => {
            Some(v.strip_prefix("key:").and_then(|id| KeyId::parse(id).ok()).ok_or_else(|| bad("via", v))?)
        }
        (Actor::User(_), None) => return Err(bad("via", "")),
        (_, Some(v)) => return Err(bad("via", v)),
        (_, None) => None,
    };
    Ok(Decoded {
        seq: env.seq,
        prevhash,
        event: Event {
            id: env.id,
            time: env.time,
            org: env.org,
            actor: env.actor,
            via,
            batch_rest: env.batchrest,
            change,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::id::IdGenerator;

    fn sample(change: Change) -> Event {
        let now = Timestamp::parse("2026-11-22T10:00:00.000001Z").unwrap();
        Event {
            id: IdGenerator::default().event_id(now),
            time: now,
            org: OrgId::parse("acme").unwrap(),
            actor: Actor::system("test"),
            via: None,
            batch_rest: 0,
            change,
        }
    }

    #[test]
    fn encoding_is_compact_ordered_and_round_trips() {
        let e =
            sample(Change::OrgCreated(OrgSettings { name: "Acme".into(), max_keys: 1000, ..OrgSettings::default() }));
        let bytes = encode(Seq(1), &ChainHash::ZERO, &e);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with(r#"{"specversion":"1.0","id":"evt_"#), "{text}");
        assert!(text.contains(r#""time":"2026-11-22T10:00:00.000001Z","subject":"acme""#), "{text}");
        assert!(text.ends_with(r#""data":{"name":"Acme","max_keys":1000}}"#), "{text}");
        assert!(!text.contains('\n') && !text.contains(": "));
        let d = decode(&bytes).unwrap();
        assert_eq!((d.seq, d.prevhash, &d.event), (Seq(1), ChainHash::ZERO, &e));
    }

    #[test]
    fn foreign_envelopes_are_refused() {
        let e = sample(Change::Key(IdGenerator::default().key_id(Timestamp::from_micros(0)), KeyChange::Disabled));
        let text = String::from_utf8(encode(Seq(3), &ChainHash::ZERO, &e)).unwrap();
        assert!(decode(text.replace("\"keyreg\"", "\"other\"").as_bytes()).is_err());
        assert!(decode(text.replace("key.disabled", "key.exploded").as_bytes()).is_err());
        assert!(decode(b"not json").is_err());
    }
}
