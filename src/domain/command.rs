//! Commands, what deciding one yields, and why one is refused: the
//! vocabulary of `decide` (`decide.rs`, every business rule).
//!
//! A command carries everything its decision needs from outside (ids,
//! secrets' hashes); the `Context` carries who acts, where and when. A
//! `Decision` is the changes to record and the warnings the caller should
//! see; `Decision::events` stamps the changes into events, for the writer
//! and the dry run alike.

use crate::domain::cidr::Cidr;
use crate::domain::event::{Catalog, Change, Event, KeyAccessed};
use crate::domain::id::{Actor, IdGenerator, KeyId, OrgId, RoleName, Seq};
use crate::domain::meta::Meta;
use crate::domain::permission::Permissions;
use crate::domain::scope::Scope;
use crate::domain::time::Timestamp;
use crate::domain::token::{PepperFingerprint, TokenHash};

/// Who acts: the actor recorded, and, for a person, the key acting for
/// them (recorded as `via`).
#[derive(Clone, Debug, PartialEq)]
pub struct Acting {
    pub actor: Actor,
    pub via: Option<KeyId>,
}

impl From<Actor> for Acting {
    fn from(actor: Actor) -> Self {
        Acting { actor, via: None }
    }
}

impl Acting {
    /// The key whose permissions bound what the change may grant: the
    /// acting key, or the key a person acts through. `None` for keyreg
    /// itself.
    pub fn key(&self) -> Option<KeyId> {
        match &self.actor {
            Actor::Key(id) => Some(*id),
            _ => self.via,
        }
    }
}

/// Who acts, for which organization, and when.
#[derive(Clone, Debug)]
pub struct Context {
    pub who: Acting,
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
    pub roles: Vec<RoleName>,
    pub allowed_cidrs: Vec<Cidr>,
    pub expiry: Expiry,
    pub meta: Option<Meta>,
}

/// When a new key stops working.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Expiry {
    #[default]
    Never,
    At(Timestamp),
    /// This long after the key is created: counted from the time of the
    /// event that creates it, so `expires_at - created_at` is exact.
    AfterSeconds(i64),
}

impl Expiry {
    pub(crate) fn at(self, created: Timestamp) -> Option<Timestamp> {
        match self {
            Expiry::Never => None,
            Expiry::At(t) => Some(t),
            Expiry::AfterSeconds(s) => Some(created.plus_seconds(s)),
        }
    }
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
    pub roles: Option<Vec<RoleName>>,
    pub allowed_cidrs: Option<Vec<Cidr>>,
    /// `Some(None)` removes the metadata.
    pub meta: Option<Option<Meta>>,
}

/// A role edit, like a key edit: `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct RoleEdit {
    pub description: Option<String>,
    pub scopes: Option<Vec<Scope>>,
}

