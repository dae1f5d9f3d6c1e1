//! Property tests over the real log: any sequence of commands, once applied,
//! replays from the log to the same table, and the table "as of" any time
//! equals the table that was live then; with roles, every fold holds the
//! same effective scopes, now and at every past time; and one key's past,
//! from its own history alone, is what the whole table said of it, as is
//! every page of a past listing and an org's past roles.

use std::collections::BTreeMap;

use keyreg::domain::command::{Command, Expiry, KeyEdit, NewSecret, RoleEdit};
use keyreg::domain::event::KeyAccessed;
use keyreg::domain::history::History;
use keyreg::domain::id::OrgId;
use keyreg::domain::id::{Actor, KeyId, RoleName, Seq};
use keyreg::domain::legacy;
use keyreg::domain::scope::Scope;
use keyreg::domain::table::{Key, Status, Table};
use keyreg::domain::time::{Clock, ManualClock, Timestamp};
use keyreg::registry::Registry;
use proptest::prelude::*;

use crate::support::*;

#[derive(Clone, Debug)]
pub enum Op {
    Create {
        scopes: usize,
        expires_in: Option<i64>,
    },
    Rename(usize),
    EditScopes(usize, usize),
    EditCidrs(usize, bool),
    Disable(usize),
    Enable(usize),
    Revoke(usize),
    Delete(usize, bool),
    Rotate(usize, u64),
    Expire(usize),
    Access(usize, u64),
    /// Import a key with the legacy secret `LEGACY[i]` (a repeat is refused).
    Import(usize),
    Offboard(usize),
    Wait(i64),
}

const LEGACY: &[&str] = &["sk_live_property_0001", "sk_live_property_0002", "ghp_property_secret_3"];
const OWNERS: &[&str] = &["ann@example.com", "bob@example.com"];

const SCOPE_SETS: &[&[&str]] = &[&["read"], &["billing:*"], &["read@ws/1/**", "write@ws/1/*"], &["*"]];

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..SCOPE_SETS.len(), proptest::option::of(1i64..20)).prop_map(|(scopes, expires_in)| Op::Create { scopes, expires_in }),
        1 => any::<usize>().prop_map(Op::Rename),
        1 => (any::<usize>(), 0..SCOPE_SETS.len()).prop_map(|(k, s)| Op::EditScopes(k, s)),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(k, b)| Op::EditCidrs(k, b)),
        1 => any::<usize>().prop_map(Op::Disable),
        1 => any::<usize>().prop_map(Op::Enable),
        1 => any::<usize>().prop_map(Op::Revoke),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(k, b)| Op::Delete(k, b)),
        1 => (any::<usize>(), 0u64..5).prop_map(|(k, g)| Op::Rotate(k, g)),
        1 => any::<usize>().prop_map(Op::Expire),
        1 => (any::<usize>(), 1u64..100).prop_map(|(k, n)| Op::Access(k, n)),
        1 => (0..LEGACY.len()).prop_map(Op::Import),
        1 => (0..OWNERS.len()).prop_map(Op::Offboard),
        2 => (0i64..4).prop_map(Op::Wait),
    ]
}

