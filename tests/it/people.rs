//! People over HTTP, against a real server: the person a key acts for
//! (`Keyreg-Actor`), whose keys (`owner=`, `created_by=`), offboarding,
//! legacy keys imported from before keyreg, and `keyreg recover`.

use serde_json::{Value, json};

use keyreg::domain::command::{Command as Cmd, NewSecret};
use keyreg::domain::id::OrgId;
use keyreg::domain::legacy;
use keyreg::domain::time::{Clock, Timestamp};
use keyreg::domain::verifier::{self, Code, Presented, Question};

use crate::serve::*;
use crate::support::*;

fn as_ann(req: Req<'_>) -> Req<'_> {
    req.header("Keyreg-Actor", "user:ann@example.com")
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap_or_else(|| k.as_str().unwrap()).to_owned()).collect()
}

fn listed(api: &Api, admin: &str, filters: &[(&str, &str)]) -> Vec<String> {
    let mut req = api.get("/v1/keys").auth(admin).query("status", "all");
    for (name, value) in filters {
        req = req.query(name, value);
    }
    let mut found = ids(&req.send().ok(200)["keys"]);
    found.reverse();
    found
}

fn sha256_hex(secret: &str) -> String {
    legacy::sha256(secret).iter().map(|b| format!("{b:02X}")).collect()
}

