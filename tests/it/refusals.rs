//! A refused command changes nothing: run against a real registry on a
//! real sled dir, each kind of refusal leaves the log (its head and its
//! bytes) and the table (its digest) as they were, and they read back the
//! same after a restart.

use keyreg::domain::command::{Command, KeyEdit};
use keyreg::domain::id::{Actor, KeyId, OrgId, Seq};
use keyreg::domain::time::Clock;
use keyreg::registry::ExecError;

use crate::support::*;

#[test]
fn a_refused_command_changes_nothing_on_disk_or_in_memory() {
    let dir = tempdir();
    let (registry, _, clock) = registry_with_clock(dir.path());
    let tokens = every_event_type(&registry, &clock);
    let acme_key = {
        let p = registry.read();
        p.table.key_by_hash(&tokens[0].hash(registry.pepper()), clock.now()).map(|k| k.id).unwrap()
    };
    let unknown = KeyId::parse("key_01M81EM52K5397MXQMHK8PAG58").unwrap();
    let caller = Actor::Key(acme_key);
    let named = |name: &str| registry.new_key(&registry.format().generate(), name, "", &["read"]);
    let mut escalating = named("escalating");
    escalating.scopes = vec![keyreg::domain::scope::Scope::parse("orgs:admin").unwrap()];
    let cases: Vec<(&str, Actor, OrgId, Command)> = vec![
        ("a blank name", caller.clone(), acme(), Command::CreateKey(named("   "))),
        ("an escalation", caller.clone(), acme(), Command::CreateKey(escalating)),
        ("an unknown key", caller.clone(), acme(), Command::Revoke { id: unknown, expected: None, reason: None }),
        (
            "a stale version",
            caller.clone(),
            acme(),
            Command::EditKey { id: acme_key, expected: Some(Seq(1)), edit: KeyEdit::default() },
        ),
        (
            "a wrong confirmation",
            caller.clone(),
            acme(),
            Command::Delete { id: acme_key, confirm: "no".into(), reason: None },
        ),
        (
            "an org that exists",
            admin(),
            acme(),
            Command::CreateOrg { id: acme(), name: "Again".into(), max_keys: None, admin: named("x") },
        ),
    ];
    // Before the cases: keep the data dir closed for the export, then open.
    registry.close().unwrap();
    let before_bytes = keyreg(&["audit", "export", "--data", path_str(dir.path())]).stdout;
    let registry = reopen(dir.path(), &clock);
    let before = (registry.head().seq, registry.read().table.digest());
    for (what, actor, org, command) in cases {
        let refused = registry.execute_blocking(actor, org, command);
        assert!(matches!(refused, Err(ExecError::Refused(_))), "{what}: {refused:?}");
        let now = (registry.head().seq, registry.read().table.digest());
        assert_eq!(now, before, "{what} changed the registry");
    }
    registry.close().unwrap();
    let registry = reopen(dir.path(), &clock);
    assert_eq!((registry.head().seq, registry.read().table.digest()), before, "after a restart");
    registry.close().unwrap();
    assert_eq!(keyreg(&["audit", "export", "--data", path_str(dir.path())]).stdout, before_bytes, "the log's bytes");
}
