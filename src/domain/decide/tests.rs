//! Decision tests, as given (earlier commands) / when (a command) / then
//! (events or a refusal).
//!
//! (Over 450 lines: one case per rule and per refusal, each checking the
//! table did not change; they read best in one place.)

use super::keys::{NARROWING_BUDGET, narrows, warnings};
use super::*;
use crate::domain::cidr::Cidr;
use crate::domain::command::{Expiry, KeyEdit, NewKey, NewSecret, RoleEdit};
use crate::domain::event::{Change, KeyAccessed, KeyChange};
use crate::domain::id::{Actor, IdGenerator, KeyId, OrgId, RoleName};
use crate::domain::scope::Scope;
use crate::domain::table::Status;
use crate::domain::time::Timestamp;
use crate::domain::token::{Pepper, TokenFormat};
use crate::domain::verifier::Code;
use std::collections::BTreeMap;

const T0: i64 = 1_790_000_000_000_000;

struct World {
    table: Table,
    now: Timestamp,
    ids: IdGenerator,
    pepper: Pepper,
    org: OrgId,
    /// Who acts: keyreg itself unless a test acts as a key.
    actor: Actor,
}

fn scopes(list: &[&str]) -> Vec<Scope> {
    list.iter().map(|s| Scope::parse(s).unwrap()).collect()
}

impl World {
    /// An org `acme` (max_keys 3) with its admin key.
    fn new() -> World {
        let mut w = World {
            table: Table::default(),
            now: Timestamp::from_micros(T0),
            ids: IdGenerator::default(),
            pepper: Pepper::generate(),
            org: OrgId::parse("acme").unwrap(),
            actor: Actor::system("test"),
        };
        let admin = w.new_key("admin");
        w.ok(Command::CreateOrg { id: w.org.clone(), name: "Acme".into(), max_keys: Some(3), admin });
        w
    }

    fn new_key(&mut self, name: &str) -> NewKey {
        let token = TokenFormat::default().generate();
        NewKey {
            id: self.ids.key_id(self.now),
            secret: NewSecret { hash: token.hash(&self.pepper), display_prefix: token.display_prefix() },
            name: name.into(),
            description: String::new(),
            owner: "ops@acme.test".into(),
            scopes: scopes(&["billing:read"]),
            roles: vec![],
            allowed_cidrs: vec![],
            expiry: Expiry::Never,
            meta: None,
        }
    }

    fn ctx(&self) -> Context {
        Context { who: self.actor.clone().into(), org: self.org.clone(), now: self.now }
    }

    fn decide(&mut self, command: Command) -> Result<Decision, Refusal> {
        let ctx = self.ctx();
        let d = decide(&self.table, &ctx, &command)?;
        for event in d.events(&ctx, &mut self.ids) {
            let seq = self.table.applied().next();
            self.table.apply(seq, &event);
        }
        Ok(d)
    }

    fn run(&mut self, command: Command) -> Result<Vec<Change>, Refusal> {
        self.decide(command).map(|d| d.changes)
    }

    fn ok(&mut self, command: Command) -> Vec<&'static str> {
        let changes = self.run(command.clone()).unwrap_or_else(|e| panic!("{command:?} refused: {e}"));
        changes.iter().map(Change::type_name).collect()
    }

    fn refused(&mut self, command: Command) -> Refusal {
        let before = self.table.clone();
        let r = self.run(command.clone()).expect_err(&format!("{command:?} should be refused"));
        assert!(self.table == before, "a refused command changed the table");
        r
    }

    fn key(&mut self, name: &str) -> KeyId {
        let k = self.new_key(name);
        let id = k.id;
        self.ok(Command::CreateKey(k));
        id
    }

    fn status(&self, id: &KeyId) -> Status {
        self.table.key(id).unwrap().status_at(self.now)
    }
}

fn is_validation(r: &Refusal, field: &str) -> bool {
    matches!(r, Refusal::Validation { field: f, .. } if *f == field)
}

#[test]
fn creating_an_org_records_the_org_and_its_admin_key() {
    let w = World::new();
    let org = w.table.org(&w.org).unwrap();
    assert_eq!((org.name.as_str(), org.max_keys, org.counted_keys), ("Acme", 3, 1));
}

#[test]
fn org_creation_refusals() {
    let mut w = World::new();
    let admin = w.new_key("admin");
    let again = Command::CreateOrg { id: w.org.clone(), name: "Again".into(), max_keys: None, admin: admin.clone() };
    assert!(matches!(w.refused(again), Refusal::Conflict(_)));
    let system = Command::CreateOrg { id: OrgId::system(), name: "Sys".into(), max_keys: None, admin: admin.clone() };
    assert!(is_validation(&w.refused(system), "id"));
    let blank = Command::CreateOrg {
        id: OrgId::parse("beta").unwrap(),
        name: " ".into(),
        max_keys: None,
        admin: admin.clone(),
    };
    assert!(is_validation(&w.refused(blank), "name"));
    let zero = Command::CreateOrg { id: OrgId::parse("beta").unwrap(), name: "Beta".into(), max_keys: Some(0), admin };
    assert!(is_validation(&w.refused(zero), "max_keys"));
}

