//! `keyreg keys …`: keys through the registry's HTTP API. Tables for
//! people, `--json` for scripts; the token comes from `KEYREG_TOKEN`. A new
//! key's secret is printed once, on its own marked line.

use std::fmt::Write as _;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use anyhow::Context as _;

use super::client::{Call, Client, Remote, set};
use super::show::{fields, notes, plural, print, relative, table, text, usage, words};
use crate::domain::time::{Clock, SystemClock, Timestamp};

#[derive(Args)]
pub struct KeysArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: KeysCmd,
}

/// What a new key is: the same for a created key and an imported one.
#[derive(Args)]
struct NewKeyArgs {
    /// The key's name, shown in lists (1-100 characters).
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
    /// What the key is for, in a sentence.
    #[arg(long)]
    description: Option<String>,
    /// Whose key it is, e.g. an email: `keys list --owner` and `keys offboard` find it by this.
    #[arg(long)]
    owner: Option<String>,
    /// Days until the key expires: 7, 30, 90, … (a fraction is fine);
    /// without it or --expires-at the key never expires.
    #[arg(long, conflicts_with = "expires_at", allow_negative_numbers = true, value_parser = parse_days)]
    expires_in_days: Option<f64>,
    /// When the key expires: a date (00:00 UTC that day, e.g. 2027-01-01)
    /// or an RFC 3339 time.
    #[arg(long)]
    expires_at: Option<String>,
    /// An allowed address range (repeat for more).
    #[arg(long = "cidr")]
    cidrs: Vec<String>,
    #[command(flatten)]
    meta: MetaArgs,
}

/// A key's metadata, returned by every verify: a JSON object of at most 4 KiB.
#[derive(Args)]
struct MetaArgs {
    /// Metadata returned with every verify: a JSON object, e.g. '{"plan":"pro"}' (at most 4 KiB).
    #[arg(long, value_name = "JSON", conflicts_with = "meta_file")]
    meta: Option<String>,
    /// The metadata from a file holding a JSON object.
    #[arg(long, value_name = "FILE")]
    meta_file: Option<std::path::PathBuf>,
}

impl MetaArgs {
    /// The metadata given, if any, read and parsed here so a mistake is
    /// named by its flag.
    fn value(self) -> anyhow::Result<Option<Value>> {
        let (text, flag) = match (self.meta, self.meta_file) {
            (Some(text), _) => (text, "--meta".to_owned()),
            (None, Some(file)) => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("--meta-file {}: cannot read it", file.display()))?;
                (text, format!("--meta-file {}", file.display()))
            }
            (None, None) => return Ok(None),
        };
        let value: Value = serde_json::from_str(&text).with_context(|| format!("{flag} is not JSON"))?;
        anyhow::ensure!(value.is_object(), "{flag} must be a JSON object, e.g. {{\"plan\": \"pro\"}}");
        Ok(Some(value))
    }
}

