//! README's quickstart, run exactly as written against a real server.

use std::process::Command;

use crate::serve::*;
use crate::support::*;

fn quickstart_block() -> String {
    let readme = std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let start = readme.find("<!-- quickstart-steps").expect("README has the quickstart marker");
    let after = &readme[start..];
    let code = &after[after.find("```sh\n").unwrap() + 6..];
    code[..code.find("```").unwrap()].to_owned()
}

#[test]
fn the_readme_quickstart_works_as_written() {
    for tool in ["curl", "jq", "bash"] {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap().status.success();
        assert!(found, "the quickstart test needs {tool}: apt-get install {tool}");
    }
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let bin_dir = keyreg_bin().parent().unwrap().to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    // README promises the steps run again as they are, in the same shell:
    // the block twice in one bash.
    let block = quickstart_block();
    let script = format!("set -euo pipefail\n{block}\necho '--- again'\n{block}");
    let run = |token: &str| {
        Command::new("bash")
            .args(["-c", &script])
            .env("KEYREG_URL", &server.url)
            .env("KEYREG_TOKEN", token)
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let out = run(&system);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    let (first, second) = text.split_once("--- again\n").expect("the second run started");
    for (run, text) in [("first", first), ("second", second)] {
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"VALID") && lines.contains(&"REVOKED") && lines.contains(&"revoked"), "{run}: {text}");
        assert!(text.contains("SECRET (shown once"), "{run}: {text}");
        let revoked_table = &text[text.rfind("ID ").unwrap()..];
        assert!(revoked_table.contains("nightly") && revoked_table.contains("revoked"), "{run}: {text}");
    }
    // A refusal is shown, not swallowed into an empty variable: with a key
    // the registry does not know, the first step stops and says why.
    let out = run("kr_not_a_key");
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("UNAUTHENTICATED"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("VALID"), "{}", stdout(&out));
    server.stop();
}

/// `just run` (README's "Run and test"): it checks its listen address
/// before it writes anything, and names its NATS streams after its data
/// dir, so two checkouts on one machine never share a stream.
#[test]
fn just_run_checks_its_address_first_and_names_its_streams_after_its_data_dir() {
    let found = Command::new("sh").args(["-c", "command -v just"]).output().unwrap().status.success();
    assert!(found, "this test runs just: pip install rust-just");
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = tempdir();
    let just = |args: &[&str], envs: &[(&str, &str)]| {
        let mut c = Command::new("just");
        c.current_dir(root).args(args).env_remove("KEYREG_DATA").env_remove("KEYREG_LISTEN");
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = busy.local_addr().unwrap().to_string();
    let data = dir.path().join("data");
    let refused =
        just(&["run"], &[("KEYREG_DATA", path_str(&data)), ("KEYREG_LISTEN", &listen), ("KEYREG_NATS", "none")]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains(&format!("something already listens on {listen}")), "{}", stderr(&refused));
    assert!(!data.exists(), "nothing was written for an address that cannot be used");

    let prefix = |d: &std::path::Path| {
        let out = just(&["_prefix", path_str(d)], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_owned()
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&a, &b] {
        assert!(keyreg(&["init", "--data", path_str(d)]).status.success());
    }
    let first = prefix(&a);
    assert!(first.starts_with("DEV_") && first.len() == 12, "{first}");
    assert_eq!(prefix(&a), first, "the same data dir, the same streams");
    assert_ne!(prefix(&b), first, "another data dir, other streams");
}
