//! Permissions over HTTP: the grant rule on every path, for tenant and
//! `_system` keys (each escalation refused with nothing appended, each legal
//! grant still working); roles, presets and the catalogue; the operator's
//! quota.

use std::time::Duration;

use serde_json::{Value, json};

use crate::serve::*;
use crate::support::*;

fn key_body(name: &str, scopes: &[&str], roles: &[&str]) -> Value {
    json!({"name": name, "scopes": scopes, "roles": roles})
}

/// The escalation table, run in one org with the caller `keymaster`
/// (`keys:admin` only) and `rolesmith` (`roles:admin` only).
fn escalations(api: &Api, admin: &str, org: &str, extra: &[&str]) {
    let (keymaster_id, keymaster) = new_key(api, admin, key_body("keymaster", &["keys:admin"], &[]));
    let (_, rolesmith) = new_key(api, admin, key_body("rolesmith", &["roles:admin"], &[]));
    let (victim, _) = new_key(api, admin, key_body("victim", &["read"], &[]));
    let (auditor_id, _) = new_key(api, admin, key_body("audit reader", &["audit:read", "keys:read"], &[]));
    for (name, scopes) in [("auditor", vec!["audit:read"]), ("billing", vec!["billing:*"]), ("plain", vec!["read"])] {
        api.post("/v1/roles").auth(admin).json(json!({"name": name, "scopes": scopes})).send().ok(201);
    }
    let create = |body: Value| api.post("/v1/keys").auth(&keymaster).json(body);
    let mut cases: Vec<(String, Req<'_>, &str)> = vec![
        ("a management scope named".into(), create(key_body("x", &["audit:read"], &[])), "audit:read"),
        ("a reserved service whole".into(), create(key_body("x", &["keys:*"], &[])), "keys:read"),
        ("roles:admin through a key".into(), create(key_body("x", &["read", "roles:admin"], &[])), "roles:admin"),
        ("a role holding audit:read".into(), create(key_body("x", &[], &["auditor"])), "audit:read"),
        (
            "giving a key a role".into(),
            api.req("PATCH", "/v1/keys/{id}", Some(&victim)).auth(&keymaster).json(json!({"roles": ["auditor"]})),
            "audit:read",
        ),
        (
            "a key editing itself".into(),
            api.req("PATCH", "/v1/keys/{id}", Some(&keymaster_id))
                .auth(&keymaster)
                .json(json!({"scopes": ["keys:admin", "audit:read"]})),
            "audit:read",
        ),
        (
            "rotating a key that holds more".into(),
            api.req("POST", "/v1/keys/{id}/rotate", Some(&auditor_id))
                .auth(&keymaster)
                .json(json!({"grace_seconds": 2592000})),
            "audit:read",
        ),
        (
            "creating a role".into(),
            api.post("/v1/roles").auth(&rolesmith).json(json!({"name": "spy", "scopes": ["audit:read"]})),
            "audit:read",
        ),
        (
            "editing a role".into(),
            api.req("PATCH", "/v1/roles/{name}", Some("plain"))
                .auth(&rolesmith)
                .json(json!({"scopes": ["read", "keys:admin"]})),
            "keys:admin",
        ),
    ];
    for permission in extra {
        cases.push((format!("{permission} named"), create(key_body("x", &[permission], &[])), permission));
    }
    for (what, req, permission) in cases {
        let problem = refused(api, &format!("{org}: {what}"), req, 403, "ESCALATION");
        let named: Vec<&str> = problem["permissions"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(named.contains(&permission), "{org}: {what} names {named:?}");
        assert!(problem["detail"].as_str().unwrap().contains(permission), "{org}: {what}: {problem}");
    }

    // What is legal still works. `*` grants every action of the org's own
    // services and none of keyreg's.
    let (_, star) = new_key(api, &keymaster, key_body("star", &["*"], &[]));
    refused(api, "a * key reading audit", api.get("/v1/audit").auth(&star), 403, "FORBIDDEN");
    refused(
        api,
        "a * key making keys",
        api.post("/v1/keys").auth(&star).json(key_body("y", &["read"], &[])),
        403,
        "FORBIDDEN",
    );
    new_key(api, &keymaster, key_body("deputy", &["keys:admin", "billing:*"], &[]));
    new_key(api, &keymaster, key_body("biller", &[], &["billing"]));
    api.req("PATCH", "/v1/keys/{id}", Some(&victim))
        .auth(&keymaster)
        .json(json!({"roles": ["billing"]}))
        .send()
        .ok(200);
    api.req("PATCH", "/v1/roles/{name}", Some("plain"))
        .auth(&rolesmith)
        .json(json!({"scopes": ["read", "write"]}))
        .send()
        .ok(200);
    let (_, auditor) = new_key(api, admin, key_body("auditor", &[], &["auditor"]));
    api.get("/v1/audit").auth(&auditor).send().ok(200);
    // A key may always give up what it holds.
    api.req("PATCH", "/v1/keys/{id}", Some(&keymaster_id))
        .auth(&keymaster)
        .json(json!({"scopes": ["keys:admin"]}))
        .send()
        .ok(200);
}

#[test]
fn no_key_grants_more_than_it_holds() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    escalations(&api, &admin, "acme", &[]);
    escalations(&api, &system, "_system", &["orgs:create", "orgs:admin"]);
    // In `_system`, `*` is no operator either.
    let (_, star) = new_key(&api, &system, key_body("system star", &["*"], &[]));
    refused(
        &api,
        "a * key making an org",
        api.post("/v1/orgs").auth(&star).json(json!({"id": "evil", "name": "E"})),
        403,
        "FORBIDDEN",
    );
    refused(&api, "a * key reading events", api.get("/v1/events").auth(&star), 403, "FORBIDDEN");
    crate::api_contract::check_against_openapi(&api.exchanges.borrow());
    server.stop();
}