impl NewKeyArgs {
    fn body(self) -> anyhow::Result<Value> {
        let mut body =
            json!({"name": self.name, "scopes": self.scopes, "roles": self.roles, "allowed_cidrs": self.cidrs});
        set(&mut body, "preset", self.preset.map(Value::from));
        set(&mut body, "description", self.description.map(Value::from));
        set(&mut body, "owner", self.owner.map(Value::from));
        set(&mut body, "expires_in_days", self.expires_in_days.map(Value::from));
        set(&mut body, "expires_at", self.expires_at.map(|e| Value::from(super::whole_day(&e))));
        set(&mut body, "meta", self.meta.value()?);
        Ok(body)
    }
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Create a key; its secret is printed once. It needs at least one
    /// --scope, --role or --preset.
    Create(NewKeyArgs),
    /// Import a key that existed before keyreg, so its holder keeps working.
    /// The secret is read from stdin (one line), never from the command
    /// line; or give only its SHA-256 with --sha256.
    Import {
        #[command(flatten)]
        key: NewKeyArgs,
        /// The secret's SHA-256 (64 hex digits), when you do not hold the secret.
        #[arg(long)]
        sha256: Option<String>,
    },
    /// List keys, newest first.
    List {
        /// active (default), disabled, expired, revoked, deleted or all.
        #[arg(long)]
        status: Option<String>,
        /// Only names containing this (case-insensitive).
        #[arg(long)]
        q: Option<String>,
        /// Only keys whose owner is exactly this.
        #[arg(long)]
        owner: Option<String>,
        /// Only your keys: those whose owner is the person of --as.
        #[arg(long, conflicts_with = "owner")]
        mine: bool,
        /// Only keys created by this actor: user:<email>, key:<id> or system:<what>.
        #[arg(long)]
        created_by: Option<String>,
        /// Only keys that expire within 7 days (and still work, or could).
        #[arg(long)]
        expiring: bool,
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
        /// Replaces the metadata whole.
        #[command(flatten)]
        meta: MetaArgs,
        /// Remove the metadata.
        #[arg(long, conflicts_with_all = ["meta", "meta_file"])]
        no_meta: bool,
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
    /// Revoke up to 100 keys at once: all checked, then all revoked.
    BulkRevoke {
        #[arg(required = true)]
        ids: Vec<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Revoke and hide up to 100 keys at once.
    BulkDelete {
        #[arg(required = true)]
        ids: Vec<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Revoke every key of one owner (someone who left), in one step.
    Offboard {
        owner: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// A key's use: verifications by outcome, when it was last used, and a
    /// chart per day.
    Usage {
        id: String,
        #[command(flatten)]
        range: super::org::Range,
    },
    /// Ask the registry whether a key (read from stdin) may do an action;
    /// exits 0 only when it may. Needs no KEYREG_TOKEN.
    Verify {
        /// e.g. billing:read
        #[arg(long)]
        action: Option<String>,
        /// e.g. workspaces/ws-1/invoices
        #[arg(long)]
        resource: Option<String>,
        /// The address the key is used from, for keys with allowed ranges.
        #[arg(long)]
        ip: Option<String>,
    },
}

pub fn run(args: KeysArgs) -> anyhow::Result<bool> {
    let call = match args.command {
        KeysCmd::Verify { action, resource, ip } => return verify(&args.remote, action, resource, ip),
        KeysCmd::Create(key) => Call::new("POST", "/v1/keys").body(key.body()?),
        KeysCmd::Import { key, sha256 } => {
            let mut body = key.body()?;
            match sha256 {
                Some(digest) => body["secret_sha256"] = digest.into(),
                None => body["secret"] = read_secret("or give only its SHA-256 with --sha256")?.into(),
            }
            Call::new("POST", "/v1/keys/import").body(body)
        }
        KeysCmd::List { status, q, owner, mine, created_by, expiring, limit, cursor, as_of } => {
            let owner = match mine {
                true => Some(args.remote.person().context("--mine needs --as EMAIL (or KEYREG_ACTOR): whose keys?")?),
                false => owner.as_deref(),
            };
            Call::new("GET", "/v1/keys")
                .query_opt("status", status)
                .query_opt("q", q)
                .query_opt("owner", owner.map(str::to_owned))
                .query_opt("created_by", created_by)
                .flag("expiring", expiring)
                .query_opt("limit", limit.map(|l| l.to_string()))
                .query_opt("cursor", cursor)
                .query_opt("as_of", as_of)
        }
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
            meta,
            no_meta,
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
            let expiry = |e: String| if e == "never" { Value::Null } else { Value::from(super::whole_day(&e)) };
            set(&mut body, "expires_at", expires_at.map(expiry));
            if no_meta {
                body["meta"] = Value::Null;
            }
            set(&mut body, "meta", meta.value()?);
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
        KeysCmd::BulkRevoke { ids, reason } => {
            Call::new("POST", "/v1/keys/bulk-revoke").body(json!({"ids": ids, "reason": reason}))
        }
        KeysCmd::BulkDelete { ids, reason } => {
            Call::new("POST", "/v1/keys/bulk-revoke").body(json!({"ids": ids, "reason": reason, "delete": true}))
        }
        KeysCmd::Offboard { owner, reason } => {
            Call::new("POST", "/v1/keys/offboard").body(json!({"owner": owner, "reason": reason}))
        }
        KeysCmd::Usage { id, range } => range.call(format!("/v1/keys/{id}/usage")),
    };
    let answer = Client::new(&args.remote)?.send(call)?;
    let now = SystemClock.now();
    print(&args.remote, &answer, |answer| render(answer, now))?;
    Ok(true)
}

/// `keys verify`: whether the key may, as the registry answers; presents no key of its own.
fn verify(
    remote: &Remote,
    action: Option<String>,
    resource: Option<String>,
    ip: Option<String>,
) -> anyhow::Result<bool> {
    let body = json!({"key": read_secret("the key to verify")?, "action": action, "resource": resource, "ip": ip});
    let answer = Client::public(remote).send(Call::new("POST", "/v1/verify").body(body))?;
    print(remote, &answer, |a| fields(a, &["code", "key_id", "org", "owner", "scopes", "roles", "seq"]))?;
    Ok(answer["valid"] == true)
}

/// `--expires-in-days`: a positive number of days.
fn parse_days(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(days) if days.is_finite() && days > 0.0 => Ok(days),
        _ => Err(format!("{s:?} is not a number of days: give a positive number, e.g. 7, 30 or 0.5")),
    }
}

/// A secret from stdin, never from the command line (where shell history
/// and `ps` would keep it): one line, without its line ending. `hint` ends
/// the message when there is none, naming what this command also takes.
fn read_secret(hint: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("cannot read the secret from stdin")?;
    let secret = line.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(!secret.is_empty(), "give the secret on stdin (e.g. from a file or a password manager); {hint}");
    Ok(secret.to_owned())
}

/// People's view of an answer: a table for lists, fields for one key, the
/// secret on its own marked line, then warnings; times beside `now`.
fn render(answer: &Value, now: Timestamp) -> String {
    if let Some(keys) = answer["keys"].as_array() {
        let rows: Vec<[String; 10]> = keys
            .iter()
            .map(|k| {
                [
                    text(&k["id"]),
                    text(&k["name"]),
                    text(&k["status"]),
                    text(&k["display_prefix"]),
                    words(&k["scopes"]),
                    words(&k["roles"]),
                    text(&k["created_by"]),
                    relative(&k["created_at"], now),
                    relative(&k["last_used_at"], now),
                    relative(&k["expires_at"], now),
                ]
            })
            .collect();
        let header =
            ["ID", "NAME", "STATUS", "PREFIX", "SCOPES", "ROLES", "CREATED BY", "CREATED", "LAST USED", "EXPIRES"];
        let mut out = table(header, &rows);
        if let Some(next) = answer["next_cursor"].as_str() {
            let _ = writeln!(out, "(more: --cursor {next})");
        }
        return out;
    }
    if let Some(revoked) = answer["revoked"].as_array() {
        let mut out = format!("revoked {} of {}\n", plural(revoked.len(), "key"), text(&answer["owner"]));
        for id in revoked {
            let _ = writeln!(out, "  {}", text(id));
        }
        return out;
    }
    if answer.get("per_day").is_some() {
        return usage(answer, now);
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
    if answer["key"]["legacy"] == true {
        let _ = writeln!(out, "{:<17}yes: its secret was imported; rotate it to give it a keyreg secret", "legacy");
    }
    if answer["key"]["meta"].is_object() {
        let _ = writeln!(out, "{:<17}{}", "meta", text(&Value::from(answer["key"]["meta"].to_string())));
    }
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
        let shown = render(&answer, Timestamp::from_micros(0));
        assert!(shown.lines().all(|l| !l.chars().any(is_unsafe_char)), "{shown:?}");
        assert!(
            shown.contains(r"clear\u{1b}[2J") && shown.contains(r"bell\u{7}") && shown.contains(r"\u{202e}gnp.exe")
        );
        let list = render(
            &json!({"keys": [{"id": "key_1", "name": "a\u{0}b"}], "next_cursor": null}),
            Timestamp::from_micros(0),
        );
        assert!(list.contains(r"a\u{0}b"), "{list}");
    }
}
