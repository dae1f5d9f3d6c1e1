//! Replicas that know when they cannot vouch for their table: before they
//! have caught up, with another pepper, without the registry's heartbeat;
//! and current again within a second of NATS's return. Registries that
//! share one NATS under different stream prefixes.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::nats_support::*;
use crate::serve::*;
use crate::support::*;

use crate::nats_support::verify_code as code;

/// A replica whose NATS never answered has nothing to vouch for: it is
/// alive but not ready, and verify answers 503 STALE, never `NOT_FOUND`.
#[test]
fn a_replica_that_never_reached_nats_is_not_ready() {
    let dir = tempdir();
    let data = dir.path().join("data");
    assert!(keyreg(&["init", "--data", path_str(&data)]).status.success());
    let nowhere = format!(
        "nats://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    );
    let replica = Verifier::spawn(&nowhere, &data, "lonely", 3_600_000, &[]);
    let api = Api::new(&replica.url);
    // Several looks while its connection attempts fail: it never calls
    // itself ready.
    for _ in 0..4 {
        let health = api.ops("/healthz");
        assert_eq!((health.status, health.json["status"].as_str()), (200, Some("catching_up")), "{}", health.json);
        assert_eq!(api.ops("/readyz").status, 503);
        std::thread::sleep(Duration::from_millis(50));
    }
    let token = keyreg::domain::token::TokenFormat::default().generate();
    api.post("/v1/verify").json(json!({"key": token.expose()})).send().problem(503, "STALE");
}

/// A replica given another pepper learns the registry's fingerprint from
/// the stream and refuses to answer, saying why, rather than answering
/// `NOT_FOUND` for every key.
#[test]
fn a_replica_with_another_pepper_says_so() {
    let dir = tempdir();
    let nats = start_nats(dir.path());
    let (server, _) = Server::init_and_start(dir.path(), &["--nats", &nats.url]);
    let wrong = dir.path().join("wrong-pepper");
    std::fs::write(&wrong, [9u8; 32]).unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let fake_data = dir.path().join("fake");
    std::fs::create_dir(&fake_data).unwrap();
    std::fs::rename(&wrong, fake_data.join("pepper")).unwrap();
    let replica = Verifier::spawn(&nats.url, &fake_data, "misled", 3_600_000, &[]);
    let api = Api::new(&replica.url);
    assert!(eventually(Duration::from_secs(10), || api.ops("/healthz").json["status"] == "wrong_pepper"));
    let ready = api.ops("/readyz");
    assert_eq!(ready.status, 503);
    assert!(ready.json["unavailable"].as_str().unwrap().contains("pepper"), "{}", ready.json);
    assert_eq!(api.ops("/healthz").status, 503, "it cannot recover without its operator");
    let token = keyreg::domain::token::TokenFormat::default().generate();
    api.post("/v1/verify").json(json!({"key": token.expose()})).send().problem(503, "UNAVAILABLE");
    server.stop();
}

/// NATS stopped, three times over, while a key is revoked at the registry:
/// every replica answers 503 STALE within its max-staleness (plus 200 ms),
/// and within a second of NATS's return each answers `REVOKED` for the key
/// revoked during the outage and `VALID` for the one that was not. (Under
/// local commit, where the registry takes writes while NATS is away.)
#[test]
fn replicas_go_stale_without_nats_and_are_current_within_a_second_of_its_return() {
    let dir = tempdir();
    let mut nats = start_nats(dir.path());
    let (server, system) = Server::init_and_start(dir.path(), &["--nats", &nats.url, "--commit", "local"]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let max = Duration::from_secs(1);
    let replicas = [
        Verifier::spawn(&nats.url, &server.data, "r1", 3_600_000, &["--max-staleness", "1s"]),
        Verifier::spawn(&nats.url, &server.data, "r2", 3_600_000, &["--max-staleness", "1s"]),
    ];
    let apis: Vec<Api> = replicas.iter().map(|r| Api::new(&r.url)).collect();
    let (_, valid) = new_key(&api, &admin, json!({"name": "stays", "scopes": ["read"]}));
    for outage in 0..3 {
        let (doomed_id, doomed) =
            new_key(&api, &admin, json!({"name": format!("doomed {outage}"), "scopes": ["read"]}));
        for r in &apis {
            assert!(eventually(Duration::from_secs(20), || code(r, &doomed) == "VALID"), "outage {outage}: not ready");
        }
        nats.stop();
        let stopped = Instant::now();
        for (i, r) in apis.iter().enumerate() {
            assert!(eventually(Duration::from_secs(5), || code(r, &valid) == "STALE"), "outage {outage}: r{i}");
            let took = stopped.elapsed();
            assert!(
                took <= max + Duration::from_millis(200),
                "outage {outage}: r{i} answered for {took:?} without NATS"
            );
        }
        api.req("POST", "/v1/keys/{id}/revoke", Some(&doomed_id)).auth(&admin).json(json!({})).send().ok(200);
        let head = api.head();
        let unpublished = || api.ops("/readyz").json["outbox"]["published_seq"].as_u64().is_some_and(|p| p < head);
        assert!(unpublished(), "the revocation reached a stopped NATS");
        nats.restart().unwrap();
        let back = Instant::now();
        for (i, r) in apis.iter().enumerate() {
            let current =
                eventually(Duration::from_secs(10), || code(r, &doomed) == "REVOKED" && code(r, &valid) == "VALID");
            let took = back.elapsed();
            assert!(current, "outage {outage}: r{i} never caught up");
            assert!(took <= Duration::from_secs(1), "outage {outage}: r{i} was current {took:?} after NATS returned");
            eprintln!("outage {outage}: r{i} current {took:?} after NATS returned");
        }
    }
    server.stop();
}

/// Two registries on one NATS, each under its own stream prefix: each
/// replica follows its own registry; resetting one stream leaves the other.
#[test]
fn stream_prefixes_keep_registries_apart() {
    let dir = tempdir();
    let nats = start_nats(dir.path());
    let mut keys = vec![];
    let mut servers = vec![];
    for prefix in ["alpha", "beta"] {
        let flags = ["--nats", nats.url.as_str(), "--stream-prefix", prefix];
        let (server, system) = Server::init_and_start(&dir.path().join(prefix), &flags);
        let api = Api::new(&server.url);
        let (_, key) = new_key(&api, &system, json!({"name": format!("{prefix} key"), "scopes": ["read"]}));
        keys.push(key);
        servers.push(server);
    }
    for (i, prefix) in ["alpha", "beta"].iter().enumerate() {
        let replica =
            Verifier::spawn(&nats.url, &servers[i].data, prefix, 3_600_000, &["--stream-prefix", prefix]).ready();
        let api = Api::new(&replica.url);
        assert!(eventually(Duration::from_secs(10), || code(&api, &keys[i]) == "VALID"), "{prefix}");
        assert_eq!(code(&api, &keys[1 - i]), "NOT_FOUND", "{prefix} sees only its own registry's keys");
    }
    // A running registry's prefix is not reset from under it.
    let refused = keyreg(&["stream", "reset", "--nats", &nats.url, "--stream-prefix", "alpha", "--yes"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("is running"), "{}", stderr(&refused));
    assert!(stream_names(&nats.url).contains(&"ALPHA_EVENTS".to_owned()));
    for s in servers {
        s.stop();
    }
    let before = stream_names(&nats.url);
    // (The access stream is made when the first report is ingested, so it
    // may not be there yet.)
    assert!(
        before.contains(&"KV_ALPHA_LEADER".to_owned()) && before.contains(&"ALPHA_EVENTS".to_owned()),
        "{before:?}"
    );
    let reset = keyreg(&["stream", "reset", "--nats", &nats.url, "--stream-prefix", "alpha", "--yes"]);
    assert!(reset.status.success(), "{}", stderr(&reset));
    let after = stream_names(&nats.url);
    for name in
        ["ALPHA_EVENTS", "ALPHA_ACCESS", "OBJ_ALPHA_SNAPSHOTS", "KV_ALPHA_LEADER", "ALPHA_NOTICES", "KV_ALPHA_NOTICES"]
    {
        assert!(!after.contains(&name.to_owned()), "{name} is left: {after:?}");
    }
    let betas: Vec<&String> = before.iter().filter(|n| n.contains("BETA")).collect();
    assert!(betas.len() >= 2 && betas.iter().all(|b| after.contains(b)), "{before:?} then {after:?}");
}
