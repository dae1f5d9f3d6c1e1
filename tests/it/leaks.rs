//! Leak reports, as GitHub's secret scanning sends them: signed with a
//! P-256 key made here and published in a keys file of GitHub's shape.
//! A live key found in public is revoked at once, with the URL in the
//! reason; a report that is not signed by a listed key changes nothing.

use std::io::{Read, Write};

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::json;

use crate::serve::*;
use crate::support::*;

/// The DER header of a P-256 SubjectPublicKeyInfo.
const SPKI_HEADER: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

fn key_pair() -> (EcdsaKeyPair, String) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let spki = [&SPKI_HEADER[..], pair.public_key().as_ref()].concat();
    let b64 = base64::engine::general_purpose::STANDARD.encode(spki);
    (pair, format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n"))
}

fn signed(pair: &EcdsaKeyPair, body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(pair.sign(&SystemRandom::new(), body).unwrap().as_ref())
}

#[test]
fn a_leaked_key_is_revoked_at_once_and_a_forged_report_changes_nothing() {
    let dir = tempdir();
    let (github, github_pem) = key_pair();
    let (_, old_pem) = key_pair();
    let keys_file = dir.path().join("github-keys.json");
    let published = json!({"public_keys": [
        {"key_identifier": "old-1", "key": old_pem, "is_current": false},
        {"key_identifier": "current-2", "key": github_pem, "is_current": true},
    ]});
    std::fs::write(&keys_file, published.to_string()).unwrap();
    let (server, system) = Server::init_and_start(dir.path(), &["--leak-keys", path_str(&keys_file)]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let (leaked_id, leaked) = new_key(&api, &admin, json!({"name": "pushed to github", "scopes": ["read"]}));
    let (revoked_id, revoked) = new_key(&api, &admin, json!({"name": "already gone", "scopes": ["read"]}));
    api.req("POST", "/v1/keys/{id}/revoke", Some(&revoked_id)).auth(&admin).json(json!({})).send().ok(200);
    let (_, bystander) = new_key(&api, &admin, json!({"name": "bystander", "scopes": ["read"]}));
    let url = "https://github.com/octo/app/blob/abc123/config.yml";
    let report = |tokens: &[&str]| {
        let items: Vec<_> = tokens
            .iter()
            .map(|t| json!({"token": t, "type": "keyreg_api_key", "url": url, "source": "content"}))
            .collect();
        serde_json::to_vec(&items).unwrap()
    };
    let post = |body: &[u8], key_id: Option<&str>, signature: Option<&str>| {
        let mut req = api.post("/v1/leaks").header("Content-Type", "application/json").raw(body);
        if let Some(k) = key_id {
            req = req.header("Github-Public-Key-Identifier", k);
        }
        if let Some(s) = signature {
            req = req.header("Github-Public-Key-Signature", s);
        }
        req.send()
    };
    let events_before = api.head();

    // Forged, unsigned, or signed by a key not in the file: 401, nothing changes.
    let forged_body = report(&[&bystander]);
    post(&forged_body, Some("current-2"), Some(&signed(&github, b"something else"))).problem(401, "UNAUTHENTICATED");
    post(&forged_body, None, None).problem(401, "UNAUTHENTICATED");
    post(&forged_body, Some("old-1"), Some(&signed(&github, &forged_body))).problem(401, "UNAUTHENTICATED");
    post(&forged_body, Some("nobody"), Some(&signed(&github, &forged_body))).problem(401, "UNAUTHENTICATED");
    assert_eq!(api.head(), events_before, "a refused report appended nothing");
    assert_eq!(verify(&api, json!({"key": bystander})), "VALID");

    // Signed: the live key is revoked, the rest are false positives.
    let stranger = "kr_ThisIsNotAKeyOfThisRegistry000000000000";
    let body = report(&[&leaked, &revoked, stranger, &leaked]);
    let answer = post(&body, Some("current-2"), Some(&signed(&github, &body)));
    let feedback = answer.ok(200).as_array().unwrap().clone();
    let labels: Vec<&str> = feedback.iter().map(|f| f["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["true_positive", "false_positive", "false_positive", "true_positive"]);
    let sha = |t: &str| {
        use sha2::Digest;
        sha2::Sha256::digest(t.as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    assert_eq!(feedback[0]["token_hash"], sha(&leaked));
    assert_eq!(feedback[0]["token_type"], "keyreg_api_key");
    let text = answer.text();
    for secret in [leaked.as_str(), revoked.as_str(), stranger] {
        assert!(!text.contains(secret), "the answer echoes a token");
    }
    assert_eq!(verify(&api, json!({"key": leaked})), "REVOKED", "revoked at once");
    assert_eq!(verify(&api, json!({"key": bystander})), "VALID");
    let events = api.get("/v1/audit").auth(&admin).query("key_id", &leaked_id).query("type", "key.revoked").send();
    let events = events.json["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "revoked once, though reported twice");
    assert_eq!(events[0]["actor"], "system:leak-report");
    assert_eq!(events[0]["data"]["reason"], format!("found in public at {url}"));

    // A signed body that is not a report is refused. A batch larger than
    // other bodies may be (64 KiB) is read; one over 1 MiB is refused on
    // its Content-Length, before a byte of it is read.
    let junk = br#"{"not": "an array"}"#;
    post(junk, Some("current-2"), Some(&signed(&github, junk))).problem(400, "VALIDATION");
    let strangers: Vec<String> = (0..900).map(|i| format!("kr_NotOurs{i:040}")).collect();
    let batch = report(&strangers.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(batch.len() > 64 * 1024);
    let answered = post(&batch, Some("current-2"), Some(&signed(&github, &batch)));
    assert_eq!(answered.ok(200).as_array().map(Vec::len), Some(900));
    let host = server.url.trim_start_matches("http://");
    let mut huge = std::net::TcpStream::connect(host).unwrap();
    write!(huge, "POST /v1/leaks HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2000000\r\n\r\n").unwrap();
    let mut answer = String::new();
    huge.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Without --leak-keys the route says leak reports are off.
    let first_log = server.log.clone();
    server.stop();
    let plain = Server::start(&dir.path().join("data"), &[]);
    let off =
        Api::new(&plain.url).post("/v1/leaks").raw(&body).header("Github-Public-Key-Identifier", "current-2").send();
    off.problem(404, "NOT_FOUND");
    assert!(off.json["detail"].as_str().unwrap().contains("--leak-keys"));
    let logs = std::fs::read_to_string(&plain.log).unwrap() + &std::fs::read_to_string(&first_log).unwrap();
    assert!(!logs.contains(leaked.as_str()) && !logs.contains(stranger), "a reported token reached a log");
    plain.stop();
}
