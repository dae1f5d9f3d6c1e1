//! Helpers shared by the integration tests: the real binary, temp dirs, a
//! registry on a manual clock, and a workload that emits every event type.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use keyreg::domain::command::{Acting, Command as Cmd, Expiry, KeyEdit, NewSecret, RoleEdit};
use keyreg::domain::event::{Catalog, CatalogAction, KeyAccessed};
use keyreg::domain::id::{Actor, KeyId, OrgId, RoleName};
use keyreg::domain::legacy;
use keyreg::domain::scope::Scope;
use keyreg::domain::time::{Clock, ManualClock, Timestamp};
use keyreg::domain::token::{Token, TokenFormat};
use keyreg::domain::verifier::Code;
use keyreg::registry::{Config, Registry};
use keyreg::store::DataDir;

pub fn keyreg_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keyreg"))
}

/// Runs `keyreg ARGS` to completion.
pub fn keyreg(args: &[&str]) -> Output {
    Command::new(keyreg_bin()).args(args).env_remove("RUST_LOG").output().expect("run keyreg")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("keyreg-test-").tempdir().expect("temp dir")
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The start of every manual clock in these tests.
pub fn t0() -> Timestamp {
    Timestamp::parse("2026-11-22T09:00:00Z").unwrap()
}

/// A registry in `dir` on a clock the test moves.
pub fn registry_with_clock(dir: &Path) -> (Registry, Token, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(t0()));
    let config = Config::new(clock.clone() as Arc<dyn Clock>, TokenFormat::default());
    let (registry, token) = Registry::init(&DataDir::new(dir), config).expect("init");
    (registry, token, clock)
}

pub fn reopen(dir: &Path, clock: &Arc<ManualClock>) -> Registry {
    let config = Config::new(clock.clone() as Arc<dyn Clock>, TokenFormat::default());
    Registry::open(&DataDir::new(dir), config).expect("reopen")
}

pub fn admin() -> Actor {
    Actor::system("test")
}

pub fn acme() -> OrgId {
    OrgId::parse("acme").unwrap()
}

/// The secret of the legacy key `every_event_type` imports.
pub const LEGACY_SECRET: &str = "sk_live_0123456789abcdefghij";

