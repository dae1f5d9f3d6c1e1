//! The API matches `schemas/openapi.json`: every route the server answers is
//! documented (and nothing else is), and every response the tests received
//! validates against the schema documented for its route and status.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::serve::*;
use crate::support::*;

fn openapi() -> Value {
    let path = format!("{}/schemas/openapi.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Validates each exchange against the response documented for it.
pub fn check_against_openapi(exchanges: &[Exchange]) {
    let doc = openapi();
    assert!(!exchanges.is_empty());
    for ex in exchanges {
        let op = &doc["paths"][&ex.template.replace("{*", "{")][ex.method.to_lowercase()];
        if op.is_null() {
            // Requests to routes that do not exist must get the documented fallbacks.
            assert!(matches!(ex.status, 404 | 405), "{} {} is not in openapi.json", ex.method, ex.template);
            continue;
        }
        let response = &op["responses"][ex.status.to_string()];
        assert!(
            !response.is_null(),
            "{} {} answered {}, which openapi.json does not document",
            ex.method,
            ex.template,
            ex.status
        );
        let media = ex.content_type.split(';').next().unwrap_or_default().trim();
        let content = &response["content"][media];
        assert!(
            !content.is_null(),
            "{} {} {}: content type {media} is not documented",
            ex.method,
            ex.template,
            ex.status
        );
        // A stream of JSON lines (`/v1/events`) is not one document.
        if !media.ends_with("json") || media.ends_with("ndjson") {
            continue;
        }
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": doc["components"],
            "allOf": [content["schema"]],
        });
        let validator = jsonschema::draft202012::new(&root).unwrap();
        let body: Value =
            serde_json::from_slice(&ex.body).unwrap_or_else(|e| panic!("{} {}: not JSON: {e}", ex.method, ex.template));
        let errors: Vec<String> =
            validator.iter_errors(&body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{} {} {}: {errors:?}\n{body}", ex.method, ex.template, ex.status);
    }
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let doc = openapi();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), path.clone())))
        .collect();
    // OpenAPI has no catch-all segment: `{*original}` is documented as `{original}`.
    let served: BTreeSet<(String, String)> =
        keyreg::http::ROUTES.iter().map(|(m, p)| (m.to_string(), p.replace("{*", "{"))).collect();
    assert_eq!(documented, served);
}

#[test]
fn the_server_answers_every_listed_route() {
    let dir = tempdir();
    let (server, _) = Server::init_and_start(dir.path(), &[]);
    let api = Api::new(&server.url);
    for (method, template) in keyreg::http::ROUTES {
        let r = api.req(method, template, Some("key_01M81EM52K5397MXQMHK8PAG58")).send();
        let fallback = r.json["detail"].as_str().is_some_and(|d| d.starts_with("no such route")) || r.status == 405;
        assert!(!fallback, "{method} {template} is listed but not routed: {}", r.status);
    }
    check_against_openapi(&api.exchanges.borrow());
    let metrics = String::from_utf8(api.ops("/metrics").body).unwrap();
    for (method, template) in keyreg::http::ROUTES {
        assert!(
            metrics.contains(&format!("method=\"{method}\",route=\"{template}\"")),
            "{method} {template} missing from /metrics"
        );
    }
}
