//! `keyreg org …`, `keyreg orgs …` and `keyreg usage`: your organization
//! (its name, key counts and use), the operator's organizations (create,
//! quota), and the organization's use per day, through the HTTP API.

use std::fmt::Write as _;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::{Call, Client, Remote, set};
use super::show::{fields, notes, print, relative, table, text, usage};
use crate::domain::table::Status;
use crate::domain::time::{Clock, SystemClock, Timestamp};

#[derive(Args)]
pub struct OrgArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: OrgCmd,
}

#[derive(Subcommand)]
enum OrgCmd {
    /// Show your organization: its settings, key counts and use.
    Get,
    /// Rename your organization (its quota is the operator's: keyreg orgs update).
    Update {
        #[arg(long)]
        name: String,
    },
}

#[derive(Args)]
pub struct OrgsArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: OrgsCmd,
}

/// The operator's commands: they need a `_system` key.
#[derive(Subcommand)]
enum OrgsCmd {
    /// Every organization: its name, limit and keys in use (needs orgs:admin).
    List,
    /// Create an organization and its first admin key, whose secret is printed once.
    Create {
        /// [a-z0-9][a-z0-9-]{1,62}, e.g. acme
        id: String,
        #[arg(long)]
        name: String,
        /// How many live keys it may hold.
        #[arg(long)]
        max_keys: Option<u32>,
    },
    /// Change an organization's name or quota (needs orgs:admin).
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        max_keys: Option<u32>,
    },
}

#[derive(Args)]
pub struct UsageArgs {
    #[command(flatten)]
    range: Range,
    #[command(flatten)]
    remote: Remote,
}

/// Which days of use to show; usage is kept per UTC day. Without any: all.
#[derive(Args)]
pub struct Range {
    /// The last N days, today included
    #[arg(long, value_name = "N", conflicts_with_all = ["from", "to"])]
    days: Option<u32>,
    /// The first day to show (a date, e.g. 2026-11-01)
    #[arg(long, value_name = "DATE")]
    from: Option<String>,
    /// The last day to show (a date, e.g. 2026-11-30)
    #[arg(long, value_name = "DATE")]
    to: Option<String>,
}

impl Range {
    /// A usage call asking for these days.
    pub fn call(self, path: String) -> Call<'static> {
        Call::new("GET", path)
            .query_opt("days", self.days.map(|d| d.to_string()))
            .query_opt("from", self.from)
            .query_opt("to", self.to)
    }
}

pub fn org(args: OrgArgs) -> anyhow::Result<()> {
    let call = match args.command {
        OrgCmd::Get => Call::new("GET", "/v1/org"),
        OrgCmd::Update { name } => Call::new("PATCH", "/v1/org").body(json!({"name": name})),
    };
    send(&args.remote, call)
}

pub fn orgs(args: OrgsArgs) -> anyhow::Result<()> {
    let call = match args.command {
        OrgsCmd::List => Call::new("GET", "/v1/orgs"),
        OrgsCmd::Create { id, name, max_keys } => {
            let mut body = json!({"id": id, "name": name});
            set(&mut body, "max_keys", max_keys.map(Value::from));
            Call::new("POST", "/v1/orgs").body(body)
        }
        OrgsCmd::Update { id, name, max_keys } => {
            let mut body = json!({});
            set(&mut body, "name", name.map(Value::from));
            set(&mut body, "max_keys", max_keys.map(Value::from));
            Call::new("PATCH", format!("/v1/orgs/{id}")).body(body)
        }
    };
    send(&args.remote, call)
}

pub fn org_usage(args: UsageArgs) -> anyhow::Result<()> {
    send(&args.remote, args.range.call("/v1/usage".into()))
}

fn send(remote: &Remote, call: Call<'_>) -> anyhow::Result<()> {
    let answer = Client::new(remote)?.send(call)?;
    let now = SystemClock.now();
    print(remote, &answer, |answer| render(answer, now))
}

/// An org with its key counts and use; a new org with its admin key's
/// secret on its own marked line; or a usage chart.
fn render(answer: &Value, now: Timestamp) -> String {
    if answer.get("per_day").is_some() {
        return usage(answer, now);
    }
    if let Some(orgs) = answer["orgs"].as_array() {
        let rows: Vec<[String; 5]> = orgs
            .iter()
            .map(|o| {
                let limit = format!("{} of {}", text(&o["keys_in_use"]), text(&o["max_keys"]));
                [text(&o["id"]), text(&o["name"]), limit, relative(&o["created_at"], now), text(&o["version"])]
            })
            .collect();
        return table(["ID", "NAME", "KEYS IN USE", "CREATED", "VERSION"], &rows);
    }
    let org = &answer["org"];
    let mut out = fields(org, &["id", "name", "max_keys", "version"]);
    let _ = writeln!(out, "{:<17}{}", "created", relative(&org["created_at"], now));
    if let Some(counts) = answer["key_counts"].as_object() {
        let counts: Vec<String> = Status::ALL
            .iter()
            .filter_map(|s| counts.get(s.as_str()).map(|n| (s, n)))
            .filter(|(s, n)| **s == Status::Active || n.as_u64() != Some(0))
            .map(|(s, n)| format!("{} {}", text(n), s.as_str()))
            .collect();
        let _ = writeln!(out, "{:<17}{}", "keys", counts.join(", "));
    }
    if answer["usage"].is_object() {
        let u = &answer["usage"];
        let by_outcome = match super::show::outcomes(&u["outcomes"]) {
            o if o.is_empty() => o,
            o => format!(" ({o})"),
        };
        let (total, last) = (text(&u["total"]), relative(&u["last_used_at"], now));
        let _ = writeln!(out, "{:<17}{total} verifies{by_outcome}, last {last}", "use");
    }
    if let Some(secret) = answer["secret"].as_str() {
        let _ = writeln!(out, "{:<17}{}", "admin key", text(&answer["key"]["id"]));
        let _ = writeln!(out, "\nSECRET (shown once, never again; store it now): {secret}");
    }
    out + &notes(answer)
}