fn command(op: &Op, keys: &[(KeyId, String)], registry: &Registry, now: Timestamp) -> Option<Command> {
    let pick = |i: &usize| keys.get(i % keys.len().max(1)).cloned();
    Some(match op {
        Op::Create { scopes, expires_in } => {
            let token = registry.format().generate();
            let mut key = registry.new_key(&token, &format!("key {}", keys.len()), "", SCOPE_SETS[*scopes]);
            key.expiry = expires_in.map_or(Expiry::Never, |s| Expiry::At(now.plus_seconds(s)));
            key.owner = OWNERS[keys.len() % OWNERS.len()].into();
            Command::CreateKey(key)
        }
        Op::Import(i) => {
            let mut key =
                registry.new_key(&registry.format().generate(), &format!("key {}", keys.len()), "", &["read"]);
            key.owner = OWNERS[keys.len() % OWNERS.len()].into();
            key.secret = NewSecret {
                hash: legacy::hash_secret(registry.pepper(), LEGACY[*i]),
                display_prefix: legacy::display_prefix(LEGACY[*i]),
            };
            Command::ImportKey(key)
        }
        Op::Offboard(o) => Command::Offboard { owner: OWNERS[*o].into(), reason: None },
        Op::Rename(i) => {
            let (id, name) = pick(i)?;
            let edit = KeyEdit { name: Some(format!("{name}'")), ..KeyEdit::default() };
            Command::EditKey { id, expected: None, edit }
        }
        Op::EditScopes(i, s) => {
            let scopes = SCOPE_SETS[*s].iter().map(|s| Scope::parse(s).unwrap()).collect();
            Command::EditKey {
                id: pick(i)?.0,
                expected: None,
                edit: KeyEdit { scopes: Some(scopes), ..KeyEdit::default() },
            }
        }
        Op::EditCidrs(i, some) => {
            let cidrs = if *some { vec![keyreg::domain::cidr::Cidr::parse("10.0.0.0/8").unwrap()] } else { vec![] };
            Command::EditKey {
                id: pick(i)?.0,
                expected: None,
                edit: KeyEdit { allowed_cidrs: Some(cidrs), ..KeyEdit::default() },
            }
        }
        Op::Disable(i) => Command::Disable { id: pick(i)?.0, expected: None },
        Op::Enable(i) => Command::Enable { id: pick(i)?.0, expected: None },
        Op::Revoke(i) => Command::Revoke { id: pick(i)?.0, expected: None, reason: Some("property".into()) },
        Op::Delete(i, right) => {
            let (id, name) = pick(i)?;
            let current = registry.read().table.key(&id).map(|k| k.name().to_owned()).unwrap_or(name);
            Command::Delete { id, confirm: if *right { current } else { "wrong".into() }, reason: None }
        }
        Op::Rotate(i, grace) => {
            let token = registry.format().generate();
            Command::Rotate {
                id: pick(i)?.0,
                expected: None,
                secret: registry.secret_of(&token),
                grace_seconds: *grace,
            }
        }
        Op::Expire(i) => Command::Expire { id: pick(i)?.0 },
        Op::Access(i, n) => Command::RecordAccess {
            id: pick(i)?.0,
            report: KeyAccessed {
                count: *n,
                outcomes: Default::default(),
                first_at: now,
                last_at: now,
                last_ip: None,
                node: "prop".into(),
                report_id: format!("{now}"),
            },
        },
        Op::Wait(_) => return None,
    })
}

/// The org the random commands act in (at most 12 live keys), with its
/// admin key.
pub fn create_acme(registry: &Registry) {
    let admin_key = registry.new_key(&registry.format().generate(), "admin", "", &["keys:admin"]);
    let command = Command::CreateOrg { id: acme(), name: "Acme".into(), max_keys: Some(12), admin: admin_key };
    registry.execute_blocking(admin(), acme(), command).unwrap();
}

