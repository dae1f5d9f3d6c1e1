//! Verifier replicas against a real nats-server and a real registry:
//! reading one's own revocation, agreement by digest, refusing a forged
//! stream, exact access counts, and history from the stream alone.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::nats_support::*;
use crate::serve::*;
use crate::support::*;

#[test]
fn a_revocation_is_seen_with_min_seq_at_once_and_everywhere_within_a_second() {
    let c = Cluster::start(3_600_000);
    let replicas = [c.replica("r1", 3_600_000), c.replica("r2", 3_600_000)];
    let api = c.api();
    for round in 0..5 {
        let (id, key) = new_key(&api, &c.admin, json!({"name": format!("k{round}"), "scopes": ["read"]}));
        let created =
            api.req("GET", "/v1/keys/{id}", Some(&id)).auth(&c.admin).send().json["key"]["version"].as_u64().unwrap();
        for r in &replicas {
            assert_eq!(verify(&Api::new(&r.url), json!({"key": key, "min_seq": created})), "VALID");
        }
        let revoked = api.req("POST", "/v1/keys/{id}/revoke", Some(&id)).auth(&c.admin).send();
        let seq = revoked.ok(200)["key"]["version"].as_u64().unwrap();
        let acknowledged = Instant::now();
        if round % 2 == 0 {
            for r in &replicas {
                let answer = Api::new(&r.url).post("/v1/verify").json(json!({"key": key, "min_seq": seq})).send();
                assert_eq!(answer.ok(200)["code"], "REVOKED");
                assert!(answer.json["seq"].as_u64().unwrap() >= seq);
            }
        } else {
            for r in &replicas {
                let rapi = Api::new(&r.url);
                let seen = eventually(Duration::from_secs(1), || verify(&rapi, json!({"key": key})) == "REVOKED");
                assert!(seen, "a replica still accepted a revoked key {:?} after the revoke", acknowledged.elapsed());
            }
            assert!(acknowledged.elapsed() < Duration::from_secs(1));
        }
    }
}

/// A mixed workload, then registry and replicas agree by digest; a replica
/// killed and restarted rebuilds and agrees again.
#[test]
fn replicas_and_registry_agree_on_the_state_digest() {
    let c = Cluster::start(3_600_000);
    let r1 = c.replica("r1", 3_600_000);
    let r2 = c.replica("r2", 3_600_000);
    let api = c.api();
    let workload = |round: usize| {
        for i in 0..10 {
            let (id, key) = new_key(
                &api,
                &c.admin,
                json!({"name": format!("k{round}-{i}"), "scopes": ["read", "billing:*"], "expires_in_days": 30}),
            );
            verify(&api, json!({"key": key}));
            match i % 5 {
                0 => api.req("POST", "/v1/keys/{id}/revoke", Some(&id)).auth(&c.admin).send(),
                1 => api.req("POST", "/v1/keys/{id}/disable", Some(&id)).auth(&c.admin).send(),
                2 => api
                    .req("PATCH", "/v1/keys/{id}", Some(&id))
                    .auth(&c.admin)
                    .json(json!({"scopes": ["read"], "allowed_cidrs": ["10.0.0.0/8"]}))
                    .send(),
                3 => api
                    .req("POST", "/v1/keys/{id}/rotate", Some(&id))
                    .auth(&c.admin)
                    .json(json!({"grace_seconds": 60}))
                    .send(),
                _ => api
                    .req("DELETE", "/v1/keys/{id}", Some(&id))
                    .auth(&c.admin)
                    .query("confirm", &format!("k{round}-{i}"))
                    .send(),
            }
            .ok(200);
        }
    };
    workload(0);
    let head = api.head();
    wait_applied(&r1, head);
    wait_applied(&r2, head);
    let registry = c.digest();
    assert_eq!(registry["seq"], head);
    assert_eq!(replica_digest(&r1), registry);
    assert_eq!(replica_digest(&r2), registry);

    r1.kill();
    workload(1);
    let r1 = c.replica("r1", 3_600_000);
    let head = api.head();
    wait_applied(&r1, head);
    wait_applied(&r2, head);
    let registry = c.digest();
    assert_ne!(registry["digest"], json!(null));
    assert_eq!(replica_digest(&r1), registry, "the restarted replica agrees");
    assert_eq!(replica_digest(&r2), registry);
    let health = Api::new(&r1.url).ops("/healthz");
    assert_eq!((health.json["lag"].as_u64(), health.json["stream_last_seq"].as_u64()), (Some(0), Some(head)));
    assert_eq!(health.json["head_hash"], api.ops("/healthz").json["head_hash"]);
    assert_eq!(Api::new(&r1.url).ops("/readyz").status, 200);
    let metrics = String::from_utf8(Api::new(&r1.url).ops("/metrics").body).unwrap();
    assert!(metrics.contains("keyreg_replica_apply_lag 0"), "{metrics}");
}

