//! One key as the table holds it: compact, because a table may hold
//! millions and a verify at that size is bound by cache misses; its status,
//! its usage, and `KeyView`, what users see of it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use super::Table;
use crate::domain::cidr::{self, Cidr};
use crate::domain::event::KeyAccessed;
use crate::domain::id::{Actor, KeyId, OrgId, RoleName, Seq};
use crate::domain::meta::Meta;
use crate::domain::scope::Scope;
use crate::domain::time::Timestamp;
use crate::domain::token::TokenHash;
use crate::domain::verifier::Code;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Disabled,
    Expired,
    Revoked,
    Deleted,
}

impl Status {
    pub const ALL: [Status; 5] = [Status::Active, Status::Disabled, Status::Expired, Status::Revoked, Status::Deleted];

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|status| status.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Disabled => "disabled",
            Status::Expired => "expired",
            Status::Revoked => "revoked",
            Status::Deleted => "deleted",
        }
    }

    /// Keys in these states count against `max_keys`.
    pub fn counts_against_limit(self) -> bool {
        !matches!(self, Status::Revoked | Status::Deleted)
    }
}

/// What may be done to a key. Which actions a state admits is decided here
/// once: `decide` refuses the others (a conflict), and every key the API
/// shows lists those it admits (`actions`), so no client keeps a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Edit,
    Disable,
    Enable,
    Rotate,
    Revoke,
    Delete,
}

impl Action {
    pub const ALL: [Action; 6] =
        [Action::Edit, Action::Disable, Action::Enable, Action::Rotate, Action::Revoke, Action::Delete];

    /// Whether a key in `status` (as of now: past its expiry it is
    /// expired) admits this action. Revoked and deleted keys are history;
    /// an expired one may still be revoked or deleted, a revoked one
    /// deleted.
    pub fn admitted(self, status: Status) -> bool {
        match self {
            Action::Edit | Action::Rotate => matches!(status, Status::Active | Status::Disabled),
            Action::Disable => status == Status::Active,
            Action::Enable => status == Status::Disabled,
            Action::Revoke => matches!(status, Status::Active | Status::Disabled | Status::Expired),
            Action::Delete => status != Status::Deleted,
        }
    }
}

/// Verifications that found a key (or any key of an org), from `key.accessed`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Usage {
    pub total: u64,
    pub last_used_at: Option<Timestamp>,
    pub last_ip: Option<String>,
    /// Counts by day (since the epoch, UTC, of each report's `last_at`) and
    /// outcome; `None` counts reports from before outcomes were recorded.
    /// A day with one outcome, the usual case, is one entry.
    #[serde(serialize_with = "entries")]
    pub per_day: BTreeMap<(i64, Option<Code>), u64>,
}

/// A map whose keys are not strings, as a list of `[key, value]` (JSON
/// maps take string keys only).
fn entries<K: Serialize, V: Serialize, S: serde::Serializer>(map: &BTreeMap<K, V>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(map.iter())
}

/// What a key that was never used reports.
static UNUSED: Usage = Usage { total: 0, last_used_at: None, last_ip: None, per_day: BTreeMap::new() };

impl Usage {
    /// Adds a report. Counts come from the network (replicas' reports), so
    /// they saturate rather than wrap or panic.
    pub(super) fn record(&mut self, report: &KeyAccessed) {
        self.total = self.total.saturating_add(report.count);
        let day = report.last_at.day();
        let mut add = |outcome, n: u64| {
            let count = self.per_day.entry((day, outcome)).or_default();
            *count = count.saturating_add(n);
        };
        if report.outcomes.is_empty() {
            add(None, report.count);
        }
        for (code, n) in &report.outcomes {
            add(Some(*code), *n);
        }
        if self.last_used_at.is_none_or(|t| t <= report.last_at) {
            self.last_used_at = Some(report.last_at);
            if report.last_ip.is_some() {
                self.last_ip = report.last_ip.clone();
            }
        }
    }

    /// The counts of the days `from..=to`, by day and outcome, oldest first.
    pub fn days(&self, from: i64, to: i64) -> impl Iterator<Item = (i64, Option<Code>, u64)> + '_ {
        let range = if from <= to { (from, None)..(to.saturating_add(1), None) } else { (0, None)..(0, None) };
        self.per_day.range(range).map(|(&(day, outcome), &n)| (day, outcome, n))
    }
}

/// How long before its expiry a key counts as expiring soon: a week.
pub const EXPIRING_WITHIN: i64 = 7 * 86_400;