/// Runs one random op in acme: a wait moves the clock, anything else is a
/// command, refused or not; the keys it makes join `keys`. False when no
/// command was tried.
pub fn run(op: &Op, keys: &mut Vec<(KeyId, String)>, registry: &Registry, clock: &ManualClock) -> bool {
    if let Op::Wait(s) = op {
        clock.advance_seconds(*s);
        return false;
    }
    let Some(command) = command(op, keys, registry, clock.now()) else { return false };
    let created = match &command {
        Command::CreateKey(k) | Command::ImportKey(k) => Some((k.id, k.name.clone())),
        _ => None,
    };
    let actor = if matches!(op, Op::Expire(_)) { Actor::system("sweeper") } else { admin() };
    if registry.execute_blocking(actor, acme(), command).is_ok() {
        keys.extend(created);
    }
    true
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn replay_equals_the_live_table_now_and_at_every_past_time(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempdir();
        let (registry, _, clock) = registry_with_clock(dir.path());
        create_acme(&registry);
        let mut keys: Vec<(KeyId, String)> = vec![];
        // The live table after the last command at each clock time.
        let mut live: BTreeMap<Timestamp, Table> = BTreeMap::new();
        for op in &ops {
            if !run(op, &mut keys, &registry, &clock) {
                continue;
            }
            live.insert(clock.now(), registry.read().table.clone());
        }
        let final_table = registry.read().table.clone();
        for (t, table) in &live {
            prop_assert!(registry.table_as_of(*t).unwrap() == *table, "as of {}", t);
            // One key's past, from its own history alone, reads as the whole table's.
            for key in table.all_keys() {
                let alone = registry.key_as_of(&key.org, &key.id, *t).unwrap();
                let view = |table: &Table, k| serde_json::to_value(table.view(k, *t)).unwrap();
                let own = alone.key(&key.id);
                prop_assert!(own.is_some_and(|k| view(&alone, k) == view(table, key)), "{} as of {}", key.id, t);
            }
            // A past listing, from the listed keys' histories alone, pages
            // through what the whole table lists, whatever the filter.
            for status in [None, Some(Status::Active), Some(Status::Revoked), Some(Status::Deleted)] {
                for limit in [1, 2, 5] {
                    let wanted = |k: &Key| status.is_none_or(|st| k.status_at(*t) == st);
                    let mut cursor = None;
                    loop {
                        let (expected, next) = listing(table, &acme(), cursor, limit, wanted, *t);
                        let page = registry.page_as_of(&acme(), *t, cursor, limit, wanted).unwrap();
                        prop_assert_eq!(listing(&page, &acme(), cursor, limit, wanted, *t), (expected, next));
                        match next {
                            Some(n) => cursor = Some(n),
                            None => break,
                        }
                    }
                }
            }
            let org = registry.org_as_of(&acme(), *t).unwrap();
            prop_assert!(org.roles_of(&acme()) == table.roles_of(&acme()), "roles as of {}", t);
            prop_assert!(org.org(&acme()) == table.org(&acme()), "the org as of {}", t);
            let roles = registry.roles_as_of(&acme(), *t).unwrap();
            prop_assert!(roles.roles_of(&acme()) == table.roles_of(&acme()), "roles alone as of {}", t);
            // Half a second later nothing had changed yet.
            let between = Timestamp::from_micros(t.micros() + 500_000);
            if live.range(between..).next().is_none_or(|(next, _)| *next > between) {
                prop_assert!(registry.table_as_of(between).unwrap() == *table, "as of {}", between);
            }
        }
        prop_assert!(registry.table_as_of(t0().plus_seconds(-1)).unwrap() == Table::default());
        registry.close().unwrap();
        let reopened = reopen(dir.path(), &clock);
        prop_assert!(reopened.read().table == final_table);
    }
}

/// A listing's page as `GET /v1/keys` makes it: the views of up to
/// `limit` keys below `before` that `wanted` keeps, and the next cursor.
fn listing(
    table: &Table,
    org: &OrgId,
    before: Option<KeyId>,
    limit: usize,
    wanted: impl Fn(&Key) -> bool,
    at: Timestamp,
) -> (Vec<serde_json::Value>, Option<KeyId>) {
    let mut matching = table.keys_of(org, before.as_ref()).filter(|k| wanted(k));
    let page: Vec<&Key> = matching.by_ref().take(limit).collect();
    let next = matching.next().and(page.last().map(|k| k.id));
    (page.into_iter().map(|k| serde_json::to_value(table.view(k, at)).unwrap()).collect(), next)
}

#[derive(Clone, Debug)]
enum RoleOp {
    /// Create the role, or set its scopes when it exists.
    Define(usize, usize),
    Delete(usize),
    /// A new key with these roles (a bit per role) and maybe scopes of its own.
    CreateKey(u8, bool),
    /// Give a key exactly these roles.
    Give(usize, u8),
    Wait(i64),
}

const ROLE_NAMES: [&str; 3] = ["ops", "ci", "audit.viewer"];
const ROLE_SCOPES: &[&[&str]] =
    &[&["read"], &["deploy:run", "read@ws/**"], &["audit:read"], &["*:list*"], &["billing:*", "read"]];