/// An event that carries a valid MAC but breaks the chain (what a
/// registry with a fault, or whoever holds its pepper, would send): the
/// replica stops applying, says where and why, and refuses to answer.
/// (Messages without a valid MAC are never applied at all: `nats_forgery`.)
#[test]
fn an_authenticated_event_that_breaks_the_chain_halts_a_replica() {
    for forgery in ["wrong prevhash", "skipped seq"] {
        let c = Cluster::start_local(3_600_000);
        let r = c.replica("r1", 3_600_000);
        let api = c.api();
        let (_, key) = new_key(&api, &c.admin, json!({"name": "k", "scopes": ["read"]}));
        let head = api.head();
        wait_applied(&r, head);
        let rapi = Api::new(&r.url);
        assert_eq!(verify(&rapi, json!({"key": key})), "VALID");

        let events = api.get("/v1/events").auth(&c.system).query("after_seq", &(head - 1).to_string()).send();
        let mut forged: Value = serde_json::from_slice(events.body.split(|b| *b == b'\n').next().unwrap()).unwrap();
        let head_hash = api.ops("/healthz").json["head_hash"].as_str().unwrap().to_owned();
        match forgery {
            "wrong prevhash" => {
                forged["seq"] = json!(head + 1);
                forged["prevhash"] = json!("ab".repeat(32));
            }
            _ => {
                forged["seq"] = json!(head + 3);
                forged["prevhash"] = json!(head_hash);
            }
        }
        forged["data"]["name"] = json!("forged");
        let bytes = serde_json::to_vec(&forged).unwrap();
        let prev = keyreg::domain::chain::ChainHash::from_hex(forged["prevhash"].as_str().unwrap()).unwrap();
        let hash = prev.next(&bytes);
        let pepper = keyreg::store::load_pepper(&c.server.data.join("pepper")).unwrap();
        let keys = keyreg::domain::mac::MessageKeys::new(&pepper);
        let mac = keyreg::nats::event_mac(&keys, keyreg::domain::id::Seq(head + 1), &hash, &bytes);
        let headers = [("Keyreg-Hash", hash.to_hex()), ("Keyreg-Mac", mac)];
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        publish_raw(&c.nats.url, "keyreg.events.acme.key.created", &headers, bytes);

        assert!(
            eventually(Duration::from_secs(10), || rapi.ops("/healthz").status == 503),
            "{forgery}: the replica kept going"
        );
        let health = rapi.ops("/healthz");
        assert_eq!(health.json["status"], "halted", "{forgery}");
        assert_eq!(health.json["halted"]["seq"], head + 1, "{forgery}: {}", health.json);
        assert_eq!(health.json["applied_seq"], head, "{forgery}");
        rapi.post("/v1/verify").json(json!({"key": key})).send().problem(503, "UNAVAILABLE");
        assert_eq!(rapi.ops("/readyz").status, 503);
        // Later events are not applied either: the registry's outbox, once it
        // has tried to publish on top of the forgery, reports the divergence,
        // and the replica is where it was.
        new_key(&api, &c.admin, json!({"name": "after", "scopes": ["read"]}));
        assert!(
            eventually(Duration::from_secs(10), || api.ops("/readyz").status == 503),
            "{forgery}: the registry should report the divergence"
        );
        assert_eq!(rapi.ops("/healthz").json["applied_seq"], head, "{forgery}");
        rapi.post("/v1/verify").json(json!({"key": key})).send().problem(503, "UNAVAILABLE");
        let readyz = api.ops("/readyz");
        assert!(readyz.json["outbox"]["diverged"].as_str().is_some(), "{}", readyz.json);
    }
}

