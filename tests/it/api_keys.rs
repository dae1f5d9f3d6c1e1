//! The whole life of a key through the real server over HTTP.

use std::time::Duration;

use serde_json::{Value, json};

use crate::serve::*;
use crate::support::*;

#[test]
fn the_life_of_a_key() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &["--access-flush-ms", "200"]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let asked = json!({"name": "CI Deploy", "description": "ci", "owner": "ops@acme.test", "scopes": ["billing:*", "read@ws/1/**"], "allowed_cidrs": ["0.0.0.0/0"]});

    // A dry run: the warnings before anything exists, no secret, nothing recorded.
    let head = api.head();
    let dry = api.post("/v1/keys").auth(&admin).query("dry_run", "true").json(asked.clone()).send();
    let d = dry.ok(200).clone();
    assert_eq!((d["dry_run"].as_bool(), d["key"]["name"].as_str()), (Some(true), Some("CI Deploy")));
    assert!(d["secret"].is_null() && d["warnings"].to_string().contains("wildcard"), "{d}");
    assert_eq!(api.head(), head, "a dry run recorded an event");
    assert_eq!(api.get("/v1/keys").auth(&admin).send().ok(200)["keys"].as_array().unwrap().len(), 1, "only admin");

    // Create: the secret comes once, with warnings.
    let created = api.post("/v1/keys").auth(&admin).json(asked).send();
    let v = created.ok(201).clone();
    let id = v["key"]["id"].as_str().unwrap().to_owned();
    let secret = v["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("kr_") && secret.len() == 41);
    assert_eq!(v["key"]["display_prefix"], secret[..9]);
    assert_eq!(v["key"]["status"], "active");
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("wildcard") && warnings.contains("never expires"), "{warnings}");
    let got = api.req("GET", "/v1/keys/{id}", Some(&id)).auth(&admin).send();
    assert_eq!(got.ok(200)["key"]["name"], "CI Deploy");
    assert!(!String::from_utf8_lossy(&got.body).contains(&secret[3..]), "the secret is returned again");
    let version = got.json["key"]["version"].as_u64().unwrap();
    assert_eq!(got.etag.as_deref(), Some(format!("\"{version}\"").as_str()));

    // Listing: status filters and search.
    let (other, _) = new_key(&api, &admin, json!({"name": "nightly export", "scopes": ["read"], "expires_in_days": 7}));
    let nightly = api.req("GET", "/v1/keys/{id}", Some(&other)).auth(&admin).send().ok(200)["key"].clone();
    let time = |field: &str| keyreg::domain::time::Timestamp::parse(nightly[field].as_str().unwrap()).unwrap();
    assert_eq!(time("expires_at"), time("created_at").plus_seconds(7 * 86_400), "exactly seven days: {nightly}");
    let names = |status: &str, q: &str| -> Vec<String> {
        let mut r = api.get("/v1/keys").auth(&admin).query("status", status);
        if !q.is_empty() {
            r = r.query("q", q);
        }
        r.send().ok(200)["keys"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(names("active", ""), ["nightly export", "CI Deploy", "admin"]);
    assert_eq!(names("active", "deploy"), ["CI Deploy"]);
    assert_eq!(names("active", "EXPORT"), ["nightly export"]);
    assert!(names("disabled", "").is_empty());

    // Edit, with warnings once the key has been used.
    assert_eq!(verify(&api, json!({"key": secret, "action": "billing:read", "ip": "192.0.2.1"})), "VALID");
    assert!(eventually(Duration::from_secs(5), || {
        api.req("GET", "/v1/keys/{id}", Some(&id)).auth(&admin).send().json["key"]["last_used_at"].is_string()
    }));
    let version =
        api.req("GET", "/v1/keys/{id}", Some(&id)).auth(&admin).send().json["key"]["version"].as_u64().unwrap();
    let narrow = json!({"scopes": ["billing:read"], "expires_at": "2099-01-01T00:00:00Z"});
    let dry =
        api.req("PATCH", "/v1/keys/{id}", Some(&id)).auth(&admin).query("dry_run", "true").json(narrow.clone()).send();
    let d = dry.ok(200);
    assert_eq!((d["dry_run"].as_bool(), d["key"]["scopes"].clone()), (Some(true), json!(["billing:read"])));
    assert!(d["warnings"].to_string().contains("narrowed"), "{}", d["warnings"]);
    let head = api.head();
    let still = api.req("GET", "/v1/keys/{id}", Some(&id)).auth(&admin).send();
    assert_eq!(still.json["key"]["scopes"], json!(["billing:*", "read@ws/1/**"]), "a dry run changed the key");
    assert_eq!(still.json["key"]["version"], version);
    let edited = api
        .req("PATCH", "/v1/keys/{id}", Some(&id))
        .auth(&admin)
        .header("If-Match", &format!("\"{version}\""))
        .json(narrow)
        .send();
    let e = edited.ok(200);
    assert_eq!(e["key"]["scopes"], json!(["billing:read"]));
    assert!(e["warnings"].to_string().contains("narrowed"));
    // What the edit appended; an access report may land meanwhile.
    let appended = api.get("/v1/events").auth(&system).query("after_seq", &head.to_string()).send();
    let types: Vec<String> = String::from_utf8_lossy(&appended.body)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].as_str().unwrap().to_owned())
        .filter(|t| t != "key.accessed")
        .collect();
    assert_eq!(types, ["key.updated", "key.scopes_edited"]);
    let new_version = e["key"]["version"].as_u64().unwrap();
    assert!(new_version > version);
    let stale = api
        .req("PATCH", "/v1/keys/{id}", Some(&id))
        .auth(&admin)
        .header("If-Match", &version.to_string())
        .json(json!({"name": "x"}))
        .send();
    stale.problem(412, "VERSION_MISMATCH");

    // Disable and enable.
    let disabled = api.req("POST", "/v1/keys/{id}/disable", Some(&id)).auth(&admin).send();
    assert_eq!(disabled.ok(200)["key"]["status"], "disabled");
    assert_eq!(verify(&api, json!({"key": secret, "ip": "192.0.2.1"})), "DISABLED");
    assert_eq!(names("disabled", ""), ["CI Deploy"]);
    api.req("POST", "/v1/keys/{id}/disable", Some(&id)).auth(&admin).send().problem(409, "CONFLICT");
    assert_eq!(
        api.req("POST", "/v1/keys/{id}/enable", Some(&id)).auth(&admin).send().ok(200)["key"]["status"],
        "active"
    );
    assert_eq!(verify(&api, json!({"key": secret, "ip": "192.0.2.1"})), "VALID");

    // Rotate with a grace period: the old secret works inside it, not after.
    let rotated =
        api.req("POST", "/v1/keys/{id}/rotate", Some(&id)).auth(&admin).json(json!({"grace_seconds": 2})).send();
    let fresh = rotated.ok(200)["secret"].as_str().unwrap().to_owned();
    assert_ne!(fresh, secret);
    assert_eq!(verify(&api, json!({"key": fresh, "ip": "192.0.2.1"})), "VALID");
    assert_eq!(verify(&api, json!({"key": secret, "ip": "192.0.2.1"})), "VALID");
    server.advance(2.1);
    assert_eq!(verify(&api, json!({"key": secret, "ip": "192.0.2.1"})), "NOT_FOUND");
    assert_eq!(verify(&api, json!({"key": fresh, "ip": "192.0.2.1"})), "VALID");

    // Revoke, delete.
    let revoked =
        api.req("POST", "/v1/keys/{id}/revoke", Some(&id)).auth(&admin).json(json!({"reason": "rotation done"})).send();
    assert_eq!(revoked.ok(200)["key"]["status"], "revoked");
    assert_eq!(verify(&api, json!({"key": fresh, "ip": "192.0.2.1"})), "REVOKED");
    api.req("POST", "/v1/keys/{id}/revoke", Some(&id)).auth(&admin).send().problem(409, "CONFLICT");
    api.req("DELETE", "/v1/keys/{id}", Some(&id)).auth(&admin).query("confirm", "CI").send().problem(400, "VALIDATION");
    api.req("DELETE", "/v1/keys/{id}", Some(&id)).auth(&admin).send().problem(400, "VALIDATION");
    let deleted = api.req("DELETE", "/v1/keys/{id}", Some(&id)).auth(&admin).query("confirm", "CI Deploy").send();
    assert_eq!(deleted.ok(200)["key"]["status"], "deleted");
    assert_eq!(names("all", "deploy"), ["CI Deploy"]);
    assert!(names("active", "deploy").is_empty());
    assert_eq!(names("deleted", ""), ["CI Deploy"]);

    // Bulk revoke: all validated first.
    let (b1, s1) = new_key(&api, &admin, json!({"name": "bulk 1", "scopes": ["read"]}));
    let (b2, _) = new_key(&api, &admin, json!({"name": "bulk 2", "scopes": ["read"]}));
    let head = api.head();
    let refused = api.post("/v1/keys/bulk-revoke").auth(&admin).json(json!({"ids": [b1, b2, id]})).send();
    refused.problem(409, "CONFLICT");
    assert_eq!(api.head(), head);
    assert_eq!(verify(&api, json!({"key": s1})), "VALID");
    let bulk =
        api.post("/v1/keys/bulk-revoke").auth(&admin).json(json!({"ids": [b1, b2, other], "reason": "cleanup"})).send();
    let statuses: Vec<&str> =
        bulk.ok(200)["keys"].as_array().unwrap().iter().map(|k| k["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["revoked", "revoked", "revoked"]);
    assert_eq!(verify(&api, json!({"key": s1})), "REVOKED");

    // Expiry: the sweeper records key.expired within a second of expires_at.
    let soon = server.now() + chrono::Duration::days(1);
    let (temp, temp_secret) =
        new_key(&api, &admin, json!({"name": "temp", "scopes": ["read"], "expires_at": soon.to_rfc3339()}));
    server.advance(86_400.3);
    assert_eq!(verify(&api, json!({"key": temp_secret})), "EXPIRED");
    assert!(eventually(Duration::from_secs(3), || {
        api.req("GET", "/v1/audit", None)
            .auth(&admin)
            .query("key_id", &temp)
            .query("type", "key.expired")
            .send()
            .json["events"]
            .as_array()
            .is_some_and(|e| e.len() == 1)
    }));
    let audit =
        api.req("GET", "/v1/audit", None).auth(&admin).query("key_id", &temp).query("type", "key.expired").send();
    let event = &audit.json["events"][0];
    assert_eq!(event["actor"], "system:sweeper");
    let written = keyreg::domain::time::Timestamp::parse(event["time"].as_str().unwrap()).unwrap();
    let due = keyreg::domain::time::Timestamp::parse(event["data"]["expires_at"].as_str().unwrap()).unwrap();
    assert!(written >= due && written.micros() - due.micros() < 1_000_000, "expired at {due}, recorded at {written}");
    assert_eq!(api.req("GET", "/v1/keys/{id}", Some(&temp)).auth(&admin).send().json["key"]["status"], "expired");

    // Usage: exact counts after N verifies.
    let (counted, counted_secret) = new_key(&api, &admin, json!({"name": "counted", "scopes": ["read"]}));
    let org_before = api.get("/v1/usage").auth(&admin).send().json["total"].as_u64().unwrap();
    let n = 37;
    for i in 0..n {
        let action = if i % 3 == 0 { "write" } else { "read" };
        verify(&api, json!({"key": counted_secret, "action": action, "ip": "192.0.2.9"}));
    }
    assert!(eventually(Duration::from_secs(5), || {
        api.req("GET", "/v1/keys/{id}/usage", Some(&counted)).auth(&admin).send().json["total"] == n
    }));
    let usage = api.req("GET", "/v1/keys/{id}/usage", Some(&counted)).auth(&admin).send();
    let u = usage.ok(200);
    assert_eq!(u["per_day"].as_array().unwrap().iter().map(|d| d["count"].as_u64().unwrap()).sum::<u64>(), n);
    assert!(u["last_used_at"].is_string());
    // By outcome: every third verify asked to write with a read-only key.
    assert_eq!(u["outcomes"], json!({"VALID": 24, "FORBIDDEN_SCOPE": 13}));
    let today = server.now().format("%Y-%m-%d").to_string();
    let tomorrow = (server.now() + chrono::Duration::days(1)).format("%Y-%m-%d").to_string();
    let within = |query: &[(&str, &str)]| {
        let mut req = api.req("GET", "/v1/keys/{id}/usage", Some(&counted)).auth(&admin);
        for (name, value) in query {
            req = req.query(name, value);
        }
        req.send()
    };
    let last_day = within(&[("days", "1")]);
    assert_eq!((last_day.json["total"].as_u64(), last_day.json["from"].as_str()), (Some(n), Some(today.as_str())));
    assert_eq!(last_day.json["per_day"][0]["outcomes"], json!({"VALID": 24, "FORBIDDEN_SCOPE": 13}));
    let ahead = within(&[("from", &tomorrow)]);
    assert_eq!((ahead.json["total"].as_u64(), ahead.json["per_day"].as_array().map(Vec::len)), (Some(0), Some(0)));
    assert_eq!(within(&[("from", &today), ("to", &today)]).json["total"].as_u64(), Some(n));
    for bad in [
        vec![("days", "0")],
        vec![("days", "1"), ("to", &today)],
        vec![("from", "2026-13-01")],
        vec![("from", &tomorrow), ("to", &today)],
    ] {
        let refused = within(&bad);
        assert_eq!(refused.status, 400, "{bad:?}: {}", refused.json);
    }
    let top = api.get("/v1/usage").auth(&admin).query("days", "7").send().json["top_keys"].clone();
    let counted_row =
        top.as_array().unwrap().iter().find(|k| k["key_id"] == counted.as_str()).expect("counted is busy");
    assert_eq!((counted_row["name"].as_str(), counted_row["total"].as_u64()), (Some("counted"), Some(n)));
    // Org-wide usage is the sum over the org's keys.
    let consistent = eventually(Duration::from_secs(5), || {
        let org_total = api.get("/v1/usage").auth(&admin).send().json["total"].as_u64().unwrap();
        let keys = api.get("/v1/keys").auth(&admin).query("status", "all").send().json["keys"].clone();
        let per_key: u64 = keys
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                let id = k["id"].as_str().unwrap();
                api.req("GET", "/v1/keys/{id}/usage", Some(id)).auth(&admin).send().json["total"].as_u64().unwrap()
            })
            .sum();
        org_total == per_key && org_total >= org_before + n
    });
    assert!(consistent, "org usage is not the sum of its keys' usage");
    let accessed = api.get("/v1/audit").auth(&admin).query("key_id", &counted).query("type", "key.accessed").send();
    let total: u64 =
        accessed.json["events"].as_array().unwrap().iter().map(|e| e["data"]["count"].as_u64().unwrap()).sum();
    assert_eq!(total, n, "the key.accessed counts sum to the verifies");
    assert_eq!(accessed.json["events"][0]["data"]["last_ip"], "192.0.2.9");

    // The org view counts keys by status.
    let org = api.get("/v1/org").auth(&admin).send();
    let counts = &org.ok(200)["key_counts"];
    assert_eq!(
        (counts["active"].as_u64(), counts["revoked"].as_u64(), counts["deleted"].as_u64(), counts["expired"].as_u64()),
        (Some(2), Some(3), Some(1), Some(1))
    );
    let renamed = api.req("PATCH", "/v1/org", None).auth(&admin).json(json!({"name": "Acme Inc"})).send();
    assert_eq!(renamed.ok(200)["org"]["name"], "Acme Inc");

    crate::api_contract::check_against_openapi(&api.exchanges.borrow());
    server.stop();
}

