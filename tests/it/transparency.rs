//! The transparency log, checked from outside: a real registry and a real
//! witness process, their checkpoints read with Cloudflare's `signed_note`
//! (a port of Go's sumdb/note) and `ed25519-dalek`, and every proof checked
//! by the small RFC 9162 verifier below, written from the RFC's
//! pseudo-code and sharing nothing with keyreg's. Forks are made by signing
//! with the log's key directly, as a rogue operator would.

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, Verifier as _};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::serve::*;
use crate::support::*;

type H = [u8; 32];

fn sha(parts: &[&[u8]]) -> H {
    let mut h = Sha256::new();
    parts.iter().for_each(|p| h.update(p));
    h.finalize().into()
}

fn leaf(bytes: &[u8]) -> H {
    sha(&[&[0], bytes])
}

fn node(l: &H, r: &H) -> H {
    sha(&[&[1], l, r])
}

/// RFC 9162 §2.1.3.2, line by line.
fn rfc_inclusion(index: u64, size: u64, leaf: H, proof: &[H], root: &H) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn, mut r) = (index, size - 1, leaf);
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ % 2 == 1 || fn_ == sn {
            r = node(p, &r);
            if fn_ % 2 == 0 {
                while fn_ % 2 == 0 && fn_ != 0 {
                    fn_ /= 2;
                    sn /= 2;
                }
            }
        } else {
            r = node(&r, p);
        }
        fn_ /= 2;
        sn /= 2;
    }
    sn == 0 && r == *root
}

/// RFC 9162 §2.1.4.2, line by line.
fn rfc_consistency(first: u64, second: u64, first_hash: &H, second_hash: &H, proof: &[H]) -> bool {
    if first == second {
        return proof.is_empty() && first_hash == second_hash;
    }
    if first == 0 || first > second || proof.is_empty() {
        return false;
    }
    let mut path = proof.to_vec();
    if first & (first - 1) == 0 {
        path.insert(0, *first_hash);
    }
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ % 2 == 1 {
        fn_ /= 2;
        sn /= 2;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return false;
        }
        if fn_ % 2 == 1 || fn_ == sn {
            fr = node(c, &fr);
            sr = node(c, &sr);
            while fn_ % 2 == 0 && fn_ != 0 {
                fn_ /= 2;
                sn /= 2;
            }
        } else {
            sr = node(&sr, c);
        }
        fn_ /= 2;
        sn /= 2;
    }
    sn == 0 && fr == *first_hash && sr == *second_hash
}

