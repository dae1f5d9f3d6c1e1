//! What someone allowed to publish on keyreg's NATS subjects can do, and
//! cannot, tried with a second client publishing forged messages against a
//! real nats-server, registry and replica: events that chain correctly but
//! carry no valid MAC, heartbeats (forged and replayed), access reports and
//! snapshot objects.

use std::time::Duration;

use serde_json::{Value, json};

use crate::nats_support::*;
use crate::serve::*;
use crate::support::*;

/// The stored event at `seq`, as JSON.
fn event_at(c: &Cluster, seq: u64) -> Value {
    let events = c.api().get("/v1/events").auth(&c.system).query("after_seq", &(seq - 1).to_string()).send();
    serde_json::from_slice(events.body.split(|b| *b == b'\n').next().unwrap()).unwrap()
}

/// An event that chains onto the registry's head, as anyone who reads the
/// stream's last `Keyreg-Hash` can make: `change` turns a copy of the
/// event at `model` into the forgery. Returns its bytes and chain hash.
fn chained_forgery(c: &Cluster, model: u64, change: impl FnOnce(&mut Value)) -> (Vec<u8>, String) {
    let api = c.api();
    let head = api.head();
    let mut forged = event_at(c, model);
    forged["seq"] = json!(head + 1);
    forged["id"] = json!(format!("evt_forged{head}"));
    forged["prevhash"] = json!(api.get("/healthz").send().json["head_hash"].as_str().unwrap());
    change(&mut forged);
    let bytes = serde_json::to_vec(&forged).unwrap();
    let prev = keyreg::domain::chain::ChainHash::from_hex(forged["prevhash"].as_str().unwrap()).unwrap();
    let hash = prev.next(&bytes).to_hex();
    (bytes, hash)
}

/// A forged `key.scopes_edited ["*"]` for a key, chained correctly onto the
/// stream and published under the next sequence's message id, is applied
/// by no replica, and `audit verify --nats` names it; the registry does
/// not count its own next event as published on top of it (no "duplicate"
/// ack taken on trust) and its `/readyz` names the sequence.
#[test]
fn a_forged_event_with_a_valid_chain_is_never_applied() {
    let c = Cluster::start(3_600_000);
    let r = c.replica("r1", 3_600_000);
    let api = c.api();
    let (id, key) = new_key(&api, &c.admin, json!({"name": "narrow", "scopes": ["read"]}));
    let edited = api
        .req("PATCH", "/v1/keys/{id}", Some(&id))
        .auth(&c.admin)
        .json(json!({"scopes": ["read", "billing:read"]}))
        .send()
        .ok(200)["key"]["version"]
        .as_u64()
        .unwrap();
    let head = api.head();
    wait_applied(&r, head);
    let rapi = Api::new(&r.url);
    let question = json!({"key": key, "action": "admin:everything"});
    assert_eq!(verify(&rapi, question.clone()), "FORBIDDEN_SCOPE");

    let (bytes, hash) = chained_forgery(&c, edited, |e| {
        assert_eq!(e["type"], "key.scopes_edited");
        e["data"]["scopes"] = json!(["*"]);
    });
    let msg_id = (head + 1).to_string();
    let headers = [("Keyreg-Hash", hash.as_str()), ("Nats-Msg-Id", msg_id.as_str())];
    publish_raw(&c.nats.url, "keyreg.events.acme.key.scopes_edited", &headers, bytes);

    // The replica sees it (it names it) and does not apply it.
    assert!(
        eventually(Duration::from_secs(10), || rapi.get("/healthz").send().json["untrusted"]["seq"] == head + 1),
        "the replica did not report the forged event: {}",
        rapi.get("/healthz").send().json
    );
    let health = rapi.get("/healthz").send();
    assert_eq!(health.json["applied_seq"], head, "{}", health.json);
    assert_eq!(verify(&rapi, question.clone()), "FORBIDDEN_SCOPE", "the forged scope was applied");

    // The registry's next event cannot go on top: the outbox reports the
    // divergence at the forged sequence, and the replica, which can no
    // longer hear a current registry, fails closed instead of answering.
    new_key(&api, &c.admin, json!({"name": "after", "scopes": ["read"]}));
    assert!(
        eventually(Duration::from_secs(10), || readyz(&api).status == 503),
        "the registry should report the divergence"
    );
    let ready = readyz(&api);
    let diverged = ready.json["outbox"]["diverged"].as_str().unwrap_or_default().to_owned();
    assert!(diverged.contains(&format!("at {}", head + 1)), "{}", ready.json);
    assert!(ready.json["outbox"]["published_seq"].as_u64().unwrap() <= head, "{}", ready.json);
    let stale = || rapi.post("/v1/verify").json(question.clone()).send().status == 503;
    assert!(eventually(Duration::from_secs(10), stale), "the replica kept answering");
    rapi.post("/v1/verify").json(question).send().problem(503, "STALE");

    // Read from the stream with the pepper, the history is refused at the
    // forgery; the log's is intact.
    let pepper = c.server.data.join("pepper");
    let from_stream = keyreg(&["audit", "verify", "--nats", &c.nats.url, "--pepper-file", path_str(&pepper)]);
    assert!(!from_stream.status.success(), "{}", stdout(&from_stream));
    let said = format!("{}{}", stdout(&from_stream), stderr(&from_stream));
    assert!(said.contains(&(head + 1).to_string()) && said.contains("MAC"), "{said}");
    let without_pepper = keyreg(&["audit", "verify", "--nats", &c.nats.url]);
    assert!(!without_pepper.status.success());
    assert!(stderr(&without_pepper).contains("--pepper-file"), "{}", stderr(&without_pepper));
}