#[test]
fn listing_pages_are_stable_while_keys_are_created() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "pager");
    for i in 0..25 {
        new_key(&api, &admin, json!({"name": format!("k{i:02}"), "scopes": ["read"]}));
    }
    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut r = api.get("/v1/keys").auth(&admin).query("limit", "7");
        if let Some(c) = &cursor {
            r = r.query("cursor", c);
        }
        let page = r.send();
        let v = page.ok(200);
        seen.extend(v["keys"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap().to_owned()));
        pages += 1;
        // Keys created between pages land before the first page, never inside the walk.
        new_key(&api, &admin, json!({"name": format!("late{pages}"), "scopes": ["read"]}));
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut expected: Vec<String> = (0..25).rev().map(|i| format!("k{i:02}")).collect();
    expected.push("admin".into());
    assert_eq!(seen, expected);
    assert_eq!(pages, 4);
    let as_of = api.get("/v1/keys").auth(&admin).query("as_of", "2000-01-01T00:00:00Z").send();
    assert!(as_of.ok(200)["keys"].as_array().unwrap().is_empty());
}

#[test]
fn as_of_shows_a_key_as_it_stood() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "history");
    let (id, _) = new_key(&api, &admin, json!({"name": "before", "scopes": ["read"]}));
    std::thread::sleep(Duration::from_millis(20));
    let between = chrono::Utc::now().to_rfc3339();
    std::thread::sleep(Duration::from_millis(20));
    api.req("PATCH", "/v1/keys/{id}", Some(&id)).auth(&admin).json(json!({"name": "after"})).send().ok(200);
    api.req("POST", "/v1/keys/{id}/revoke", Some(&id)).auth(&admin).send().ok(200);
    let then = api.req("GET", "/v1/keys/{id}", Some(&id)).auth(&admin).query("as_of", &between).send();
    assert_eq!(
        (then.json["key"]["name"].as_str(), then.json["key"]["status"].as_str()),
        (Some("before"), Some("active"))
    );
    let listed = api.get("/v1/keys").auth(&admin).query("as_of", &between).send();
    assert_eq!(listed.ok(200)["keys"].as_array().unwrap().len(), 2);
    let now = api.req("GET", "/v1/keys/{id}", Some(&id)).auth(&admin).send();
    assert_eq!(now.json["key"]["status"], "revoked");
}

