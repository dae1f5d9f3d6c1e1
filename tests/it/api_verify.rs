//! Every verify code, end to end, including IPv6 ranges, `service:*`, `**`
//! filters and `min_seq`.

use std::time::Duration;

use serde_json::json;

use crate::serve::*;
use crate::support::*;

#[test]
fn every_verify_code_end_to_end() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let (id, key) = new_key(
        &api,
        &admin,
        json!({"name": "svc", "scopes": ["billing:*", "read@workspaces/ws-1/**"], "allowed_cidrs": ["10.0.0.0/8", "2001:db8::/32"]}),
    );
    let ask = |extra: serde_json::Value| {
        let mut body = json!({"key": key});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        verify(&api, body)
    };
    // Granted only through `service:*`, and only through a `**` filter.
    assert_eq!(ask(json!({"action": "billing:read_costs", "ip": "10.1.2.3"})), "VALID");
    assert_eq!(ask(json!({"action": "billing:brand_new_verb", "ip": "10.1.2.3"})), "VALID");
    assert_eq!(
        ask(json!({"action": "read", "resource": "workspaces/ws-1/reports/q3", "ip": "2001:db8:1::9"})),
        "VALID"
    );
    assert_eq!(ask(json!({"action": "read", "resource": "workspaces/ws-1", "ip": "10.1.2.3"})), "VALID");
    assert_eq!(
        ask(json!({"action": "read", "resource": "workspaces/ws-2/reports", "ip": "10.1.2.3"})),
        "FORBIDDEN_SCOPE"
    );
    assert_eq!(ask(json!({"action": "read", "ip": "10.1.2.3"})), "FORBIDDEN_SCOPE");
    assert_eq!(ask(json!({"action": "compute:start", "ip": "10.1.2.3"})), "FORBIDDEN_SCOPE");
    // Address rules per family.
    assert_eq!(ask(json!({"action": "billing:read", "ip": "2001:db9::1"})), "FORBIDDEN_IP");
    assert_eq!(ask(json!({"action": "billing:read", "ip": "192.0.2.1"})), "FORBIDDEN_IP");
    assert_eq!(ask(json!({"action": "billing:read"})), "FORBIDDEN_IP");
    assert_eq!(ask(json!({"action": "billing:read", "ip": "::ffff:10.0.0.1"})), "VALID");
    // The answer names the key.
    let full = api.post("/v1/verify").json(json!({"key": key, "ip": "10.0.0.1"})).send();
    let v = full.ok(200);
    assert_eq!(
        (v["valid"].as_bool(), v["key_id"].as_str(), v["org"].as_str()),
        (Some(true), Some(id.as_str()), Some("acme"))
    );
    assert_eq!(v["scopes"], json!(["billing:*", "read@workspaces/ws-1/**"]));
    assert!(v["seq"].as_u64().unwrap() >= 5);
    // The key may come in the Authorization header, raw or Bearer.
    let header = api.post("/v1/verify").header("Authorization", &key).json(json!({"ip": "10.0.0.1"})).send();
    assert_eq!(header.ok(200)["code"], "VALID");
    let bearer = api.post("/v1/verify").auth(&key).json(json!({"ip": "10.0.0.1"})).send();
    assert_eq!(bearer.ok(200)["code"], "VALID");

    // Malformed: wrong checksum, wrong shape; never found.
    let mut typo = key.clone().into_bytes();
    typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
    assert_eq!(verify(&api, json!({"key": String::from_utf8(typo).unwrap()})), "MALFORMED");
    assert_eq!(verify(&api, json!({"key": "hello"})), "MALFORMED");
    let unknown = keyreg::domain::token::TokenFormat::default().generate();
    let nf = api.post("/v1/verify").json(json!({"key": unknown.expose()})).send();
    assert_eq!((nf.json["code"].as_str(), nf.json["key_id"].as_str()), (Some("NOT_FOUND"), None));

    // Disabled, expired, revoked.
    api.req("POST", "/v1/keys/{id}/disable", Some(&id)).auth(&admin).send().ok(200);
    assert_eq!(ask(json!({"ip": "10.0.0.1"})), "DISABLED");
    let soon = server.now() + chrono::Duration::hours(1);
    let (_, short) =
        new_key(&api, &admin, json!({"name": "short", "scopes": ["read"], "expires_at": soon.to_rfc3339()}));
    assert_eq!(verify(&api, json!({"key": short})), "VALID");
    server.advance(3601.0);
    // Honoured at the instant it passes, whether or not key.expired is written.
    assert_eq!(verify(&api, json!({"key": short})), "EXPIRED");
    let revoked = api.req("POST", "/v1/keys/{id}/revoke", Some(&id)).auth(&admin).send();
    let seq = revoked.ok(200)["key"]["version"].as_u64().unwrap();
    let after = api.post("/v1/verify").json(json!({"key": key, "min_seq": seq})).send();
    assert_eq!((after.ok(200)["code"].as_str(), after.json["seq"].as_u64().unwrap() >= seq), (Some("REVOKED"), true));
    // A sequence this node will not reach in time: 503 STALE.
    let started = std::time::Instant::now();
    api.post("/v1/verify").json(json!({"key": key, "min_seq": seq + 1000})).send().problem(503, "STALE");
    assert!(started.elapsed() >= Duration::from_millis(900), "min_seq should wait about a second");

    let metrics = String::from_utf8(api.ops("/metrics").body).unwrap();
    for code in ["VALID", "MALFORMED", "NOT_FOUND", "REVOKED", "EXPIRED", "DISABLED", "FORBIDDEN_IP", "FORBIDDEN_SCOPE"]
    {
        let line = metrics.lines().find(|l| l.starts_with(&format!("keyreg_verify_total{{code=\"{code}\"}}"))).unwrap();
        assert!(!line.ends_with(" 0"), "{line}");
    }
    assert!(metrics.contains("keyreg_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/verify\""));
    assert!(metrics.contains("keyreg_log_head_seq "));
    crate::api_contract::check_against_openapi(&api.exchanges.borrow());
}
