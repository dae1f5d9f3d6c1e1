//! `keyreg roles …`, `keyreg catalog …` and `keyreg presets`: an org's
//! roles, its catalogue of actions, and the built-in presets, through the
//! registry's HTTP API.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::{Call, Client, Remote, set};
use super::show::{fields, notes, plural, print, table, text, words};

#[derive(Args)]
pub struct RolesArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: RolesCmd,
}

#[derive(Subcommand)]
enum RolesCmd {
    /// Create a role: a named bundle of scopes keys can hold.
    Create {
        /// [a-z0-9][a-z0-9:._-]{0,63}, e.g. ci or admin:read
        name: String,
        /// A scope (repeat for more).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List the organization's roles.
    List {
        /// The roles as they stood at this RFC 3339 time.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Show one role and how many keys hold it.
    Get {
        name: String,
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Edit a role: every key holding it changes with it.
    Update {
        name: String,
        /// Replaces the role's scopes (repeat for more).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        /// Only apply if the role is still at this version.
        #[arg(long)]
        if_match: Option<u64>,
        /// Show the result and warnings (keys it may break) without applying.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete a role; --force takes it from the keys holding it.
    Delete {
        name: String,
        #[arg(long)]
        force: bool,
        #[arg(long)]
        if_match: Option<u64>,
    },
}

#[derive(Args)]
pub struct CatalogArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: CatalogCmd,
}

#[derive(Subcommand)]
enum CatalogCmd {
    /// Show the organization's catalogue of actions.
    Get,
    /// Replace the catalogue: one action per line, then optionally a
    /// description (`billing:read  Read invoices`); `#` starts a comment.
    Set {
        /// The file of actions; `-` reads stdin.
        #[arg(long)]
        file: PathBuf,
        /// Refuse scopes naming an exact action the catalogue does not list
        /// (without --enforce or --no-enforce, the setting stays as it is).
        #[arg(long, conflicts_with = "no_enforce")]
        enforce: bool,
        /// Stop refusing them.
        #[arg(long)]
        no_enforce: bool,
    },
}

#[derive(Args)]
pub struct PresetsArgs {
    #[command(flatten)]
    remote: Remote,
}

pub fn roles(args: RolesArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.remote)?;
    let call = match args.command {
        RolesCmd::Create { name, scopes, description } => {
            let mut body = json!({"name": name, "scopes": scopes});
            set(&mut body, "description", description.map(Value::from));
            Call::new("POST", "/v1/roles").body(body)
        }
        RolesCmd::List { as_of } => Call::new("GET", "/v1/roles").query_opt("as_of", as_of),
        RolesCmd::Get { name, as_of } => Call::new("GET", format!("/v1/roles/{name}")).query_opt("as_of", as_of),
        RolesCmd::Update { name, scopes, description, if_match, dry_run } => {
            let mut body = json!({});
            set(&mut body, "scopes", (!scopes.is_empty()).then(|| json!(scopes)));
            set(&mut body, "description", description.map(Value::from));
            let mut call = Call::new("PATCH", format!("/v1/roles/{name}")).body(body).flag("dry_run", dry_run);
            call.if_match = if_match;
            call
        }
        RolesCmd::Delete { name, force, if_match } => {
            let mut call = Call::new("DELETE", format!("/v1/roles/{name}")).flag("force", force);
            call.if_match = if_match;
            call
        }
    };
    print(&args.remote, &client.send(call)?, render_role)
}

pub fn catalog(args: CatalogArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.remote)?;
    let call = match args.command {
        CatalogCmd::Get => Call::new("GET", "/v1/catalog"),
        CatalogCmd::Set { file, enforce, no_enforce } => {
            let enforce = enforce
                || (!no_enforce
                    && client.send(Call::new("GET", "/v1/catalog"))?["enforce"] == serde_json::Value::Bool(true));
            let mut listing = String::new();
            if file.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut listing).context("cannot read the actions from stdin")?;
            } else {
                listing = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            }
            Call::new("PUT", "/v1/catalog").body(json!({"actions": parse_listing(&listing), "enforce": enforce}))
        }
    };
    print(&args.remote, &client.send(call)?, render_catalog)
}

pub fn presets(args: PresetsArgs) -> anyhow::Result<()> {
    let answer = Client::new(&args.remote)?.send(Call::new("GET", "/v1/presets"))?;
    print(&args.remote, &answer, |answer| {
        let rows: Vec<[String; 3]> = answer["presets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| [text(&p["name"]), words(&p["scopes"]), text(&p["description"])])
            .collect();
        table(["PRESET", "SCOPES", "DESCRIPTION"], &rows)
    })
}

/// A catalogue file's lines as actions: the first word, then the rest as
/// its description; blank lines and `#` comments skipped.
fn parse_listing(listing: &str) -> Vec<Value> {
    listing
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(|line| match line.split_once(char::is_whitespace) {
            Some((action, description)) => json!({"action": action, "description": description.trim()}),
            None => json!({"action": line}),
        })
        .collect()
}

fn render_role(answer: &Value) -> String {
    if let Some(roles) = answer["roles"].as_array() {
        let rows: Vec<[String; 3]> =
            roles.iter().map(|r| [text(&r["name"]), words(&r["scopes"]), text(&r["description"])]).collect();
        return table(["ROLE", "SCOPES", "DESCRIPTION"], &rows);
    }
    if answer["deleted"] == true {
        let removed = words(&answer["removed_from"]);
        let from = if removed.is_empty() { String::new() } else { format!("; taken from {removed}") };
        return format!("deleted the role {}{from}\n", text(&answer["name"])) + &notes(answer);
    }
    let role = &answer["role"];
    let mut out = fields(role, &["name", "description", "scopes", "created_by", "created_at", "updated_at", "version"]);
    out += &fields(answer, &["keys"]);
    out + &notes(answer)
}

fn render_catalog(answer: &Value) -> String {
    let rows: Vec<[String; 2]> = answer["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| [text(&a["action"]), text(&a["description"])])
        .collect();
    let enforced = if answer["enforce"] == true { "enforced" } else { "not enforced" };
    table(["ACTION", "DESCRIPTION"], &rows) + &format!("({}, {enforced})\n", plural(rows.len(), "action"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_reads_actions_and_descriptions() {
        let listing = "# billing\nbilling:read   Read invoices\n\nbilling:export\ncompute:start Start a VM # soon\n";
        assert_eq!(
            parse_listing(listing),
            [
                json!({"action": "billing:read", "description": "Read invoices"}),
                json!({"action": "billing:export"}),
                json!({"action": "compute:start", "description": "Start a VM"}),
            ]
        );
    }
}