/// MTH and PROOF straight from RFC 6962's definitions, over all leaves.
fn mth(leaves: &[H]) -> H {
    match leaves.len() {
        0 => sha(&[]),
        1 => leaves[0],
        n => {
            let k = n.next_power_of_two() / 2;
            node(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

fn subproof(m: usize, leaves: &[H], whole: bool) -> Vec<H> {
    let n = leaves.len();
    if m == n {
        return if whole { vec![] } else { vec![mth(leaves)] };
    }
    let k = n.next_power_of_two() / 2;
    if m <= k {
        let mut p = subproof(m, &leaves[..k], whole);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(mth(&leaves[..k]));
        p
    }
}

fn hashes(v: &Value) -> Vec<H> {
    v["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect()
}

/// A checkpoint's text: origin, size, root.
fn checkpoint_text(origin: &str, size: u64, root: &H) -> String {
    format!("{origin}\n{size}\n{}\n", B64.encode(root))
}

/// The log's private key, read from its file, and its verifier key: what
/// a rogue operator holding the data dir has.
#[derive(Clone)]
struct LogKey {
    name: String,
    id: [u8; 4],
    key: ed25519_dalek::SigningKey,
    vkey: String,
}

impl LogKey {
    fn read(data: &Path) -> LogKey {
        let text = std::fs::read_to_string(data.join("log-key")).unwrap();
        let parts: Vec<&str> = text.trim().strip_prefix("PRIVATE+KEY+").unwrap().splitn(3, '+').collect();
        let material = B64.decode(parts[2]).unwrap();
        assert_eq!(material[0], 1, "an Ed25519 key");
        let key = ed25519_dalek::SigningKey::from_bytes(&material[1..].try_into().unwrap());
        let id = u32::from_str_radix(parts[1], 16).unwrap().to_be_bytes();
        let vkey = stdout(&keyreg(&["log-key", "--data", path_str(data)])).trim().to_owned();
        LogKey { name: parts[0].to_owned(), id, key, vkey }
    }

    /// A checkpoint note signed with the key, whatever the log holds.
    fn sign(&self, size: u64, root: &H) -> String {
        let text = checkpoint_text(&self.name, size, root);
        let sig = self.key.sign(text.as_bytes());
        format!("{text}\n\u{2014} {} {}\n", self.name, B64.encode([&self.id[..], &sig.to_bytes()].concat()))
    }
}

/// A `keyreg witness` process.
struct WitnessProcess {
    child: Child,
    url: String,
    vkey: String,
}

impl WitnessProcess {
    fn start(dir: &Path, log_vkey: &str) -> WitnessProcess {
        WitnessProcess::start_on(dir, log_vkey, "127.0.0.1:0")
    }

    fn start_on(dir: &Path, log_vkey: &str, listen: &str) -> WitnessProcess {
        let err = dir.with_extension("witness.err");
        let (child, url) = spawn_listening(
            Command::new(keyreg_bin())
                .args(["witness", "--data", path_str(dir), "--listen", listen, "--log-key", log_vkey])
                .args(["--name", "witness.test/w1"])
                .stderr(std::fs::File::create(&err).unwrap()),
        );
        let text = std::fs::read_to_string(&err).unwrap();
        let vkey =
            text.lines().find_map(|l| l.strip_prefix("witness key: ")).expect("the witness prints its key").to_owned();
        WitnessProcess { child, url, vkey }
    }

    /// POST /add-checkpoint: status, content type, body.
    fn add(&self, old: u64, proof: &[H], note: &str) -> (u16, String, String) {
        let lines: String = proof.iter().map(|h| format!("{}\n", B64.encode(h))).collect();
        let body = format!("old {old}\n{lines}\n{note}");
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut r = agent.post(format!("{}/add-checkpoint", self.url)).send(body.as_bytes()).unwrap();
        let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (r.status().as_u16(), ct, r.body_mut().read_to_string().unwrap())
    }
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cosignature/v1 verifier for `signed_note`, on ed25519-dalek.
struct Cosigner {
    name: String,
    id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl Cosigner {
    fn new(vkey: &str) -> Cosigner {
        let parts: Vec<&str> = vkey.splitn(3, '+').collect();
        let material = B64.decode(parts[2]).unwrap();
        assert_eq!(material[0], 4, "a cosignature/v1 key");
        let key = ed25519_dalek::VerifyingKey::from_bytes(&material[1..].try_into().unwrap()).unwrap();
        let id = signed_note::key_id(parts[0], &material);
        assert_eq!(format!("{id:08x}"), parts[1], "the witness's key id is C2SP's");
        Cosigner { name: parts[0].to_owned(), id, key }
    }
}

impl signed_note::Verifier for Cosigner {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig64) = <[u8; 64]>::try_from(&sig[8.min(sig.len())..]) else { return false };
        let time = u64::from_be_bytes(sig[..8].try_into().unwrap());
        let signed = [format!("cosignature/v1\ntime {time}\n").as_bytes(), msg].concat();
        self.key.verify(&signed, &ed25519_dalek::Signature::from_bytes(&sig64)).is_ok()
    }
}

/// The names of the signatures on `note` that check out with `signed_note`.
fn verified_by(note: &str, log_vkey: &str, witness_vkey: &str) -> Vec<String> {
    let list = signed_note::VerifierList::new(vec![
        Box::new(signed_note::StandardVerifier::new(log_vkey).unwrap()),
        Box::new(Cosigner::new(witness_vkey)),
    ]);
    let note = signed_note::Note::from_bytes(note.as_bytes()).unwrap();
    let (verified, _) = note.verify(&list).unwrap();
    verified.iter().map(|s| s.name().to_owned()).collect()
}

/// The registry's newest checkpoint once it covers `size` events.
fn checkpoint_covering(api: &Api, size: u64) -> (String, u64, H) {
    let mut found = None;
    let covered = eventually(Duration::from_secs(10), || {
        let r = api.get("/v1/checkpoint").send();
        let text = String::from_utf8(r.body).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let ok = r.status == 200 && lines[1].parse::<u64>().unwrap() >= size && text.matches('\u{2014}').count() >= 2;
        if ok {
            let root = B64.decode(lines[2]).unwrap().try_into().unwrap();
            found = Some((text.clone(), lines[1].parse().unwrap(), root));
        }
        ok
    });
    assert!(covered, "no cosigned checkpoint of {size} events within 10 s");
    found.unwrap()
}

fn events(api: &Api, token: &str) -> Vec<Vec<u8>> {
    let r = api.get("/v1/events").auth(token).query("limit", "10000").send();
    r.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect()
}

fn audit_verify(url: &str, token: &str, org: &str, log: &str, witness: &str, state: &Path) -> Output {
    Command::new(keyreg_bin())
        .args(["audit", "verify", "--url", url, "--org", org, "--log-key", log, "--witness-key", witness])
        .args(["--state", path_str(state)])
        .env("KEYREG_TOKEN", token)
        .output()
        .unwrap()
}

#[test]
fn checkpoints_proofs_and_cosignatures_check_out_with_independent_code() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let init = keyreg(&["init", "--data", path_str(&data)]);
    let system = stdout(&init).trim().to_owned();
    let log = LogKey::read(&data);
    assert!(stderr(&init).contains(&log.vkey), "init prints the log's key: {}", stderr(&init));
    let witness = WitnessProcess::start(&dir.path().join("witness"), &log.vkey);
    Server::operator_is(&data, &system);
    let server = Server::start(&data, &["--witness", &witness.url]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    for i in 0..20 {
        new_key(&api, &admin, json!({"name": format!("k{i}"), "scopes": ["read:docs"]}));
    }
    let head = api.head();
    let (note, size, root) = checkpoint_covering(&api, head);
    assert_eq!(size, head);
    let names = verified_by(&note, &log.vkey, &witness.vkey);
    assert_eq!(names, [log.name.clone(), "witness.test/w1".to_owned()], "{note}");

    let stored = events(&api, &system);
    assert_eq!(stored.len() as u64, size);
    let leaves: Vec<H> = stored.iter().map(|e| leaf(e)).collect();
    assert_eq!(mth(&leaves), root, "the root is RFC 6962's over the stored events");
    for seq in [1, 2, size / 2, size - 1, size] {
        let r = api.get("/v1/proofs/inclusion").auth(&system).query("seq", &seq.to_string()).send();
        let proof = hashes(r.ok(200));
        assert_eq!(r.json["leaf_index"], seq - 1);
        assert!(rfc_inclusion(seq - 1, size, leaves[seq as usize - 1], &proof, &root), "event {seq}");
        let mut tampered = stored[seq as usize - 1].clone();
        tampered[10] ^= 1;
        assert!(!rfc_inclusion(seq - 1, size, leaf(&tampered), &proof, &root), "a tampered event {seq} passed");
    }
    for from in [1, 2, 3, 4, 7, size - 1, size] {
        let r = api.get("/v1/proofs/consistency").auth(&admin).query("from", &from.to_string()).send();
        let proof = hashes(r.ok(200));
        assert_eq!(proof, subproof(from as usize, &leaves, true), "the proof from {from} is RFC 6962's");
        let old = mth(&leaves[..from as usize]);
        assert!(rfc_consistency(from, size, &old, &root, &proof), "from {from}");
        assert!(!rfc_consistency(from, size, &leaf(b"another history"), &root, &proof) || from == size);
    }
    // Past the acknowledged events: refused, nothing invented.
    let r =
        api.get("/v1/proofs/consistency").auth(&admin).query("from", "1").query("to", &(size + 100).to_string()).send();
    r.problem(400, "VALIDATION");
}

#[test]
fn a_witness_that_was_down_cosigns_the_newest_checkpoint_once_back() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let system = stdout(&keyreg(&["init", "--data", path_str(&data)])).trim().to_owned();
    let log = LogKey::read(&data);
    let wdir = dir.path().join("witness");
    let witness = WitnessProcess::start(&wdir, &log.vkey);
    let listen = witness.url.trim_start_matches("http://").to_owned();
    Server::operator_is(&data, &system);
    let server = Server::start(&data, &["--witness", &witness.url]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    checkpoint_covering(&api, api.head());

    let wkey = witness.vkey.clone();
    drop(witness);
    new_key(&api, &admin, json!({"name": "while the witness is down", "scopes": ["read:docs"]}));
    let head = api.head();
    checkpoint_covering_unwitnessed(&api, head);
    let note = String::from_utf8(api.get("/v1/checkpoint").send().body).unwrap();
    assert_eq!(verified_by(&note, &log.vkey, &wkey), vec![log.name.clone()], "served without a witness");

    let back = WitnessProcess::start_on(&wdir, &log.vkey, &listen);
    let (note, size, _) = checkpoint_covering(&api, head);
    assert_eq!(size, head, "the same checkpoint, cosigned with no new event: {note}");
    assert_eq!(verified_by(&note, &log.vkey, &back.vkey).len(), 2, "{note}");
}

#[test]
fn a_tenant_gets_proofs_of_its_own_events_only() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let head = api.head();
    checkpoint_covering_unwitnessed(&api, head);
    let own = events(&api, &admin);
    let seq = serde_json::from_slice::<Value>(&own[0]).unwrap()["seq"].as_u64().unwrap();
    api.get("/v1/proofs/inclusion").auth(&admin).query("seq", &seq.to_string()).send().ok(200);
    // Event 1 is the system org's: as absent for acme as for /v1/events.
    api.get("/v1/proofs/inclusion").auth(&admin).query("seq", "1").send().problem(404, "NOT_FOUND");
    api.get("/v1/proofs/inclusion").query("seq", "1").send().problem(401, "UNAUTHENTICATED");
    api.get("/v1/proofs/inclusion").auth(&admin).query("seq", "0").send().problem(400, "VALIDATION");
}

/// The newest checkpoint once it covers `size` (no witness asked).
fn checkpoint_covering_unwitnessed(api: &Api, size: u64) {
    let covered = eventually(Duration::from_secs(10), || {
        let text = String::from_utf8(api.get("/v1/checkpoint").send().body).unwrap();
        text.lines().nth(1).and_then(|l| l.parse::<u64>().ok()).is_some_and(|n| n >= size)
    });
    assert!(covered, "no checkpoint of {size} events within 10 s");
}

#[test]
fn the_witness_refuses_forks_and_bad_proofs_and_remembers_across_a_restart() {
    let dir = tempdir();
    let data = dir.path().join("data");
    assert!(keyreg(&["init", "--data", path_str(&data)]).status.success());
    let log = LogKey::read(&data);
    let wdir = dir.path().join("witness");
    let witness = WitnessProcess::start(&wdir, &log.vkey);
    let leaves: Vec<H> = (0..9u8).map(|i| leaf(&[i])).collect();
    let root = |n: usize| mth(&leaves[..n]);

    let (status, _, body) = witness.add(0, &[], &log.sign(3, &root(3)));
    assert_eq!(status, 200, "{body}");
    let cosigned = format!("{}{body}", log.sign(3, &root(3)));
    assert_eq!(verified_by(&cosigned, &log.vkey, &witness.vkey).len(), 2, "{cosigned}");

    // Another root at the size it cosigned: a fork.
    let (status, _, body) = witness.add(3, &[], &log.sign(3, &leaf(b"forked")));
    assert_eq!(status, 409, "{body}");
    // A larger tree that does not extend it.
    let (status, _, _) = witness.add(3, &subproof(3, &leaves[..7], true), &log.sign(7, &leaf(b"forked")));
    assert_eq!(status, 422);
    // Not signed by the log's key; an origin it does not witness.
    let forged = log.sign(7, &root(7)).replace(&log.name, "keyreg/other");
    assert_eq!(witness.add(3, &subproof(3, &leaves[..7], true), &forged).0, 404);
    let impostor = LogKey { key: ed25519_dalek::SigningKey::from_bytes(&[7; 32]), ..log.clone() };
    assert_eq!(witness.add(3, &subproof(3, &leaves[..7], true), &impostor.sign(7, &root(7))).0, 403);
    // A stale old size: 409 with the size it holds.
    let (status, ct, body) = witness.add(0, &[], &log.sign(7, &root(7)));
    assert_eq!((status, ct.as_str(), body.as_str()), (409, "text/x.tlog.size", "3\n"));
    let (status, _, body) = witness.add(3, &subproof(3, &leaves[..7], true), &log.sign(7, &root(7)));
    assert_eq!(status, 200, "{body}");

    drop(witness);
    // Its signing key stays in its own file: never in what it printed.
    let private = std::fs::read_to_string(wdir.join("witness-key")).unwrap();
    let material = private.trim().splitn(5, '+').nth(4).unwrap().to_owned();
    let printed = std::fs::read_to_string(wdir.with_extension("witness.err")).unwrap();
    assert!(material.len() >= 44 && !printed.contains(&material), "the witness printed its private key");
    let again = WitnessProcess::start(&wdir, &log.vkey);
    let (status, _, body) = again.add(0, &[], &log.sign(9, &root(9)));
    assert_eq!((status, body.as_str()), (409, "7\n"), "the restarted witness forgot what it cosigned");
    let (status, _, _) = again.add(7, &[], &log.sign(7, &leaf(b"forked")));
    assert_eq!(status, 409);
}

#[test]
fn a_tenant_audit_passes_then_catches_a_fork_against_its_saved_checkpoint() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let init = keyreg(&["init", "--data", path_str(&data)]);
    let system = stdout(&init).trim().to_owned();
    let log = LogKey::read(&data);
    let witness = WitnessProcess::start(&dir.path().join("witness"), &log.vkey);
    Server::operator_is(&data, &system);
    let server = Server::start(&data, &["--witness", &witness.url]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let other = new_org(&api, &system, "other");
    new_key(&api, &admin, json!({"name": "ci", "scopes": ["read:docs"]}));
    checkpoint_covering(&api, api.head());
    let state = dir.path().join("acme.checkpoint");

    let first = audit_verify(&server.url, &admin, "acme", &log.vkey, &witness.vkey, &state);
    assert!(first.status.success(), "{}{}", stdout(&first), stderr(&first));
    assert!(stdout(&first).contains("3 events of acme checked"), "{}", stdout(&first));
    let saved = std::fs::read_to_string(&state).unwrap();
    let saved_size: u64 = saved.lines().nth(1).unwrap().parse().unwrap();

    // The log grows (another org's events among them): consistent.
    new_key(&api, &other, json!({"name": "x", "scopes": ["read:docs"]}));
    new_key(&api, &admin, json!({"name": "y", "scopes": ["read:docs"]}));
    checkpoint_covering(&api, api.head());
    let second = audit_verify(&server.url, &admin, "acme", &log.vkey, &witness.vkey, &state);
    assert!(second.status.success(), "{}{}", stdout(&second), stderr(&second));
    assert!(stdout(&second).contains("4 events of acme checked"), "{}", stdout(&second));

    // A fork: the tenant's saved checkpoint has the size the log's had
    // then, but another root, under the log's own key.
    let forked = log.sign(saved_size, &leaf(b"the history shown to this tenant"));
    std::fs::write(&state, &forked).unwrap();
    let third = audit_verify(&server.url, &admin, "acme", &log.vkey, &witness.vkey, &state);
    assert_eq!(third.status.code(), Some(1), "{}{}", stdout(&third), stderr(&third));
    assert!(stderr(&third).contains("is not consistent with the one"), "{}", stderr(&third));
    assert_eq!(std::fs::read_to_string(&state).unwrap(), forked, "a failed audit keeps the state it had");

    // A witness the registry never asked: no quorum, exit 1 saying so.
    let stranger = WitnessProcess::start(&dir.path().join("stranger"), &log.vkey);
    std::fs::remove_file(&state).unwrap();
    let fourth = audit_verify(&server.url, &admin, "acme", &log.vkey, &stranger.vkey, &state);
    assert_eq!(fourth.status.code(), Some(1));
    assert!(stderr(&fourth).contains("carries 0 of the 1 witness cosignatures"), "{}", stderr(&fourth));
}