/// N verifies over two replicas and the registry: the `key.accessed`
/// counts sum to exactly N, also when a report is delivered again.
#[test]
fn access_counts_across_nodes_are_exact() {
    let c = Cluster::start(200);
    let r1 = c.replica("r1", 200);
    let r2 = c.replica("r2", 200);
    let api = c.api();
    let (id, key) = new_key(&api, &c.admin, json!({"name": "counted", "scopes": ["read"]}));
    let created = api.head();
    wait_applied(&r1, created);
    wait_applied(&r2, created);
    let nodes = [Api::new(&c.server.url), Api::new(&r1.url), Api::new(&r2.url)];
    let n = 90;
    for i in 0..n {
        let code = verify(&nodes[i % 3], json!({"key": key, "action": "read", "ip": "198.51.100.7"}));
        assert_eq!(code, "VALID");
    }
    let total =
        || api.req("GET", "/v1/keys/{id}/usage", Some(&id)).auth(&c.admin).send().json["total"].as_u64().unwrap();
    assert!(eventually(Duration::from_secs(15), || total() == n as u64), "usage total is {}", total());
    let usage = api.req("GET", "/v1/keys/{id}/usage", Some(&id)).auth(&c.admin).send();
    assert_eq!(usage.json["outcomes"], json!({"VALID": n}), "replicas report each verify's outcome");
    let accessed = api.get("/v1/audit").auth(&c.admin).query("key_id", &id).query("type", "key.accessed").send();
    let events = accessed.json["events"].as_array().unwrap().clone();
    let sum: u64 = events.iter().map(|e| e["data"]["count"].as_u64().unwrap()).sum();
    assert_eq!(sum, n as u64);
    let nodes_seen: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e["data"]["node"].as_str().unwrap()).collect();
    assert_eq!(nodes_seen, ["r1", "r2", "registry"].into_iter().collect());

    // Deliver one of r1's reports again, under a new message id so that
    // JetStream's own deduplication does not catch it.
    let report = events.iter().find(|e| e["data"]["node"] == "r1").unwrap();
    let mut message = report["data"].clone();
    message["org"] = json!("acme");
    message["key_id"] = json!(id);
    // Sent as r1 itself would (its MAC holds), under a new message id, so
    // only the registry's own check of the report's number stops it.
    let body = serde_json::to_vec(&message).unwrap();
    let pepper = keyreg::store::load_pepper(&c.server.data.join("pepper")).unwrap();
    let mac = keyreg::domain::mac::MessageKeys::new(&pepper).tag(keyreg::domain::mac::Kind::Report, &[&body]);
    publish_raw(&c.nats.url, "keyreg.access.r1", &[("Nats-Msg-Id", "redelivered-1"), ("Keyreg-Mac", &mac)], body);
    // One verify more on r1: its report comes after the redelivered one on
    // the stream, so once it is counted the redelivery was read too.
    assert_eq!(verify(&Api::new(&r1.url), json!({"key": key})), "VALID");
    assert!(
        eventually(Duration::from_secs(10), || total() > n as u64),
        "the report after the redelivery was not counted"
    );
    assert_eq!(total(), n as u64 + 1, "a redelivered report was counted twice");
    let again = api.get("/v1/audit").auth(&c.admin).query("key_id", &id).query("type", "key.accessed").send();
    assert_eq!(again.json["events"].as_array().unwrap().len(), events.len() + 1);

    // Neither stream carries a secret: events hold keyed hashes, reports ids.
    let secrets = [c.system.as_str(), c.admin.as_str(), key.as_str()];
    let layout = keyreg::nats::Layout::default();
    for stream in [layout.events_stream(), layout.access_stream()] {
        let contents = stream_contents(&c.nats.url, &stream);
        assert!(!contents.is_empty(), "{stream} is empty");
        for message in &contents {
            for secret in secrets {
                let core = &secret.as_bytes()[3..35];
                assert!(!message.windows(core.len()).any(|w| w == core), "a secret is in a {stream} message");
            }
        }
    }
}

