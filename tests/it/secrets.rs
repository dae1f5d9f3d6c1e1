//! No secret is ever written down: after a workload that makes and rotates
//! keys, no file of the data dir holds any of their tokens, nor does
//! anything the command line printed other than the one token init shows.

use std::path::Path;

use crate::support::*;

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            files(&entry.path(), out);
        } else {
            out.push(entry.path());
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_token_appears_in_the_data_dir_or_the_output() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let init = keyreg(&["init", "--data", path_str(&data)]);
    let init_token = stdout(&init).trim().to_owned();
    let mut secrets = vec![init_token];
    {
        let clock = std::sync::Arc::new(keyreg::time::ManualClock::new(keyreg::time::Clock::now(
            &keyreg::time::SystemClock,
        )));
        let registry = reopen(&data, &clock);
        secrets.extend(
            every_event_type(&registry, &clock)
                .iter()
                .map(|t| t.expose().to_owned()),
        );
    }
    let mut printed = stderr(&init).into_bytes();
    for args in [
        vec!["audit", "export"],
        vec!["audit", "verify"],
        vec!["replay", "--at", "2030-01-01T00:00:00Z"],
        vec!["bench", "append", "--events", "20", "--print-acks"],
    ] {
        let mut full = args.clone();
        full.extend(["--data", path_str(&data)]);
        let out = keyreg(&full);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        printed.extend(out.stdout);
        printed.extend(out.stderr);
    }
    let mut all = vec![];
    files(&data, &mut all);
    assert!(all.len() >= 3);
    assert_eq!(secrets.len(), 5);
    for secret in &secrets {
        // The random part alone, so a token stored without its prefix or
        // with a changed checksum would be caught too.
        let core = &secret.as_bytes()[3..35];
        for file in &all {
            assert!(
                !contains(&std::fs::read(file).unwrap(), core),
                "a token is in {}",
                file.display()
            );
        }
        assert!(!contains(&printed, core), "a token was printed");
    }
}