/// SIGTERM while writes are in flight: every write that was answered is in
/// the log after a restart, and no write is answered with a server error.
#[test]
fn sigterm_finishes_in_flight_writes() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let url = server.url.clone();
    let admin = new_org(&Api::new(&url), &system, "acme");
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (url, admin, answered) = (url.clone(), admin.clone(), answered.clone());
            std::thread::spawn(move || {
                let api = Api::new(&url);
                let mut acknowledged = vec![];
                for i in 0..200 {
                    let body = serde_json::to_vec(&json!({"name": format!("w{w}-{i}"), "scopes": ["read"]})).unwrap();
                    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                    let sent = agent
                        .post(format!("{}/v1/keys", api.url))
                        .header("Authorization", format!("Bearer {admin}"))
                        .send(&body[..]);
                    match sent {
                        Ok(mut r) => {
                            let status = r.status().as_u16();
                            assert!(status < 500, "a write was answered {status} during shutdown");
                            let v: serde_json::Value =
                                serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
                            acknowledged.push(v["key"]["id"].as_str().unwrap().to_owned());
                            answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(_) => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    // Stop only once every writer is in full flow.
    let flowing = || answered.load(std::sync::atomic::Ordering::Relaxed) >= 40;
    assert!(eventually(Duration::from_secs(30), flowing), "the writers never got going");
    let data = server.data.clone();
    server.stop();
    let acknowledged: Vec<String> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert!(!acknowledged.is_empty());
    let server = Server::start(&data, &[]);
    let api = Api::new(&server.url);
    for id in &acknowledged {
        api.req("GET", "/v1/keys/{id}", Some(id)).auth(&admin).send().ok(200);
    }
}

/// A key's metadata goes in on create, import and edit, is recorded in
/// those events, and comes back on every verify and forward-auth pass.
#[test]
fn metadata_travels_with_the_key_to_every_verify() {
    use base64::Engine;
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let meta = json!({"plan": "pro", "customer": "c_42"});
    let (id, secret) = new_key(&api, &admin, json!({"name": "billing", "scopes": ["read"], "meta": meta}));
    let got = api.req("GET", "/v1/keys/{id}", Some(&id)).auth(&admin).send();
    assert_eq!(got.ok(200)["key"]["meta"], meta);
    let answer = api.post("/v1/verify").json(json!({"key": secret})).send();
    assert_eq!(answer.ok(200)["meta"], meta, "verify hands the metadata on");
    let passed = api.get("/v1/authz").header("Authorization", &format!("Bearer {secret}")).send();
    let header = passed.header("keyreg-meta").expect("Keyreg-Meta");
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&decoded).unwrap(), meta);

    // Edited whole, then removed; each an event that says so.
    let plan = json!({"plan": "enterprise"});
    api.req("PATCH", "/v1/keys/{id}", Some(&id)).auth(&admin).json(json!({"meta": plan})).send().ok(200);
    assert_eq!(api.post("/v1/verify").json(json!({"key": secret})).send().json["meta"], plan);
    api.req("PATCH", "/v1/keys/{id}", Some(&id)).auth(&admin).json(json!({"meta": null})).send().ok(200);
    assert!(api.post("/v1/verify").json(json!({"key": secret})).send().json.get("meta").is_none());
    let events =
        api.get("/v1/audit").auth(&admin).query("key_id", &id).query("order", "asc").send().json["events"].clone();
    let created = &events[0]["data"];
    assert_eq!((events[0]["type"].as_str(), &created["meta"]), (Some("key.created"), &meta));
    let changes: Vec<(Value, Value)> = events.as_array().unwrap()[1..]
        .iter()
        .map(|e| (e["data"]["changed"].clone(), e["data"]["meta"].clone()))
        .collect();
    assert_eq!(changes, [(json!(["meta"]), plan), (json!(["meta"]), Value::Null)]);

    // An imported key keeps its metadata too.
    let legacy = "sk_live_0123456789abcdefghij0123";
    let imported = api
        .post("/v1/keys/import")
        .auth(&admin)
        .json(json!({"name": "old", "scopes": ["read"], "secret": legacy, "meta": {"source": "stripe-era"}}))
        .send();
    imported.ok(201);
    assert_eq!(
        api.post("/v1/verify").json(json!({"key": legacy})).send().json["meta"],
        json!({"source": "stripe-era"})
    );

    // Not an object, or over 4 KiB: refused, nothing appended.
    let head = api.head();
    for bad in [json!(["plan"]), json!("pro"), json!({"notes": "x".repeat(4096)})] {
        let refused =
            api.post("/v1/keys").auth(&admin).json(json!({"name": "x", "scopes": ["read"], "meta": bad})).send();
        refused.problem(400, "VALIDATION");
        assert!(refused.json["detail"].as_str().unwrap().contains("meta"), "{}", refused.json);
    }
    assert_eq!(api.head(), head);
}
