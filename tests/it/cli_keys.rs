//! The remote commands (`keys`, `roles`, `catalog`, `presets`, `org`,
//! `orgs`, `usage`, `audit log`) against a real server:
//! each subcommand, tables and JSON, and errors that exit non-zero with the
//! API's explanation.

use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::serve::*;
use crate::support::*;

fn keys(server: &Server, token: &str, args: &[&str]) -> Output {
    cli(server, token, "keys", args)
}

/// `keyreg SUBCOMMAND ARGS` against `server`, presenting `token`.
pub fn cli(server: &Server, token: &str, subcommand: &str, args: &[&str]) -> Output {
    Command::new(keyreg_bin())
        .arg(subcommand)
        .args(args)
        .env("KEYREG_URL", &server.url)
        .env("KEYREG_TOKEN", token)
        .output()
        .unwrap()
}

pub fn keys_json(server: &Server, token: &str, args: &[&str]) -> Value {
    cli_json(server, token, "keys", args)
}

pub fn cli_json(server: &Server, token: &str, subcommand: &str, args: &[&str]) -> Value {
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
    let said = stderr(&unreachable);
    assert!(said.contains("cannot reach the registry at http://127.0.0.1:9") && said.contains("KEYREG_URL"), "{said}");
    // Several nodes: one that cannot be reached is passed over, even for a
    // write (it never saw the request).
    let urls = format!("http://127.0.0.1:9,{}", server.url);
    let created = Command::new(keyreg_bin())
        .args(["keys", "create", "--name", "via-the-second", "--scope", "read", "--url", &urls])
        .env("KEYREG_TOKEN", &admin)
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(stdout(&keys(&server, &admin, &["list"])).contains("via-the-second"));
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
    assert!(stderr(&in_use).contains("1 live key holds") && stderr(&in_use).contains("--force"), "{}", stderr(&in_use));
    let deleted = ok("roles", &["delete", "ci", "--force"]);
    assert!(deleted.contains(&format!("deleted the role ci; taken from {id}")), "{deleted}");
    let without = keys_json(&server, &admin, &["update", &id, "--no-roles", "--scope", "read"]);
    assert_eq!(without["key"]["roles"], serde_json::json!([]));

    let listing = dir.path().join("actions.txt");
    let one = dir.path().join("one.txt");
    std::fs::write(&one, "billing:read\n").unwrap();
    let set = ok("catalog", &["set", "--file", one.to_str().unwrap()]);
    assert!(set.contains("(1 action, not enforced)"), "{set}");
    std::fs::write(&listing, "# billing\nbilling:read   Read invoices\nbilling:export\n").unwrap();
    let set = ok("catalog", &["set", "--file", listing.to_str().unwrap(), "--enforce"]);
    assert!(set.contains("billing:read    Read invoices") && set.contains("(2 actions, enforced)"), "{set}");
    // A new listing without --enforce or --no-enforce keeps the setting.
    let kept = ok("catalog", &["set", "--file", listing.to_str().unwrap()]);
    assert!(kept.contains("(2 actions, enforced)"), "{kept}");
    let typo = cli(&server, &admin, "keys", &["create", "--name", "x", "--scope", "biling:read"]);
    assert_eq!(typo.status.code(), Some(1));
    assert!(stderr(&typo).contains("did you mean billing:read"), "{}", stderr(&typo));
    let presets = ok("presets", &[]);
    assert!(presets.starts_with("PRESET") && presets.contains("read-only") && presets.contains("*:list*"), "{presets}");
    let escalation = cli(&server, &admin, "keys", &["create", "--name", "x", "--scope", "orgs:create"]);
    assert!(stderr(&escalation).contains("ESCALATION"), "{}", stderr(&escalation));
    server.stop();
}

