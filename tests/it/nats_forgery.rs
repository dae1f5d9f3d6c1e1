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
    forged["prevhash"] = json!(api.ops("/healthz").json["head_hash"].as_str().unwrap());
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
    let c = Cluster::start_local(3_600_000);
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
        eventually(Duration::from_secs(10), || rapi.ops("/healthz").json["untrusted"]["seq"] == head + 1),
        "the replica did not report the forged event: {}",
        rapi.ops("/healthz").json
    );
    let health = rapi.ops("/healthz");
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

/// Publishes core NATS messages (not through JetStream) on `subject`, each
/// `(headers, body)` in turn, every 100 ms for `for_how_long`.
fn publish_core_for(url: &str, subject: &str, messages: &[(async_nats::HeaderMap, Vec<u8>)], for_how_long: Duration) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let started = std::time::Instant::now();
        while started.elapsed() < for_how_long {
            for (headers, body) in messages {
                client.publish_with_headers(subject.to_owned(), headers.clone(), body.clone().into()).await.unwrap();
            }
            client.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// One genuine heartbeat, as the registry sent it.
fn capture_heartbeat(url: &str) -> (async_nats::HeaderMap, Vec<u8>) {
    use futures_util::StreamExt;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let mut beats = client.subscribe("keyreg.heartbeat").await.unwrap();
        let beat = tokio::time::timeout(Duration::from_secs(10), beats.next()).await.unwrap().unwrap();
        (beat.headers.unwrap_or_default(), beat.payload.to_vec())
    })
}

/// A forged heartbeat naming the replica's own sequence with another hash
/// once halted every replica for good; now it is ignored. A genuine beat
/// recorded and played again, after the registry stopped, does not keep
/// a replica fresh: it goes stale after `--max-staleness` as if nothing
/// were said.
#[test]
fn forged_and_replayed_heartbeats_neither_halt_a_replica_nor_keep_it_fresh() {
    let c = Cluster::start_local(3_600_000);
    let log = c._dir.path().join("replica-r1.log");
    let r = Verifier::spawn_logged(&c.nats.url, &c.server.data, "r1", &log).ready();
    let rapi = Api::new(&r.url);
    let api = c.api();
    let (_, key) = new_key(&api, &c.admin, json!({"name": "k", "scopes": ["read"]}));
    let head = api.head();
    wait_applied(&r, head);

    let forged = json!({"seq": head, "hash": "ab".repeat(32), "time": "2026-01-01T00:00:00.000000Z"});
    let forged = vec![(async_nats::HeaderMap::new(), serde_json::to_vec(&forged).unwrap())];
    publish_core_for(&c.nats.url, "keyreg.heartbeat", &forged, Duration::from_millis(500));
    let said = || std::fs::read_to_string(&log).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || said().contains("a heartbeat whose MAC fails; ignored")),
        "{}",
        said()
    );
    let health = rapi.ops("/healthz");
    assert_eq!(health.json["status"], "ok", "{}", health.json);
    assert_eq!(verify(&rapi, json!({"key": key})), "VALID");

    let genuine = capture_heartbeat(&c.nats.url);
    c.server.stop();
    let started = std::time::Instant::now();
    let nats = c.nats.url.clone();
    let replay = std::thread::spawn(move || {
        publish_core_for(&nats, "keyreg.heartbeat", &[genuine], Duration::from_secs(6));
    });
    let stale =
        eventually(Duration::from_secs(5), || rapi.post("/v1/verify").json(json!({"key": key})).send().status == 503);
    assert!(stale, "a replayed heartbeat kept the replica fresh for {:?}", started.elapsed());
    rapi.post("/v1/verify").json(json!({"key": key})).send().problem(503, "STALE");
    replay.join().unwrap();
    assert!(said().contains("a heartbeat no newer than the last one; ignored"), "{}", said());
}

/// Access reports anyone could publish: without the MAC (a count of
/// u64::MAX, a time in 2099, HTML for an address, a 100 KB node name) they
/// are dropped; with a valid MAC but the same fields, refused as input.
/// Neither reaches the log. A genuine report sent after them is counted,
/// which shows the ones before it were read and passed over.
#[test]
fn forged_access_reports_are_never_counted() {
    let c = Cluster::start(3_600_000);
    let api = c.api();
    let (id, _) = new_key(&api, &c.admin, json!({"name": "k", "scopes": ["read"]}));
    let pepper = keyreg::store::load_pepper(&c.server.data.join("pepper")).unwrap();
    let keys = keyreg::domain::mac::MessageKeys::new(&pepper);
    let now = chrono::Utc::now();
    let at = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let report = |n: u32, count: u64, last_at: String, ip: &str, node: &str| {
        json!({
            "org": "acme", "key_id": id, "count": count, "first_at": at(now), "last_at": last_at,
            "last_ip": ip, "node": node, "report_id": format!("{node}-1-{n}"),
        })
    };
    let hostile = |n| report(n, u64::MAX, "2099-01-01T00:00:00.000000Z".into(), "<b>1.2.3.4</b>", &"n".repeat(100_000));
    let publish = |body: Value, mac: bool| {
        let body = serde_json::to_vec(&body).unwrap();
        let tag = keys.tag(keyreg::domain::mac::Kind::Report, &[&body]);
        let headers: Vec<(&str, &str)> = if mac { vec![("Keyreg-Mac", tag.as_str())] } else { vec![] };
        publish_raw(&c.nats.url, "keyreg.access.evil", &headers, body);
    };
    let access = || stream_names(&c.nats.url).contains(&"KEYREG_ACCESS".to_owned());
    assert!(eventually(Duration::from_secs(10), access), "the registry made no access stream");
    let head = api.head();
    publish(hostile(1), false);
    publish(hostile(2), true);
    publish(report(3, u64::MAX, at(now), "10.0.0.1", "evil"), false);
    publish(report(4, 5, at(now), "10.0.0.1", "honest"), true);
    let usage = || api.req("GET", "/v1/keys/{id}/usage", Some(&id)).auth(&c.admin).send().json["total"].clone();
    assert!(eventually(Duration::from_secs(10), || usage() == 5), "usage: {}", usage());
    let events = api.get("/v1/events").auth(&c.system).query("after_seq", &head.to_string()).send();
    let appended: Vec<Value> = events
        .body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(appended.len(), 1, "{appended:?}");
    assert_eq!(appended[0]["data"]["node"], "honest");
}