/// One key. Kept small (a table may hold millions, and a verify at that
/// size is bound by cache misses): the fields a verify reads come first and
/// share two cache lines, ids are inline, scope and address sets are shared
/// between the keys that have the same ones, the descriptive text is one
/// allocation, and what most keys lack (a grace period, any use) is boxed.
#[derive(Clone, Debug, PartialEq)]
#[repr(C)]
pub struct Key {
    pub hash: TokenHash,
    pub id: KeyId,
    /// The status as events set it; `status_at` adds expiry by the clock.
    pub status: Status,
    /// Which of its hashes are of legacy secrets (in the legacy index).
    pub(super) legacy: Legacy,
    pub expires_at: Option<Timestamp>,
    pub org: OrgId,
    /// The key's own scopes; `Table::effective_scopes` adds its roles'.
    pub scopes: Arc<[Scope]>,
    pub allowed_cidrs: Arc<[Cidr]>,
    /// The slots of its roles in the table (most keys have none).
    pub(super) roles: Box<[u32]>,
    /// What few keys have (a grace period, metadata), in one box.
    pub(super) rare: Option<Box<Rare>>,
    pub(super) text: Text,
    /// Shared: the same few actors create most keys.
    pub created_by: Arc<Actor>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: Seq,
    pub(super) usage: Option<Box<Usage>>,
}

/// What few keys have, boxed together so that the others pay one null
/// pointer for all of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Rare {
    /// The previous secret's hash and the instant it stops working, after a
    /// rotation with a grace period.
    pub(super) grace: Option<(TokenHash, Timestamp)>,
    /// What the org attached to the key; shared with every verify answer.
    pub(super) meta: Option<Meta>,
}

impl Rare {
    /// `rare` with `change` made to it, or none when nothing is left.
    pub(super) fn with(rare: Option<Box<Rare>>, change: impl FnOnce(&mut Rare)) -> Option<Box<Rare>> {
        let mut rare = rare.unwrap_or_default();
        change(&mut rare);
        (*rare != Rare::default()).then_some(rare)
    }
}

/// Which of a key's secrets are legacy ones, imported rather than issued by
/// keyreg: their hashes live in the table's legacy index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Legacy {
    pub(super) current: bool,
    /// The previous secret, while a rotation's grace period lasts.
    pub(super) grace: bool,
}

/// A key's name, description, owner and display prefix, in one allocation:
/// each of the first three after its length in bytes (LEB128), the display
/// prefix last. Sixteen bytes in the key, and one small block on the heap.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Text(pub(super) Box<[u8]>);

impl Text {
    pub(super) fn new(name: &str, description: &str, owner: &str, display_prefix: &str) -> Text {
        let mut all = Vec::with_capacity(name.len() + description.len() + owner.len() + display_prefix.len() + 6);
        for part in [name, description, owner] {
            let mut len = part.len();
            while len >= 0x80 {
                all.push(len as u8 | 0x80);
                len >>= 7;
            }
            all.push(len as u8);
            all.extend_from_slice(part.as_bytes());
        }
        all.extend_from_slice(display_prefix.as_bytes());
        Text(all.into_boxed_slice())
    }

    /// Part `i`: 0 name, 1 description, 2 owner, 3 display prefix.
    fn part(&self, i: usize) -> &str {
        let mut rest = &self.0[..];
        for _ in 0..i {
            rest = Text::split_first_part(rest).1;
        }
        let part = if i < 3 { Text::split_first_part(rest).0 } else { rest };
        // Built from `&str`s only, so every part is UTF-8.
        std::str::from_utf8(part).unwrap_or_default()
    }

    /// A length-prefixed part and what follows it.
    fn split_first_part(mut bytes: &[u8]) -> (&[u8], &[u8]) {
        let (mut len, mut shift) = (0usize, 0);
        while let Some((&b, tail)) = bytes.split_first() {
            bytes = tail;
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        bytes.split_at(len.min(bytes.len()))
    }
}

impl Key {
    pub fn name(&self) -> &str {
        self.text.part(0)
    }

    pub fn description(&self) -> &str {
        self.text.part(1)
    }

    pub fn owner(&self) -> &str {
        self.text.part(2)
    }

    pub fn display_prefix(&self) -> &str {
        self.text.part(3)
    }

    pub fn usage(&self) -> &Usage {
        self.usage.as_deref().unwrap_or(&UNUSED)
    }

    /// The previous secret's hash and when it stops working, during a grace period.
    pub fn grace(&self) -> Option<(TokenHash, Timestamp)> {
        self.rare.as_ref().and_then(|r| r.grace)
    }

    /// What the org attached to the key.
    pub fn meta(&self) -> Option<&Meta> {
        self.rare.as_ref().and_then(|r| r.meta.as_ref())
    }

    /// The status at `now`: an active or disabled key whose `expires_at` has
    /// passed is expired, whether or not `key.expired` was written yet.
    pub fn status_at(&self, now: Timestamp) -> Status {
        match self.status {
            Status::Active | Status::Disabled if self.expires_at.is_some_and(|e| e <= now) => Status::Expired,
            s => s,
        }
    }