#[test]
fn updating_an_org() {
    let mut w = World::new();
    assert_eq!(w.ok(Command::UpdateOrg { name: Some("Acme Inc".into()), max_keys: Some(10) }), ["org.updated"]);
    assert_eq!(w.table.org(&w.org).unwrap().max_keys, 10);
    assert!(w.ok(Command::UpdateOrg { name: Some("Acme Inc".into()), max_keys: None }).is_empty());
    assert!(is_validation(&w.refused(Command::UpdateOrg { name: Some("x".repeat(101)), max_keys: None }), "name"));
}

#[test]
fn creating_keys_and_the_key_limit() {
    let mut w = World::new();
    let a = w.key("a");
    w.key("b");
    assert_eq!(w.status(&a), Status::Active);
    let third = w.new_key("c");
    assert_eq!(w.refused(Command::CreateKey(third.clone())), Refusal::KeyLimit { max_keys: 3 });
    // Revoked keys stop counting; expired ones still do.
    w.ok(Command::Revoke { id: a, expected: None, reason: None });
    assert_eq!(w.ok(Command::CreateKey(third)), ["key.created"]);
}

#[test]
fn key_creation_validation() {
    let mut w = World::new();
    type Spoil = Box<dyn Fn(&mut NewKey)>;
    let cases: Vec<(&str, Spoil)> = vec![
        ("name", Box::new(|k| k.name = String::new())),
        ("name", Box::new(|k| k.name = "n".repeat(101))),
        ("name", Box::new(|k| k.name = "tab\there".into())),
        ("description", Box::new(|k| k.description = "d".repeat(1001))),
        ("owner", Box::new(|k| k.owner = "o".repeat(321))),
        ("scopes", Box::new(|k| k.scopes = vec![])),
        ("scopes", Box::new(|k| k.scopes = (0..101).map(|i| Scope::parse(&format!("s:v{i}")).unwrap()).collect())),
        ("expires_at", Box::new(|k| k.expiry = Expiry::At(Timestamp::from_micros(T0)))),
        ("expires_at", Box::new(|k| k.expiry = Expiry::At(Timestamp::from_micros(T0 - 1)))),
        ("expires_in_days", Box::new(|k| k.expiry = Expiry::AfterSeconds(0))),
        ("expires_in_days", Box::new(|k| k.expiry = Expiry::AfterSeconds(i64::MAX))),
    ];
    for (field, spoil) in cases {
        let mut k = w.new_key("k");
        spoil(&mut k);
        let r = w.refused(Command::CreateKey(k));
        assert!(is_validation(&r, field), "{field}: {r:?}");
    }
    let mut edge = w.new_key(&"n".repeat(100));
    edge.description = "d".repeat(1000);
    edge.scopes = scopes(&["read", "read", "write"]);
    edge.expiry = Expiry::At(Timestamp::from_micros(T0 + 1));
    w.ok(Command::CreateKey(edge.clone()));
    assert_eq!(&*w.table.key(&edge.id).unwrap().scopes, scopes(&["read", "write"]).as_slice());
}