fn role_op() -> impl Strategy<Value = RoleOp> {
    prop_oneof![
        3 => (0..ROLE_NAMES.len(), 0..ROLE_SCOPES.len()).prop_map(|(r, s)| RoleOp::Define(r, s)),
        1 => (0..ROLE_NAMES.len()).prop_map(RoleOp::Delete),
        2 => (0u8..8, any::<bool>()).prop_map(|(m, own)| RoleOp::CreateKey(m, own)),
        3 => (any::<usize>(), 0u8..8).prop_map(|(k, m)| RoleOp::Give(k, m)),
        1 => (0i64..3).prop_map(RoleOp::Wait),
    ]
}

/// Every key's roles and effective scopes.
type Grants = BTreeMap<KeyId, (Vec<String>, Vec<String>)>;

fn effective(table: &Table) -> Grants {
    table
        .all_keys()
        .into_iter()
        .map(|k| {
            let roles = table.role_names(k).iter().map(|r| r.to_string()).collect();
            let scopes = table.effective_scopes(k).iter().map(|s| s.to_string()).collect();
            (k.id, (roles, scopes))
        })
        .collect()
}

fn role_names(mask: u8) -> Vec<RoleName> {
    ROLE_NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, n)| RoleName::parse(n).unwrap())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// After random role edits, a follower folding the stored events (as a
    /// replica folds the stream) holds every key's effective scopes exactly
    /// as the registry does, and the table as of any past time holds them
    /// as they were then.
    #[test]
    fn effective_scopes_agree_on_every_fold_and_at_every_time(ops in proptest::collection::vec(role_op(), 1..40)) {
        let dir = tempdir();
        let (registry, _, clock) = registry_with_clock(dir.path());
        let admin_key = registry.new_key(&registry.format().generate(), "admin", "", &["keys:admin"]);
        registry
            .execute_blocking(admin(), acme(), Command::CreateOrg { id: acme(), name: "Acme".into(), max_keys: None, admin: admin_key })
            .unwrap();
        let mut keys: Vec<KeyId> = vec![];
        let mut then: BTreeMap<Timestamp, Grants> = BTreeMap::new();
        for op in &ops {
            let command = match op {
                RoleOp::Wait(s) => {
                    clock.advance_seconds(*s);
                    continue;
                }
                RoleOp::Define(r, s) => {
                    let name = RoleName::parse(ROLE_NAMES[*r]).unwrap();
                    let scopes: Vec<Scope> = ROLE_SCOPES[*s].iter().map(|s| Scope::parse(s).unwrap()).collect();
                    if registry.read().table.role(&acme(), &name).is_some() {
                        Command::EditRole { name, expected: None, edit: RoleEdit { scopes: Some(scopes), ..RoleEdit::default() } }
                    } else {
                        Command::CreateRole { name, description: String::new(), scopes }
                    }
                }
                RoleOp::Delete(r) => {
                    Command::DeleteRole { name: RoleName::parse(ROLE_NAMES[*r]).unwrap(), expected: None, force: true }
                }
                RoleOp::CreateKey(mask, own) => {
                    let scopes: &[&str] = if *own { &["read"] } else { &[] };
                    let mut key = registry.new_key(&registry.format().generate(), &format!("k{}", keys.len()), "", scopes);
                    key.roles = role_names(*mask);
                    keys.push(key.id);
                    Command::CreateKey(key)
                }
                RoleOp::Give(k, mask) => {
                    let Some(id) = keys.get(k % keys.len().max(1)) else { continue };
                    Command::EditKey { id: *id, expected: None, edit: KeyEdit { roles: Some(role_names(*mask)), ..KeyEdit::default() } }
                }
            };
            // Refusals (an unknown role, a key left with nothing) change nothing.
            let _ = registry.execute_blocking(admin(), acme(), command);
            then.insert(clock.now(), effective(&registry.read().table));
        }
        let live = registry.read().table.clone();
        let mut follower = History::new(Table::default());
        for record in registry.log().read(Seq(1), None) {
            let record = record.unwrap();
            prop_assert!(follower.push(record.seq, record.bytes(), Some(record.hash)).is_ok());
        }
        prop_assert_eq!(effective(follower.state()), effective(&live));
        prop_assert!(*follower.state() == live, "the follower's table differs");
        for (t, grants) in &then {
            prop_assert_eq!(&effective(&registry.table_as_of(*t).unwrap()), grants, "as of {}", t);
        }
        registry.close().unwrap();
    }
}
