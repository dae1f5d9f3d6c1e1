//! The HTTP client behind `keyreg keys`, `keyreg roles` and `keyreg
//! catalog`: where the registry is, which key to present, one request and
//! its problem+json turned into a message, and the escaping every printed
//! value goes through.

use std::fmt::Write as _;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::domain::validate::is_unsafe_char;

/// Where the registry is and which key to present.
#[derive(Args)]
pub struct Remote {
    /// The registry's URL, e.g. http://127.0.0.1:8080
    #[arg(long, env = "KEYREG_URL", default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// A key of your organization with the permission the command needs.
    #[arg(long, env = "KEYREG_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

pub struct Client {
    agent: ureq::Agent,
    url: String,
    token: String,
}

/// One request: method, path, query, an optional `If-Match` version, body.
pub struct Call<'a> {
    method: &'a str,
    path: String,
    pub query: Vec<(&'a str, String)>,
    pub if_match: Option<u64>,
    body: Option<Value>,
}

impl<'a> Call<'a> {
    pub fn new(method: &'a str, path: impl Into<String>) -> Self {
        Call { method, path: path.into(), query: vec![], if_match: None, body: None }
    }

    pub fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// Adds `name=value` to the query when `value` is given.
    pub fn query_opt(mut self, name: &'a str, value: Option<String>) -> Self {
        self.query.extend(value.map(|v| (name, v)));
        self
    }

    /// Adds `name=true` to the query when `flag` is set.
    pub fn flag(mut self, name: &'a str, flag: bool) -> Self {
        if flag {
            self.query.push((name, "true".to_owned()));
        }
        self
    }
}

impl Client {
    pub fn new(remote: &Remote) -> anyhow::Result<Client> {
        let token = remote
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .context("set KEYREG_TOKEN (or --token) to a key of your organization")?;
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Ok(Client { agent, url: remote.url.clone(), token })
    }

    pub fn send(&self, call: Call<'_>) -> anyhow::Result<Value> {
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
            "PUT" => prepare!(self.agent.put(&url)).send_json(body),
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

/// Prints an answer: its JSON with `--json`, else as `render` shows it to
/// people.
pub fn print(remote: &Remote, answer: &Value, render: fn(&Value) -> String) -> anyhow::Result<()> {
    if remote.json {
        println!("{}", serde_json::to_string_pretty(answer)?);
    } else {
        print!("{}", render(answer));
    }
    Ok(())
}

/// Sets `field` of the body when a value is given.
pub fn set(body: &mut Value, field: &str, value: Option<Value>) {
    if let Some(v) = value {
        body[field] = v;
    }
}

/// Rows under a header, each column as wide as its widest cell.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let header = header.map(String::from);
    let widths: Vec<usize> =
        (0..N).map(|i| rows.iter().chain([&header]).map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// `fields` of `object`, one per line, arrays space-separated.
pub fn fields(object: &Value, fields: &[&str]) -> String {
    let mut out = String::new();
    for field in fields {
        let _ = writeln!(out, "{field:<17}{}", words(&object[*field]));
    }
    out
}

/// A value for a cell or a field: an array's items space-separated.
pub fn words(v: &Value) -> String {
    match v {
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
        v => text(v),
    }
}

/// Warnings and the dry-run note that may follow an answer.
pub fn notes(answer: &Value) -> String {
    let mut out = String::new();
    if answer["dry_run"] == true {
        let _ = writeln!(out, "(dry run: nothing was changed)");
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
pub fn text(v: &Value) -> String {
    let raw = match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    raw.chars().map(|c| if is_unsafe_char(c) { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}