#[test]
fn a_key_acts_for_a_person_and_their_keys_are_found() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let admin_id = api.get("/v1/keys").auth(&admin).send().json["keys"][0]["id"].as_str().unwrap().to_owned();
    let (keymaster_id, keymaster) =
        new_key(&api, &admin, json!({"name": "keymaster", "scopes": ["keys:admin", "keys:read"]}));

    let made = as_ann(api.post("/v1/keys").auth(&admin))
        .json(json!({"name": "ann's laptop", "owner": "ann@example.com", "scopes": ["read"]}))
        .send();
    let ann_key = made.ok(201)["key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(made.json["key"]["created_by"], "user:ann@example.com");
    let (bob_key, _) =
        new_key(&api, &admin, json!({"name": "bob's ci", "owner": "bob@example.com", "scopes": ["read"]}));
    let cut = api.req("GET", "/v1/keys/{id}", Some(&bob_key)).auth(&admin).send().json["key"]["created_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let carol = as_ann(api.post("/v1/keys").auth(&admin))
        .json(json!({"name": "carol's", "owner": "ann@example.com.au", "scopes": ["read"]}))
        .send();
    let carol_key = carol.ok(201)["key"]["id"].as_str().unwrap().to_owned();

    // The history names the person, and the key that acted for them.
    let audit = api.get("/v1/audit").auth(&admin).query("actor", "user:ann@example.com").query("order", "asc").send();
    let events = audit.ok(200)["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 2);
    for e in &events {
        assert_eq!(e["actor"], "user:ann@example.com");
        assert_eq!(e["via"], format!("key:{admin_id}"));
    }
    assert_eq!(events[0]["subject"], ann_key.as_str());

    // Whose keys: by exact owner, by creator, and as they stood.
    assert_eq!(listed(&api, &admin, &[("owner", "ann@example.com")]), [ann_key.as_str()]);
    assert_eq!(listed(&api, &admin, &[("created_by", "user:ann@example.com")]), [ann_key.as_str(), carol_key.as_str()]);
    assert_eq!(
        listed(&api, &admin, &[("created_by", &format!("key:{admin_id}"))]),
        [keymaster_id.as_str(), bob_key.as_str()]
    );
    assert_eq!(listed(&api, &admin, &[("created_by", "user:ann@example.com"), ("as_of", &cut)]), [ann_key.as_str()]);
    assert!(listed(&api, &admin, &[("owner", "nobody@example.com")]).is_empty());

    let bad = |value: &str| as_ann(api.post("/v1/keys").auth(&admin)).header("Keyreg-Actor", value);
    let body = json!({"name": "x", "scopes": ["read"]});
    let long = format!("user:{}@example.com", "a".repeat(250));
    let cases: Vec<(&str, Req<'_>, u16, &str)> = vec![
        (
            "a key without actors:assert",
            api.post("/v1/keys").auth(&keymaster).header("Keyreg-Actor", "user:ann@example.com").json(body.clone()),
            403,
            "FORBIDDEN",
        ),
        ("the header twice", bad("user:bob@example.com").json(body.clone()), 400, "VALIDATION"),
        (
            "no user: prefix",
            api.post("/v1/keys").auth(&admin).header("Keyreg-Actor", "ann@example.com").json(body.clone()),
            400,
            "VALIDATION",
        ),
        (
            "not an email",
            api.post("/v1/keys").auth(&admin).header("Keyreg-Actor", "user:ann").json(body.clone()),
            400,
            "VALIDATION",
        ),
        (
            "an over-long email",
            api.post("/v1/keys").auth(&admin).header("Keyreg-Actor", &long).json(body.clone()),
            400,
            "VALIDATION",
        ),
        (
            "a key, not a person",
            api.post("/v1/keys").auth(&admin).header("Keyreg-Actor", &format!("key:{admin_id}")).json(body.clone()),
            400,
            "VALIDATION",
        ),
        (
            "a bad created_by filter",
            api.get("/v1/keys").auth(&admin).query("created_by", "ann@example.com"),
            400,
            "VALIDATION",
        ),
    ];
    for (what, req, status, code) in cases {
        refused(&api, what, req, status, code);
    }
    crate::api_contract::check_against_openapi(&api.exchanges.borrow());
}

#[test]
fn offboarding_revokes_every_key_of_the_owner_at_once() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let key =
        |name: &str, owner: &str| new_key(&api, &admin, json!({"name": name, "owner": owner, "scopes": ["read"]}));
    let (laptop, laptop_secret) = key("laptop", "ann@example.com");
    let (old, _) = key("old", "ann@example.com");
    let (ci, ci_secret) = key("ci", "ann@example.com");
    let (_, bob_secret) = key("bob", "bob@example.com");
    api.req("POST", "/v1/keys/{id}/revoke", Some(&old)).auth(&admin).send().ok(200);

    let head = api.head();
    let r =
        api.post("/v1/keys/offboard").auth(&admin).json(json!({"owner": "ann@example.com", "reason": "left"})).send();
    assert_eq!(r.ok(200)["owner"], "ann@example.com");
    assert_eq!(ids(&r.json["revoked"]), [laptop.clone(), ci.clone()]);
    assert_eq!(api.head(), head + 2, "one event per key revoked, nothing else");
    let revoked =
        api.get("/v1/audit").auth(&admin).query("type", "key.revoked").query("since", "2000-01-01T00:00:00Z").send();
    let seqs: Vec<u64> = revoked.ok(200)["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["reason"] == "left")
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 2);
    assert_eq!(seqs.iter().max().unwrap() - seqs.iter().min().unwrap(), 1, "one batch, nothing between: {seqs:?}");
    for secret in [&laptop_secret, &ci_secret] {
        assert_eq!(verify(&api, json!({"key": secret})), "REVOKED");
    }
    assert_eq!(verify(&api, json!({"key": bob_secret})), "VALID");

    // Again: nothing left to revoke, nothing appended.
    let head = api.head();
    let again = api.post("/v1/keys/offboard").auth(&admin).json(json!({"owner": "ann@example.com"})).send();
    assert!(again.ok(200)["revoked"].as_array().unwrap().is_empty());
    let nobody = api.post("/v1/keys/offboard").auth(&admin).json(json!({"owner": "zed@example.com"})).send();
    assert!(nobody.ok(200)["revoked"].as_array().unwrap().is_empty());
    assert_eq!(api.head(), head);
    for (what, body) in [("no owner", json!({})), ("an empty owner", json!({"owner": " "}))] {
        refused(&api, what, api.post("/v1/keys/offboard").auth(&admin).json(body), 400, "VALIDATION");
    }
    let (_, reader) = new_key(&api, &admin, json!({"name": "reader", "scopes": ["keys:read"]}));
    let as_reader = api.post("/v1/keys/offboard").auth(&reader).json(json!({"owner": "bob@example.com"}));
    refused(&api, "without keys:admin", as_reader, 403, "FORBIDDEN");
    crate::api_contract::check_against_openapi(&api.exchanges.borrow());
}

#[test]
fn imported_legacy_keys_verify_until_rotated_away() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let secret = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";
    let digest_only = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";

    // No legacy key yet: a token not in keyreg's format is malformed, with no lookup.
    assert_eq!(verify(&api, json!({"key": secret})), "MALFORMED");

    let import = |body: Value| api.post("/v1/keys/import").auth(&admin).json(body);
    let r = import(
        json!({"name": "stripe-era", "owner": "ann@example.com", "scopes": ["read", "keys:read"], "secret": secret}),
    )
    .send();
    let key = r.ok(201)["key"].clone();
    assert!(r.json.get("secret").is_none(), "an import never answers a secret: {}", r.json);
    assert_eq!((key["legacy"].as_bool(), key["display_prefix"].as_str()), (Some(true), Some("sk_l")));
    let id = key["id"].as_str().unwrap().to_owned();
    let by_digest =
        import(json!({"name": "github-era", "scopes": ["read"], "secret_sha256": sha256_hex(digest_only)})).send();
    assert_eq!(by_digest.ok(201)["key"]["display_prefix"], "legacy");

    let answer = api.post("/v1/verify").json(json!({"key": secret, "action": "read"})).send();
    assert_eq!((answer.ok(200)["code"].as_str(), answer.json["key_id"].as_str()), (Some("VALID"), Some(id.as_str())));
    assert_eq!(verify(&api, json!({"key": digest_only})), "VALID");
    assert_eq!(verify(&api, json!({"key": "sk_live_not_a_key_we_know"})), "NOT_FOUND");
    // A legacy key may call the API like any key.
    assert_eq!(api.get("/v1/keys").auth(secret).send().status, 200);
    // The secret is in no stored event, no answer, no log line.
    let audit = api.get("/v1/audit").auth(&admin).query("type", "key.imported").send();
    assert_eq!(audit.ok(200)["events"].as_array().unwrap().len(), 2);
    assert!(!String::from_utf8_lossy(&audit.body).contains(secret));

    let (_, native) = new_key(&api, &admin, json!({"name": "native", "scopes": ["read"]}));
    let bad_hex = format!("{}zz", &sha256_hex("x")[..62]);
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "both",
            json!({"name": "x", "scopes": ["read"], "secret": "another_secret_123", "secret_sha256": sha256_hex("a")}),
            400,
            "VALIDATION",
        ),
        ("neither", json!({"name": "x", "scopes": ["read"]}), 400, "VALIDATION"),
        ("keyreg's own format", json!({"name": "x", "scopes": ["read"], "secret": native}), 400, "VALIDATION"),
        ("already imported", json!({"name": "x", "scopes": ["read"], "secret": secret}), 409, "CONFLICT"),
        (
            "already imported, by digest",
            json!({"name": "x", "scopes": ["read"], "secret_sha256": sha256_hex(secret)}),
            409,
            "CONFLICT",
        ),
        ("a bad hex digest", json!({"name": "x", "scopes": ["read"], "secret_sha256": bad_hex}), 400, "VALIDATION"),
        ("a short digest", json!({"name": "x", "scopes": ["read"], "secret_sha256": "abcd"}), 400, "VALIDATION"),
        (
            "a control character",
            json!({"name": "x", "scopes": ["read"], "secret": "legacy\u{7}secret_0123456"}),
            400,
            "VALIDATION",
        ),
        ("a space", json!({"name": "x", "scopes": ["read"], "secret": "legacy secret_0123456"}), 400, "VALIDATION"),
        ("too short", json!({"name": "x", "scopes": ["read"], "secret": "short_1"}), 400, "VALIDATION"),
        ("no scope", json!({"name": "x", "secret": "unscoped_secret_0123"}), 400, "VALIDATION"),
    ];
    for (what, body, status, code) in cases {
        refused(&api, what, import(body), status, code);
    }
    let given = api
        .post("/v1/keys")
        .auth(&admin)
        .json(json!({"name": "x", "scopes": ["read"], "secret": "mine_0123456789abc"}));
    refused(&api, "a secret given to create", given, 400, "VALIDATION");

    // Rotating gives a keyreg secret; the legacy one works while the grace lasts.
    let rotated =
        api.req("POST", "/v1/keys/{id}/rotate", Some(&id)).auth(&admin).json(json!({"grace_seconds": 3600})).send();
    let new_secret = rotated.ok(200)["secret"].as_str().unwrap().to_owned();
    assert!(new_secret.starts_with("kr_"), "{new_secret}");
    assert!(rotated.json["key"].get("legacy").is_none(), "{}", rotated.json);
    assert_eq!(verify(&api, json!({"key": new_secret})), "VALID");
    assert_eq!(verify(&api, json!({"key": secret})), "VALID");
    // The rotated-away secret still names this key while its grace lasts:
    // it cannot come back as another (after it, it is free: decide tests).
    refused(
        &api,
        "a secret in grace",
        import(json!({"name": "x", "scopes": ["read"], "secret": secret})),
        409,
        "CONFLICT",
    );
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(!log.contains(secret) && !log.contains(digest_only), "a legacy secret reached the log");
    crate::api_contract::check_against_openapi(&api.exchanges.borrow());
}