/// Replay and chain verification from the stream give what the log gives.
#[test]
fn history_from_the_stream_matches_the_log() {
    let c = Cluster::start(3_600_000);
    let api = c.api();
    let mut times = vec![];
    for round in 0..4 {
        let (id, _) = new_key(&api, &c.admin, json!({"name": format!("k{round}"), "scopes": ["read"]}));
        if round > 0 {
            api.req("PATCH", "/v1/keys/{id}", Some(&id))
                .auth(&c.admin)
                .json(json!({"description": "edited"}))
                .send()
                .ok(200);
        }
        if round == 2 {
            api.req("POST", "/v1/keys/{id}/revoke", Some(&id)).auth(&c.admin).send().ok(200);
        }
        std::thread::sleep(Duration::from_millis(30));
        times.push(chrono::Utc::now().to_rfc3339());
        std::thread::sleep(Duration::from_millis(30));
    }
    let head = api.head();
    assert!(eventually(Duration::from_secs(10), || api.ops("/healthz").json["outbox"]["published_seq"] == head));
    let data = c.server.data.clone();
    let nats = c.nats.url.clone();
    let pepper = path_str(&data.join("pepper")).to_owned();
    c.server.stop();
    times.insert(0, "2000-01-01T00:00:00Z".into());
    for t in &times {
        for org in [None, Some("acme")] {
            let mut from_log = vec!["replay", "--data", path_str(&data), "--at", t];
            let mut from_stream = vec!["replay", "--nats", &nats, "--pepper-file", &pepper, "--at", t];
            if let Some(o) = org {
                from_log.extend(["--org", o]);
                from_stream.extend(["--org", o]);
            }
            let (a, b) = (keyreg(&from_log), keyreg(&from_stream));
            assert!(a.status.success() && b.status.success(), "{} {}", stderr(&a), stderr(&b));
            assert_eq!(stdout(&a), stdout(&b), "replay at {t} differs");
        }
    }
    let (a, b) = (
        keyreg(&["audit", "verify", "--data", path_str(&data)]),
        keyreg(&["audit", "verify", "--nats", &nats, "--pepper-file", &pepper]),
    );
    assert!(a.status.success() && b.status.success());
    assert_eq!(stdout(&a), stdout(&b));
    assert!(stdout(&b).starts_with(&format!("ok: {head} events")), "{}", stdout(&b));
    drop(c.nats);
}

/// A small deterministic generator: the same "random" workload every run.
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Random roles given to random keys, then random role edits, gives and
/// deletes: on both replicas every key's verify answer carries the same
/// effective scopes and roles as the registry's view of the key.
#[test]
fn random_role_edits_reach_every_replica() {
    const ROLES: [&str; 4] = ["ops", "ci", "billing.read", "auditor"];
    const SCOPES: [&[&str]; 5] =
        [&["read"], &["deploy:run", "read@ws/**"], &["billing:read_*"], &["audit:read"], &["*:list*", "compute:*"]];
    let c = Cluster::start(3_600_000);
    let replicas = [c.replica("r1", 3_600_000), c.replica("r2", 3_600_000)];
    let api = c.api();
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
    let mut live: Vec<&str> = vec![];
    for name in ROLES {
        let scopes = SCOPES[rng.below(SCOPES.len())];
        api.post("/v1/roles").auth(&c.admin).json(json!({"name": name, "scopes": scopes})).send().ok(201);
        live.push(name);
    }
    let some_roles = |rng: &mut Xorshift, live: &[&str]| -> Vec<String> {
        live.iter().filter(|_| rng.below(3) == 0).map(|r| r.to_string()).collect()
    };
    let mut keys: Vec<(String, String)> = (0..12)
        .map(|i| {
            let roles = some_roles(&mut rng, &live);
            let scopes: &[&str] = if roles.is_empty() || rng.below(2) == 0 { &["read"] } else { &[] };
            new_key(&api, &c.admin, json!({"name": format!("k{i}"), "scopes": scopes, "roles": roles}))
        })
        .collect();
    for _ in 0..80 {
        match rng.below(4) {
            0 => {
                let name = ROLES[rng.below(ROLES.len())];
                let scopes = SCOPES[rng.below(SCOPES.len())];
                let body = json!({"name": name, "scopes": scopes});
                if live.contains(&name) {
                    api.req("PATCH", "/v1/roles/{name}", Some(name)).auth(&c.admin).json(body).send();
                } else {
                    api.post("/v1/roles").auth(&c.admin).json(body).send().ok(201);
                    live.push(name);
                }
            }
            1 => {
                let (id, _) = &keys[rng.below(keys.len())];
                let roles = some_roles(&mut rng, &live);
                let mut body = json!({"roles": roles});
                if roles.is_empty() {
                    body["scopes"] = json!(["read"]);
                }
                api.req("PATCH", "/v1/keys/{id}", Some(id)).auth(&c.admin).json(body).send();
            }
            2 if live.len() > 1 => {
                let name = live.remove(rng.below(live.len()));
                api.req("DELETE", "/v1/roles/{name}", Some(name)).auth(&c.admin).query("force", "true").send().ok(200);
            }
            _ => {
                let roles = some_roles(&mut rng, &live);
                let body = json!({"name": format!("k{}", keys.len()), "scopes": ["read"], "roles": roles});
                keys.push(new_key(&api, &c.admin, body));
            }
        }
    }
    let head = api.head();
    let mut with_roles = 0;
    for r in &replicas {
        wait_applied(r, head);
        let rapi = Api::new(&r.url);
        for (id, secret) in &keys {
            let view = api.req("GET", "/v1/keys/{id}", Some(id)).auth(&c.admin).send().ok(200)["key"].clone();
            let answer = rapi.post("/v1/verify").json(json!({"key": secret})).send().ok(200).clone();
            assert_eq!(
                (&answer["scopes"], &answer["roles"]),
                (&view["effective_scopes"], &view["roles"]),
                "{id} on {}",
                r.url
            );
            with_roles += usize::from(!view["roles"].as_array().unwrap().is_empty());
        }
    }
    assert!(with_roles > 0, "the workload gave no key a role");
    assert_eq!(c.digest()["digest"], replica_digest(&replicas[0])["digest"]);
}

