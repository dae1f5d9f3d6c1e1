//! Stream commit on a 3-node NATS cluster (R3 streams, `sync_interval:
//! always`): the node leading the events stream killed, writes resume within 15 s and the
//! replica keeps answering; every node stopped, writes answer 503 within
//! the commit timeout plus a second and never appear later.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::nats_server::NatsCluster;
use crate::nats_support::*;
use crate::serve::*;
use crate::support::*;

#[test]
fn writes_survive_one_nats_node_and_stop_cleanly_without_all_three() {
    let dir = tempdir();
    let mut cluster = NatsCluster::start(dir.path(), 3).unwrap_or_else(|e| panic!("{e}"));
    let flags = ["--nats", cluster.url.as_str(), "--stream-replicas", "3", "--commit-timeout", "2s"];
    let (server, system) = Server::init_and_start(dir.path(), &flags);
    let api = Api::new(&server.url);
    // The cluster elects its JetStream leaders first; the registry then
    // settles its log into the new R3 stream.
    let settled =
        || api.ops("/readyz").json["outbox"]["lag"] == 0 && api.ops("/readyz").json["outbox"]["connected"] == true;
    let log_tail = || {
        let log = std::fs::read_to_string(&server.log).unwrap_or_default();
        let from = (log.len().saturating_sub(4000)..log.len()).find(|i| log.is_char_boundary(*i)).unwrap_or(0);
        log[from..].to_owned()
    };
    assert!(eventually(Duration::from_secs(60), settled), "{}\n{}", api.ops("/readyz").json, log_tail());
    let admin = new_org(&api, &system, "acme");
    let replica = Verifier::start(&cluster.url, &server.data, "r1", 3_600_000);
    let r = Api::new(&replica.url);
    let (_, before) = new_key(&api, &admin, json!({"name": "before", "scopes": ["read"]}));
    assert!(eventually(Duration::from_secs(5), || verify_code(&r, &before) == "VALID"));

    let leader = stream_leader(&cluster.url);
    let victim: usize = leader.trim_start_matches('n').parse().unwrap();
    cluster.nodes[victim].stop();
    let killed = Instant::now();
    let mut refused = 0;
    let during = loop {
        let answer = api.post("/v1/keys").auth(&admin).json(json!({"name": "during", "scopes": ["read"]})).send();
        if answer.status == 201 {
            break answer.json["secret"].as_str().unwrap().to_owned();
        }
        // The stream unconfirmed, or the node's lease on the lost server
        // lapsed: either way nothing changed.
        assert!(["UNAVAILABLE", "NO_LEADER"].contains(&answer.json["code"].as_str().unwrap_or("")), "{}", answer.json);
        refused += 1;
        assert!(killed.elapsed() < Duration::from_secs(15), "writes did not resume: {}", answer.json);
    };
    let resumed = killed.elapsed();
    eprintln!("the stream's leader {leader} killed: writes resumed after {resumed:?} ({refused} refused meanwhile)");
    assert!(eventually(Duration::from_secs(5), || verify_code(&r, &during) == "VALID"));
    assert_eq!(verify_code(&r, &before), "VALID");

    for node in &mut cluster.nodes {
        node.stop();
    }
    let head = api.head();
    let asked = Instant::now();
    let answer = api.post("/v1/keys").auth(&admin).json(json!({"name": "nowhere", "scopes": ["read"]})).send();
    assert_eq!(answer.status, 503, "{}", answer.json);
    assert!(["UNAVAILABLE", "NO_LEADER"].contains(&answer.json["code"].as_str().unwrap_or("")), "{}", answer.json);
    assert!(asked.elapsed() <= Duration::from_secs(3), "answered after {:?}", asked.elapsed());
    assert_eq!(api.head(), head);

    for node in &mut cluster.nodes {
        node.restart().unwrap();
    }
    let (_, after) = loop {
        let answer = api.post("/v1/keys").auth(&admin).json(json!({"name": "after", "scopes": ["read"]})).send();
        if answer.status == 201 {
            let v = answer.json;
            break (v["key"]["id"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned());
        }
        assert!(asked.elapsed() < Duration::from_secs(60), "writes never resumed: {}\n{}", answer.json, log_tail());
    };
    let names = key_names(&api, &admin);
    assert!(!names.contains(&"nowhere".to_owned()), "{names:?}");
    assert!(eventually(Duration::from_secs(10), || verify_code(&r, &after) == "VALID"));
}