/// The grace period on the clock, to the microsecond: the old legacy secret
/// works until the instant it ends and not at it.
#[test]
fn a_rotated_legacy_secret_works_only_during_its_grace() {
    let dir = tempdir();
    let (registry, _, clock) = registry_with_clock(dir.path());
    let system = OrgId::system();
    let mut imported = registry.new_key(&registry.format().generate(), "legacy", "", &["read"]);
    let id = imported.id;
    imported.secret = NewSecret {
        hash: legacy::hash_secret(registry.pepper(), LEGACY_SECRET),
        display_prefix: legacy::display_prefix(LEGACY_SECRET),
    };
    registry.execute_blocking(admin(), system.clone(), Cmd::ImportKey(imported)).unwrap();
    let code = |token: &str| {
        let presented = Presented::of(registry.format(), registry.pepper(), token);
        let table = &registry.read().table;
        verifier::check(table, &presented, &Question::default(), clock.now()).code
    };
    assert_eq!(code(LEGACY_SECRET), Code::Valid);
    let fresh = registry.format().generate();
    let rotate = Cmd::Rotate { id, expected: None, secret: registry.secret_of(&fresh), grace_seconds: 60 };
    registry.execute_blocking(admin(), system, rotate).unwrap();
    let until = clock.now().plus_seconds(60);
    assert_eq!((code(LEGACY_SECRET), code(fresh.expose())), (Code::Valid, Code::Valid));
    clock.set(Timestamp::from_micros(until.micros() - 1));
    assert_eq!(code(LEGACY_SECRET), Code::Valid);
    clock.set(until);
    assert_eq!((code(LEGACY_SECRET), code(fresh.expose())), (Code::NotFound, Code::Valid));
}

