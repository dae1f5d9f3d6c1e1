//! `keyreg-append-load --data DIR --writers N`: the crash test's load. It
//! opens (or initialises) a registry on DIR and has N threads create and
//! revoke keys in the system org through the writer, forever, printing
//! every acknowledged sequence number on stdout as it comes. The test kills
//! it at random moments and checks that every printed sequence survived.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use keyreg::domain::command::Command;
use keyreg::domain::id::{Actor, OrgId};
use keyreg::domain::time::SystemClock;
use keyreg::domain::token::TokenFormat;
use keyreg::registry::{Config, OpenError, Registry};
use keyreg::store::{DataDir, DirError};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let data = DataDir::new(&PathBuf::from(flag("--data").expect("--data DIR")));
    let writers: usize = flag("--writers").map_or(4, |w| w.parse().expect("--writers N"));
    let config = || Config::new(Arc::new(SystemClock), TokenFormat::default());
    let registry = match Registry::open(&data, config()) {
        Ok(r) => r,
        Err(OpenError::Dir(DirError::NotInitialised(_))) => Registry::init(&data, config()).expect("init").0,
        Err(e) => panic!("{e}"),
    };
    let stdout = Arc::new(Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (registry, stdout) = (registry.clone(), stdout.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    let token = registry.format().generate();
                    let key = registry.new_key(&token, &format!("load {w}-{i}"), "", &["load:run"]);
                    let id = key.id;
                    for command in [Command::CreateKey(key), Command::Revoke { id, expected: None, reason: None }] {
                        let outcome = registry.execute_blocking(Actor::system("load"), OrgId::system(), command);
                        let mut out = stdout.lock().unwrap_or_else(|e| e.into_inner());
                        for (seq, _) in &outcome.expect("append").events {
                            writeln!(out, "{seq}").expect("stdout");
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