#[test]
fn bad_permission_input_is_refused_and_changes_nothing() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let a = admin.as_str();
    api.post("/v1/roles").auth(a).json(json!({"name": "ops", "scopes": ["compute:*"]})).send().ok(201);
    new_key(&api, a, key_body("operator", &[], &["ops"]));
    let (_, plain_system) = new_key(&api, &system, key_body("keys only", &["keys:admin"], &[]));
    let role = |body: Value| api.post("/v1/roles").auth(a).json(body);
    let catalog = |body: Value| api.req("PUT", "/v1/catalog", None).auth(a).json(body);
    let many: Vec<Value> = (0..10_001).map(|i| json!({"action": format!("svc:action_{i}")})).collect();
    let cases: Vec<(&str, Req<'_>, u16, &str)> = vec![
        (
            "an unknown role on a key",
            api.post("/v1/keys").auth(a).json(key_body("x", &[], &["ghost"])),
            400,
            "VALIDATION",
        ),
        ("neither scope nor role", api.post("/v1/keys").auth(a).json(key_body("x", &[], &[])), 400, "VALIDATION"),
        ("a role name with capitals", role(json!({"name": "Ops", "scopes": ["read"]})), 400, "VALIDATION"),
        ("a role name with a space", role(json!({"name": "on call", "scopes": ["read"]})), 400, "VALIDATION"),
        ("a role name of 65 characters", role(json!({"name": "r".repeat(65), "scopes": ["read"]})), 400, "VALIDATION"),
        ("a role with no scopes", role(json!({"name": "empty", "scopes": []})), 400, "VALIDATION"),
        ("a role that exists", role(json!({"name": "ops", "scopes": ["read"]})), 409, "CONFLICT"),
        ("a role with a bad scope", role(json!({"name": "bad", "scopes": ["keys:frobnicate"]})), 400, "VALIDATION"),
        ("keys: in the catalogue", catalog(json!({"actions": [{"action": "keys:admin"}]})), 400, "VALIDATION"),
        ("audit: in the catalogue", catalog(json!({"actions": [{"action": "audit:export"}]})), 400, "VALIDATION"),
        ("a wildcard in the catalogue", catalog(json!({"actions": [{"action": "billing:*"}]})), 400, "VALIDATION"),
        (
            "an action listed twice",
            catalog(json!({"actions": [{"action": "a:b"}, {"action": "a:b"}]})),
            400,
            "VALIDATION",
        ),
        ("a catalogue of 10,001 actions", catalog(json!({"actions": many})), 400, "VALIDATION"),
        (
            "a role in use deleted without force",
            api.req("DELETE", "/v1/roles/{name}", Some("ops")).auth(a),
            409,
            "ROLE_IN_USE",
        ),
        ("an unknown role deleted", api.req("DELETE", "/v1/roles/{name}", Some("ghost")).auth(a), 404, "NOT_FOUND"),
        (
            "a stale If-Match on a role",
            api.req("PATCH", "/v1/roles/{name}", Some("ops"))
                .auth(a)
                .header("If-Match", "\"1\"")
                .json(json!({"description": "x"})),
            412,
            "VERSION_MISMATCH",
        ),
        (
            "an unknown preset",
            api.post("/v1/keys").auth(a).json(json!({"name": "x", "preset": "god-mode"})),
            400,
            "VALIDATION",
        ),
        (
            "a preset of the wrong type",
            api.post("/v1/keys").auth(a).json(json!({"name": "x", "preset": ["read-only"]})),
            400,
            "VALIDATION",
        ),
        (
            "max_keys on the org's own settings",
            api.req("PATCH", "/v1/org", None).auth(a).json(json!({"max_keys": 10_000_000})),
            403,
            "FORBIDDEN",
        ),
        (
            "a tenant's operator settings",
            api.req("PATCH", "/v1/orgs/{id}", Some("acme")).auth(a).json(json!({"max_keys": 10_000_000})),
            403,
            "FORBIDDEN",
        ),
        (
            "operator settings without orgs:admin",
            api.req("PATCH", "/v1/orgs/{id}", Some("acme")).auth(&plain_system).json(json!({"max_keys": 5})),
            403,
            "FORBIDDEN",
        ),
        (
            "operator settings of no org",
            api.req("PATCH", "/v1/orgs/{id}", Some("nobody")).auth(&system).json(json!({"max_keys": 5})),
            404,
            "NOT_FOUND",
        ),
    ];
    for (what, req, status, code) in cases {
        refused(&api, what, req, status, code);
    }

    // With an enforced catalogue a typo is refused with the closest actions,
    // and wildcards still pass (they are how new actions reach keys).
    let listed = ["insights:read_insights", "insights:write_insights", "insights:read_reports", "billing:read"];
    let actions: Vec<Value> = listed.iter().map(|a| json!({"action": a, "description": format!("may {a}")})).collect();
    let set = api.req("PUT", "/v1/catalog", None).auth(a).json(json!({"actions": actions, "enforce": true})).send();
    assert_eq!(set.ok(200)["actions"].as_array().unwrap().len(), 4);
    let typo = refused(
        &api,
        "a typo under an enforced catalogue",
        api.post("/v1/keys").auth(a).json(key_body("x", &["insihgts:raed_insights"], &[])),
        400,
        "UNKNOWN_ACTION",
    );
    assert_eq!(typo["suggestions"][0], "insights:read_insights", "{typo}");
    assert!(typo["detail"].as_str().unwrap().contains("did you mean insights:read_insights"), "{typo}");
    refused(&api, "a typo in a role", role(json!({"name": "t", "scopes": ["biling:read"]})), 400, "UNKNOWN_ACTION");
    new_key(&api, a, key_body("reader", &["insights:read_insights", "insights:*", "*:read*"], &[]));
    assert_eq!(api.get("/v1/catalog").auth(a).send().ok(200)["enforce"], true);
    crate::api_contract::check_against_openapi(&api.exchanges.borrow());
    server.stop();
}

