//! Every way to verify a key gives the same answer to the same question:
//! `POST /v1/verify` and forward auth (`/v1/authz`, asked with headers)
//! on the registry and on a replica, and a replica embedded in a Rust
//! service. A question the rules refuse (a resource
//! with `..`, say) is refused alike by each, with the same words; it used
//! to be `VALID` when embedded.

use std::time::Duration;

use keyreg::domain::verifier::Question;
use keyreg::replica::{Refused, Replica, ReplicaConfig};
use serde_json::{Value, json};

use crate::nats_support::*;
use crate::serve::*;

#[test]
fn every_entry_point_refuses_the_same_bad_questions_in_the_same_words() {
    let c = Cluster::start(3_600_000);
    let api = c.api();
    let (_, key) = new_key(&api, &c.admin, json!({"name": "ws-1 reader", "scopes": ["read@workspaces/ws-1/**"]}));
    let head = api.head();
    let over_http = c.replica("r1", 3_600_000);
    wait_applied(&over_http, head);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pepper = keyreg::store::load_pepper(&c.server.data.join("pepper")).unwrap();
    let mut config = ReplicaConfig::new(&c.nats.url, pepper);
    config.node = "embedded".into();
    let embedded = rt.block_on(Replica::start(config)).unwrap();
    let ready = eventually(Duration::from_secs(20), || {
        embedded.applied().0 >= head && embedded.verify(&key, Question::default()).is_ok()
    });
    assert!(ready, "the embedded replica did not catch up");

    let ask_http = |url: &str, action: Option<&str>, resource: Option<&str>| -> Result<String, String> {
        let mut body = json!({"key": key});
        if let Some(a) = action {
            body["action"] = json!(a);
        }
        if let Some(r) = resource {
            body["resource"] = json!(r);
        }
        let answer = Api::new(url).post("/v1/verify").json(body).send();
        match answer.status {
            200 => Ok(answer.json["code"].as_str().unwrap().to_owned()),
            400 => Err(answer.json["detail"].as_str().unwrap().to_owned()),
            other => panic!("{other}: {}", answer.json),
        }
    };
    let ask_authz = |url: &str, action: Option<&str>, resource: Option<&str>| -> Result<String, String> {
        let api = Api::new(url);
        let mut req = api.get("/v1/authz").header("X-API-Key", &key);
        if let Some(a) = action {
            req = req.header("Keyreg-Action", a);
        }
        if let Some(r) = resource {
            req = req.header("Keyreg-Resource", r);
        }
        let answer = req.send();
        match answer.status {
            200 | 401 | 403 => Ok(answer.json["code"].as_str().unwrap().to_owned()),
            400 => Err(answer.json["detail"].as_str().unwrap().to_owned()),
            other => panic!("{other}: {}", answer.json),
        }
    };
    let ask_embedded = |action: Option<&str>, resource: Option<&str>| -> Result<String, String> {
        match embedded.verify(&key, Question { action, resource, ip: None }) {
            Ok(answer) => Ok(answer.code.as_str().to_owned()),
            Err(Refused::BadQuestion(why)) => Err(why.to_string()),
            Err(Refused::Unavailable(u)) => panic!("{u}"),
        }
    };
    let cases: [(Option<&str>, Option<&str>, bool); 11] = [
        (Some("read"), Some("workspaces/ws-1/docs"), true),
        (Some("read"), Some("workspaces/ws-2/docs"), true),
        (Some("read"), Some("workspaces/ws-1/../ws-2"), false),
        (Some("read"), Some("workspaces/ws-1/./x"), false),
        (Some("read"), Some("workspaces/ws-1//x"), false),
        (Some("read"), Some("workspaces/ws-1/%2e%2e/ws-2"), false),
        (Some("read"), Some("workspaces/ws-1/*"), false),
        (Some("*"), None, false),
        (Some("billing:*"), None, false),
        (None, Some("workspaces/ws-1/docs"), false),
        (None, None, true),
    ];
    for (action, resource, answered) in cases {
        let registry = ask_http(&c.server.url, action, resource);
        let replica = ask_http(&over_http.url, action, resource);
        let in_process = ask_embedded(action, resource);
        assert_eq!(registry.is_ok(), answered, "{action:?} {resource:?}: {registry:?}");
        assert_eq!(registry, replica, "{action:?} {resource:?}: registry and replica");
        assert_eq!(registry, in_process, "{action:?} {resource:?}: registry and embedded replica");
        for url in [&c.server.url, &over_http.url] {
            assert_eq!(registry, ask_authz(url, action, resource), "{action:?} {resource:?}: forward auth on {url}");
        }
    }
    let expected: Vec<Value> = vec![json!("VALID"), json!("FORBIDDEN_SCOPE")];
    let codes: Vec<Value> = [Some("workspaces/ws-1/docs"), Some("workspaces/ws-2/docs")]
        .iter()
        .map(|r| json!(ask_embedded(Some("read"), *r).unwrap()))
        .collect();
    assert_eq!(codes, expected);

    // An embedding service can stop its replica: it answers no more, and
    // follows the stream no further while another replica does.
    rt.block_on(embedded.stop());
    assert!(matches!(embedded.verify(&key, Question::default()), Err(Refused::Unavailable(_))));
    let stopped_at = embedded.applied();
    new_key(&api, &c.admin, json!({"name": "after the stop", "scopes": ["read"]}));
    wait_applied(&over_http, api.head());
    assert_eq!(embedded.applied(), stopped_at, "a stopped replica kept applying");
}
