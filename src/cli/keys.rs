//! `keyreg keys …`: a command-line client of the registry's HTTP API.
//! Tables for people, `--json` for scripts; the token comes from
//! `KEYREG_TOKEN`. A new key's secret is printed once, on its own marked
//! line.

use std::fmt::Write as _;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::domain::validate::is_unsafe_char;

#[derive(Args)]
pub struct KeysArgs {
    /// The registry's URL, e.g. http://127.0.0.1:8080
    #[arg(long, env = "KEYREG_URL", default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// A key with keys:admin (writes) or keys:read (reads).
    #[arg(long, env = "KEYREG_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: KeysCmd,
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Create a key; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// A scope such as billing:read or read@workspaces/ws-1/** (repeat for more).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long, conflicts_with = "expires_at")]
        expires_in_days: Option<f64>,
        /// RFC 3339 time.
        #[arg(long)]
        expires_at: Option<String>,
        /// An allowed address range (repeat for more).
        #[arg(long = "cidr")]
        cidrs: Vec<String>,
    },
    /// List keys, newest first.
    List {
        /// active (default), disabled, expired, revoked, deleted or all.
        #[arg(long)]
        status: Option<String>,
        /// Only names containing this (case-insensitive).
        #[arg(long)]
        q: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
        /// The table as it stood at this RFC 3339 time.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Show one key.
    Get {
        id: String,
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Edit a key.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        /// Replaces all scopes (repeat for more).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Replaces all allowed ranges (repeat for more).
        #[arg(long = "cidr")]
        cidrs: Vec<String>,
        /// Remove every address restriction.
        #[arg(long, conflicts_with = "cidrs")]
        any_address: bool,
        /// RFC 3339 time, or `never`.
        #[arg(long)]
        expires_at: Option<String>,
        /// Only apply if the key is still at this version.
        #[arg(long)]
        if_match: Option<u64>,
        /// Show the result and warnings without applying.
        #[arg(long)]
        dry_run: bool,
    },
    /// Disable a key (reversible).
    Disable { id: String },
    /// Enable a disabled key.
    Enable { id: String },
    /// Revoke a key (permanent).
    Revoke {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Revoke and hide a key; --confirm must repeat its name.
    Delete {
        id: String,
        #[arg(long)]
        confirm: String,
    },
    /// Give a key a new secret; the old one works for --grace-seconds more.
    Rotate {
        id: String,
        #[arg(long, default_value_t = 0)]
        grace_seconds: u64,
    },
}

struct Client {
    agent: ureq::Agent,
    url: String,
    token: String,
}

/// One request: method, path, query, an optional `If-Match` version, body.
struct Call<'a> {
    method: &'a str,
    path: String,
    query: Vec<(&'a str, String)>,
    if_match: Option<u64>,
    body: Option<Value>,
}

impl<'a> Call<'a> {
    fn new(method: &'a str, path: impl Into<String>) -> Self {
        Call { method, path: path.into(), query: vec![], if_match: None, body: None }
    }

    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
}

impl Client {
    fn send(&self, call: Call<'_>) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.url.trim_end_matches('/'), call.path);
        let mut headers = vec![("Authorization".to_owned(), format!("Bearer {}", self.token))];
        if let Some(v) = call.if_match {
            headers.push(("If-Match".to_owned(), format!("\"{v}\"")));
        }
        macro_rules! prepare {
            ($request:expr) => {{
                let mut r = $request;
                for (k, v) in &call.query {
                    r = r.query(k, v);
                }
                for (k, v) in &headers {
                    r = r.header(k, v);
                }
                r
            }};
        }
        let body = call.body.unwrap_or(json!({}));
        let sent = match call.method {
            "GET" => prepare!(self.agent.get(&url)).call(),
            "DELETE" => prepare!(self.agent.delete(&url)).call(),
            "PATCH" => prepare!(self.agent.patch(&url)).send_json(body),
            _ => prepare!(self.agent.post(&url)).send_json(body),
        };
        let mut response = sent.with_context(|| format!("cannot reach the registry at {}", self.url))?;
        let status = response.status();
        let text = response.body_mut().read_to_string().context("cannot read the registry's answer")?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let detail = value["detail"].as_str().unwrap_or("no detail");
            let code = value["code"].as_str().unwrap_or("?");
            bail!("{detail} ({code}, HTTP {})", status.as_u16());
        }
        Ok(value)
    }
}