/// The key's view: (roles, effective scopes).
/// The types of the events after `head`, usage reports left out.
fn changes_since(api: &Api, system: &str, head: u64) -> Vec<String> {
    let events = api.get("/v1/events").auth(system).query("after_seq", &head.to_string()).send().body;
    String::from_utf8(events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["type"].as_str().unwrap().to_owned())
        .filter(|t| t != "key.accessed")
        .collect()
}

fn grants(api: &Api, admin: &str, id: &str, as_of: Option<&str>) -> (Value, Value) {
    let mut req = api.req("GET", "/v1/keys/{id}", Some(id)).auth(admin);
    if let Some(t) = as_of {
        req = req.query("as_of", t);
    }
    let key = req.send().ok(200)["key"].clone();
    (key["roles"].clone(), key["effective_scopes"].clone())
}

#[test]
fn roles_change_every_key_holding_them_and_history_keeps_their_past() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &["--access-flush-ms", "100"]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let a = admin.as_str();
    let created = api
        .post("/v1/roles")
        .auth(a)
        .json(json!({"name": "ci", "description": "deploys", "scopes": ["deploy:run", "read@ws/**"]}))
        .send();
    assert_eq!(created.ok(201)["role"]["scopes"], json!(["deploy:run", "read@ws/**"]));
    let (id, secret) = new_key(&api, a, json!({"name": "pipeline", "roles": ["ci"], "scopes": ["billing:read"]}));
    assert_eq!(grants(&api, a, &id, None), (json!(["ci"]), json!(["billing:read", "deploy:run", "read@ws/**"])));
    let answer = api.post("/v1/verify").json(json!({"key": secret, "action": "deploy:run"})).send();
    let answer = answer.ok(200);
    assert_eq!((answer["code"].as_str(), &answer["roles"]), (Some("VALID"), &json!(["ci"])));
    assert_eq!(answer["scopes"], json!(["billing:read", "deploy:run", "read@ws/**"]));
    let listed = api.get("/v1/roles").auth(a).send();
    assert_eq!(listed.ok(200)["roles"][0]["name"], "ci");
    // "Held by" counts the keys the role still reaches: not a deleted one.
    api.post("/v1/roles").auth(a).json(json!({"name": "ops", "scopes": ["deploy:run"]})).send().ok(201);
    let (gone, _) = new_key(&api, a, json!({"name": "gone", "roles": ["ops"]}));
    new_key(&api, a, json!({"name": "stays", "roles": ["ops"]}));
    let held = || api.req("GET", "/v1/roles/{name}", Some("ops")).auth(a).send().json["keys"].clone();
    assert_eq!(held(), json!(2));
    api.req("DELETE", "/v1/keys/{id}", Some(&gone)).auth(a).query("confirm", "gone").send().ok(200);
    assert_eq!(held(), json!(1), "a deleted key holds the role no more");
    // Nor an expired one; as of before its expiry, it did.
    let soon = server.now() + chrono::Duration::seconds(60);
    let (brief, _) = new_key(&api, a, json!({"name": "brief", "roles": ["ops"], "expires_at": soon.to_rfc3339()}));
    let while_live = server.now().to_rfc3339();
    assert_eq!(held(), json!(2));
    server.advance(120.0);
    // The sweeper's key.expired lands now, not in the middle of what follows.
    assert!(eventually(Duration::from_secs(3), || {
        let expired = api.get("/v1/audit").auth(a).query("key_id", &brief).query("type", "key.expired").send();
        expired.json["events"].as_array().is_some_and(|e| e.len() == 1)
    }));
    assert_eq!(held(), json!(1), "an expired key holds the role no more");
    let then = api.req("GET", "/v1/roles/{name}", Some("ops")).auth(a).query("as_of", &while_live).send();
    assert_eq!(then.ok(200)["keys"], json!(2), "as of before its expiry, it held the role");
    let before_edit = api.req("GET", "/v1/roles/{name}", Some("ci")).auth(a).send();
    let etag = before_edit.etag.clone().unwrap();
    // A moment between the key's making and the role's edit.
    let key = api.req("GET", "/v1/keys/{id}", Some(&id)).auth(a).send();
    let then = key.json["key"]["updated_at"].as_str().unwrap().to_owned();
    // The key is used: narrowing its role now warns, naming it.
    assert!(eventually(Duration::from_secs(5), || {
        api.req("GET", "/v1/keys/{id}", Some(&id)).auth(a).send().json["key"]["last_used_at"].is_string()
    }));
    std::thread::sleep(Duration::from_millis(5));
    let head = api.head();
    let dry = api
        .req("PATCH", "/v1/roles/{name}", Some("ci"))
        .auth(a)
        .query("dry_run", "true")
        .json(json!({"scopes": ["read@ws/**"]}))
        .send();
    let dry = dry.ok(200);
    assert_eq!((dry["dry_run"].as_bool(), &dry["role"]["scopes"]), (Some(true), &json!(["read@ws/**"])));
    assert!(dry["warnings"][0].as_str().unwrap().contains(&id), "{dry}");
    assert_eq!(changes_since(&api, &system, head), Vec::<String>::new(), "a dry run appended");
    let edited = api
        .req("PATCH", "/v1/roles/{name}", Some("ci"))
        .auth(a)
        .header("If-Match", &etag)
        .json(json!({"scopes": ["read@ws/**"]}))
        .send();
    assert!(edited.ok(200)["warnings"][0].as_str().unwrap().contains(&id));
    // (Usage flushes may land meanwhile: the admin key is used by every call.)
    assert_eq!(changes_since(&api, &system, head), ["role.updated"], "a role edit is one event, whatever the keys");
    assert_eq!(verify(&api, json!({"key": secret, "action": "deploy:run"})), "FORBIDDEN_SCOPE");
    assert_eq!(grants(&api, a, &id, None).1, json!(["billing:read", "read@ws/**"]));
    // As of the moment before the edit: the role's definition then.
    assert_eq!(grants(&api, a, &id, Some(&then)).1, json!(["billing:read", "deploy:run", "read@ws/**"]));
    let old_role = api.req("GET", "/v1/roles/{name}", Some("ci")).auth(a).query("as_of", &then).send();
    assert_eq!(old_role.ok(200)["role"]["scopes"], json!(["deploy:run", "read@ws/**"]));
    // Deleting it takes it from the key, by force only.
    refused(&api, "delete in use", api.req("DELETE", "/v1/roles/{name}", Some("ci")).auth(a), 409, "ROLE_IN_USE");
    let gone = api.req("DELETE", "/v1/roles/{name}", Some("ci")).auth(a).query("force", "true").send();
    assert_eq!(gone.ok(200)["removed_from"], json!([id]));
    assert_eq!(grants(&api, a, &id, None), (json!([]), json!(["billing:read"])));
    let events = api.get("/v1/audit").auth(a).query("type", "role.deleted").send();
    assert_eq!(events.ok(200)["events"][0]["data"]["removed_from"], json!([id]));
    crate::api_contract::check_against_openapi(&api.exchanges.borrow());
    server.stop();
}

