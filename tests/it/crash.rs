//! Durability under SIGKILL: a real process (`keyreg-append-load`, the
//! registry's writer under load) appends in a loop and is killed at random
//! moments; every sequence it acknowledged must survive.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn acknowledged_appends_survive_sigkill_twenty_times() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let mut total_acked = 0usize;
    for round in 1..=20 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keyreg-append-load"))
            .args(["--data", path_str(&data), "--writers", "4"])
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn keyreg-append-load");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line.parse::<u64>().expect("an acknowledged sequence")).is_err() {
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
