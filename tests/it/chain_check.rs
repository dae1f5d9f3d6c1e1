//! Readiness does not wait for the whole chain: a registry that starts from
//! a snapshot is ready once the tail after it is checked, and checks the
//! rest in the background from its sealed mark. What a user checks: ready
//! first, then a break before the snapshot found and named; a history read
//! never returns a tampered record; the mark survives restarts, and a
//! forged one is ignored.

use std::path::Path;
use std::time::Duration;

use keyreg::domain::command::Command;
use keyreg::domain::id::{OrgId, Seq};
use keyreg::store::log::Log;
use serde_json::json;

use crate::serve::*;
use crate::support::*;

/// A stopped registry of `events` events in `data` (a snapshot and a mark
/// at its head, from the clean stop); its system key.
fn stopped_registry(data: &Path, events: u64) -> String {
    let (registry, system, _) = registry_with_clock(data);
    while registry.head().seq.0 < events {
        let token = registry.format().generate();
        let key = registry.new_key(&token, "filler", "", &["read"]);
        registry.execute_blocking(admin(), OrgId::system(), Command::CreateKey(key)).unwrap();
    }
    registry.close().unwrap();
    Server::operator_is(data, system.expose());
    system.expose().to_owned()
}

/// Changes one byte of the event at `seq`, as someone with the disk would.
fn tamper(data: &Path, seq: u64) {
    let mut log = Log::open(&data.join("log")).unwrap();
    log.tamper(Seq(seq), |bytes| {
        let at = bytes.windows(6).position(|w| w == b"filler").expect("a filler key");
        bytes[at] = b'F';
    })
    .unwrap();
    drop(log);
    assert!(keyreg::store::log::wait_unlocked(&data.join("log"), Duration::from_secs(10)));
}

#[test]
fn a_break_before_the_snapshot_is_found_in_the_background_after_the_node_is_ready() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let system = stopped_registry(&data, 40);
    tamper(&data, 7);
    std::fs::remove_file(data.join("checked")).unwrap();

    let server = Server::start(&data, &["--chain-check-delay-ms", "2000"]);
    let api = Api::new(&server.url);
    let ready = api.ops("/readyz");
    assert_eq!(ready.status, 200, "ready from the snapshot, before the check: {}", ready.json);
    assert_eq!(ready.json["chain_check_running"], true, "{}", ready.json);
    assert!(
        eventually(Duration::from_secs(20), || api.ops("/readyz").status == 503),
        "the background check did not find the break"
    );
    let failing = api.ops("/readyz").json;
    assert!(failing["refusing_writes"].as_str().unwrap_or("").contains("sequence 7"), "{failing}");
    let report = api.get("/v1/audit/verify").auth(&system).send().ok(200).clone();
    assert_eq!((report["ok"].clone(), report["first_bad_seq"].clone()), (json!(false), json!(7)), "{report}");
    let head = api.head();
    let write = api.post("/v1/keys").auth(&system).json(json!({"name": "after", "scopes": ["read"]})).send();
    write.problem(503, "UNAVAILABLE");
    assert_eq!(api.head(), head, "nothing was appended");
}

#[test]
fn a_history_read_never_returns_a_record_whose_link_fails() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let system = stopped_registry(&data, 30);
    tamper(&data, 12);
    // The mark covers the tampered record: start-up does not read it again.
    let server = Server::start(&data, &[]);
    let api = Api::new(&server.url);
    assert_eq!(api.ops("/readyz").status, 200);
    let first = api.get("/v1/events").auth(&system).query("limit", "11").send();
    assert_eq!(first.status, 200, "the records before the tampered one check out");
    assert_eq!(String::from_utf8_lossy(&first.body).lines().count(), 11);
    let refused = api.get("/v1/events").auth(&system).send();
    refused.problem(503, "UNAVAILABLE");
    assert!(refused.json["detail"].as_str().unwrap().contains("sequence 12"), "{}", refused.json);
    let later = api.get("/v1/events").auth(&system).query("after_seq", "11").send();
    later.problem(503, "UNAVAILABLE");
    let audit = api.get("/v1/audit").auth(&system).send();
    audit.problem(503, "UNAVAILABLE");
    assert!(audit.json["detail"].as_str().unwrap().contains("sequence 12"), "{}", audit.json);
}

#[test]
fn the_mark_survives_restarts_and_a_forged_one_is_ignored() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let system = stopped_registry(&data, 30);
    let server = Server::start(&data, &[]);
    let api = Api::new(&server.url);
    let health = api.ops("/readyz").json;
    assert_eq!(health["chain_checked_through"], health["head_seq"], "{health}");
    assert_eq!(health["chain_check_running"], false, "nothing left to check: {health}");
    // The chain's report comes from the mark and the events after it.
    let report = api.get("/v1/audit/verify").auth(&system).send().ok(200).clone();
    assert_eq!((report["ok"].clone(), report["events"].clone()), (json!(true), json!(30)), "{report}");
    server.stop();
    let mark = std::fs::read_to_string(data.join("checked")).unwrap();
    assert!(mark.starts_with("30 "), "{mark}");

    // Someone who can write the disk tampers with an event and claims the
    // chain was checked past it, without the pepper's key.
    tamper(&data, 9);
    let forged: Vec<&str> = mark.split_whitespace().collect();
    std::fs::write(data.join("checked"), format!("{} {} {}\n", forged[0], forged[1], "ab".repeat(32))).unwrap();
    let server = Server::start(&data, &[]);
    let api = Api::new(&server.url);
    assert!(
        eventually(Duration::from_secs(20), || api.ops("/readyz").status == 503),
        "the forged mark was believed: {}",
        api.ops("/readyz").json
    );
    assert!(api.ops("/readyz").json["refusing_writes"].as_str().unwrap_or("").contains("sequence 9"));
}

#[test]
fn a_tenant_reads_its_own_orgs_events_in_log_order_page_by_page() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let api = Api::new(&server.url);
    let acme = new_org(&api, &system, "acme");
    let globex = new_org(&api, &system, "globex");
    for i in 0..5 {
        new_key(&api, &acme, json!({"name": format!("a{i}"), "scopes": ["read"]}));
        new_key(&api, &globex, json!({"name": format!("g{i}"), "scopes": ["read"]}));
    }
    let events = |after: u64, limit: u64| -> Vec<serde_json::Value> {
        let r = api
            .get("/v1/events")
            .auth(&acme)
            .query("after_seq", &after.to_string())
            .query("limit", &limit.to_string())
            .send();
        assert_eq!(r.status, 200);
        String::from_utf8(r.body).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let all = events(0, 1000);
    assert_eq!(all.len(), 7, "the org's creation, its first key and five more");
    assert!(all.iter().all(|e| e["org"] == "acme"), "only acme's: {all:?}");
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let page = events(seqs[1], 2);
    assert_eq!(page.iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>(), seqs[2..4]);
    assert!(events(seqs[6], 10).is_empty());
}