pub fn run(args: KeysArgs) -> anyhow::Result<()> {
    let token =
        args.token.filter(|t| !t.is_empty()).context("set KEYREG_TOKEN (or --token) to a key of your organization")?;
    let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let client = Client { agent, url: args.url, token };
    let call = match args.command {
        KeysCmd::Create { name, scopes, description, owner, expires_in_days, expires_at, cidrs } => {
            let mut body = json!({"name": name, "scopes": scopes, "allowed_cidrs": cidrs});
            set(&mut body, "description", description.map(Value::from));
            set(&mut body, "owner", owner.map(Value::from));
            set(&mut body, "expires_in_days", expires_in_days.map(Value::from));
            set(&mut body, "expires_at", expires_at.map(Value::from));
            Call::new("POST", "/v1/keys").body(body)
        }
        KeysCmd::List { status, q, limit, cursor, as_of } => {
            let mut call = Call::new("GET", "/v1/keys");
            call.query = [
                ("status", status),
                ("q", q),
                ("limit", limit.map(|l| l.to_string())),
                ("cursor", cursor),
                ("as_of", as_of),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            call
        }
        KeysCmd::Get { id, as_of } => {
            let mut call = Call::new("GET", format!("/v1/keys/{id}"));
            call.query = as_of.map(|a| ("as_of", a)).into_iter().collect();
            call
        }
        KeysCmd::Update { id, name, description, owner, scopes, cidrs, any_address, expires_at, if_match, dry_run } => {
            let mut body = json!({});
            set(&mut body, "name", name.map(Value::from));
            set(&mut body, "description", description.map(Value::from));
            set(&mut body, "owner", owner.map(Value::from));
            set(&mut body, "scopes", (!scopes.is_empty()).then(|| json!(scopes)));
            set(&mut body, "allowed_cidrs", (!cidrs.is_empty() || any_address).then(|| json!(cidrs)));
            set(&mut body, "expires_at", expires_at.map(|e| if e == "never" { Value::Null } else { Value::from(e) }));
            let mut call = Call::new("PATCH", format!("/v1/keys/{id}")).body(body);
            call.if_match = if_match;
            if dry_run {
                call.query.push(("dry_run", "true".to_owned()));
            }
            call
        }
        KeysCmd::Disable { id } => Call::new("POST", format!("/v1/keys/{id}/disable")),
        KeysCmd::Enable { id } => Call::new("POST", format!("/v1/keys/{id}/enable")),
        KeysCmd::Revoke { id, reason } => {
            Call::new("POST", format!("/v1/keys/{id}/revoke")).body(json!({"reason": reason}))
        }
        KeysCmd::Delete { id, confirm } => {
            let mut call = Call::new("DELETE", format!("/v1/keys/{id}"));
            call.query.push(("confirm", confirm));
            call
        }
        KeysCmd::Rotate { id, grace_seconds } => {
            Call::new("POST", format!("/v1/keys/{id}/rotate")).body(json!({"grace_seconds": grace_seconds}))
        }
    };
    let answer = client.send(call)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", render(&answer));
    }
    Ok(())
}

fn set(body: &mut Value, field: &str, value: Option<Value>) {
    if let Some(v) = value {
        body[field] = v;
    }
}

/// People's view of an answer: a table for lists, fields for one key, the
/// secret on its own marked line, then warnings.
fn render(answer: &Value) -> String {
    let mut out = String::new();
    if let Some(keys) = answer["keys"].as_array() {
        let rows: Vec<[String; 6]> = keys
            .iter()
            .map(|k| {
                [
                    text(&k["id"]),
                    text(&k["name"]),
                    text(&k["status"]),
                    text(&k["display_prefix"]),
                    k["scopes"]
                        .as_array()
                        .map(|s| s.iter().map(text).collect::<Vec<_>>().join(" "))
                        .unwrap_or_default(),
                    text(&k["expires_at"]),
                ]
            })
            .collect();
        let header = ["ID", "NAME", "STATUS", "PREFIX", "SCOPES", "EXPIRES"].map(String::from);
        let widths: Vec<usize> =
            (0..6).map(|i| rows.iter().chain([&header]).map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
        for row in std::iter::once(&header).chain(&rows) {
            let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
        }
        if let Some(next) = answer["next_cursor"].as_str() {
            let _ = writeln!(out, "(more: --cursor {next})");
        }
        return out;
    }
    let key = &answer["key"];
    for field in [
        "id",
        "name",
        "status",
        "display_prefix",
        "description",
        "owner",
        "scopes",
        "allowed_cidrs",
        "expires_at",
        "last_used_at",
        "created_by",
        "created_at",
        "updated_at",
        "version",
    ] {
        let value = match &key[field] {
            Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
            v => text(v),
        };
        let _ = writeln!(out, "{field:<15}{value}");
    }
    if answer["dry_run"] == true {
        let _ = writeln!(out, "(dry run: nothing was changed)");
    }
    if let Some(secret) = answer["secret"].as_str() {
        let _ = writeln!(out, "\nSECRET (shown once, never again; store it now): {secret}");
    }
    for w in answer["warnings"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "warning: {}", text(w));
    }
    out
}

/// A value as a person reads it. Control and formatting characters are
/// shown escaped (`\u{1b}`), never sent to the terminal: text from the
/// registry must not be able to move the cursor or clear the screen, even
/// text stored before keyreg refused such characters.
fn text(v: &Value) -> String {
    let raw = match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    raw.chars().map(|c| if is_unsafe_char(c) { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text stored before keyreg refused control characters (or coming
    /// from a registry that does not) reaches the terminal escaped.
    #[test]
    fn control_characters_are_shown_escaped() {
        let answer = json!({"key": {"name": "clear\u{1b}[2J", "description": "bell\u{7}", "owner": "\u{202e}gnp.exe"}});
        let shown = render(&answer);
        assert!(shown.lines().all(|l| !l.chars().any(is_unsafe_char)), "{shown:?}");
        assert!(
            shown.contains(r"clear\u{1b}[2J") && shown.contains(r"bell\u{7}") && shown.contains(r"\u{202e}gnp.exe")
        );
        let list = render(&json!({"keys": [{"id": "key_1", "name": "a\u{0}b"}], "next_cursor": null}));
        assert!(list.contains(r"a\u{0}b"), "{list}");
    }
}
