//! Stream commit (the default with `--nats`): a write is acknowledged only
//! once JetStream stored it, so replicas prove their freshness from the
//! stream itself and verifies outlive every registry; a write JetStream
//! never stored is refused and never appears later; and a registry that
//! goes back to local commit first takes the proof away.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::nats_support::*;
use crate::serve::*;
use crate::support::*;

/// The registry stopped (SIGTERM, as a deploy does): for 60 s every
/// verify at the replica answers as before, never 503. NATS stopped too:
/// the replica fails closed after its max staleness, and answers again
/// within a second of NATS's return.
#[test]
fn verifies_outlive_the_registry_and_fail_closed_only_without_nats() {
    let dir = tempdir();
    let mut nats = start_nats(dir.path());
    let (server, system) = Server::init_and_start(dir.path(), &["--nats", &nats.url]);
    let api = Api::new(&server.url);
    assert_eq!(api.ops("/readyz").json["commit"], "stream");
    let admin = new_org(&api, &system, "acme");
    let (_, valid) = new_key(&api, &admin, json!({"name": "stays", "scopes": ["read"]}));
    let (revoked_id, revoked) = new_key(&api, &admin, json!({"name": "goes", "scopes": ["read"]}));
    api.req("POST", "/v1/keys/{id}/revoke", Some(&revoked_id)).auth(&admin).json(json!({})).send().ok(200);
    let replica = Verifier::start(&nats.url, &server.data, "r1", 3_600_000);
    let r = Api::new(&replica.url);
    assert!(eventually(Duration::from_secs(10), || verify_code(&r, &revoked) == "REVOKED"));
    assert_eq!(r.ops("/readyz").json["freshness_source"], "stream");

    server.stop();
    let stopped = Instant::now();
    let mut answers = 0;
    while stopped.elapsed() < Duration::from_secs(60) {
        assert_eq!(verify_code(&r, &valid), "VALID", "{:?} after the registry stopped", stopped.elapsed());
        assert_eq!(verify_code(&r, &revoked), "REVOKED", "{:?} after the registry stopped", stopped.elapsed());
        answers += 2;
        std::thread::sleep(Duration::from_millis(100));
    }
    let ready = r.ops("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.json);
    assert!(ready.json["confirmed_ms"].as_u64().unwrap() < 2000, "{}", ready.json);
    eprintln!("{answers} verifies answered in the 60 s the registry was down");

    nats.stop();
    let gone = Instant::now();
    assert!(eventually(Duration::from_secs(5), || verify_code(&r, &valid) == "STALE"), "it kept answering");
    let took = gone.elapsed();
    // --max-staleness 2s, the default, with a probe's round trip of slack.
    assert!(took <= Duration::from_millis(2700), "it answered {took:?} without NATS");
    nats.restart().unwrap();
    let back = Instant::now();
    assert!(eventually(Duration::from_secs(5), || verify_code(&r, &valid) == "VALID"), "it never answered again");
    let took = back.elapsed();
    assert!(took <= Duration::from_secs(1), "it answered {took:?} after NATS returned");
    eprintln!("stale {:?} after NATS stopped; answering {took:?} after it returned", gone.elapsed() - took);
}

/// NATS stopped: a write answers 503 `UNAVAILABLE` within the commit
/// timeout (plus a second), nothing is appended, and nothing appears
/// later when NATS returns; the next write goes through.
#[test]
fn a_write_jetstream_never_stored_is_refused_and_never_appears() {
    let dir = tempdir();
    let mut nats = start_nats(dir.path());
    let (server, system) = Server::init_and_start(dir.path(), &["--nats", &nats.url, "--commit-timeout", "1s"]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let head = api.head();
    assert!(eventually(Duration::from_secs(5), || stream_last(&nats.url) == head));

    nats.stop();
    for name in ["during-1", "during-2"] {
        let asked = Instant::now();
        let refused = api.post("/v1/keys").auth(&admin).json(json!({"name": name, "scopes": ["read"]})).send();
        refused.problem(503, "UNAVAILABLE");
        assert!(asked.elapsed() <= Duration::from_secs(2), "answered after {:?}", asked.elapsed());
        assert!(refused.json["detail"].as_str().unwrap().contains("nothing changed"), "{}", refused.json);
    }
    assert_eq!(api.head(), head, "a refused write was appended");
    let reads = api.get("/v1/keys").auth(&admin).send();
    assert_eq!(reads.ok(200)["keys"].as_array().unwrap().len(), 1, "reads go on; only the org's first key");

    nats.restart().unwrap();
    let (_, after) = new_key(&api, &admin, json!({"name": "after", "scopes": ["read"]}));
    let names = key_names(&api, &admin);
    assert!(!names.iter().any(|n| n.starts_with("during")), "{names:?}");
    assert_eq!(api.head(), head + 1);
    assert_eq!(stream_last(&nats.url), head + 1, "the stream holds exactly what was acknowledged");
    let replica = Verifier::start(&nats.url, &server.data, "r1", 3_600_000);
    assert_eq!(verify_code(&Api::new(&replica.url), &after), "VALID");
}

/// JetStream paused (SIGSTOP) while a write waits: 503 after the commit
/// timeout, and no other write is taken until the outcome is settled with
/// the stream once it answers again. Either way the log and the stream
/// agree exactly afterwards: the log is the stream, event for event.
#[test]
fn an_unconfirmed_write_is_settled_with_the_stream_before_the_next() {
    let dir = tempdir();
    let nats = start_nats(dir.path());
    let (server, system) = Server::init_and_start(dir.path(), &["--nats", &nats.url, "--commit-timeout", "500ms"]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let head = api.head();
    nats.pause();
    let asked = Instant::now();
    let refused = api.post("/v1/keys").auth(&admin).json(json!({"name": "paused", "scopes": ["read"]})).send();
    refused.problem(503, "UNAVAILABLE");
    assert!(refused.json["detail"].as_str().unwrap().contains("did not confirm"), "{}", refused.json);
    assert!(asked.elapsed() <= Duration::from_millis(1500), "answered after {:?}", asked.elapsed());
    let waiting = api.post("/v1/keys").auth(&admin).json(json!({"name": "next", "scopes": ["read"]})).send();
    waiting.problem(503, "UNAVAILABLE");
    nats.resume();

    let (_, next) = new_key(&api, &admin, json!({"name": "next", "scopes": ["read"]}));
    let head_after = api.head();
    assert!(head_after == head + 1 || head_after == head + 2, "{head} then {head_after}");
    assert_eq!(stream_last(&nats.url), head_after, "the log and the stream end at the same event");
    let replica = Verifier::start(&nats.url, &server.data, "r1", 3_600_000);
    let r = Api::new(&replica.url);
    assert_eq!(verify_code(&r, &next), "VALID");
    let digest = |a: &Api| a.get("/v1/state/digest").auth(&system).send().ok(200).clone();
    assert!(eventually(Duration::from_secs(5), || digest(&r) == digest(&api)), "the replica's state differs");
}

/// Every write acknowledged under stream commit is in the stream: 8
/// writers, the registry SIGKILLed under them, and a replica started
/// afterwards from the stream alone verifies every acknowledged key.
#[test]
fn every_acknowledged_write_is_in_the_stream() {
    let dir = tempdir();
    let nats = start_nats(dir.path());
    let (server, system) = Server::init_and_start(dir.path(), &["--nats", &nats.url]);
    let url = server.url.clone();
    let admin = new_org(&Api::new(&url), &system, "acme");
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (url, admin, answered) = (url.clone(), admin.clone(), answered.clone());
            std::thread::spawn(move || {
                let api = Api::new(&url);
                let mut acknowledged = vec![];
                for i in 0..100 {
                    let body = json!({"name": format!("w{w}-{i}"), "scopes": ["read"]});
                    match api.post("/v1/keys").auth(&admin).json(body).try_send() {
                        Ok(r) if r.status == 201 => acknowledged.push(r.json["secret"].as_str().unwrap().to_owned()),
                        _ => break,
                    }
                    answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                acknowledged
            })
        })
        .collect();
    assert!(eventually(Duration::from_secs(30), || answered.load(std::sync::atomic::Ordering::Relaxed) >= 80));
    server.kill();
    let acknowledged: Vec<String> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert!(acknowledged.len() >= 80);
    let replica = Verifier::start(&nats.url, &dir.path().join("data"), "r1", 3_600_000);
    let r = Api::new(&replica.url);
    for secret in &acknowledged {
        assert_eq!(verify_code(&r, secret), "VALID", "an acknowledged key is missing from the stream");
    }
    eprintln!("{} acknowledged writes, all in the stream", acknowledged.len());
}

/// Back to local commit: the registry first takes the stream-commit mark
/// off the stream, so replicas keep to the heartbeat (a local write may
/// not be in the stream yet); without NATS it refuses to start rather than
/// leave replicas trusting the stream.
#[test]
fn local_commit_takes_the_stream_proof_away_first() {
    let dir = tempdir();
    let nats = start_nats(dir.path());
    let (server, system) = Server::init_and_start(dir.path(), &["--nats", &nats.url]);
    let data = server.data.clone();
    let replica = Verifier::start(&nats.url, &data, "r1", 3_600_000);
    let r = Api::new(&replica.url);
    assert!(eventually(Duration::from_secs(5), || r.ops("/readyz").json["freshness_source"] == "stream"));
    server.stop();

    let refused = keyreg(&["serve", "--data", path_str(&data), "--listen", "127.0.0.1:0", "--nats", "none"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("last committed to the event stream") && err.contains("--nats"), "{err}");

    let local = Server::start(&data, &["--nats", &nats.url, "--commit", "local"]);
    assert_eq!(Api::new(&local.url).ops("/readyz").json["commit"], "local");
    assert!(eventually(Duration::from_secs(5), || r.ops("/readyz").json["freshness_source"] == "heartbeat"));
    let admin = new_org(&Api::new(&local.url), &system, "acme");
    let (_, key) = new_key(&Api::new(&local.url), &admin, json!({"name": "k", "scopes": ["read"]}));
    assert!(eventually(Duration::from_secs(5), || verify_code(&r, &key) == "VALID"));
}

/// A node killed while committing to the stream may end in events the
/// stream never confirmed: `keyreg recover` refuses to add to such a log
/// until a start has settled it; after a clean stop it works.
#[test]
fn recover_waits_for_a_log_settled_with_the_stream() {
    let dir = tempdir();
    let nats = start_nats(dir.path());
    let (server, system) = Server::init_and_start(dir.path(), &["--nats", &nats.url]);
    let data = server.data.clone();
    // A write goes through only once the node has settled with the stream
    // (and recorded that it commits to it).
    new_org(&Api::new(&server.url), &system, "acme");
    server.kill();
    let refused = keyreg(&["recover", "--data", path_str(&data)]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("did not stop cleanly") && err.contains("keyreg serve --nats"), "{err}");

    let again = Server::start(&data, &["--nats", &nats.url]);
    new_org(&Api::new(&again.url), &system, "beta");
    again.stop();
    let recovered = keyreg(&["recover", "--data", path_str(&data)]);
    assert!(recovered.status.success(), "{}", String::from_utf8_lossy(&recovered.stderr));
}
