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
    let script = format!("set -euo pipefail\n{}", quickstart_block());
    // README promises the steps can be run again as they are.
    for run in ["first", "second"] {
        let out = Command::new("bash")
            .args(["-c", &script])
            .env("KEYREG_URL", &server.url)
            .env("KEYREG_TOKEN", &system)
            .env("PATH", &path)
            .output()
            .unwrap();
        let text = stdout(&out);
        assert!(out.status.success(), "{run} run: {text}\n{}", stderr(&out));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"VALID") && lines.contains(&"REVOKED") && lines.contains(&"revoked"), "{text}");
        assert!(text.contains("SECRET (shown once"), "{text}");
        let revoked_table = &text[text.rfind("ID ").unwrap()..];
        assert!(revoked_table.contains("nightly") && revoked_table.contains("revoked"), "{text}");
    }
    server.stop();
}
