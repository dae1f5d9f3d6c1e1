//! The command line over a real data dir: init, audit verify and export,
//! tampering, and an independent check of the chain.

use keyreg::domain::id::Seq;
use keyreg::store::log::Log;

use crate::support::*;

#[test]
fn init_prints_only_the_token_and_refuses_a_second_time() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let out = keyreg(&["init", "--data", path_str(&data)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out);
    let token = token.trim_end();
    assert!(keyreg::domain::token::TokenFormat::default().parse(token).is_ok(), "stdout is the token alone: {token:?}");
    assert!(!stderr(&out).contains(token));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(data.join("pepper")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let before = std::fs::read(data.join("pepper")).unwrap();
    let again = keyreg(&["init", "--data", path_str(&data)]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already initialised"), "{}", stderr(&again));
    assert!(stdout(&again).is_empty());
    assert_eq!(std::fs::read(data.join("pepper")).unwrap(), before);
    let verify = keyreg(&["audit", "verify", "--data", path_str(&data)]);
    assert!(stdout(&verify).starts_with("ok: 2 events, head seq 2"), "{}", stdout(&verify));
}

#[test]
fn commands_on_a_missing_data_dir_say_what_to_do() {
    let dir = tempdir();
    let missing = dir.path().join("nope");
    for args in [vec!["audit", "verify"], vec!["audit", "export"], vec!["replay", "--at", "2026-01-01T00:00:00Z"]] {
        let mut full: Vec<&str> = args.clone();
        full.extend(["--data", path_str(&missing)]);
        let out = keyreg(&full);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains("keyreg init --data"), "{args:?}: {}", stderr(&out));
    }
    let bad_time = keyreg(&["replay", "--data", path_str(&missing), "--at", "yesterday"]);
    assert!(stderr(&bad_time).contains("give now, a date"), "{}", stderr(&bad_time));
}

#[test]
fn a_changed_byte_makes_audit_verify_name_its_sequence() {
    let dir = tempdir();
    let data = dir.path().join("data");
    {
        let (registry, _, clock) = registry_with_clock(&data);
        every_event_type(&registry, &clock);
        registry.close().unwrap();
    }
    let ok = keyreg(&["audit", "verify", "--data", path_str(&data)]);
    assert!(ok.status.success(), "{}", stdout(&ok));
    for (seq, flip) in [(7u64, "description"), (2, "name"), (15, "expires_at")] {
        let copy = dir.path().join(format!("tampered-{seq}"));
        copy_dir(&data, &copy);
        {
            let mut log = Log::open(&copy.join("log")).unwrap();
            log.tamper(Seq(seq), |bytes| {
                let text = String::from_utf8(bytes.clone()).unwrap();
                let at = text.find(flip).unwrap_or(text.len() / 2) + 2;
                bytes[at] ^= 0x01;
            })
            .unwrap();
        }
        assert!(keyreg::store::log::wait_unlocked(&copy.join("log"), std::time::Duration::from_secs(10)));
        let out = keyreg(&["audit", "verify", "--data", path_str(&copy)]);
        assert_eq!(out.status.code(), Some(1), "seq {seq}: {}", stdout(&out));
        assert!(stdout(&out).starts_with(&format!("BROKEN at seq {seq}:")), "seq {seq}: {}", stdout(&out));
        let json = keyreg(&["audit", "verify", "--json", "--data", path_str(&copy)]);
        let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(report["first_bad_seq"], seq);
        assert_eq!(report["ok"], false);
        // An export stops before the record whose link fails, and says so.
        let export = keyreg(&["audit", "export", "--data", path_str(&copy)]);
        assert_eq!(export.status.code(), Some(1), "seq {seq}");
        assert_eq!(stdout(&export).lines().count() as u64, seq - 1, "seq {seq}: only the records before it");
        assert!(stderr(&export).contains(&format!("sequence {seq}")), "{}", stderr(&export));
    }
}

/// What README tells an auditor to do, done with nothing but blake3 and a
/// JSON reader: hash the raw prevhash bytes, then the line as exported.
#[test]
fn the_exported_chain_checks_with_plain_blake3() {
    let dir = tempdir();
    let data = dir.path().join("data");
    {
        let (registry, _, clock) = registry_with_clock(&data);
        every_event_type(&registry, &clock);
        registry.close().unwrap();
    }
    let out = keyreg(&["audit", "export", "--data", path_str(&data)]);
    assert!(out.status.success());
    let mut prev = [0u8; 32];
    let mut n = 0;
    for line in out.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let value: serde_json::Value = serde_json::from_slice(line).unwrap();
        let prevhash = value["prevhash"].as_str().unwrap();
        assert_eq!(prevhash, blake3::Hash::from_bytes(prev).to_hex().as_str(), "event {}", value["seq"]);
        let mut h = blake3::Hasher::new();
        h.update(&prev);
        h.update(line);
        prev = *h.finalize().as_bytes();
        n += 1;
        assert_eq!(value["seq"], n);
    }
    assert_eq!(n, 26);
    let verify = keyreg(&["audit", "verify", "--data", path_str(&data)]);
    assert!(stdout(&verify).contains(&blake3::Hash::from_bytes(prev).to_hex().to_string()), "{}", stdout(&verify));
}