#[derive(Clone, Debug)]
pub enum Command {
    /// The log's first events: the `_system` org, its first key, and the
    /// pepper's fingerprint.
    Init {
        admin: NewKey,
        pepper: PepperFingerprint,
    },
    /// Records the pepper's fingerprint in a log made before fingerprints.
    RecordPepper(PepperFingerprint),
    /// `keyreg recover`: a new `_system` key holding every management
    /// permission, when every key that could make one is lost. Given
    /// `scopes` are ignored.
    Recover(NewKey),
    /// A new organization and its first admin key.
    CreateOrg {
        id: OrgId,
        name: String,
        max_keys: Option<u32>,
        admin: NewKey,
    },
    /// `max_keys` is the operator's: only keyreg itself or a `_system` key
    /// holding `orgs:admin` may change it.
    UpdateOrg {
        name: Option<String>,
        max_keys: Option<u32>,
    },
    CreateRole {
        name: RoleName,
        description: String,
        scopes: Vec<Scope>,
    },
    EditRole {
        name: RoleName,
        expected: Option<Seq>,
        edit: RoleEdit,
    },
    /// `force` takes the role from the keys holding it; without it a role
    /// that live keys hold is not deleted.
    DeleteRole {
        name: RoleName,
        expected: Option<Seq>,
        force: bool,
    },
    SetCatalog(Catalog),
    CreateKey(NewKey),
    /// A key that existed before keyreg, with its legacy secret's hash
    /// (`legacy::hash`): refused if that secret was imported before.
    ImportKey(NewKey),
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
    /// Revoke every key of `owner` that is not revoked yet, together.
    Offboard {
        owner: String,
        reason: Option<String>,
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

impl Command {
    /// The one key the command is about, for commands about one key.
    pub fn key(&self) -> Option<KeyId> {
        match self {
            Command::CreateKey(new) | Command::ImportKey(new) => Some(new.id),
            Command::EditKey { id, .. }
            | Command::Disable { id, .. }
            | Command::Enable { id, .. }
            | Command::Revoke { id, .. }
            | Command::Delete { id, .. }
            | Command::Rotate { id, .. }
            | Command::Expire { id }
            | Command::RecordAccess { id, .. } => Some(*id),
            Command::Recover(new) => Some(new.id),
            Command::Init { .. }
            | Command::RecordPepper(_)
            | Command::CreateOrg { .. }
            | Command::UpdateOrg { .. }
            | Command::BulkRevoke { .. }
            | Command::Offboard { .. }
            | Command::CreateRole { .. }
            | Command::EditRole { .. }
            | Command::DeleteRole { .. }
            | Command::SetCatalog(_) => None,
        }
    }

    /// The role the command is about, for role commands.
    pub fn role(&self) -> Option<&RoleName> {
        match self {
            Command::CreateRole { name, .. } | Command::EditRole { name, .. } | Command::DeleteRole { name, .. } => {
                Some(name)
            }
            _ => None,
        }
    }
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
    #[error(
        "the organization is at its limit of {max_keys} {} (max_keys; revoked and deleted keys do not count)",
        if *max_keys == 1 { "key" } else { "keys" }
    )]
    KeyLimit { max_keys: u32 },
    /// `If-Match` named a version that is no longer current.
    #[error("the {what} is at version {actual}, not {expected}")]
    VersionMismatch { what: &'static str, expected: Seq, actual: Seq },
    /// The change would grant management permissions the caller lacks.
    #[error("this would grant {permissions}, which the calling key does not hold: a key grants no more than it has")]
    Escalation { permissions: Permissions },
    /// The org's enforced catalogue does not list this exact action.
    #[error("{action} is not in the organization's catalogue of actions{}", suggest(suggestions))]
    UnknownAction { action: String, suggestions: Vec<String> },
    /// Live keys hold the role.
    #[error(
        "{} the role {role}: take it from them first, or delete it with force (force=true; --force on the command line)",
        if *keys == 1 { "1 live key holds".to_owned() } else { format!("{keys} live keys hold") }
    )]
    RoleInUse { role: RoleName, keys: usize },
    /// The caller may never do this, whatever it holds.
    #[error("{0}")]
    Forbidden(String),
}

fn suggest(suggestions: &[String]) -> String {
    match suggestions {
        [] => String::new(),
        s => format!("; did you mean {}?", s.join(", ")),
    }
}

/// What to record: changes, all in one organization, and what the caller
/// should be warned of before relying on the result.
#[derive(Debug, PartialEq)]
pub struct Decision {
    pub org: OrgId,
    pub changes: Vec<Change>,
    pub warnings: Vec<String>,
}

impl Decision {
    pub(crate) fn of(org: &OrgId, changes: Vec<Change>) -> Decision {
        Decision { org: org.clone(), changes, warnings: vec![] }
    }

    /// The changes as events: each with a new id, the context's time, actor
    /// and `via`. The log gives them their sequence numbers.
    pub fn events(&self, ctx: &Context, ids: &mut IdGenerator) -> Vec<Event> {
        let last = self.changes.len().saturating_sub(1);
        self.changes
            .iter()
            .enumerate()
            .map(|(i, change)| Event {
                id: ids.event_id(ctx.now),
                time: ctx.now,
                org: self.org.clone(),
                actor: ctx.who.actor.clone(),
                via: ctx.who.via,
                batch_rest: (last - i) as u32,
                change: change.clone(),
            })
            .collect()
    }
}