/// `cli` with `input` on stdin.
fn cli_with_stdin(server: &Server, token: &str, args: &[&str], input: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(keyreg_bin())
        .args(args)
        .env("KEYREG_URL", &server.url)
        .env("KEYREG_TOKEN", token)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn succeeded(out: Output) -> String {
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// The people commands and the rest of the API from the command line: the
/// operator's `orgs`, `org`, acting for a person with `--as`, whose keys,
/// import, verify, usage charts, bulk revoke and delete, offboarding, and
/// the audit log naming the person.
#[test]
fn people_and_every_other_capability_from_the_command_line() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &["--access-flush-ms", "50"]);
    let made = succeeded(cli(&server, &system, "orgs", &["create", "acme", "--name", "Acme", "--max-keys", "20"]));
    assert!(made.contains("Acme") && made.contains("admin key"), "{made}");
    let admin = made.lines().find_map(|l| l.strip_prefix("SECRET (shown once, never again; store it now): ")).unwrap();
    let quota = cli_json(&server, &system, "orgs", &["update", "acme", "--max-keys", "30"]);
    assert_eq!(quota["org"]["max_keys"], 30);
    let refused = cli(&server, admin, "orgs", &["update", "acme", "--max-keys", "99"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("FORBIDDEN"), "{}", stderr(&refused));
    assert_eq!(cli_json(&server, admin, "org", &["update", "--name", "Acme Inc"])["org"]["name"], "Acme Inc");
    let org = succeeded(cli(&server, admin, "org", &["get"]));
    assert!(org.contains("Acme Inc") && org.contains("1 active"), "{org}");
    let orgs = succeeded(cli(&server, &system, "orgs", &["list"]));
    let acme = orgs.lines().find(|l| l.starts_with("acme ")).unwrap_or_else(|| panic!("{orgs}"));
    assert!(acme.contains("Acme Inc") && acme.contains("1 of 30"), "{orgs}");

    let as_ann = ["--as", "ann@example.com"];
    let laptop = keys_json(
        &server,
        admin,
        &[&as_ann[..], &["create", "--name", "laptop", "--owner", "ann@example.com", "--scope", "read"]].concat(),
    );
    assert_eq!(laptop["key"]["created_by"], "user:ann@example.com");
    let laptop_id = laptop["key"]["id"].as_str().unwrap().to_owned();
    let laptop_secret = laptop["secret"].as_str().unwrap().to_owned();
    let mine = succeeded(keys(&server, admin, &[&as_ann[..], &["list", "--mine"]].concat()));
    let header = mine.lines().next().unwrap();
    for column in ["CREATED BY", "CREATED", "LAST USED", "EXPIRES"] {
        assert!(header.contains(column), "{header}");
    }
    let row = mine.lines().nth(1).unwrap();
    assert!(row.contains("laptop") && row.contains("user:ann@example.com") && row.contains("just now"), "{mine}");
    assert!(row.contains("never"), "never used, never expires: {row}");
    assert_eq!(mine.lines().count(), 2, "{mine}");
    let whose = keys(&server, admin, &["list", "--mine"]);
    assert!(!whose.status.success() && stderr(&whose).contains("--as"), "{}", stderr(&whose));
    let by_ann = keys_json(&server, admin, &["list", "--created-by", "user:ann@example.com"]);
    assert_eq!(by_ann["keys"].as_array().unwrap().len(), 1);

    // Import from stdin (the secret never on the command line) or by digest.
    let legacy = "sk_live_51H8cliExampleSecret00";
    let imported = succeeded(cli_with_stdin(
        &server,
        admin,
        &["keys", "import", "--name", "old", "--owner", "ann@example.com", "--scope", "read"],
        &format!("{legacy}\n"),
    ));
    assert!(imported.lines().any(|l| l.starts_with("legacy ") && l.contains("yes")), "{imported}");
    assert!(!imported.contains(legacy));
    let digest: String =
        keyreg::domain::legacy::sha256("another-legacy-secret").iter().map(|b| format!("{b:02x}")).collect();
    let by_digest = keys_json(&server, admin, &["import", "--name", "older", "--scope", "read", "--sha256", &digest]);
    assert_eq!(by_digest["key"]["display_prefix"], "legacy");
    let empty = cli_with_stdin(&server, admin, &["keys", "import", "--name", "x", "--scope", "read"], "");
    assert!(!empty.status.success() && stderr(&empty).contains("stdin"), "{}", stderr(&empty));

    // Verify reads the key from stdin, presents none, and exits 1 unless valid.
    let valid = cli_with_stdin(&server, "", &["keys", "verify", "--action", "read"], legacy);
    assert!(valid.status.success() && stdout(&valid).contains("VALID"), "{}", stderr(&valid));
    let unknown = cli_with_stdin(&server, "", &["keys", "verify"], "sk_live_51H8cliNobodyHasThis0");
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stdout(&unknown).contains("NOT_FOUND"), "{}", stdout(&unknown));
    // Without a key on stdin it says so, naming nothing `verify` lacks.
    let nothing = cli_with_stdin(&server, "", &["keys", "verify"], "");
    assert!(!nothing.status.success() && stderr(&nothing).contains("stdin"), "{}", stderr(&nothing));
    assert!(!stderr(&nothing).contains("--sha256"), "keys verify has no --sha256: {}", stderr(&nothing));

    // Use per day, as a chart, for the key and the org (the day read on
    // both sides of the verifies, in case they straddle midnight).
    let day = || keyreg::domain::time::Clock::now(&keyreg::domain::time::SystemClock).to_string()[..10].to_owned();
    let first_day = day();
    for _ in 0..3 {
        cli_with_stdin(&server, "", &["keys", "verify"], &laptop_secret);
    }
    let used = || keys_json(&server, admin, &["usage", &laptop_id])["total"].as_u64() == Some(3);
    assert!(eventually(std::time::Duration::from_secs(10), used), "the verifies were not counted");
    let days = [first_day, day()];
    let chart = succeeded(keys(&server, admin, &["usage", &laptop_id]));
    assert!(chart.starts_with("3 verifications (3 valid)\nlast used just now"), "{chart}");
    let bar = |l: &str| days.iter().any(|d| l.starts_with(d.as_str())) && l.contains('█');
    assert!(chart.lines().any(|l| bar(l) && l.contains(" 3  ")), "{chart}");
    let org_chart = succeeded(cli(&server, admin, "usage", &["--days", "7"]));
    assert!(org_chart.starts_with("4 verifications from ") && org_chart.lines().any(bar), "{org_chart}");
    assert!(org_chart.contains("busiest keys") && org_chart.contains(&laptop_id), "{org_chart}");
    let ahead = succeeded(keys(&server, admin, &["usage", &laptop_id, "--from", "2999-01-01"]));
    assert!(ahead.starts_with("0 verifications since 2999-01-01\n"), "{ahead}");
    let both = keys(&server, admin, &["usage", &laptop_id, "--days", "1", "--from", "2026-01-01"]);
    assert!(!both.status.success() && stderr(&both).contains("--days"), "{}", stderr(&both));
    let backwards = keys(&server, admin, &["usage", &laptop_id, "--from", "2026-02-01", "--to", "2026-01-01"]);
    assert!(
        !backwards.status.success() && stderr(&backwards).contains("from must not be after to"),
        "{}",
        stderr(&backwards)
    );

    // Metadata from the command line, inline or from a file; a mistake is
    // named by its flag and sends nothing.
    let meta_file = std::env::temp_dir().join(format!("keyreg-meta-{}.json", std::process::id()));
    std::fs::write(&meta_file, r#"{"plan": "team", "seats": 5}"#).unwrap();
    let inline =
        keys_json(&server, admin, &["create", "--name", "m1", "--scope", "read", "--meta", r#"{"plan":"pro"}"#]);
    assert_eq!(inline["key"]["meta"], json!({"plan": "pro"}));
    let from_file =
        keys_json(&server, admin, &["create", "--name", "m2", "--scope", "read", "--meta-file", path_str(&meta_file)]);
    assert_eq!(from_file["key"]["meta"], json!({"plan": "team", "seats": 5}));
    let m1 = inline["key"]["id"].as_str().unwrap().to_owned();
    let cleared = keys_json(&server, admin, &["update", &m1, "--no-meta"]);
    assert!(cleared["key"].get("meta").is_none(), "{cleared}");
    for (bad, says) in [("nope", "--meta is not JSON"), ("[1]", "--meta must be a JSON object")] {
        let refused = keys(&server, admin, &["create", "--name", "m3", "--scope", "read", "--meta", bad]);
        assert!(!refused.status.success() && stderr(&refused).contains(says), "{}", stderr(&refused));
    }
    let _ = std::fs::remove_file(&meta_file);

    // Many at once: bulk revoke, bulk delete, offboarding.
    let ids: Vec<String> = (0..3)
        .map(|i| {
            let name = format!("batch{i}");
            keys_json(&server, admin, &["create", "--name", &name, "--scope", "read"])["key"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let revoked = succeeded(keys(&server, admin, &["bulk-revoke", &ids[0], &ids[1], "--reason", "cleanup"]));
    assert_eq!(revoked.matches("revoked").count(), 2, "{revoked}");
    let deleted = keys_json(&server, admin, &["bulk-delete", &ids[2]]);
    assert_eq!(deleted["keys"][0]["status"], "deleted");
    let offboarded = succeeded(keys(&server, admin, &["offboard", "ann@example.com", "--reason", "left"]));
    assert!(offboarded.starts_with("revoked 2 keys of ann@example.com"), "{offboarded}");
    assert!(offboarded.contains(&laptop_id), "{offboarded}");
    keys_json(&server, admin, &["create", "--name", "bob's", "--scope", "read", "--owner", "bob@example.com"]);
    let one = succeeded(keys(&server, admin, &["offboard", "bob@example.com"]));
    assert!(one.starts_with("revoked 1 key of bob@example.com"), "{one}");

    let log = succeeded(cli(&server, admin, "audit", &["log", "--actor", "user:ann@example.com"]));
    assert!(log.starts_with("SEQ ") && log.contains("key.created") && log.contains("(via key:"), "{log}");
    let revokes = cli_json(&server, admin, "audit", &["log", "--type", "key.revoked", "--oldest-first"]);
    assert_eq!(revokes["events"].as_array().unwrap().len(), 5, "bulk 2, ann's 2, bob's 1");
}

/// Words a new user meets in the first hour: a bad `--expires-in-days`
/// names the flag and what it takes (it said "invalid float literal", and
/// `-1` was "unexpected argument"), and the registry's bare address leads
/// to the console instead of a JSON 404.
#[test]
fn first_hour_messages_name_what_exists() {
    use std::io::{Read, Write};
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let admin = new_org(&Api::new(&server.url), &system, "acme");
    for bad in ["abc", "-1", "0"] {
        let out = keys(&server, &admin, &["create", "--name", "x", "--scope", "read", "--expires-in-days", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(stderr(&out).contains("is not a number of days: give a positive number"), "{bad}: {}", stderr(&out));
    }
    let fine = keys_json(&server, &admin, &["create", "--name", "x", "--scope", "read", "--expires-in-days", "0.5"]);
    assert!(fine["key"]["expires_at"].is_string());
    // A plain date, as the console takes: its first instant, UTC.
    let dated = keys_json(&server, &admin, &["create", "--name", "d", "--scope", "read", "--expires-at", "2031-01-01"]);
    assert!(dated["key"]["expires_at"].as_str().unwrap().starts_with("2031-01-01T00:00:00"), "{dated}");

    // `--help` describes every flag a new user types, and what is required.
    let help = Command::new(keyreg_bin()).args(["keys", "create", "--help"]).output().unwrap();
    let help = stdout(&help);
    assert!(help.contains("at least one --scope, --role or --preset"), "{help}");
    for flag in ["--name <NAME>", "--description <DESCRIPTION>", "--expires-at <EXPIRES_AT>"] {
        let described = help.lines().skip_while(|l| !l.trim_start().starts_with(flag)).nth(1).unwrap_or("");
        assert!(!described.trim().is_empty() && !described.trim().starts_with("--"), "{flag} has no description");
    }
    for command in [vec!["serve", "--help"], vec!["init", "--help"], vec!["verifier", "--help"]] {
        let help = stdout(&Command::new(keyreg_bin()).args(&command).output().unwrap());
        let first = if command[0] == "verifier" { "--nats <NATS>" } else { "--data <DATA>" };
        let described = help.lines().skip_while(|l| !l.trim_start().starts_with(first)).nth(1).unwrap_or("");
        let described = described.trim();
        assert!(!described.is_empty() && !described.starts_with("--"), "{command:?}: {first} has no description");
    }

    // The registry's flags may come before the command, as in other tools.
    let out = Command::new(keyreg_bin())
        .args(["--url", &server.url, "--token", &admin, "--json", "keys", "list"])
        .env_remove("KEYREG_URL")
        .env_remove("KEYREG_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = listed["keys"].as_array().unwrap().iter().filter_map(|k| k["name"].as_str()).collect();
    assert!(names.contains(&"d") && names.contains(&"x"), "{listed}");
    let out = Command::new(keyreg_bin()).args(["--url", &server.url, "serve", "--data", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a registry's flag before serve is refused");

    // A config file gives flags by their names; the command line wins.
    let config = dir.path().join("keyreg.toml");
    std::fs::write(&config, format!("url = [\"http://127.0.0.1:1\", \"{}\"]\ntoken = \"{admin}\"\n", server.url))
        .unwrap();
    let with_config = |args: &[&str]| {
        Command::new(keyreg_bin())
            .args(args)
            .env("KEYREG_CONFIG", &config)
            .env_remove("KEYREG_URL")
            .env_remove("KEYREG_TOKEN")
            .output()
            .unwrap()
    };
    let out = with_config(&["keys", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = with_config(&["keys", "list", "--url", "http://127.0.0.1:1"]);
    assert!(stderr(&out).contains("cannot reach the registry at http://127.0.0.1:1"), "{}", stderr(&out));
    std::fs::write(&config, "colour = \"blue\"\n").unwrap();
    let out = with_config(&["keys", "list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no flag is called --colour; a config file may set"), "{}", stderr(&out));
    assert!(stderr(&out).contains("stream-prefix"), "{}", stderr(&out));

    let mut s = std::net::TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    write!(s, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 303"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("location: /console\r\n"), "{answer}");
    server.stop();
}

/// `keyreg completions bash` is a script bash takes, and it completes the
/// subcommands and their flags.
#[test]
fn shell_completions_complete_commands_and_flags() {
    let dir = tempdir();
    let script = dir.path().join("keyreg.bash");
    let out = Command::new(keyreg_bin()).args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(&script, &out.stdout).unwrap();
    let complete = |line: &str| -> String {
        let words: Vec<&str> = line.split(' ').collect();
        let program = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT={}; _keyreg keyreg '{}' '{}'; \
             echo \"${{COMPREPLY[@]}}\"",
            script.display(),
            words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
            words.len() - 1,
            line.len(),
            words[words.len() - 1],
            words[words.len() - 2],
        );
        stdout(&Command::new("bash").args(["-c", &program]).output().unwrap())
    };
    assert_eq!(complete("keyreg ke").trim(), "keys");
    assert!(
        complete("keyreg keys create --exp").contains("--expires-in-days"),
        "{}",
        complete("keyreg keys create --exp")
    );
    for shell in ["zsh", "fish"] {
        let out = Command::new(keyreg_bin()).args(["completions", shell]).output().unwrap();
        assert!(out.status.success() && stdout(&out).contains("keyreg"), "{shell}");
    }
}

#[test]
fn help_lists_the_stream_prefix_only_where_it_does_something() {
    let help = |args: &[&str]| stdout(&keyreg(&[args, &["--help"]].concat()));
    for command in [&["keys", "list"][..], &["roles", "list"], &["orgs", "list"], &["audit", "log"], &["keys"]] {
        assert!(!help(command).contains("--stream-prefix"), "{command:?} lists --stream-prefix");
    }
    for command in [&["serve"][..], &["verifier"], &["init"], &["replay"], &["audit", "verify"], &["stream", "reset"]] {
        assert!(help(command).contains("--stream-prefix"), "{command:?} leaves --stream-prefix out");
    }
    // Still taken anywhere on the line, as a global flag: it changes nothing there.
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let admin = new_org(&Api::new(&server.url), &system, "acme");
    for line in [&["--stream-prefix", "P", "keys", "list"][..], &["keys", "list", "--stream-prefix", "P"]] {
        let out = Command::new(keyreg_bin())
            .args(line)
            .args(["--url", &server.url])
            .env("KEYREG_TOKEN", &admin)
            .output()
            .unwrap();
        assert!(out.status.success(), "{line:?}: {}", stderr(&out));
    }
}
