//! Every event type the program emits validates against its JSON Schema in
//! `schemas/events/`: the envelope schema for the whole event, the type's
//! schema for its `data`.

use std::collections::BTreeSet;

use keyreg::domain::id::Seq;

use crate::support::*;

fn schema(name: &str) -> jsonschema::Validator {
    let path = format!("{}/schemas/events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::draft202012::new(&value).unwrap_or_else(|e| panic!("{path} is not a valid schema: {e}"))
}

#[test]
fn one_event_of_every_type_validates_against_its_schema() {
    let dir = tempdir();
    let (registry, _, clock) = registry_with_clock(dir.path());
    every_event_type(&registry, &clock);
    let envelope = schema("envelope");
    let mut seen = BTreeSet::new();
    for record in registry.log().read(Seq(1), None) {
        let record = record.unwrap();
        let value: serde_json::Value = serde_json::from_slice(record.bytes()).unwrap();
        let errors: Vec<String> = envelope.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "seq {}: {errors:?}", record.seq);
        let type_name = value["type"].as_str().unwrap().to_owned();
        let data_errors: Vec<String> = schema(&type_name).iter_errors(&value["data"]).map(|e| e.to_string()).collect();
        assert!(data_errors.is_empty(), "{type_name}: {data_errors:?}");
        seen.insert(type_name);
    }
    let all: BTreeSet<String> = keyreg::domain::event::TYPES.iter().map(|t| t.to_string()).collect();
    assert_eq!(seen, all, "the workload should emit every type");
}

#[test]
fn the_schemas_reject_what_keyreg_never_writes() {
    let envelope = schema("envelope");
    let good = serde_json::json!({
        "specversion": "1.0", "id": "evt_01M81EM52K5397MXQMHK8PAG58", "source": "keyreg", "type": "key.disabled",
        "time": "2026-11-22T11:00:24.787475Z", "subject": "key_01M81EM52K9Q0KVZ6YJ2XT8V19",
        "datacontenttype": "application/json", "seq": 3, "org": "acme", "actor": "system:sweeper",
        "prevhash": "0".repeat(64), "data": {}
    });
    assert!(envelope.is_valid(&good));
    for (field, bad) in [
        ("type", serde_json::json!("key.exploded")),
        ("seq", serde_json::json!(0)),
        ("time", serde_json::json!("2026-11-22T11:00:24Z")),
        ("actor", serde_json::json!("root")),
    ] {
        let mut v = good.clone();
        v[field] = bad;
        assert!(!envelope.is_valid(&v), "{field}");
    }
    assert!(!schema("key.created").is_valid(&serde_json::json!({"name": "x", "secret": "kr_..."})));
}
