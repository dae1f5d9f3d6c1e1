//! `keyreg audit log`: the organization's history through the HTTP API,
//! filtered by key, actor (a person: `user:<email>`), type and time. (The
//! other `audit` commands read a stopped registry's data dir or the stream.)

use std::fmt::Write as _;

use clap::Args;
use serde_json::Value;

use super::client::{Call, Client, Remote};
use super::show::{print, table, text};

#[derive(Args)]
pub struct LogArgs {
    #[command(flatten)]
    remote: Remote,
    /// Only this key's events.
    #[arg(long)]
    key: Option<String>,
    /// Only this actor's: user:<email>, key:<id> or system:<what>.
    #[arg(long)]
    actor: Option<String>,
    /// Only this type, e.g. key.revoked.
    #[arg(long = "type")]
    type_name: Option<String>,
    /// RFC 3339 times.
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    #[arg(long)]
    limit: Option<u32>,
    #[arg(long)]
    cursor: Option<String>,
    /// Oldest first (default: newest first).
    #[arg(long)]
    oldest_first: bool,
}

pub fn log(args: LogArgs) -> anyhow::Result<()> {
    let call = Call::new("GET", "/v1/audit")
        .query_opt("key_id", args.key)
        .query_opt("actor", args.actor)
        .query_opt("type", args.type_name)
        .query_opt("since", args.since)
        .query_opt("until", args.until)
        .query_opt("limit", args.limit.map(|l| l.to_string()))
        .query_opt("cursor", args.cursor)
        .query_opt("order", args.oldest_first.then(|| "asc".to_owned()));
    let answer = Client::new(&args.remote)?.send(call)?;
    print(&args.remote, &answer, render)
}

/// One row per event; a person's change names the key that acted for them.
fn render(answer: &Value) -> String {
    let rows: Vec<[String; 5]> = answer["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let actor = match e.get("via") {
                Some(via) => format!("{} (via {})", text(&e["actor"]), text(via)),
                None => text(&e["actor"]),
            };
            [text(&e["seq"]), text(&e["time"]), text(&e["type"]), actor, text(&e["subject"])]
        })
        .collect();
    let mut out = table(["SEQ", "TIME", "TYPE", "ACTOR", "SUBJECT"], &rows);
    if let Some(next) = answer["next_cursor"].as_str() {
        let _ = writeln!(out, "(more: --cursor {next})");
    }
    out
}