    /// Whether it still works, or could again, and expires within
    /// `EXPIRING_WITHIN` of `now`: the keys people are warned about.
    pub fn expiring_soon(&self, now: Timestamp) -> bool {
        matches!(self.status_at(now), Status::Active | Status::Disabled)
            && self.expires_at.is_some_and(|at| at <= now.plus_seconds(EXPIRING_WITHIN))
    }

    /// Whether its current secret is a legacy one (imported, not in
    /// keyreg's format). Rotating gives it a keyreg secret.
    pub fn is_legacy(&self) -> bool {
        self.legacy.current
    }

    /// How many roles the key holds (`Table::roles_of_key` names them).
    pub fn role_count(&self) -> usize {
        self.roles.len()
    }

    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        cidr::allows(&self.allowed_cidrs, ip)
    }
}

impl Table {
    /// The public view of a key at `now`: everything but its hashes, with its
    /// roles and effective scopes as this table holds them.
    pub fn view<'a>(&'a self, key: &'a Key, now: Timestamp) -> KeyView<'a> {
        KeyView {
            id: &key.id,
            org: &key.org,
            name: key.name(),
            description: key.description(),
            owner: key.owner(),
            created_by: &key.created_by,
            created_at: key.created_at,
            updated_at: key.updated_at,
            last_used_at: key.usage().last_used_at,
            expires_at: key.expires_at,
            scopes: &key.scopes,
            roles: self.role_names(key),
            effective_scopes: self.effective_scopes(key),
            allowed_cidrs: &key.allowed_cidrs,
            status: key.status_at(now),
            actions: Action::ALL.into_iter().filter(|a| a.admitted(key.status_at(now))).collect(),
            display_prefix: key.display_prefix(),
            legacy: key.legacy.current,
            meta: key.meta(),
            version: key.version,
        }
    }
}

/// A key as users see it (HTTP responses, `keyreg replay`); never a hash.
#[derive(Serialize)]
pub struct KeyView<'a> {
    pub id: &'a KeyId,
    pub org: &'a OrgId,
    pub name: &'a str,
    pub description: &'a str,
    pub owner: &'a str,
    pub created_by: &'a Actor,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub scopes: &'a [Scope],
    pub roles: Vec<&'a RoleName>,
    pub effective_scopes: Cow<'a, [Scope]>,
    pub allowed_cidrs: &'a [Cidr],
    pub status: Status,
    /// What may be done to it now.
    pub actions: Vec<Action>,
    pub display_prefix: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub legacy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<&'a Meta>,
    pub version: Seq,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_admits_its_actions() {
        let admitted = |s: Status| Action::ALL.into_iter().filter(|a| a.admitted(s)).collect::<Vec<_>>();
        use Action::*;
        assert_eq!(admitted(Status::Active), [Edit, Disable, Rotate, Revoke, Delete]);
        assert_eq!(admitted(Status::Disabled), [Edit, Enable, Rotate, Revoke, Delete]);
        assert_eq!(admitted(Status::Expired), [Revoke, Delete]);
        assert_eq!(admitted(Status::Revoked), [Delete]);
        assert_eq!(admitted(Status::Deleted), []);
    }

    #[test]
    fn a_keys_text_gives_back_each_part() {
        let long = "é".repeat(700);
        for parts in [["ci", "", "", "kr_a1B2c3"], ["", "", "", ""], [&long, "ü", &"o".repeat(128), "acme_xyzXYZ"]] {
            let text = Text::new(parts[0], parts[1], parts[2], parts[3]);
            assert_eq!([0, 1, 2, 3].map(|i| text.part(i)), parts);
        }
    }

    /// The memory budget (≤ 300 bytes per key with indexes and text, see
    /// BENCHMARKS.md) leaves about this much for the record itself.
    #[test]
    fn a_key_record_stays_small() {
        assert!(std::mem::size_of::<Key>() <= 224, "{}", std::mem::size_of::<Key>());
    }

    #[test]
    fn usage_counts_saturate_instead_of_wrapping() {
        let mut usage = Usage::default();
        let at = Timestamp::from_micros(86_400_000_000 * 3);
        let half = u64::MAX / 2 + 1;
        let report = KeyAccessed {
            count: half,
            outcomes: BTreeMap::from([(Code::Valid, half)]),
            first_at: at,
            last_at: at,
            last_ip: None,
            node: "n".into(),
            report_id: "n-1-1".into(),
        };
        usage.record(&report);
        usage.record(&report);
        assert_eq!(usage.total, u64::MAX);
        assert_eq!(usage.per_day[&(3, Some(Code::Valid))], u64::MAX);
        assert_eq!(usage.days(3, 3).map(|(_, _, n)| n).collect::<Vec<_>>(), [u64::MAX]);
        assert_eq!(usage.days(4, 9).count(), 0);
    }
}
