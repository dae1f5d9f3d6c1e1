//! Bad requests: each gets the expected status and problem code, and none
//! of them appends an event.

use serde_json::{Value, json};

use crate::serve::*;
use crate::support::*;

struct Bad {
    what: &'static str,
    method: &'static str,
    template: &'static str,
    id: Option<String>,
    token: Option<String>,
    query: Vec<(&'static str, String)>,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    status: u16,
    code: &'static str,
}

fn bad(what: &'static str, method: &'static str, template: &'static str, status: u16, code: &'static str) -> Bad {
    Bad { what, method, template, id: None, token: None, query: vec![], headers: vec![], body: None, status, code }
}

impl Bad {
    fn as_(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }
    fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_owned());
        self
    }
    fn json(mut self, v: Value) -> Self {
        self.body = Some(serde_json::to_vec(&v).unwrap());
        self
    }
    fn raw(mut self, b: &[u8]) -> Self {
        self.body = Some(b.to_vec());
        self
    }
    fn q(mut self, k: &'static str, v: &str) -> Self {
        self.query.push((k, v.to_owned()));
        self
    }
    fn h(mut self, k: &'static str, v: &str) -> Self {
        self.headers.push((k, v.to_owned()));
        self
    }
}

#[test]
fn bad_requests_are_refused_with_a_stable_code_and_change_nothing() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &["--access-flush-ms", "3600000"]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let other_admin = new_org(&api, &system, "beta");
    let (id, _) = new_key(&api, &admin, json!({"name": "victim", "scopes": ["read"]}));
    let (foreign, _) = new_key(&api, &other_admin, json!({"name": "theirs", "scopes": ["read"]}));
    let (_, reader) = new_key(&api, &admin, json!({"name": "reader", "scopes": ["keys:read"]}));
    let (_, nobody) = new_key(&api, &admin, json!({"name": "nobody", "scopes": ["billing:read"]}));
    let (revoked_id, revoked) = new_key(&api, &admin, json!({"name": "old", "scopes": ["keys:admin"]}));
    api.req("POST", "/v1/keys/{id}/revoke", Some(&revoked_id)).auth(&admin).send().ok(200);
    let (disabled_id, disabled) = new_key(&api, &admin, json!({"name": "paused", "scopes": ["keys:admin"]}));
    api.req("POST", "/v1/keys/{id}/disable", Some(&disabled_id)).auth(&admin).send().ok(200);
    let (_, fenced) =
        new_key(&api, &admin, json!({"name": "fenced", "scopes": ["keys:admin"], "allowed_cidrs": ["10.0.0.0/8"]}));
    let unknown_token = keyreg::domain::token::TokenFormat::default().generate().expose().to_owned();
    let unknown_id = "key_01M81EM52K5397MXQMHK8PAG58";
    let version =
        api.req("GET", "/v1/keys/{id}", Some(&id)).auth(&admin).send().json["key"]["version"].as_u64().unwrap();

    let a = admin.as_str();
    let create = |what, body: Value| bad(what, "POST", "/v1/keys", 400, "VALIDATION").as_(a).json(body);
    let cases = vec![
        create("malformed JSON", json!(null)).raw(b"{\"name\": \"x\", "),
        create("not an object", json!(["name"])),
        create("missing name", json!({"scopes": ["read"]})),
        create("name of the wrong type", json!({"name": 5, "scopes": ["read"]})),
        create("scopes of the wrong type", json!({"name": "x", "scopes": "read"})),
        create("unknown field", json!({"name": "x", "scopes": ["read"], "admin": true})),
        create("empty name", json!({"name": "", "scopes": ["read"]})),
        create("blank name", json!({"name": "   ", "scopes": ["read"]})),
        create("101-character name", json!({"name": "n".repeat(101), "scopes": ["read"]})),
        create("1001-character description", json!({"name": "x", "description": "d".repeat(1001), "scopes": ["read"]})),
        create("zero scopes", json!({"name": "x", "scopes": []})),
        create("bad scope syntax", json!({"name": "x", "scopes": ["read@a//b"]})),
        create("a verb prefix with no service", json!({"name": "x", "scopes": ["read*"]})),
        create("an unknown permission of keyreg's", json!({"name": "x", "scopes": ["keys:frobnicate"]})),
        create("a management permission on a resource", json!({"name": "x", "scopes": ["audit:read@ws/1"]})),
        create("bad CIDR", json!({"name": "x", "scopes": ["read"], "allowed_cidrs": ["10.0.0.0/33"]})),
        create("CIDR that is a word", json!({"name": "x", "scopes": ["read"], "allowed_cidrs": ["office"]})),
        create("past expiry", json!({"name": "x", "scopes": ["read"], "expires_at": "2020-01-01T00:00:00Z"})),
        create("unparseable expiry", json!({"name": "x", "scopes": ["read"], "expires_at": "tomorrow"})),
        create(
            "both expiries",
            json!({"name": "x", "scopes": ["read"], "expires_at": "2099-01-01T00:00:00Z", "expires_in_days": 7}),
        ),
        create("zero days", json!({"name": "x", "scopes": ["read"], "expires_in_days": 0})),
        create("negative days", json!({"name": "x", "scopes": ["read"], "expires_in_days": -30})),
        create("NUL in a name", json!({"name": "a\u{0}b", "scopes": ["read"]})),
        create("ESC in a description", json!({"name": "x", "description": "\u{1b}[2J", "scopes": ["read"]})),
        create("BEL in an owner", json!({"name": "x", "owner": "ops\u{7}@acme.test", "scopes": ["read"]})),
        create("bidi override in a name", json!({"name": "\u{202e}gnp.exe", "scopes": ["read"]})),
        create("zero-width space in an owner", json!({"name": "x", "owner": "a\u{200b}b", "scopes": ["read"]})),
        create("BOM in a description", json!({"name": "x", "description": "\u{feff}notes", "scopes": ["read"]})),
        create("line separator in a name", json!({"name": "a\u{2028}b", "scopes": ["read"]})),
        create(
            "paragraph separator in a description",
            json!({"name": "x", "description": "a\u{2029}b", "scopes": ["read"]}),
        ),
        create("a name of Hangul fillers only", json!({"name": "\u{3164}\u{3164}", "scopes": ["read"]})),
        create("a name of blank Braille and spaces", json!({"name": " \u{2800} ", "scopes": ["read"]})),
        create(".. in a scope's resource", json!({"name": "x", "scopes": ["read@ws/../admin"]})),
        create(". in a scope's resource", json!({"name": "x", "scopes": ["read@ws/./x"]})),
        create("% in a scope's resource", json!({"name": "x", "scopes": ["read@ws/%2e%2e/x"]})),
        bad("oversized body", "POST", "/v1/keys", 413, "PAYLOAD_TOO_LARGE")
            .as_(a)
            .json(json!({"name": "x", "scopes": ["read"], "description": "d".repeat(70 * 1024)})),
        bad("bad cursor", "GET", "/v1/keys", 400, "VALIDATION").as_(a).q("cursor", "page-2"),
        bad("limit too large", "GET", "/v1/keys", 400, "VALIDATION").as_(a).q("limit", "1001"),
        bad("limit zero", "GET", "/v1/keys", 400, "VALIDATION").as_(a).q("limit", "0"),
        bad("limit not a number", "GET", "/v1/keys", 400, "VALIDATION").as_(a).q("limit", "ten"),
        bad("unknown status", "GET", "/v1/keys", 400, "VALIDATION").as_(a).q("status", "sleeping"),
        bad("unknown query parameter", "GET", "/v1/keys", 400, "VALIDATION").as_(a).q("sort", "name"),
        bad("bad as_of", "GET", "/v1/keys", 400, "VALIDATION").as_(a).q("as_of", "last week"),
        bad("unknown id", "GET", "/v1/keys/{id}", 404, "NOT_FOUND").as_(a).id(unknown_id),
        bad("garbage id", "GET", "/v1/keys/{id}", 404, "NOT_FOUND").as_(a).id("drop-table"),
        bad("another org's id (read)", "GET", "/v1/keys/{id}", 404, "NOT_FOUND").as_(a).id(&foreign),
        bad("another org's id (revoke)", "POST", "/v1/keys/{id}/revoke", 404, "NOT_FOUND").as_(a).id(&foreign),
        bad("another org's id (edit)", "PATCH", "/v1/keys/{id}", 404, "NOT_FOUND")
            .as_(a)
            .id(&foreign)
            .json(json!({"name": "mine"})),
        bad("another org's id in bulk", "POST", "/v1/keys/bulk-revoke", 404, "NOT_FOUND")
            .as_(a)
            .json(json!({"ids": [id, foreign]})),
        bad("bulk of 101", "POST", "/v1/keys/bulk-revoke", 400, "VALIDATION")
            .as_(a)
            .json(json!({"ids": vec![id.clone(); 101]})),
        bad("delete without confirm", "DELETE", "/v1/keys/{id}", 400, "VALIDATION").as_(a).id(&id),
        bad("delete with the wrong name", "DELETE", "/v1/keys/{id}", 400, "VALIDATION")
            .as_(a)
            .id(&id)
            .q("confirm", "Victim"),
        bad("stale If-Match", "PATCH", "/v1/keys/{id}", 412, "VERSION_MISMATCH")
            .as_(a)
            .id(&id)
            .h("If-Match", &(version + 100).to_string())
            .json(json!({"name": "y"})),
        bad("garbled If-Match", "POST", "/v1/keys/{id}/disable", 400, "VALIDATION")
            .as_(a)
            .id(&id)
            .h("If-Match", "yesterday"),
        bad("grace over 30 days", "POST", "/v1/keys/{id}/rotate", 400, "VALIDATION")
            .as_(a)
            .id(&id)
            .json(json!({"grace_seconds": 31 * 86400})),
        bad("enable an active key", "POST", "/v1/keys/{id}/enable", 409, "CONFLICT").as_(a).id(&id),
        bad("edit a revoked key", "PATCH", "/v1/keys/{id}", 409, "CONFLICT")
            .as_(a)
            .id(&revoked_id)
            .json(json!({"name": "z"})),
        bad("no credentials", "GET", "/v1/keys", 401, "UNAUTHENTICATED"),
        bad("garbled credentials", "GET", "/v1/keys", 401, "UNAUTHENTICATED").h("Authorization", "Bearer kr_nope"),
        bad("unknown credentials", "GET", "/v1/keys", 401, "UNAUTHENTICATED").as_(&unknown_token),
        bad("revoked credentials", "POST", "/v1/keys", 401, "UNAUTHENTICATED")
            .as_(&revoked)
            .json(json!({"name": "x", "scopes": ["read"]})),
        bad("disabled credentials", "POST", "/v1/keys", 401, "UNAUTHENTICATED")
            .as_(&disabled)
            .json(json!({"name": "x", "scopes": ["read"]})),
        bad("credentials from a refused address", "GET", "/v1/keys", 403, "FORBIDDEN").as_(&fenced),
        bad("read scope writing", "POST", "/v1/keys", 403, "FORBIDDEN")
            .as_(&reader)
            .json(json!({"name": "x", "scopes": ["read"]})),
        bad("no management scope", "GET", "/v1/keys", 403, "FORBIDDEN").as_(&nobody),
        bad("audit without audit:read", "GET", "/v1/audit", 403, "FORBIDDEN").as_(&reader),
        bad("tenant creating an org", "POST", "/v1/orgs", 403, "FORBIDDEN")
            .as_(a)
            .json(json!({"id": "gamma", "name": "G"})),
        bad("org id taken", "POST", "/v1/orgs", 409, "CONFLICT")
            .as_(&system)
            .json(json!({"id": "acme", "name": "Again"})),
        bad("org id with capitals", "POST", "/v1/orgs", 400, "VALIDATION")
            .as_(&system)
            .json(json!({"id": "Acme", "name": "A"})),
        bad("org id _system", "POST", "/v1/orgs", 400, "VALIDATION")
            .as_(&system)
            .json(json!({"id": "_system", "name": "S"})),
        bad("max_keys zero", "PATCH", "/v1/orgs/{id}", 400, "VALIDATION")
            .as_(&system)
            .id("acme")
            .json(json!({"max_keys": 0})),
        bad("verify without a key", "POST", "/v1/verify", 400, "VALIDATION").json(json!({"action": "read"})),
        bad("verify with a wildcard action", "POST", "/v1/verify", 400, "VALIDATION")
            .json(json!({"key": unknown_token, "action": "billing:*"})),
        bad("verify a resource without an action", "POST", "/v1/verify", 400, "VALIDATION")
            .json(json!({"key": unknown_token, "resource": "a/b"})),
        bad("verify with a bad ip", "POST", "/v1/verify", 400, "VALIDATION")
            .json(json!({"key": unknown_token, "ip": "10.0.0.300"})),
        bad("verify with an unknown field", "POST", "/v1/verify", 400, "VALIDATION")
            .json(json!({"key": unknown_token, "scope": "read"})),
        bad("verify with .. in the resource", "POST", "/v1/verify", 400, "VALIDATION")
            .json(json!({"key": unknown_token, "action": "read", "resource": "workspaces/ws-1/../ws-2/doc"})),
        bad("verify with ./ in the resource", "POST", "/v1/verify", 400, "VALIDATION")
            .json(json!({"key": unknown_token, "action": "read", "resource": "workspaces/ws-1/./doc"})),
        bad("verify with %2e%2e in the resource", "POST", "/v1/verify", 400, "VALIDATION")
            .json(json!({"key": unknown_token, "action": "read", "resource": "workspaces/%2e%2e/ws-2"})),
        bad("verify with ..%2f in the resource", "POST", "/v1/verify", 400, "VALIDATION")
            .json(json!({"key": unknown_token, "action": "read", "resource": "workspaces/ws-1/..%2fws-2"})),
        bad("verify with an empty segment", "POST", "/v1/verify", 400, "VALIDATION")
            .json(json!({"key": unknown_token, "action": "read", "resource": "workspaces//ws-2"})),
        bad("ESC in a revoke reason", "POST", "/v1/keys/{id}/revoke", 400, "VALIDATION")
            .as_(a)
            .id(&id)
            .json(json!({"reason": "\u{1b}]0;pwned\u{7}"})),
        bad("a control character in an org's name", "POST", "/v1/orgs", 400, "VALIDATION")
            .as_(&system)
            .json(json!({"id": "delta", "name": "Delta\u{0}"})),
        bad("a format character in a new name", "PATCH", "/v1/keys/{id}", 400, "VALIDATION")
            .as_(a)
            .id(&id)
            .json(json!({"name": "vic\u{2066}tim"})),
        bad("audit with a bad order", "GET", "/v1/audit", 400, "VALIDATION").as_(a).q("order", "sideways"),
        bad("audit with an unknown type", "GET", "/v1/audit", 400, "VALIDATION").as_(a).q("type", "key.exploded"),
        bad("unknown route", "GET", "/v1/nothing", 404, "NOT_FOUND").as_(a),
        bad("wrong method", "PUT", "/v1/keys", 405, "METHOD_NOT_ALLOWED").as_(a),
    ];
    assert!(cases.len() >= 40);
    let head = api.head();
    let keys_before = api.get("/v1/keys").auth(a).query("status", "all").send().body;
    for case in cases {
        let mut r = api.req(case.method, case.template, case.id.as_deref());
        if let Some(t) = &case.token {
            r = r.auth(t);
        }
        for (k, v) in &case.query {
            r = r.query(k, v);
        }
        for (k, v) in &case.headers {
            r = r.header(k, v);
        }
        if let Some(b) = &case.body {
            r = r.raw(b);
        }
        let resp = r.send();
        assert_eq!(
            (resp.status, resp.json["code"].as_str()),
            (case.status, Some(case.code)),
            "{}: {}",
            case.what,
            String::from_utf8_lossy(&resp.body)
        );
        assert!(resp.json["detail"].as_str().is_some_and(|d| !d.is_empty()), "{}", case.what);
        assert_eq!(api.head(), head, "{} appended an event", case.what);
    }
    assert_eq!(api.get("/v1/keys").auth(a).query("status", "all").send().body, keys_before);
    crate::api_contract::check_against_openapi(&api.exchanges.borrow());
}

#[test]
fn a_refusal_names_the_field_at_fault_so_a_form_can_mark_it() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let cases = [
        (json!({"name": "", "scopes": ["read"]}), Some("name")),
        (json!({"name": "x", "scopes": ["read@a//b"]}), Some("scopes")),
        (json!({"name": "x", "scopes": ["read"], "allowed_cidrs": ["office"]}), Some("allowed_cidrs")),
        (json!({"name": "x", "scopes": ["read"], "expires_at": "2020-01-01T00:00:00Z"}), Some("expires_at")),
        (json!({"name": "x", "scopes": ["read"], "expires_at": "tomorrow"}), Some("expires_at")),
        (json!({"name": "x", "scopes": ["read"], "expires_in_days": 99999}), Some("expires_in_days")),
        (json!({"name": "x", "scopes": ["read"], "roles": ["No Such"]}), Some("roles")),
        (json!({"name": "x", "scopes": ["read"], "admin": true}), None),
    ];
    for (body, field) in cases {
        let refused = api.post("/v1/keys").auth(&admin).json(body.clone()).send();
        refused.problem(400, "VALIDATION");
        assert_eq!(refused.json["field"].as_str(), field, "{body}: {}", String::from_utf8_lossy(&refused.body));
    }
}
