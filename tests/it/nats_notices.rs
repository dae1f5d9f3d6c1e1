//! Expiry notices on NATS: a key expiring within a week is noticed once,
//! again once within a day, never twice for the same threshold (not after a
//! restart either), each notice authenticated; revoked keys and keys far
//! from their expiry are not; `keys list --expiring` lists the same keys.

use std::time::Duration;

use keyreg::domain::mac::{Kind, MAC_HEADER, MessageKeys};
use serde_json::{Value, json};

use crate::cli_keys::keys_json;
use crate::nats_support::*;
use crate::serve::*;

/// Every notice in the notices stream, oldest first, each with whether its
/// MAC holds under the registry's pepper.
fn notices(url: &str, keys: &MessageKeys) -> Vec<(String, Value, bool)> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let Ok(mut stream) = js.get_stream("KEYREG_NOTICES").await else { return vec![] };
        let last = stream.info().await.unwrap().state.last_sequence;
        let mut all = vec![];
        for seq in 1..=last {
            let m = stream.get_raw_message(seq).await.unwrap();
            let mac = m.headers.get(MAC_HEADER).map(|v| v.as_str().to_owned()).unwrap_or_default();
            let authentic = keys.tag(Kind::Notice, &[&m.payload]) == mac;
            all.push((m.subject.to_string(), serde_json::from_slice(&m.payload).unwrap(), authentic));
        }
        all
    })
}

#[test]
fn keys_expiring_within_a_week_are_noticed_once_per_threshold() {
    let c = Cluster::start_with(3_600_000, &["--expiry-notices-every", "100ms"]);
    let api = c.api();
    let in_days = |d: f64| (c.server.now() + chrono::Duration::seconds((d * 86_400.0) as i64)).to_rfc3339();
    let create = |name: &str, days: f64| {
        new_key(
            &api,
            &c.admin,
            json!({"name": name, "scopes": ["read"], "owner": "ops@example.com", "expires_at": in_days(days)}),
        )
        .0
    };
    let soon = create("soon", 3.0);
    let tomorrow = create("tomorrow", 0.5);
    create("later", 30.0);
    let gone = create("gone", 2.0);
    api.req("POST", "/v1/keys/{id}/revoke", Some(&gone)).auth(&c.admin).json(json!({})).send().ok(200);
    let keys = MessageKeys::new(&keyreg::store::load_pepper(&c.server.data.join("pepper")).unwrap());
    let seen = |n: usize| eventually(Duration::from_secs(10), || notices(&c.nats.url, &keys).len() >= n);
    assert!(seen(2), "{:?}", notices(&c.nats.url, &keys));

    // The command line lists the same keys.
    let listed = keys_json(&c.server, &c.admin, &["list", "--expiring"]);
    let mut names: Vec<&str> = listed["keys"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["soon", "tomorrow"]);

    // A key made now is noticed by a later round, which looked at the
    // others again: once its notice is out, theirs are still one each.
    let marker = create("marker", 5.0);
    assert!(seen(3), "{:?}", notices(&c.nats.url, &keys));
    let first = notices(&c.nats.url, &keys);
    assert_eq!(first.len(), 3, "one notice each, however many rounds: {first:?}");
    let by_key = |all: &[(String, Value, bool)], id: &str| -> Vec<Value> {
        all.iter().filter(|(_, n, _)| n["key_id"] == id).map(|(_, n, _)| n.clone()).collect()
    };
    let week = &by_key(&first, &soon)[0];
    assert_eq!((week["type"].as_str(), week["within"].as_str()), (Some("key.expiring"), Some("7d")));
    assert_eq!(
        (week["name"].as_str(), week["owner"].as_str(), week["org"].as_str()),
        (Some("soon"), Some("ops@example.com"), Some("acme"))
    );
    assert_eq!(by_key(&first, &tomorrow)[0]["within"], "1d");
    assert_eq!(by_key(&first, &marker)[0]["within"], "7d");
    assert!(first.iter().all(|(subject, _, authentic)| subject == "keyreg.notices.acme" && *authentic));

    // Two and a half days on, "soon" is within a day: noticed once more
    // (the marker, 2.4 days from its expiry, was noticed for the week).
    c.server.advance(2.6 * 86_400.0);
    assert!(seen(4), "{:?}", notices(&c.nats.url, &keys));
    let later = notices(&c.nats.url, &keys);
    assert_eq!(by_key(&later, &soon).iter().map(|n| n["within"].as_str().unwrap()).collect::<Vec<_>>(), ["7d", "1d"]);

    assert_eq!(later.len(), 4, "{later:?}");

    // A restarted registry remembers what it sent: once a key made after
    // the restart is noticed, nothing else was sent again.
    let admin = c.admin.clone();
    let Cluster { server, nats, _dir, .. } = c;
    let data = server.data.clone();
    server.stop();
    let again = Server::start(&data, &["--nats", &nats.url, "--expiry-notices-every", "100ms"]);
    let api = Api::new(&again.url);
    assert!(eventually(Duration::from_secs(10), || api.ops("/readyz").status == 200));
    let expires = (again.now() + chrono::Duration::days(4)).to_rfc3339();
    let (after_restart, _) = new_key(&api, &admin, json!({"name": "after", "scopes": ["read"], "expires_at": expires}));
    let settled = eventually(Duration::from_secs(10), || notices(&nats.url, &keys).len() >= 5);
    let all = notices(&nats.url, &keys);
    assert!(settled, "{all:?}");
    assert_eq!(all.len(), 5, "nothing sent twice after a restart: {all:?}");
    assert_eq!(by_key(&all, &after_restart).len(), 1);
    again.stop();
}