#[test]
fn recover_issues_a_system_key_on_a_stopped_registry_only() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let data = server.data.clone();
    let running = keyreg(&["recover", "--data", path_str(&data)]);
    assert!(!running.status.success());
    assert!(stdout(&running).is_empty());
    assert!(stderr(&running).contains("running") && stderr(&running).contains("stop it"), "{}", stderr(&running));
    let api = Api::new(&server.url);
    let first = api.get("/v1/keys").auth(&system).send().json["keys"][0].clone();
    server.stop();

    let recovered = keyreg(&["recover", "--data", path_str(&data)]);
    assert!(recovered.status.success(), "{}", stderr(&recovered));
    let token = stdout(&recovered);
    assert_eq!(token.lines().count(), 1, "the token alone on stdout: {token:?}");
    let token = token.trim();
    assert!(!stderr(&recovered).contains(token));

    let server = Server::start(&data, &[]);
    let api = Api::new(&server.url);
    let me = api.get("/v1/keys").auth(token).query("created_by", "system:recovery").send();
    let key = me.ok(200)["keys"][0].clone();
    assert_eq!(key["org"], "_system");
    assert_eq!(key["scopes"], first["scopes"], "the first system key's scopes");
    let audit = api.get("/v1/audit").auth(token).query("actor", "system:recovery").send();
    assert_eq!(audit.ok(200)["events"][0]["type"], "key.created");
    new_org(&api, token, "rescued");
    // The lost key still works until someone revokes it: recovery adds, it takes nothing away.
    assert_eq!(api.get("/v1/keys").auth(&system).send().status, 200);

    let empty = tempdir();
    let nowhere = keyreg(&["recover", "--data", path_str(&empty.path().join("none"))]);
    assert!(!nowhere.status.success());
    assert!(!stderr(&nowhere).is_empty());
}
