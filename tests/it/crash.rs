//! Durability under SIGKILL: a real process (this test binary again, run
//! as `append_load`: the registry's writer under load) appends in a loop
//! and is killed at random moments; every sequence it acknowledged must
//! survive.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use keyreg::domain::command::Command as Cmd;
use keyreg::domain::id::{Actor, OrgId};
use keyreg::domain::time::SystemClock;
use keyreg::domain::token::TokenFormat;
use keyreg::registry::{Config, OpenError, Registry};
use keyreg::store::{DataDir, DirError};

use crate::support::*;

/// Where the load child writes: set only in the child.
const LOAD_DATA: &str = "KEYREG_TEST_APPEND_LOAD_DATA";

/// The crash test's load, run only as its child process (ignored
/// otherwise): opens (or initialises) a registry on the data dir in
/// `KEYREG_TEST_APPEND_LOAD_DATA` and has 4 threads create and revoke keys
/// through the writer, forever, printing every acknowledged sequence on
/// stdout as it comes.
#[test]
#[ignore = "the crash test's child process, started by it"]
fn append_load() {
    let Some(data) = std::env::var_os(LOAD_DATA) else { return };
    let data = DataDir::new(&PathBuf::from(data));
    let config = || Config::new(Arc::new(SystemClock), TokenFormat::default());
    let registry = match Registry::open(&data, config()) {
        Ok(r) => r,
        Err(OpenError::Dir(DirError::NotInitialised(_))) => Registry::init(&data, config()).expect("init").0,
        Err(e) => panic!("{e}"),
    };
    let stdout = Arc::new(Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let (registry, stdout) = (registry.clone(), stdout.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    let token = registry.format().generate();
                    let key = registry.new_key(&token, &format!("load {w}-{i}"), "", &["load:run"]);
                    let id = key.id;
                    for command in [Cmd::CreateKey(key), Cmd::Revoke { id, expected: None, reason: None }] {
                        let outcome = registry.execute_blocking(Actor::system("load"), OrgId::system(), command);
                        let mut out = stdout.lock().unwrap_or_else(|e| e.into_inner());
                        for (seq, _) in &outcome.expect("append").events {
                            writeln!(out, "acknowledged {seq}").expect("stdout");
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

#[test]
fn acknowledged_appends_survive_sigkill_twenty_times() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let mut total_acked = 0usize;
    for round in 1..=20 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["crash::append_load", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
            .env(LOAD_DATA, &data)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the append load");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                // The test harness prints its own lines around the load's.
                let Some(seq) = line.strip_prefix("acknowledged ") else { continue };
                if tx.send(seq.parse::<u64>().expect("an acknowledged sequence")).is_err() {
                    break;
                }
            }
        });
        // Wait for the first acknowledgement so every round kills a writer
        // that is busy, then let it run a random while longer.
        let first = rx.recv_timeout(Duration::from_secs(60)).expect("the child acknowledged nothing");
        std::thread::sleep(Duration::from_millis(5 + getrandom::u64().unwrap() % 295));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        reader.join().unwrap();
        let mut acked: Vec<u64> = std::iter::once(first).chain(rx.try_iter()).collect();
        acked.sort_unstable();
        total_acked += acked.len();
        let max = *acked.last().unwrap();

        let started = Instant::now();
        let verify = keyreg(&["audit", "verify", "--json", "--data", path_str(&data)]);
        assert!(verify.status.success(), "round {round}: {} {}", stdout(&verify), stderr(&verify));
        let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
        let head = report["head_seq"].as_u64().unwrap();
        // A gap-free chain from 1 to head holding the largest acknowledged
        // sequence holds every acknowledged sequence.
        assert!(head >= max, "round {round}: acknowledged {max} but the log ends at {head}");
        assert_eq!(report["events"].as_u64(), Some(head), "round {round}");
        assert!(started.elapsed() < Duration::from_secs(60));
    }
    assert!(total_acked >= 20);
}
