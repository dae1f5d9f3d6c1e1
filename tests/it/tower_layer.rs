//! The replica's `tower` layer in a real service: `examples/verified_service`
//! (built by `cargo test` with the other examples) follows a registry's
//! stream over NATS and checks each request's key in process. A reader
//! reads and the handler learns its key; a write, a path outside its
//! scope, no key and a revoked key are refused before the handler, and
//! every check is counted as a verify; it stops cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::nats_support::*;
use crate::serve::*;
use crate::support::*;

#[test]
fn an_axum_service_checks_each_key_in_process_through_the_layer() {
    let c = Cluster::start(50);
    let api = c.api();
    let (reader_id, reader) = new_key(&api, &c.admin, json!({"name": "reader", "scopes": ["read@files/**"]}));
    let (gone_id, gone) = new_key(&api, &c.admin, json!({"name": "gone", "scopes": ["read"]}));
    let example = keyreg_bin().with_file_name("examples").join("verified_service");
    assert!(example.exists(), "{} is missing: cargo test builds the examples", example.display());
    let pepper = c.server.data.join("pepper");
    let (mut child, url) = spawn_listening(
        Command::new(&example)
            .args([c.nats.url.as_str(), path_str(&pepper), "127.0.0.1:0"])
            .env("KEYREG_ACCESS_FLUSH_MS", "50")
            .stderr(Stdio::null()),
    );
    let service = Api::new(&url);
    let call = |method: &'static str, path: &'static str, key: Option<&str>| {
        let mut req = service.req(method, path, None);
        if let Some(k) = key {
            req = req.header("Authorization", &format!("Bearer {k}"));
        }
        req.send()
    };
    let read = call("GET", "/files/q3.csv", Some(&reader));
    assert_eq!((read.status, read.text()), (200, format!("hello, key {reader_id} of acme\n")));
    let write = call("POST", "/files/q3.csv", Some(&reader));
    assert_eq!((write.status, write.json["code"].as_str()), (403, Some("FORBIDDEN_SCOPE")));
    assert_eq!(write.header("content-type").as_deref(), Some("application/problem+json"));
    assert_eq!(call("GET", "/files/../secrets", Some(&reader)).status, 400, "a question the rules refuse");
    let anonymous = call("GET", "/files/q3.csv", None);
    assert_eq!((anonymous.status, anonymous.json["code"].as_str()), (401, Some("UNAUTHENTICATED")));
    let by_api_key = service.get("/files/q3.csv").header("X-API-Key", &reader).send();
    assert_eq!(by_api_key.status, 200);

    api.req("POST", "/v1/keys/{id}/revoke", Some(&gone_id)).auth(&c.admin).json(json!({})).send().ok(200);
    let refused = eventually(Duration::from_secs(5), || call("GET", "/files/a", Some(&gone)).status == 401);
    assert!(refused, "a revoked key still passes the layer");
    assert_eq!(call("GET", "/files/a", Some(&gone)).json["code"], "REVOKED");

    // The replica reports what the layer checked, within its flush window
    // (50 ms here): 2 valid, 1 refused.
    let usage = || api.req("GET", "/v1/keys/{id}/usage", Some(&reader_id)).auth(&c.admin).send().json;
    let counted =
        eventually(Duration::from_secs(30), || usage()["outcomes"] == json!({"VALID": 2, "FORBIDDEN_SCOPE": 1}));
    assert!(counted, "{}", usage());
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success(), "the service stops cleanly on SIGTERM");
}