/// People on replicas: an imported legacy key verifies there, and keeps
/// working through its rotation's grace beside its new keyreg secret; an
/// offboarding reaches a replica as one batch, so no reader sees some of
/// the owner's keys revoked and others not.
#[test]
fn legacy_keys_and_offboarding_reach_the_replicas() {
    let c = Cluster::start(3_600_000);
    let replica = c.replica("r1", 3_600_000);
    let api = c.api();
    let rapi = Api::new(&replica.url);
    let legacy = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy";
    assert_eq!(verify(&rapi, json!({"key": legacy})), "MALFORMED", "no legacy key yet: no lookup");

    let imported = api
        .post("/v1/keys/import")
        .auth(&c.admin)
        .json(json!({"name": "slack-era", "owner": "ann@example.com", "scopes": ["read"], "secret": legacy}))
        .send();
    let id = imported.ok(201)["key"]["id"].as_str().unwrap().to_owned();
    let seq = imported.json["key"]["version"].as_u64().unwrap();
    let answer = rapi.post("/v1/verify").json(json!({"key": legacy, "action": "read", "min_seq": seq})).send();
    assert_eq!((answer.ok(200)["code"].as_str(), answer.json["key_id"].as_str()), (Some("VALID"), Some(id.as_str())));
    assert_eq!(verify(&rapi, json!({"key": "xoxb-not-a-key-anyone-has"})), "NOT_FOUND");

    let rotated =
        api.req("POST", "/v1/keys/{id}/rotate", Some(&id)).auth(&c.admin).json(json!({"grace_seconds": 3600})).send();
    let fresh = rotated.ok(200)["secret"].as_str().unwrap().to_owned();
    let seq = rotated.json["key"]["version"].as_u64().unwrap();
    for key in [&fresh, &legacy.to_owned()] {
        assert_eq!(verify(&rapi, json!({"key": key, "min_seq": seq})), "VALID");
    }

    let owned: Vec<String> = (0..5)
        .map(|i| {
            new_key(&api, &c.admin, json!({"name": format!("k{i}"), "owner": "ann@example.com", "scopes": ["read"]})).1
        })
        .collect();
    let offboarded = api.post("/v1/keys/offboard").auth(&c.admin).json(json!({"owner": "ann@example.com"})).send();
    assert_eq!(offboarded.ok(200)["revoked"].as_array().unwrap().len(), 6);
    let head = api.head();
    // Between the batch's first event and its last, the replica answers nothing.
    for key in owned.iter().chain([&fresh]) {
        let answer = rapi.post("/v1/verify").json(json!({"key": key, "min_seq": head - 5})).send();
        assert_eq!(answer.ok(200)["code"], "REVOKED", "a replica answered from the middle of the batch");
        assert!(answer.json["seq"].as_u64().unwrap() >= head);
    }
    wait_applied(&replica, head);
    assert_eq!(replica_digest(&replica), c.digest());
}
