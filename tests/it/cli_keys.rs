//! `keyreg keys`, `roles`, `catalog` and `presets` against a real server:
//! each subcommand, tables and JSON, and errors that exit non-zero with the
//! API's explanation.

use std::process::{Command, Output};

use serde_json::Value;

use crate::serve::*;
use crate::support::*;

fn keys(server: &Server, token: &str, args: &[&str]) -> Output {
    cli(server, token, "keys", args)
}

/// `keyreg SUBCOMMAND ARGS` against `server`, presenting `token`.
fn cli(server: &Server, token: &str, subcommand: &str, args: &[&str]) -> Output {
    Command::new(keyreg_bin())
        .arg(subcommand)
        .args(args)
        .env("KEYREG_URL", &server.url)
        .env("KEYREG_TOKEN", token)
        .output()
        .unwrap()
}

fn keys_json(server: &Server, token: &str, args: &[&str]) -> Value {
    cli_json(server, token, "keys", args)
}

fn cli_json(server: &Server, token: &str, subcommand: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = cli(server, token, subcommand, &all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_keys_subcommand_against_a_real_server() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let admin = new_org(&Api::new(&server.url), &system, "acme");

    let created = keys(
        &server,
        &admin,
        &["create", "--name", "cli", "--scope", "read", "--cidr", "::/0", "--expires-at", "2099-01-01T00:00:00Z"],
    );
    let text = stdout(&created);
    assert!(created.status.success(), "{}", stderr(&created));
    let secret_line = text.lines().find(|l| l.starts_with("SECRET (shown once")).unwrap();
    let secret = secret_line.rsplit(' ').next().unwrap();
    assert!(keyreg::domain::token::TokenFormat::default().parse(secret).is_ok());
    assert!(text.contains("warning: allowed_cidrs contains a wildcard"), "{text}");
    let id = text.lines().find(|l| l.starts_with("id ")).unwrap().split_whitespace().nth(1).unwrap().to_owned();

    let got = keys(&server, &admin, &["get", &id]);
    assert!(
        stdout(&got).lines().any(|l| l.starts_with("name ") && l.ends_with(" cli")) && !stdout(&got).contains(secret),
        "{}",
        stdout(&got)
    );
    let version = keys_json(&server, &admin, &["get", &id])["key"]["version"].as_u64().unwrap();

    let dry = keys_json(&server, &admin, &["update", &id, "--name", "renamed", "--dry-run"]);
    assert_eq!((dry["dry_run"].as_bool(), dry["key"]["name"].as_str()), (Some(true), Some("renamed")));
    assert_eq!(keys_json(&server, &admin, &["get", &id])["key"]["name"], "cli");
    let stale = keys(&server, &admin, &["update", &id, "--name", "x", "--if-match", &(version + 9).to_string()]);
    assert_eq!(stale.status.code(), Some(1));
    assert!(stderr(&stale).contains("VERSION_MISMATCH"), "{}", stderr(&stale));
    let updated = keys_json(
        &server,
        &admin,
        &[
            "update",
            &id,
            "--name",
            "renamed",
            "--any-address",
            "--expires-at",
            "never",
            "--if-match",
            &version.to_string(),
        ],
    );
    assert_eq!((updated["key"]["name"].as_str(), updated["key"]["expires_at"].is_null()), (Some("renamed"), true));
    assert_eq!(updated["key"]["allowed_cidrs"], serde_json::json!([]));

    assert_eq!(keys_json(&server, &admin, &["disable", &id])["key"]["status"], "disabled");
    assert_eq!(keys_json(&server, &admin, &["enable", &id])["key"]["status"], "active");
    let rotated = keys(&server, &admin, &["rotate", &id, "--grace-seconds", "5"]);
    assert!(stdout(&rotated).contains("SECRET (shown once"), "{}", stdout(&rotated));
    assert_eq!(keys_json(&server, &admin, &["list", "--q", "RENAMED"])["keys"][0]["id"], id.as_str());
    let wrong = keys(&server, &admin, &["delete", &id, "--confirm", "cli"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stderr(&wrong).contains("confirm"), "{}", stderr(&wrong));
    assert_eq!(keys_json(&server, &admin, &["delete", &id, "--confirm", "renamed"])["key"]["status"], "deleted");
    let table = stdout(&keys(&server, &admin, &["list", "--status", "all"]));
    assert!(table.starts_with("ID ") && table.contains("deleted"), "{table}");

    let no_token = keys(&server, "", &["list"]);
    assert!(stderr(&no_token).contains("KEYREG_TOKEN"), "{}", stderr(&no_token));
    let unreachable = Command::new(keyreg_bin())
        .args(["keys", "list", "--url", "http://127.0.0.1:9"])
        .env("KEYREG_TOKEN", &admin)
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(stderr(&unreachable).contains("cannot reach the registry"), "{}", stderr(&unreachable));
}

#[test]
fn roles_catalog_and_presets_from_the_command_line() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let admin = new_org(&Api::new(&server.url), &system, "acme");
    let ok = |sub: &str, args: &[&str]| {
        let out = cli(&server, &admin, sub, args);
        assert!(out.status.success(), "{sub} {args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let created =
        ok("roles", &["create", "ci", "--scope", "deploy:run", "--scope", "read", "--description", "pipelines"]);
    assert!(created.lines().any(|l| l.starts_with("scopes ") && l.ends_with("deploy:run read")), "{created}");
    let key = keys_json(&server, &admin, &["create", "--name", "pipeline", "--role", "ci", "--preset", "read-only"]);
    let id = key["key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(key["key"]["roles"], serde_json::json!(["ci"]));
    assert!(key["key"]["effective_scopes"].as_array().unwrap().iter().any(|s| s == "deploy:run"));
    let listed = ok("roles", &["list"]);
    assert!(listed.starts_with("ROLE") && listed.contains("ci    deploy:run read  pipelines"), "{listed}");
    let dry = cli_json(&server, &admin, "roles", &["update", "ci", "--scope", "read", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        cli_json(&server, &admin, "roles", &["get", "ci"])["role"]["scopes"],
        serde_json::json!(["deploy:run", "read"])
    );
    let in_use = cli(&server, &admin, "roles", &["delete", "ci"]);
    assert_eq!(in_use.status.code(), Some(1));
    assert!(stderr(&in_use).contains("ROLE_IN_USE"), "{}", stderr(&in_use));
    let deleted = ok("roles", &["delete", "ci", "--force"]);
    assert!(deleted.contains(&format!("deleted the role ci; taken from {id}")), "{deleted}");
    let without = keys_json(&server, &admin, &["update", &id, "--no-roles", "--scope", "read"]);
    assert_eq!(without["key"]["roles"], serde_json::json!([]));

    let listing = dir.path().join("actions.txt");
    std::fs::write(&listing, "# billing\nbilling:read   Read invoices\nbilling:export\n").unwrap();
    let set = ok("catalog", &["set", "--file", listing.to_str().unwrap(), "--enforce"]);
    assert!(set.contains("billing:read    Read invoices") && set.contains("(2 actions, enforced)"), "{set}");
    let typo = cli(&server, &admin, "keys", &["create", "--name", "x", "--scope", "biling:read"]);
    assert_eq!(typo.status.code(), Some(1));
    assert!(stderr(&typo).contains("did you mean billing:read"), "{}", stderr(&typo));
    let presets = ok("presets", &[]);
    assert!(presets.starts_with("PRESET") && presets.contains("read-only") && presets.contains("*:list*"), "{presets}");
    let escalation = cli(&server, &admin, "keys", &["create", "--name", "x", "--scope", "orgs:create"]);
    assert!(stderr(&escalation).contains("ESCALATION"), "{}", stderr(&escalation));
    server.stop();
}