/// A tenant's catalogue too large for one event is refused, naming the
/// limit, and nothing is appended. One that fits the log but not this NATS
/// server's `max_payload` (64 KiB here) no longer stalls the outbox in
/// silence: `/readyz` fails naming the event, its size and the limit.
#[test]
fn an_event_nats_will_not_take_fails_readiness_and_an_oversized_catalogue_is_refused() {
    let dir = tempdir();
    let nats = NatsServer::start_configured(dir.path(), Some("max_payload: 65536\n")).unwrap();
    let (server, system) = Server::init_and_start(dir.path(), &["--nats", &nats.url, "--commit", "local"]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let catalogue = |actions: usize, description: usize| {
        let actions: Vec<Value> = (0..actions)
            .map(|i| json!({"action": format!("svc:action_{i}"), "description": "d".repeat(description)}))
            .collect();
        json!({"actions": actions, "enforce": false})
    };
    let head = api.head();
    let refused = api.req("PUT", "/v1/catalog", None).auth(&admin).json(catalogue(1000, 600)).send();
    refused.problem(400, "VALIDATION");
    assert!(refused.json["detail"].as_str().unwrap().contains("524288"), "{}", refused.json);
    assert_eq!(api.head(), head, "a refused catalogue appended something");

    assert!(eventually(Duration::from_secs(10), || readyz(&api).status == 200));
    let big = api.req("PUT", "/v1/catalog", None).auth(&admin).json(catalogue(400, 200)).send();
    big.ok(200);
    let seq = api.head();
    assert!(eventually(Duration::from_secs(10), || readyz(&api).status == 503), "{}", readyz(&api).json);
    let stuck = readyz(&api).json["outbox"]["stuck"].as_str().unwrap_or_default().to_owned();
    assert!(stuck.contains(&format!("event {seq}")) && stuck.contains("65536"), "{stuck}");
    server.stop();
}

/// A registry that signs one history while it streams another: the
/// replica's tree over the events it applied lacks the signed root, and it
/// says so and stops answering. A checkpoint without the registry's MAC
/// (anyone may publish) changes nothing.
#[test]
fn a_replica_holds_the_registry_to_its_checkpoints() {
    use keyreg::domain::mac::MessageKeys;
    use keyreg::domain::note::{Checkpoint, LOG_KEY};
    let c = Cluster::start(3_600_000);
    let log = c._dir.path().join("replica-r1.log");
    let r = Verifier::spawn_logged(&c.nats.url, &c.server.data, "r1", &log).ready();
    let (rapi, api) = (Api::new(&r.url), c.api());
    let (_, key) = new_key(&api, &c.admin, json!({"name": "k", "scopes": ["read"]}));
    let head = api.head();
    wait_applied(&r, head);
    let signed = || String::from_utf8(api.get("/v1/checkpoint").send().body).unwrap();
    assert!(eventually(Duration::from_secs(5), || signed().lines().nth(1) == Some(&head.to_string())));
    let said = || std::fs::read_to_string(&log).unwrap();
    assert_eq!(rapi.ops("/readyz").status, 200, "{}", said());

    // Signed with the log's own key, as a registry that lies would.
    let key_file = c.server.data.join("log-key");
    let log_key = keyreg::store::key::load(&key_file, LOG_KEY).unwrap();
    let lie = Checkpoint { origin: log_key.verifier().name.clone(), size: head, root: [7; 32] }.sign(&log_key);
    let no_mac = vec![(async_nats::HeaderMap::new(), lie.to_string().into_bytes())];
    publish_core_for(&c.nats.url, "keyreg.checkpoints", &no_mac, Duration::from_millis(300));
    assert!(
        eventually(Duration::from_secs(5), || said().contains("a checkpoint whose MAC fails; ignored")),
        "{}",
        said()
    );
    assert_eq!(rapi.ops("/readyz").status, 200);

    let pepper = keyreg::store::load_pepper(&c.server.data.join("pepper")).unwrap();
    let (headers, body) = keyreg::nats::checkpoints::message(&lie, &MessageKeys::new(&pepper));
    publish_core_for(&c.nats.url, "keyreg.checkpoints", &[(headers, body.to_vec())], Duration::from_millis(300));
    assert!(eventually(Duration::from_secs(5), || rapi.ops("/readyz").status == 503), "{}", said());
    let health = rapi.ops("/readyz").json;
    assert_eq!(health["status"], "fork", "{health}");
    assert!(health["unavailable"].as_str().unwrap().contains("different histories"), "{health}");
    rapi.post("/v1/verify").json(json!({"key": key})).send().problem(503, "UNAVAILABLE");
    assert!(said().contains("the replica stops answering"), "{}", said());
}