/// Runs commands that between them append every event type, and returns
/// the secrets of the keys it made.
pub fn every_event_type(registry: &Registry, clock: &ManualClock) -> Vec<Token> {
    let tokens = std::cell::RefCell::new(vec![]);
    let new_key = |name: &str, scopes: &[&str]| {
        let token = registry.format().generate();
        let key = registry.new_key(&token, name, "made by the test workload", scopes);
        tokens.borrow_mut().push(token);
        key
    };
    let run = |org: OrgId, command: Cmd| registry.execute_blocking(admin(), org, command).expect("command");
    let admin_key = new_key("acme admin", &["keys:admin", "keys:read", "audit:read", "actors:assert"]);
    let admin_key_id = admin_key.id;
    run(acme(), Cmd::CreateOrg { id: acme(), name: "Acme".into(), max_keys: Some(50), admin: admin_key });
    run(acme(), Cmd::UpdateOrg { name: Some("Acme Inc".into()), max_keys: None });
    let mut ci = new_key("ci", &["billing:*", "read@workspaces/ws-1/**"]);
    ci.expiry = Expiry::At(clock.now().plus_seconds(3600));
    let ci_id = ci.id;
    run(acme(), Cmd::CreateKey(ci));
    let edit = KeyEdit {
        description: Some("deploys".into()),
        scopes: Some(vec![keyreg::domain::scope::Scope::parse("billing:read").unwrap()]),
        allowed_cidrs: Some(vec![keyreg::domain::cidr::Cidr::parse("2001:db8::/32").unwrap()]),
        ..KeyEdit::default()
    };
    run(acme(), Cmd::EditKey { id: ci_id, expected: None, edit });
    run(acme(), Cmd::Disable { id: ci_id, expected: None });
    run(acme(), Cmd::Enable { id: ci_id, expected: None });
    let rotated = registry.format().generate();
    let secret = registry.secret_of(&rotated);
    tokens.borrow_mut().push(rotated);
    run(acme(), Cmd::Rotate { id: ci_id, expected: None, secret, grace_seconds: 30 });
    let report = KeyAccessed {
        count: 3,
        outcomes: [(Code::Valid, 2), (Code::ForbiddenScope, 1)].into(),
        first_at: clock.now(),
        last_at: clock.now(),
        last_ip: Some("2001:db8::7".into()),
        node: "registry".into(),
        report_id: "registry-1".into(),
    };
    run(acme(), Cmd::RecordAccess { id: ci_id, report });
    let doomed = new_key("doomed", &["read"]);
    let doomed_id: KeyId = doomed.id;
    run(acme(), Cmd::CreateKey(doomed));
    run(acme(), Cmd::Revoke { id: doomed_id, expected: None, reason: Some("leaked in a log".into()) });
    run(acme(), Cmd::Delete { id: doomed_id, confirm: "doomed".into(), reason: None });
    // A legacy key, imported by a person through the admin key.
    let mut imported = new_key("legacy", &["read"]);
    tokens.borrow_mut().pop();
    imported.secret = NewSecret {
        hash: legacy::hash_secret(registry.pepper(), LEGACY_SECRET),
        display_prefix: legacy::display_prefix(LEGACY_SECRET),
    };
    let person = Acting { actor: Actor::parse("user:ann@example.com").unwrap(), via: Some(admin_key_id) };
    registry.execute_blocking(person, acme(), Cmd::ImportKey(imported)).expect("import");
    let scopes = |list: &[&str]| -> Vec<Scope> { list.iter().map(|s| Scope::parse(s).unwrap()).collect() };
    let catalog = Catalog {
        actions: vec![CatalogAction { action: "billing:read".into(), description: "read invoices".into() }],
        enforce: false,
    };
    run(acme(), Cmd::SetCatalog(catalog));
    let ops = RoleName::parse("ops").unwrap();
    run(acme(), Cmd::CreateRole { name: ops.clone(), description: "operators".into(), scopes: scopes(&["compute:*"]) });
    let mut operator = new_key("operator", &[]);
    operator.roles = vec![ops.clone()];
    let operator_id = operator.id;
    run(acme(), Cmd::CreateKey(operator));
    let edit = KeyEdit { roles: Some(vec![]), scopes: Some(scopes(&["read"])), ..KeyEdit::default() };
    run(acme(), Cmd::EditKey { id: operator_id, expected: None, edit });
    let edit = KeyEdit { roles: Some(vec![ops.clone()]), ..KeyEdit::default() };
    run(acme(), Cmd::EditKey { id: operator_id, expected: None, edit });
    let edit = RoleEdit { scopes: Some(scopes(&["compute:read", "billing:read"])), ..RoleEdit::default() };
    run(acme(), Cmd::EditRole { name: ops.clone(), expected: None, edit });
    run(acme(), Cmd::DeleteRole { name: ops, expected: None, force: true });
    clock.advance_seconds(3600);
    registry.execute_blocking(Actor::system("sweeper"), acme(), Cmd::Expire { id: ci_id }).expect("expire");
    tokens.into_inner()
}

/// Copies a directory tree (a data dir as it stood, say).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Spawns a `keyreg` server process (`serve` or `verifier`) with stdout
/// piped, and reads the URL from its first line (`... listening on URL`).
pub fn spawn_listening(command: &mut std::process::Command) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = command.stdout(std::process::Stdio::piped()).spawn().expect("spawn keyreg");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_once(" listening on ").map(|(_, url)| url.trim().to_owned());
    (child, url.unwrap_or_else(|| panic!("unexpected first line {line:?}")))
}
