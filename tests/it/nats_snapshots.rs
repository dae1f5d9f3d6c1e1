//! A new replica starts from the snapshot the registry published in the
//! object store, not from the stream's first event, and ends where one that
//! replayed the whole stream ends (by digest); a snapshot it cannot trust
//! (a flipped byte, or sealed right but bound to another chain) is passed
//! over for the next one.

use std::time::Duration;

use keyreg::domain::chain::ChainHash;
use keyreg::domain::snapshot::{Binding, seal, unseal};
use serde_json::{Value, json};

use crate::nats_support::*;
use crate::serve::*;
use crate::support::*;

fn health(r: &Verifier) -> Value {
    Api::new(&r.url).get("/healthz").send().json
}

fn digest(url: &str, auth: Option<&str>) -> Value {
    let api = Api::new(url);
    let req = api.get("/v1/state/digest");
    let req = match auth {
        Some(token) => req.auth(token),
        None => req,
    };
    req.send().ok(200).clone()
}

/// The objects of `KEYREG_SNAPSHOTS`: (name, bytes), newest first.
fn objects(url: &str) -> Vec<(String, Vec<u8>)> {
    use futures_util::StreamExt;
    use tokio::io::AsyncReadExt;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
        let Ok(store) = js.get_object_store("KEYREG_SNAPSHOTS").await else { return vec![] };
        let mut names: Vec<String> = store.list().await.unwrap().map(|i| i.unwrap().name).collect().await;
        names.sort_unstable_by(|a, b| b.cmp(a));
        let mut out = vec![];
        for name in names {
            let mut bytes = vec![];
            store.get(&name).await.unwrap().read_to_end(&mut bytes).await.unwrap();
            out.push((name, bytes));
        }
        out
    })
}

fn put_object(url: &str, name: &str, bytes: &[u8]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
        let store = js.get_object_store("KEYREG_SNAPSHOTS").await.unwrap();
        store.put(name, &mut &bytes[..]).await.unwrap();
    });
}

#[test]
fn a_new_replica_starts_from_the_published_snapshot_and_agrees_with_one_that_replayed_the_stream() {
    let dir = tempdir();
    let nats = start_nats(dir.path());
    let (server, system) = Server::init_and_start(dir.path(), &["--nats", &nats.url, "--snapshot-every", "25"]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let keys: Vec<(String, String)> =
        (0..40).map(|i| new_key(&api, &admin, json!({"name": format!("k{i}"), "scopes": ["billing:read"]}))).collect();
    api.req("POST", "/v1/keys/{id}/revoke", Some(&keys[3].0)).auth(&admin).json(json!({})).send().ok(200);
    let head = api.head();
    // Snapshots at 25 (and maybe 50 by now) are published; the newest wins.
    assert!(eventually(Duration::from_secs(20), || !objects(&nats.url).is_empty()), "no snapshot was published");
    let published: u64 = objects(&nats.url)[0].0.parse().unwrap();
    assert!(published >= 25 && published < head, "published at {published}, head {head}");

    let from_snapshot = Verifier::start(&nats.url, &server.data, "from-snapshot", 3_600_000);
    let from_stream = Verifier::spawn(&nats.url, &server.data, "from-stream", 3_600_000, &["--from-stream"]).ready();
    assert_eq!(health(&from_snapshot)["started_from_snapshot"], published);
    assert!(health(&from_stream).get("started_from_snapshot").is_none());
    for r in [&from_snapshot, &from_stream] {
        assert!(eventually(Duration::from_secs(20), || health(r)["applied_seq"].as_u64() >= Some(head)));
    }
    let registry = digest(&server.url, Some(&system));
    assert_eq!(digest(&from_snapshot.url, None), registry);
    assert_eq!(digest(&from_stream.url, None), registry);
    // Keys made before and after the snapshot answer alike on both.
    for r in [&from_snapshot, &from_stream] {
        let answers: Vec<String> = [&keys[0].1, &keys[3].1, &keys[39].1]
            .iter()
            .map(|t| verify(&Api::new(&r.url), json!({"key": t, "action": "billing:read"})))
            .collect();
        assert_eq!(answers, ["VALID", "REVOKED", "VALID"]);
    }

    // Two newer snapshots that must not be trusted: one damaged, one
    // sealed with the pepper but bound to a chain hash the stream does not
    // hold. A new replica passes over both, to the good one.
    let (name, good) = objects(&nats.url).remove(0);
    let pepper = keyreg::store::load_pepper(&server.data.join("pepper")).unwrap();
    let sealed = unseal(good.clone(), &pepper).unwrap();
    let unbound = Binding { hash: ChainHash([0xAB; 32]), ..sealed.binding };
    let seq: u64 = name.parse().unwrap();
    put_object(&nats.url, &format!("{:020}", seq + 2), &seal(&pepper, unbound, sealed.table(), sealed.table().len()));
    let mut damaged = good;
    let middle = damaged.len() / 2;
    damaged[middle] ^= 1;
    put_object(&nats.url, &format!("{:020}", seq + 1), &damaged);
    let cautious = Verifier::start(&nats.url, &server.data, "cautious", 3_600_000);
    assert_eq!(health(&cautious)["started_from_snapshot"], seq);
    assert!(eventually(Duration::from_secs(20), || health(&cautious)["applied_seq"].as_u64() >= Some(head)));
    assert_eq!(digest(&cautious.url, None), registry);
    server.stop();
}