#[test]
fn presets_are_recorded_expanded_and_the_quota_is_the_operators() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let a = admin.as_str();
    let presets = api.get("/v1/presets").auth(a).send();
    let names: Vec<&str> =
        presets.ok(200)["presets"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["full-access", "read-only", "restricted"]);
    let (id, secret) = new_key(&api, a, json!({"name": "viewer", "preset": "read-only", "scopes": ["billing:export"]}));
    let created = api.get("/v1/audit").auth(a).query("key_id", &id).send();
    assert_eq!(
        created.ok(200)["events"][0]["data"]["scopes"],
        json!(["*:read*", "*:list*", "*:get*", "*:query*", "read", "billing:export"])
    );
    assert_eq!(verify(&api, json!({"key": secret, "action": "compute:list_vms"})), "VALID");
    assert_eq!(verify(&api, json!({"key": secret, "action": "compute:delete"})), "FORBIDDEN_SCOPE");
    assert_eq!(verify(&api, json!({"key": secret, "action": "audit:read"})), "FORBIDDEN_SCOPE");
    let restricted = api
        .req("PATCH", "/v1/keys/{id}", Some(&id))
        .auth(a)
        .json(json!({"preset": "restricted", "scopes": ["read"]}))
        .send();
    assert_eq!(restricted.ok(200)["key"]["scopes"], json!(["read"]));
    refused(
        &api,
        "restricted alone",
        api.post("/v1/keys").auth(a).json(json!({"name": "x", "preset": "restricted"})),
        400,
        "VALIDATION",
    );

    // The operator lowers the quota below the count: a warning, then creates
    // are refused until keys are revoked.
    let lowered = api.req("PATCH", "/v1/orgs/{id}", Some("acme")).auth(&system).json(json!({"max_keys": 1})).send();
    let lowered = lowered.ok(200);
    assert_eq!(lowered["org"]["max_keys"], 1);
    assert!(lowered["warnings"][0].as_str().unwrap().contains("more than max_keys 1"), "{lowered}");
    refused(
        &api,
        "a create over the quota",
        api.post("/v1/keys").auth(a).json(key_body("x", &["read"], &[])),
        409,
        "KEY_LIMIT",
    );
    api.req("POST", "/v1/keys/{id}/revoke", Some(&id)).auth(a).send().ok(200);
    let raised = api.req("PATCH", "/v1/orgs/{id}", Some("acme")).auth(&system).json(json!({"max_keys": 3})).send();
    assert!(raised.ok(200)["warnings"].is_null());
    new_key(&api, a, key_body("fits", &["read"], &[]));

    // The operator's list of every org, with the keys counting against
    // each limit (revoked ones do not); a tenant may not read it.
    let list = api.get("/v1/orgs").auth(&system).send();
    let orgs = list.ok(200)["orgs"].as_array().unwrap().clone();
    let ids: Vec<&str> = orgs.iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["_system", "acme"]);
    assert_eq!((orgs[1]["max_keys"].as_u64(), orgs[1]["keys_in_use"].as_u64()), (Some(3), Some(2)), "{orgs:?}");
    refused(&api, "a tenant listing orgs", api.get("/v1/orgs").auth(a), 403, "FORBIDDEN");
    crate::api_contract::check_against_openapi(&api.exchanges.borrow());
    server.stop();
}
