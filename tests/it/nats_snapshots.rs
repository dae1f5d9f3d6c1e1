//! A new replica starts from the snapshot the registry published in the
//! object store, not from the stream's first event, and ends where one that
//! replayed the whole stream ends (by digest); a snapshot it cannot trust
//! (a flipped byte, or sealed right but bound to another chain) is passed
//! over for the next one.

use std::time::Duration;

use keyreg::domain::chain::ChainHash;
use keyreg::domain::mac::{Kind, MessageKeys};
use keyreg::domain::snapshot::{Binding, seal, unseal};
use keyreg::domain::token::Pepper;
use serde_json::{Value, json};

use crate::nats_support::*;
use crate::serve::*;
use crate::support::*;

fn health(r: &Verifier) -> Value {
    Api::new(&r.url).ops("/healthz").json
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
        // The registry may be removing objects meanwhile: a listing or a
        // read that meets one being removed can wait for ever, so each is
        // bounded, and an object gone between the listing and the read is
        // left out.
        let list = async {
            let Ok(list) = store.list().await else { return vec![] };
            list.filter_map(|i| async { i.ok() }).map(|i| i.name).collect().await
        };
        let Ok(mut names): Result<Vec<String>, _> = tokio::time::timeout(Duration::from_secs(10), list).await else {
            return vec![];
        };
        names.sort_unstable_by(|a, b| b.cmp(a));
        let mut out = vec![];
        for name in names {
            let mut bytes = vec![];
            // An object purged while it is read never finishes reading.
            let read = async {
                let mut object = store.get(&name).await.ok()?;
                object.read_to_end(&mut bytes).await.ok()
            };
            if let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(10), read).await {
                out.push((name, bytes));
            }
        }
        out
    })
}

/// Puts an object in the snapshot store; with `pepper`, with the metadata
/// a registry holding it writes (the content's blake3 and the MAC over
/// name, size and that hash), as a registry with a fault would.
fn put_object(url: &str, name: &str, bytes: &[u8], pepper: Option<&Pepper>) {
    use async_nats::jetstream::object_store::ObjectMetadata;
    let mut metadata = ObjectMetadata { name: name.to_owned(), ..Default::default() };
    if let Some(pepper) = pepper {
        let content = blake3::hash(bytes).to_hex().to_string();
        let size = (bytes.len() as u64).to_be_bytes();
        let mac = MessageKeys::new(pepper).tag(Kind::Snapshot, &[name.as_bytes(), &size, content.as_bytes()]);
        metadata.metadata = [("keyreg-content".to_owned(), content), ("keyreg-mac".to_owned(), mac)].into();
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
        let store = js.get_object_store("KEYREG_SNAPSHOTS").await.unwrap();
        store.put(metadata, &mut &bytes[..]).await.unwrap();
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

    // Two newer snapshots that must not be trusted, though their MACs
    // hold: one damaged, one sealed with the pepper but bound to a chain
    // hash the stream does not hold. A new replica passes over both, to
    // the good one.
    let (name, good) = objects(&nats.url).remove(0);
    let pepper = keyreg::store::load_pepper(&server.data.join("pepper")).unwrap();
    let sealed = unseal(good.clone(), &pepper).unwrap();
    let unbound = Binding { hash: ChainHash([0xAB; 32]), ..sealed.binding };
    let seq: u64 = name.parse().unwrap();
    let unbound = seal(&pepper, unbound, sealed.table(), sealed.table().len());
    put_object(&nats.url, &format!("{:020}", seq + 2), &unbound, Some(&pepper));
    let mut damaged = good;
    let middle = damaged.len() / 2;
    damaged[middle] ^= 1;
    put_object(&nats.url, &format!("{:020}", seq + 1), &damaged, Some(&pepper));
    let cautious = Verifier::start(&nats.url, &server.data, "cautious", 3_600_000);
    assert_eq!(health(&cautious)["started_from_snapshot"], seq);
    assert!(eventually(Duration::from_secs(20), || health(&cautious)["applied_seq"].as_u64() >= Some(head)));
    assert_eq!(digest(&cautious.url, None), registry);
    server.stop();
}

/// Objects anyone on NATS can put in the store, without the registry's
/// MAC: a large junk object and a copy of a genuine snapshot, both named
/// newer than the registry's. A new replica passes over them without
/// downloading them, and the registry's next publish removes them and
/// keeps its own newest snapshots.
#[test]
fn objects_without_the_registrys_mac_are_never_read_and_never_displace_its_snapshots() {
    let dir = tempdir();
    let nats = start_nats(dir.path());
    let (server, system) = Server::init_and_start(dir.path(), &["--nats", &nats.url, "--snapshot-every", "20"]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let make = |from: usize, to: usize| {
        for i in from..to {
            new_key(&api, &admin, json!({"name": format!("k{i}"), "scopes": ["read"]}));
        }
    };
    make(0, 20);
    assert!(eventually(Duration::from_secs(20), || !objects(&nats.url).is_empty()), "no snapshot was published");
    let (genuine, bytes) = objects(&nats.url).remove(0);
    let seq: u64 = genuine.parse().unwrap();
    put_object(&nats.url, &format!("{:020}", seq + 1_000_000), &vec![0x5a; 24 << 20], None);
    put_object(&nats.url, &format!("{:020}", seq + 1_000_001), &bytes, None);

    let log = dir.path().join("replica-cautious.log");
    let replica = Verifier::spawn_logged(&nats.url, &server.data, "cautious", &log).ready();
    assert_eq!(health(&replica)["started_from_snapshot"], seq);
    let said = std::fs::read_to_string(&log).unwrap();
    for forged in [seq + 1_000_000, seq + 1_000_001] {
        assert!(said.contains(&format!("without reading it object={forged:020}")), "{said}");
    }
    assert!(!said.contains("passing over a snapshot;"), "a forged object was downloaded: {said}");

    // The next snapshot: the forged objects go, the registry's stay.
    make(20, 40);
    let mine = |name: &str| name.parse::<u64>().is_ok_and(|n| n < 1_000_000);
    assert!(
        eventually(Duration::from_secs(20), || {
            let names: Vec<String> = objects(&nats.url).into_iter().map(|(n, _)| n).collect();
            names.len() == 2 && names.iter().all(|n| mine(n))
        }),
        "the store holds {:?}",
        objects(&nats.url).into_iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    server.stop();
}