#[test]
fn export_filters_by_time_and_keeps_the_bytes() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let stored: Vec<Vec<u8>> = {
        let (registry, _, clock) = registry_with_clock(&data);
        every_event_type(&registry, &clock);
        let stored = registry.log().read(Seq(1), None).map(|r| r.unwrap().bytes().to_vec()).collect();
        registry.close().unwrap();
        stored
    };
    let all = keyreg(&["audit", "export", "--data", path_str(&data)]);
    let lines: Vec<&[u8]> = all.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(lines, stored.iter().map(Vec::as_slice).collect::<Vec<_>>());
    // Everything but the sweeper's expiry happened at t0; it came an hour later.
    let later = t0().plus_seconds(1800).to_string();
    let since = keyreg(&["audit", "export", "--data", path_str(&data), "--since", &later]);
    assert_eq!(since.stdout, [stored.last().unwrap().as_slice(), b"\n"].concat());
    let until = keyreg(&["audit", "export", "--data", path_str(&data), "--until", &later]);
    assert_eq!(until.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count(), stored.len() - 1);
}

#[test]
fn replay_prints_the_table_as_it_stood() {
    let dir = tempdir();
    let data = dir.path().join("data");
    {
        let (registry, _, clock) = registry_with_clock(&data);
        every_event_type(&registry, &clock);
        registry.close().unwrap();
    }
    let table = |at: &str, org: Option<&str>| -> serde_json::Value {
        let mut args = vec!["replay", "--data", path_str(&data), "--at", at];
        if let Some(o) = org {
            args.extend(["--org", o]);
        }
        let out = keyreg(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let before = table("2026-11-22T08:59:59Z", None);
    assert_eq!(before["seq"], 0);
    assert_eq!(before["keys"].as_array().unwrap().len(), 0);
    let at_t0 = table(&t0().to_string(), Some("acme"));
    assert_eq!(at_t0["seq"], 25);
    let statuses: Vec<(&str, &str)> = at_t0["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["name"].as_str().unwrap(), k["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("acme admin", "active"),
            ("ci", "active"),
            ("doomed", "deleted"),
            ("legacy", "active"),
            ("operator", "active")
        ]
    );
    assert!(at_t0["keys"].to_string().find("key_hash").is_none());
    let later = table("2026-11-22T11:00:00Z", Some("acme"));
    assert_eq!(later["seq"], 26);
    assert_eq!(later["keys"][1]["status"], "expired");
    assert_eq!(later["orgs"].as_array().unwrap().len(), 1);
    // `now` and a plain date (its first instant, UTC) are times too.
    assert_eq!(table("now", Some("acme"))["seq"], 26);
    assert_eq!(table("2026-11-22", None)["seq"], 0);
    assert_eq!(table("2026-11-23", Some("acme"))["seq"], 26);
}
