//! `keyreg keys …`: keys through the registry's HTTP API. Tables for
//! people, `--json` for scripts; the token comes from `KEYREG_TOKEN`. A new
//! key's secret is printed once, on its own marked line.

use std::fmt::Write as _;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::{Call, Client, Remote, fields, notes, print, set, table, text, words};

#[derive(Args)]
pub struct KeysArgs {
    #[command(flatten)]
    remote: Remote,
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
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A role of the organization (repeat for more).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// A preset's scopes (full-access, read-only, restricted), with any --scope.
        #[arg(long)]
        preset: Option<String>,
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
        /// Replaces the key's own scopes (repeat for more).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Replaces the key's roles (repeat for more).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Take every role from the key.
        #[arg(long, conflicts_with = "roles")]
        no_roles: bool,
        /// Replaces the scopes with a preset's, plus any --scope.
        #[arg(long)]
        preset: Option<String>,
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

pub fn run(args: KeysArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.remote)?;
    let call = match args.command {
        KeysCmd::Create { name, scopes, roles, preset, description, owner, expires_in_days, expires_at, cidrs } => {
            let mut body = json!({"name": name, "scopes": scopes, "roles": roles, "allowed_cidrs": cidrs});
            set(&mut body, "preset", preset.map(Value::from));
            set(&mut body, "description", description.map(Value::from));
            set(&mut body, "owner", owner.map(Value::from));
            set(&mut body, "expires_in_days", expires_in_days.map(Value::from));
            set(&mut body, "expires_at", expires_at.map(Value::from));
            Call::new("POST", "/v1/keys").body(body)
        }
        KeysCmd::List { status, q, limit, cursor, as_of } => Call::new("GET", "/v1/keys")
            .query_opt("status", status)
            .query_opt("q", q)
            .query_opt("limit", limit.map(|l| l.to_string()))
            .query_opt("cursor", cursor)
            .query_opt("as_of", as_of),
        KeysCmd::Get { id, as_of } => Call::new("GET", format!("/v1/keys/{id}")).query_opt("as_of", as_of),
        KeysCmd::Update {
            id,
            name,
            description,
            owner,
            scopes,
            roles,
            no_roles,
            preset,
            cidrs,
            any_address,
            expires_at,
            if_match,
            dry_run,
        } => {
            let mut body = json!({});
            set(&mut body, "name", name.map(Value::from));
            set(&mut body, "description", description.map(Value::from));
            set(&mut body, "owner", owner.map(Value::from));
            set(&mut body, "scopes", (!scopes.is_empty()).then(|| json!(scopes)));
            set(&mut body, "roles", (!roles.is_empty() || no_roles).then(|| json!(roles)));
            set(&mut body, "preset", preset.map(Value::from));
            set(&mut body, "allowed_cidrs", (!cidrs.is_empty() || any_address).then(|| json!(cidrs)));
            set(&mut body, "expires_at", expires_at.map(|e| if e == "never" { Value::Null } else { Value::from(e) }));
            let mut call = Call::new("PATCH", format!("/v1/keys/{id}")).body(body).flag("dry_run", dry_run);
            call.if_match = if_match;
            call
        }
        KeysCmd::Disable { id } => Call::new("POST", format!("/v1/keys/{id}/disable")),
        KeysCmd::Enable { id } => Call::new("POST", format!("/v1/keys/{id}/enable")),
        KeysCmd::Revoke { id, reason } => {
            Call::new("POST", format!("/v1/keys/{id}/revoke")).body(json!({"reason": reason}))
        }
        KeysCmd::Delete { id, confirm } => {
            Call::new("DELETE", format!("/v1/keys/{id}")).query_opt("confirm", Some(confirm))
        }
        KeysCmd::Rotate { id, grace_seconds } => {
            Call::new("POST", format!("/v1/keys/{id}/rotate")).body(json!({"grace_seconds": grace_seconds}))
        }
    };
    print(&args.remote, &client.send(call)?, render)
}

/// People's view of an answer: a table for lists, fields for one key, the
/// secret on its own marked line, then warnings.
fn render(answer: &Value) -> String {
    if let Some(keys) = answer["keys"].as_array() {
        let rows: Vec<[String; 7]> = keys
            .iter()
            .map(|k| {
                [
                    text(&k["id"]),
                    text(&k["name"]),
                    text(&k["status"]),
                    text(&k["display_prefix"]),
                    words(&k["scopes"]),
                    words(&k["roles"]),
                    text(&k["expires_at"]),
                ]
            })
            .collect();
        let mut out = table(["ID", "NAME", "STATUS", "PREFIX", "SCOPES", "ROLES", "EXPIRES"], &rows);
        if let Some(next) = answer["next_cursor"].as_str() {
            let _ = writeln!(out, "(more: --cursor {next})");
        }
        return out;
    }
    let mut out = fields(
        &answer["key"],
        &[
            "id",
            "name",
            "status",
            "display_prefix",
            "description",
            "owner",
            "scopes",
            "roles",
            "effective_scopes",
            "allowed_cidrs",
            "expires_at",
            "last_used_at",
            "created_by",
            "created_at",
            "updated_at",
            "version",
        ],
    );
    if let Some(secret) = answer["secret"].as_str() {
        let _ = writeln!(out, "\nSECRET (shown once, never again; store it now): {secret}");
    }
    out + &notes(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validate::is_unsafe_char;

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