#[test]
fn editing_records_one_event_per_kind_of_change() {
    let mut w = World::new();
    let id = w.key("k");
    let edit = KeyEdit {
        name: Some("renamed".into()),
        scopes: Some(scopes(&["billing:*"])),
        allowed_cidrs: Some(vec![Cidr::parse("10.0.0.0/8").unwrap()]),
        ..KeyEdit::default()
    };
    assert_eq!(
        w.ok(Command::EditKey { id, expected: None, edit }),
        ["key.updated", "key.scopes_edited", "key.ips_edited"]
    );
    let key = w.table.key(&id).unwrap();
    assert_eq!((key.name(), key.version), ("renamed", Seq(6)));
    let same = KeyEdit { name: Some("renamed".into()), ..KeyEdit::default() };
    assert!(w.ok(Command::EditKey { id, expected: None, edit: same }).is_empty());
    let never = KeyEdit { expires_at: Some(None), owner: Some(String::new()), ..KeyEdit::default() };
    let changes = w.run(Command::EditKey { id, expected: None, edit: never }).unwrap();
    match &changes[..] {
        [Change::Key(_, KeyChange::Updated(u))] => assert_eq!(u.changed, ["owner"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_stale_version_is_refused() {
    let mut w = World::new();
    let id = w.key("k");
    let v = w.table.key(&id).unwrap().version;
    w.ok(Command::Disable { id, expected: Some(v) });
    let r = w.refused(Command::Enable { id, expected: Some(v) });
    assert_eq!(r, Refusal::VersionMismatch { what: "key", expected: v, actual: v.next() });
    w.ok(Command::Enable { id, expected: Some(v.next()) });
}

#[test]
fn disable_and_enable_only_from_the_other_state() {
    let mut w = World::new();
    let id = w.key("k");
    assert!(matches!(w.refused(Command::Enable { id, expected: None }), Refusal::Conflict(_)));
    assert_eq!(w.ok(Command::Disable { id, expected: None }), ["key.disabled"]);
    assert_eq!(w.status(&id), Status::Disabled);
    assert!(matches!(w.refused(Command::Disable { id, expected: None }), Refusal::Conflict(_)));
    assert_eq!(w.ok(Command::Enable { id, expected: None }), ["key.enabled"]);
    assert_eq!(w.status(&id), Status::Active);
}

#[test]
fn revocation_is_final() {
    let mut w = World::new();
    let id = w.key("k");
    assert_eq!(w.ok(Command::Revoke { id, expected: None, reason: Some("leaked".into()) }), ["key.revoked"]);
    assert!(matches!(w.refused(Command::Revoke { id, expected: None, reason: None }), Refusal::Conflict(_)));
    for command in [
        Command::Enable { id, expected: None },
        Command::Disable { id, expected: None },
        Command::EditKey { id, expected: None, edit: KeyEdit { name: Some("x".into()), ..KeyEdit::default() } },
        Command::Rotate { id, expected: None, secret: w.new_key("x").secret, grace_seconds: 0 },
    ] {
        assert!(matches!(w.refused(command), Refusal::Conflict(_)));
    }
    let reason = Command::Revoke { id: w.key("j"), expected: None, reason: Some("r".repeat(1001)) };
    assert!(is_validation(&w.refused(reason), "reason"));
}

#[test]
fn deletion_needs_the_name_and_happens_once() {
    let mut w = World::new();
    let id = w.key("prod key");
    let wrong = Command::Delete { id, confirm: "prod".into(), reason: None };
    assert!(is_validation(&w.refused(wrong), "confirm"));
    assert_eq!(w.ok(Command::Delete { id, confirm: "prod key".into(), reason: None }), ["key.deleted"]);
    assert_eq!(w.status(&id), Status::Deleted);
    assert_eq!(w.table.org(&w.org).unwrap().counted_keys, 1);
    let again = Command::Delete { id, confirm: "prod key".into(), reason: None };
    assert!(matches!(w.refused(again), Refusal::Conflict(_)));
    let revoked = w.key("old");
    w.ok(Command::Revoke { id: revoked, expected: None, reason: None });
    assert_eq!(w.ok(Command::Delete { id: revoked, confirm: "old".into(), reason: None }), ["key.deleted"]);
}

#[test]
fn bulk_revoke_is_all_or_nothing() {
    let mut w = World::new();
    let (a, b) = (w.key("a"), w.key("b"));
    let stranger = IdGenerator::default().key_id(w.now);
    let with_unknown = Command::BulkRevoke { ids: vec![a, stranger], reason: None, delete: false };
    assert!(matches!(w.refused(with_unknown), Refusal::NotFound { .. }));
    assert_eq!(w.status(&a), Status::Active);
    let twice = Command::BulkRevoke { ids: vec![a, a], reason: None, delete: false };
    assert!(is_validation(&w.refused(twice), "ids"));
    assert!(is_validation(&w.refused(Command::BulkRevoke { ids: vec![], reason: None, delete: false }), "ids"));
    let many = Command::BulkRevoke { ids: vec![a; 101], reason: None, delete: false };
    assert!(is_validation(&w.refused(many), "ids"));
    let both = Command::BulkRevoke { ids: vec![a, b], reason: None, delete: true };
    assert_eq!(w.ok(both), ["key.deleted", "key.deleted"]);
    assert_eq!((w.status(&a), w.status(&b)), (Status::Deleted, Status::Deleted));
}

#[test]
fn rotation_with_and_without_grace() {
    let mut w = World::new();
    let id = w.key("k");
    let secret = w.new_key("x").secret;
    let too_long = Command::Rotate { id, expected: None, secret: secret.clone(), grace_seconds: MAX_GRACE_SECONDS + 1 };
    assert!(is_validation(&w.refused(too_long), "grace_seconds"));
    let changes = w.run(Command::Rotate { id, expected: None, secret: secret.clone(), grace_seconds: 60 }).unwrap();
    match &changes[..] {
        [Change::Key(_, KeyChange::Rotated(r))] => {
            assert_eq!(r.previous_valid_until, Some(w.now.plus_seconds(60)));
            assert!(r.key_hash == secret.hash);
        }
        other => panic!("{other:?}"),
    }
    let secret = w.new_key("y").secret;
    let changes = w.run(Command::Rotate { id, expected: None, secret, grace_seconds: 0 }).unwrap();
    assert!(matches!(&changes[..], [Change::Key(_, KeyChange::Rotated(r))] if r.previous_valid_until.is_none()));
}

#[test]
fn expiry_is_by_the_clock_and_recorded_by_the_sweeper() {
    let mut w = World::new();
    let mut k = w.new_key("temp");
    k.expiry = Expiry::At(w.now.plus_seconds(10));
    let id = k.id;
    w.ok(Command::CreateKey(k));
    assert!(matches!(w.refused(Command::Expire { id }), Refusal::Conflict(_)));
    w.now = w.now.plus_seconds(10);
    // Expired by the clock before any event says so, and no longer editable.
    assert_eq!(w.status(&id), Status::Expired);
    let edit = Command::EditKey { id, expected: None, edit: KeyEdit { name: Some("x".into()), ..KeyEdit::default() } };
    assert!(matches!(w.refused(edit), Refusal::Conflict(_)));
    assert_eq!(w.ok(Command::Expire { id }), ["key.expired"]);
    assert!(matches!(w.refused(Command::Expire { id }), Refusal::Conflict(_)));
    assert_eq!(w.ok(Command::Revoke { id, expected: None, reason: None }), ["key.revoked"]);
}

#[test]
fn access_reports_count_but_do_not_version_the_key() {
    let mut w = World::new();
    let id = w.key("k");
    let version = w.table.key(&id).unwrap().version;
    let report = |count| KeyAccessed {
        count,
        outcomes: [(Code::Valid, count)].into_iter().filter(|(_, n)| *n > 0).collect(),
        first_at: Timestamp::from_micros(T0),
        last_at: Timestamp::from_micros(T0 + 5),
        last_ip: Some("10.0.0.1".into()),
        node: "registry".into(),
        report_id: "registry-1-1".into(),
    };
    assert_eq!(w.ok(Command::RecordAccess { id, report: report(7) }), ["key.accessed"]);
    let key = w.table.key(&id).unwrap();
    assert_eq!((key.usage().total, key.version), (7, version));
    assert_eq!(key.usage().last_used_at, Some(Timestamp::from_micros(T0 + 5)));
    assert_eq!(w.table.org(&w.org).unwrap().usage.total, 7);
    let outcomes: Vec<_> = key.usage().days(i64::MIN / 2, i64::MAX / 2).map(|(_, o, n)| (o, n)).collect();
    assert_eq!(outcomes, [(Some(Code::Valid), 7)]);
    assert!(is_validation(&w.refused(Command::RecordAccess { id, report: report(0) }), "report"));
}

#[test]
fn an_access_report_is_checked_like_any_input() {
    let mut w = World::new();
    let id = w.key("k");
    let good = KeyAccessed {
        count: 3,
        outcomes: [(Code::Valid, 2), (Code::Revoked, 1)].into(),
        first_at: w.now.plus_seconds(-60),
        last_at: w.now,
        last_ip: Some("2001:db8::1".into()),
        node: "replica-a".into(),
        report_id: "replica-a-1700-1".into(),
    };
    let bad: Vec<(&str, KeyAccessed)> = vec![
        ("a count near u64::MAX", KeyAccessed { count: u64::MAX, ..good.clone() }),
        ("a count over the cap", KeyAccessed { count: MAX_REPORT_COUNT + 1, ..good.clone() }),
        ("used in 2099", KeyAccessed { last_at: w.now.plus_seconds(70 * 365 * 86_400), ..good.clone() }),
        ("used a year ago", KeyAccessed { first_at: w.now.plus_seconds(-365 * 86_400), ..good.clone() }),
        ("times out of order", KeyAccessed { first_at: w.now, last_at: w.now.plus_seconds(-1), ..good.clone() }),
        ("an escape sequence for an address", KeyAccessed { last_ip: Some("\u{1b}[2J".into()), ..good.clone() }),
        ("HTML for an address", KeyAccessed { last_ip: Some("<b>1.2.3.4</b>".into()), ..good.clone() }),
        ("a 100 KB node name", KeyAccessed { node: "n".repeat(100_000), ..good.clone() }),
        ("a node name with a space", KeyAccessed { node: "a b".into(), ..good.clone() }),
        ("an id without a number", KeyAccessed { report_id: "whatever".into(), ..good.clone() }),
        ("a 10 KB id", KeyAccessed { report_id: format!("{}-1-1", "x".repeat(10_000)), ..good.clone() }),
        ("outcomes short of the count", KeyAccessed { outcomes: [(Code::Valid, 2)].into(), ..good.clone() }),
        (
            "outcomes over the count",
            KeyAccessed { outcomes: [(Code::Valid, u64::MAX), (Code::Expired, 2)].into(), ..good.clone() },
        ),
        (
            "an outcome counted zero times",
            KeyAccessed { outcomes: [(Code::Valid, 3), (Code::Expired, 0)].into(), ..good.clone() },
        ),
        (
            "a key that was not found",
            KeyAccessed { outcomes: [(Code::Valid, 2), (Code::NotFound, 1)].into(), ..good.clone() },
        ),
    ];
    for (what, report) in bad {
        let refusal = w.refused(Command::RecordAccess { id, report });
        assert!(is_validation(&refusal, "report") || is_validation(&refusal, "node"), "{what}: {refusal}");
    }
    assert_eq!(w.ok(Command::RecordAccess { id, report: good }), ["key.accessed"]);
}

#[test]
fn another_orgs_key_is_not_found() {
    let mut w = World::new();
    let id = w.key("k");
    let beta_admin = w.new_key("admin");
    w.ok(Command::CreateOrg {
        id: OrgId::parse("beta").unwrap(),
        name: "Beta".into(),
        max_keys: None,
        admin: beta_admin,
    });
    w.org = OrgId::parse("beta").unwrap();
    for command in [
        Command::Disable { id, expected: None },
        Command::Revoke { id, expected: None, reason: None },
        Command::Delete { id, confirm: "k".into(), reason: None },
    ] {
        assert!(matches!(w.refused(command), Refusal::NotFound { what: "key", .. }));
    }
}

#[test]
fn warnings_for_wildcards_narrowing_and_no_expiry() {
    let mut w = World::new();
    let id = w.key("k");
    let wildcard = [Cidr::parse("0.0.0.0/0").unwrap()];
    let fresh = warnings(None, &scopes(&["read"]), &wildcard, None, w.now);
    assert_eq!(fresh.len(), 2, "{fresh:?}");
    let key = w.table.key(&id).unwrap().clone();
    let quiet =
        warnings(Some((&key, &key.scopes)), &scopes(&["billing:write"]), &[], Some(w.now.plus_seconds(60)), w.now);
    assert!(quiet.is_empty(), "an unused key narrows without warning: {quiet:?}");
    let report = KeyAccessed {
        count: 1,
        outcomes: BTreeMap::new(),
        first_at: w.now,
        last_at: w.now,
        last_ip: None,
        node: "n".into(),
        report_id: "n-1-1".into(),
    };
    w.ok(Command::RecordAccess { id, report });
    let used = w.table.key(&id).unwrap().clone();
    let loud = warnings(
        Some((&used, &used.scopes)),
        &scopes(&["billing:write"]),
        &wildcard,
        Some(w.now.plus_seconds(60)),
        w.now,
    );
    assert_eq!(loud.len(), 3, "{loud:?}");
    let widened =
        warnings(Some((&used, &used.scopes)), &scopes(&["billing:*"]), &[], Some(w.now.plus_seconds(60)), w.now);
    assert!(widened.is_empty(), "{widened:?}");
}

#[test]
fn an_access_report_is_recorded_once() {
    let mut w = World::new();
    let id = w.key("k");
    let now = w.now;
    let report = |report_id: &str| Command::RecordAccess {
        id,
        report: KeyAccessed {
            count: 2,
            outcomes: [(Code::Valid, 2)].into(),
            first_at: now,
            last_at: now,
            last_ip: None,
            node: "replica-a".into(),
            report_id: report_id.into(),
        },
    };
    assert_eq!(w.ok(report("replica-a-1700-1")), ["key.accessed"]);
    assert!(matches!(w.refused(report("replica-a-1700-1")), Refusal::Conflict(_)));
    assert_eq!(w.ok(report("replica-a-1700-3")), ["key.accessed"]);
    assert!(matches!(w.refused(report("replica-a-1700-2")), Refusal::Conflict(_)), "an older number is a redelivery");
    assert_eq!(w.ok(report("replica-a-1800-1")), ["key.accessed"], "a new process starts its own numbers");
    assert_eq!(w.table.key(&id).unwrap().usage().total, 6);
}

/// `expires_in_days` is counted from the event that creates the key, so the
/// key lives exactly that long.
#[test]
fn a_relative_expiry_counts_from_the_creating_event() {
    let mut w = World::new();
    let mut k = w.new_key("thirty days");
    k.expiry = Expiry::AfterSeconds(30 * 86_400);
    let id = k.id;
    w.ok(Command::CreateKey(k));
    let key = w.table.key(&id).unwrap();
    assert_eq!(key.expires_at, Some(key.created_at.plus_seconds(30 * 86_400)));
}

/// Warnings are decided with the command, against the table it is decided on.
#[test]
fn decisions_carry_their_warnings() {
    let mut w = World::new();
    let mut k = w.new_key("open");
    k.allowed_cidrs = vec![Cidr::parse("::/0").unwrap()];
    let id = k.id;
    let created = w.decide(Command::CreateKey(k)).unwrap();
    assert_eq!(created.warnings.len(), 2, "{:?}", created.warnings);
    let rename = KeyEdit { name: Some("closed".into()), allowed_cidrs: Some(vec![]), ..KeyEdit::default() };
    let edited = w.decide(Command::EditKey { id, expected: None, edit: rename }).unwrap();
    assert_eq!(edited.warnings, ["this key never expires"]);
    let revoked = w.decide(Command::Revoke { id, expected: None, reason: None }).unwrap();
    assert!(revoked.warnings.is_empty());
}

fn role(name: &str) -> RoleName {
    RoleName::parse(name).unwrap()
}

impl World {
    /// A key with these scopes and roles.
    fn key_with(&mut self, name: &str, own: &[&str], roles: &[&str]) -> KeyId {
        let mut k = self.new_key(name);
        k.scopes = scopes(own);
        k.roles = roles.iter().map(|r| role(r)).collect();
        let id = k.id;
        self.ok(Command::CreateKey(k));
        id
    }

    fn effective(&self, id: &KeyId) -> Vec<String> {
        let key = self.table.key(id).unwrap();
        self.table.effective_scopes(key).iter().map(Scope::to_string).collect()
    }

    fn define(&mut self, name: &str, list: &[&str]) -> Vec<&'static str> {
        self.ok(Command::CreateRole { name: role(name), description: String::new(), scopes: scopes(list) })
    }
}

fn escalated(r: Refusal) -> String {
    match r {
        Refusal::Escalation { permissions } => permissions.to_string(),
        other => panic!("not an escalation: {other}"),
    }
}

#[test]
fn the_grant_rule_counts_what_a_change_adds() {
    let mut w = World::new();
    w.ok(Command::UpdateOrg { name: None, max_keys: Some(50) });
    w.define("auditor", &["audit:read"]);
    let keymaster = w.key_with("keymaster", &["keys:admin"], &[]);
    let holder = w.key_with("holder", &["audit:read", "read"], &[]);
    w.actor = Actor::Key(keymaster);
    let mut k = w.new_key("x");
    k.scopes = scopes(&["keys:*", "audit:read", "*"]);
    assert_eq!(escalated(w.refused(Command::CreateKey(k.clone()))), "keys:read, audit:read");
    k.scopes = scopes(&["*", "billing:*"]);
    k.roles = vec![role("auditor")];
    assert_eq!(escalated(w.refused(Command::CreateKey(k.clone()))), "audit:read");
    k.roles = vec![];
    assert_eq!(w.ok(Command::CreateKey(k)), ["key.created"], "wildcards grant no management permission");
    // Renaming a key that holds more than the caller is not a grant, nor is
    // keeping what it has while taking something away.
    let rename = KeyEdit { name: Some("renamed".into()), scopes: Some(scopes(&["audit:read"])), ..KeyEdit::default() };
    assert_eq!(
        w.ok(Command::EditKey { id: holder, expected: None, edit: rename }),
        ["key.updated", "key.scopes_edited"]
    );
    let give = KeyEdit { roles: Some(vec![role("auditor")]), ..KeyEdit::default() };
    let into_self = Command::EditKey { id: keymaster, expected: None, edit: give };
    assert_eq!(escalated(w.refused(into_self)), "audit:read", "a key editing itself");
    // keyreg itself may grant anything.
    w.actor = Actor::system("test");
    let give = KeyEdit { roles: Some(vec![role("auditor")]), ..KeyEdit::default() };
    assert_eq!(w.ok(Command::EditKey { id: keymaster, expected: None, edit: give }), ["key.roles_edited"]);
}

#[test]
fn rotating_hands_over_a_secret_so_it_is_under_the_grant_rule() {
    let mut w = World::new();
    w.ok(Command::UpdateOrg { name: None, max_keys: Some(50) });
    let keymaster = w.key_with("keymaster", &["keys:admin"], &[]);
    let auditor = w.key_with("auditor", &["audit:read", "read"], &[]);
    let reader = w.key_with("reader", &["read", "keys:admin"], &[]);
    w.actor = Actor::Key(keymaster);
    let rotate = |w: &mut World, id| {
        let secret = w.new_key("x").secret;
        Command::Rotate { id, expected: None, secret, grace_seconds: 2_592_000 }
    };
    let c = rotate(&mut w, auditor);
    assert_eq!(escalated(w.refused(c)), "audit:read", "a key holding more than the caller");
    let c = rotate(&mut w, reader);
    assert_eq!(w.ok(c), ["key.rotated"], "a key holding no more than the caller");
    let c = rotate(&mut w, keymaster);
    assert_eq!(w.ok(c), ["key.rotated"], "a key rotating itself");
}

#[test]
fn a_role_edit_is_one_event_that_changes_every_holder() {
    let mut w = World::new();
    assert_eq!(w.define("ci", &["deploy:run"]), ["role.created"]);
    let a = w.key_with("a", &["read"], &["ci"]);
    let b = w.key_with("b", &[], &["ci"]);
    assert_eq!(w.effective(&a), ["read", "deploy:run"]);
    let edit = RoleEdit { scopes: Some(scopes(&["deploy:run", "deploy:rollback"])), ..RoleEdit::default() };
    assert_eq!(w.ok(Command::EditRole { name: role("ci"), expected: None, edit }), ["role.updated"]);
    assert_eq!(w.effective(&b), ["deploy:run", "deploy:rollback"]);
    assert!(w.table.grants(w.table.key(&a).unwrap(), "deploy:rollback", None));
    let same = RoleEdit { scopes: Some(scopes(&["deploy:run", "deploy:rollback"])), ..RoleEdit::default() };
    assert!(w.ok(Command::EditRole { name: role("ci"), expected: None, edit: same }).is_empty());
    let stale = Command::EditRole { name: role("ci"), expected: Some(Seq(1)), edit: RoleEdit::default() };
    assert!(matches!(w.refused(stale), Refusal::VersionMismatch { what: "role", .. }));
    let in_use = Command::DeleteRole { name: role("ci"), expected: None, force: false };
    assert_eq!(w.refused(in_use), Refusal::RoleInUse { role: role("ci"), keys: 2 });
    let d = w.decide(Command::DeleteRole { name: role("ci"), expected: None, force: true }).unwrap();
    assert!(d.warnings.iter().any(|w| w.contains("grant nothing") && w.contains(b.as_str())), "{:?}", d.warnings);
    assert_eq!((w.effective(&a), w.effective(&b).len()), (vec!["read".to_owned()], 0));
    // A new role of the same name is not the old one: nobody holds it.
    w.define("ci", &["admin"]);
    assert_eq!(w.effective(&a), ["read"]);
}

#[test]
fn role_and_key_refusals() {
    let mut w = World::new();
    w.define("ci", &["deploy:run"]);
    let mut k = w.new_key("nothing");
    k.scopes = vec![];
    assert!(is_validation(&w.refused(Command::CreateKey(k.clone())), "scopes"));
    k.roles = vec![role("ghost")];
    assert!(is_validation(&w.refused(Command::CreateKey(k)), "roles"));
    let empty = Command::CreateRole { name: role("empty"), description: String::new(), scopes: vec![] };
    assert!(is_validation(&w.refused(empty), "scopes"));
    assert!(matches!(
        w.refused(Command::CreateRole { name: role("ci"), description: String::new(), scopes: scopes(&["read"]) }),
        Refusal::Conflict(_)
    ));
    let missing = Command::EditRole { name: role("ghost"), expected: None, edit: RoleEdit::default() };
    assert!(matches!(w.refused(missing), Refusal::NotFound { what: "role", .. }));
}

#[test]
fn max_keys_is_the_operators() {
    let mut w = World::new();
    let admin = w.key_with("tenant admin", &["keys:admin", "orgs:admin"], &[]);
    w.actor = Actor::Key(admin);
    let raise = Command::UpdateOrg { name: None, max_keys: Some(1_000_000) };
    assert!(matches!(w.refused(raise), Refusal::Forbidden(_)), "orgs:admin in a tenant is no operator");
    let same = Command::UpdateOrg { name: None, max_keys: Some(3) };
    assert!(matches!(w.refused(same), Refusal::Forbidden(_)), "a tenant does not name max_keys at all");
    assert_eq!(w.ok(Command::UpdateOrg { name: Some("Acme 2".into()), max_keys: None }), ["org.updated"]);
    // Nor another org's settings, nor a new org: the operator's, in decide.
    let beta_admin = w.new_key("beta admin");
    let beta = Command::CreateOrg {
        id: OrgId::parse("beta").unwrap(),
        name: "Beta".into(),
        max_keys: None,
        admin: beta_admin,
    };
    assert!(matches!(w.refused(beta.clone()), Refusal::Forbidden(_)), "a tenant key creating an org");
    w.actor = Actor::system("operator");
    w.ok(beta);
    w.actor = Actor::Key(admin);
    w.org = OrgId::parse("beta").unwrap();
    let rename = Command::UpdateOrg { name: Some("Mine now".into()), max_keys: None };
    assert!(matches!(w.refused(rename), Refusal::Forbidden(_)), "a tenant key renaming another org");
    w.org = OrgId::parse("acme").unwrap();
    w.actor = Actor::system("operator");
    let d = w.decide(Command::UpdateOrg { name: None, max_keys: Some(1) }).unwrap();
    assert!(d.warnings[0].contains("more than max_keys 1"), "{:?}", d.warnings);
    let k = w.new_key("over");
    assert_eq!(w.refused(Command::CreateKey(k)), Refusal::KeyLimit { max_keys: 1 });
}

/// A key imported with a legacy secret's hash: found only through the
/// legacy index, refused a second time anywhere, and moved to keyreg's
/// index by a rotation.
#[test]
fn a_legacy_secret_names_one_key() {
    let mut w = World::new();
    let hash = crate::domain::legacy::hash_secret(&w.pepper, "sk_live_0123456789abcdef");
    let mut imported = w.new_key("legacy");
    imported.secret = NewSecret { hash, display_prefix: "sk_liv".into() };
    let id = imported.id;
    assert_eq!(w.ok(Command::ImportKey(imported)), ["key.imported"]);
    assert!(w.table.has_legacy() && w.table.key(&id).unwrap().is_legacy());
    assert_eq!(w.table.key_by_legacy_hash(&hash, w.now).map(|k| k.id), Some(id));
    assert!(w.table.key_by_hash(&hash, w.now).is_none(), "a legacy hash is not in keyreg's index");

    w.org = OrgId::parse("other").unwrap();
    let mut again = w.new_key("again");
    again.secret = NewSecret { hash, display_prefix: "sk_liv".into() };
    w.org = OrgId::parse("acme").unwrap();
    assert!(matches!(w.refused(Command::ImportKey(again)), Refusal::Conflict(_)));

    let fresh = TokenFormat::default().generate();
    let secret = NewSecret { hash: fresh.hash(&w.pepper), display_prefix: fresh.display_prefix() };
    w.ok(Command::Rotate { id, expected: None, secret, grace_seconds: 0 });
    assert!(!w.table.key(&id).unwrap().is_legacy());
    assert!(w.table.key_by_legacy_hash(&hash, w.now).is_none(), "no grace: the legacy secret is gone at once");
    assert_eq!(w.table.key_by_hash(&fresh.hash(&w.pepper), w.now).map(|k| k.id), Some(id));
    assert!(!w.table.has_legacy(), "no legacy secret left: tokens not in keyreg's format need no lookup again");
}

#[test]
fn a_legacy_secret_rotated_away_is_free_once_its_grace_has_ended() {
    let mut w = World::new();
    let hash = crate::domain::legacy::hash_secret(&w.pepper, "sk_live_0123456789abcdef");
    let mut imported = w.new_key("legacy");
    imported.secret = NewSecret { hash, display_prefix: "sk_".into() };
    let id = imported.id;
    w.ok(Command::ImportKey(imported));
    let fresh = TokenFormat::default().generate();
    let secret = NewSecret { hash: fresh.hash(&w.pepper), display_prefix: fresh.display_prefix() };
    w.ok(Command::Rotate { id, expected: None, secret, grace_seconds: 60 });
    let again = |w: &mut World| {
        let mut k = w.new_key("again");
        k.secret = NewSecret { hash, display_prefix: "sk_".into() };
        k
    };
    let during = again(&mut w);
    assert!(matches!(w.refused(Command::ImportKey(during)), Refusal::Conflict(_)), "during the grace");
    w.now = w.now.plus_seconds(61);
    let after = again(&mut w);
    let new_id = after.id;
    assert_eq!(w.ok(Command::ImportKey(after)), ["key.imported"], "after the grace");
    assert_eq!(w.table.key_by_legacy_hash(&hash, w.now).map(|k| k.id), Some(new_id), "the secret names the new key");
    assert!(w.table.key(&id).unwrap().grace().is_none(), "the old key let go of it");
    // Rotating the old key again touches nothing of the new one's.
    let fresh = TokenFormat::default().generate();
    let secret = NewSecret { hash: fresh.hash(&w.pepper), display_prefix: fresh.display_prefix() };
    w.ok(Command::Rotate { id, expected: None, secret, grace_seconds: 0 });
    assert_eq!(w.table.key_by_legacy_hash(&hash, w.now).map(|k| k.id), Some(new_id));
}

#[test]
fn offboarding_revokes_the_owners_live_keys_only() {
    let mut w = World::new();
    let own = |w: &mut World, name: &str, owner: &str| {
        let mut k = w.new_key(name);
        k.owner = owner.into();
        let id = k.id;
        w.ok(Command::CreateKey(k));
        id
    };
    let a = own(&mut w, "a", "ann@acme.test");
    let gone = own(&mut w, "b", "ann@acme.test");
    w.ok(Command::Revoke { id: gone, expected: None, reason: None });
    let other = w.key("c");
    let d = w.decide(Command::Offboard { owner: "ann@acme.test".into(), reason: Some("left".into()) }).unwrap();
    let revoked: Vec<KeyId> = d
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Key(id, KeyChange::Revoked(_)) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!((revoked, d.changes.len()), (vec![a], 1));
    assert_eq!((w.status(&a), w.status(&other)), (Status::Revoked, Status::Active));
    assert!(w.decide(Command::Offboard { owner: "ann@acme.test".into(), reason: None }).unwrap().changes.is_empty());
    assert!(is_validation(&w.refused(Command::Offboard { owner: "  ".into(), reason: None }), "owner"));
}

#[test]
fn recovery_grants_the_full_management_set_whatever_the_first_key_holds_now() {
    let mut w = World::new();
    let mut first = w.new_key("init");
    first.scopes = Permissions::ALL.scopes();
    let first_id = first.id;
    w.table = Table::default();
    let fingerprint = w.pepper.fingerprint();
    w.ok(Command::Init { admin: first, pepper: fingerprint });
    w.org = OrgId::system();
    // A keys:admin key narrowed the first key since.
    let narrow = KeyEdit { scopes: Some(scopes(&["keys:read"])), ..KeyEdit::default() };
    w.ok(Command::EditKey { id: first_id, expected: None, edit: narrow });
    let mut recovered = w.new_key("recovery");
    recovered.scopes = scopes(&["*"]);
    let id = recovered.id;
    w.actor = Actor::system("recovery");
    assert_eq!(w.ok(Command::Recover(recovered)), ["key.created"]);
    let key = w.table.key(&id).unwrap();
    assert_eq!((&key.org, &key.scopes[..]), (&OrgId::system(), &Permissions::ALL.scopes()[..]));
    assert_eq!(*key.created_by, Actor::system("recovery"));
    let mut empty = World::new();
    empty.table = Table::default();
    let lost = empty.new_key("x");
    assert!(matches!(empty.refused(Command::Recover(lost)), Refusal::Conflict(_)));
}

#[test]
fn the_narrowing_check_spends_a_bounded_budget_and_errs_towards_warning() {
    let many: Vec<Scope> = (0..3000).map(|i| Scope::parse(&format!("svc:verb{i}@ws/{i}/**")).unwrap()).collect();
    let mut budget = NARROWING_BUDGET;
    assert!(narrows(&many, &many, &mut budget), "out of budget, it says it may narrow");
    assert_eq!(budget, 0);
    let mut budget = NARROWING_BUDGET;
    assert!(!narrows(&many[..100], &many[..100], &mut budget), "within budget, the exact answer");
    assert!(narrows(&many[..100], &many[1..100], &mut budget));
    assert!(budget > 0);
}
