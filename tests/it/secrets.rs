//! No secret is ever written down: after a workload that makes and rotates
//! keys, no file of the data dir holds any of their tokens, nor does
//! anything the command line printed other than the one token init shows;
//! the log's signing key stays in its own file.

use std::path::Path;

use crate::support::*;

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            files(&entry.path(), out);
        } else {
            out.push(entry.path());
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_token_appears_in_the_data_dir_or_the_output() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let init = keyreg(&["init", "--data", path_str(&data)]);
    let init_token = stdout(&init).trim().to_owned();
    let mut secrets = vec![init_token];
    {
        let clock = std::sync::Arc::new(keyreg::domain::time::ManualClock::new(keyreg::domain::time::Clock::now(
            &keyreg::domain::time::SystemClock,
        )));
        let registry = reopen(&data, &clock);
        secrets.extend(every_event_type(&registry, &clock).iter().map(|t| t.expose().to_owned()));
        registry.close().unwrap();
    }
    let mut printed = stderr(&init).into_bytes();
    for args in [vec!["audit", "export"], vec!["audit", "verify"], vec!["replay", "--at", "2030-01-01T00:00:00Z"]] {
        let mut full = args.clone();
        full.extend(["--data", path_str(&data)]);
        let out = keyreg(&full);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        printed.extend(out.stdout);
        printed.extend(out.stderr);
    }
    let log_key = keyreg(&["log-key", "--data", path_str(&data)]);
    printed.extend(log_key.stdout);
    printed.extend(log_key.stderr);
    let mut all = vec![];
    files(&data, &mut all);
    assert!(all.len() >= 3);
    assert_eq!(secrets.len(), 6);
    // The log's signing key: in DIR/log-key alone, never printed.
    let private = std::fs::read_to_string(data.join("log-key")).unwrap();
    // PRIVATE+KEY+<name>+<id>+<base64 key>: the base64 may hold '+' too.
    let material = private.trim().splitn(5, '+').nth(4).unwrap().as_bytes().to_owned();
    assert!(private.starts_with("PRIVATE+KEY+") && material.len() >= 44, "{}", private.len());
    for file in all.iter().filter(|f| !f.ends_with("log-key")) {
        assert!(!contains(&std::fs::read(file).unwrap(), &material), "the log key is in {}", file.display());
    }
    assert!(!contains(&printed, &material), "the log's private key was printed");
    for file in &all {
        assert!(
            !contains(&std::fs::read(file).unwrap(), LEGACY_SECRET.as_bytes()),
            "a legacy secret is in {}",
            file.display()
        );
    }
    assert!(!contains(&printed, LEGACY_SECRET.as_bytes()), "a legacy secret was printed");
    for secret in &secrets {
        // The random part alone, so a token stored without its prefix or
        // with a changed checksum would be caught too.
        let core = &secret.as_bytes()[3..35];
        for file in &all {
            assert!(!contains(&std::fs::read(file).unwrap(), core), "a token is in {}", file.display());
        }
        assert!(!contains(&printed, core), "a token was printed");
    }
}

/// A full session against the real server with debug logging: every secret
/// it hands out is then looked for in the server's log, the data dir and
/// every response other than the one that created it.
#[test]
fn no_secret_leaks_from_a_serving_registry() {
    use crate::serve::*;
    use serde_json::json;

    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &["--access-flush-ms", "100"]);
    let api = Api::new(&server.url);
    let mut secrets = vec![system.clone()];
    let created = api.post("/v1/orgs").auth(&system).json(json!({"id": "acme", "name": "Acme"})).send();
    let admin = created.ok(201)["secret"].as_str().unwrap().to_owned();
    secrets.push(admin.clone());
    let mut ids = vec![];
    for i in 0..5 {
        let (id, secret) = new_key(
            &api,
            &admin,
            json!({"name": format!("k{i}"), "scopes": ["read", "billing:*"], "allowed_cidrs": ["127.0.0.0/8", "::1/128"]}),
        );
        ids.push(id);
        secrets.push(secret);
    }
    for (i, id) in ids.iter().enumerate() {
        let r =
            api.req("POST", "/v1/keys/{id}/rotate", Some(id)).auth(&admin).json(json!({"grace_seconds": 60})).send();
        secrets.push(r.ok(200)["secret"].as_str().unwrap().to_owned());
        for s in &secrets[2..] {
            verify(&api, json!({"key": s, "action": "read", "ip": "127.0.0.1"}));
        }
        verify(&api, json!({"key": format!("{}x", &secrets[2 + i][..40])}));
        api.post("/v1/verify").auth(&secrets[2 + i]).json(json!({"ip": "10.0.0.1"})).send();
    }
    // A legacy secret: imported, imported again (refused), presented to
    // verify and as a key, and a near miss.
    let import = json!({"name": "legacy", "scopes": ["read", "keys:read"], "secret": LEGACY_SECRET});
    api.post("/v1/keys/import").auth(&admin).json(import.clone()).send().ok(201);
    api.post("/v1/keys/import").auth(&admin).json(import).send().problem(409, "CONFLICT");
    verify(&api, json!({"key": LEGACY_SECRET, "action": "read"}));
    verify(&api, json!({"key": format!("{LEGACY_SECRET}x")}));
    api.get("/v1/keys").auth(LEGACY_SECRET).send().ok(200);
    let bad = json!({"name": "x", "scopes": ["read"], "secret": format!("{LEGACY_SECRET}\u{7}")});
    api.post("/v1/keys/import").auth(&admin).json(bad).send().problem(400, "VALIDATION");
    api.req("POST", "/v1/keys/{id}/revoke", Some(&ids[0])).auth(&admin).send();
    api.get("/v1/keys").auth(&admin).query("status", "all").send();
    api.get("/v1/audit").auth(&admin).query("limit", "1000").send();
    api.get("/v1/events").auth(&system).send();
    api.get("/v1/org").auth(&admin).send();
    api.ops("/metrics");
    // Failed authentications log nothing of what was presented either.
    api.get("/v1/keys").auth(&format!("{}Z", &secrets[3][..40])).send();
    api.get("/v1/keys").header("Authorization", &secrets[4][3..]).send();
    let data = server.data.clone();
    let log = server.log.clone();
    server.stop();

    let mut written: Vec<(String, Vec<u8>)> = vec![("server log".into(), std::fs::read(&log).unwrap())];
    assert!(!written[0].1.is_empty(), "debug logging should have written something");
    let mut all = vec![];
    files(&data, &mut all);
    written.extend(all.iter().map(|f| (f.display().to_string(), std::fs::read(f).unwrap())));
    for ex in api.exchanges.borrow().iter() {
        let hands_out_secret =
            (ex.status == 201 && ex.template != "/v1/keys/import") || ex.template.ends_with("/rotate");
        if !hands_out_secret {
            written.push((format!("{} {} response", ex.method, ex.template), ex.body.clone()));
        }
    }
    assert_eq!(secrets.len(), 12);
    for (what, bytes) in &written {
        assert!(!contains(bytes, LEGACY_SECRET.as_bytes()), "the legacy secret is in the {what}");
    }
    for secret in &secrets {
        for (what, bytes) in &written {
            assert!(!contains(bytes, &secret.as_bytes()[3..35]), "a secret is in the {what}");
        }
    }
}
