//! The HTTP client behind every remote command (`keyreg keys`, `roles`,
//! `org`, …): where the registry is, which key to present and for whom,
//! one request and its problem+json turned into a message. How answers
//! look to people is `show.rs`.

use std::ffi::OsString;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

/// Where the registry is and which key to present.
#[derive(Args)]
pub struct Remote {
    /// The registry's URL, e.g. http://127.0.0.1:8080; several,
    /// comma-separated, are tried in turn while one cannot be reached.
    #[arg(long, env = "KEYREG_URL", default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// A key of your organization with the permission the command needs.
    #[arg(long, env = "KEYREG_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Act for this person (an email): changes are recorded as theirs,
    /// through your key, which needs actors:assert.
    #[arg(long = "as", env = "KEYREG_ACTOR", value_name = "EMAIL", global = true)]
    acting_for: Option<String>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The command line with `Remote`'s flags given before a remote command
/// moved to its end, where the command (at any depth) takes them: people
/// type `keyreg --url URL keys list` as they type `kubectl --context C get`.
/// Before any other command nothing moves, and clap says they do not belong.
/// Which flags are `Remote`'s, which take a value, and which commands are
/// remote (those with `--url` somewhere below) are read from `cli` itself.
pub fn hoist_remote_flags(args: Vec<OsString>, cli: &clap::Command) -> Vec<OsString> {
    let remote = Remote::augment_args(clap::Command::new("remote"));
    let flag = |command: &clap::Command, name: &str| {
        let long = name.strip_prefix("--")?;
        command.get_arguments().find(|a| a.get_long() == Some(long)).map(|a| a.get_action().takes_values())
    };
    let (mut before, mut hoisted) = (vec![], vec![]);
    let mut i = 1;
    while let Some(text) = args.get(i).and_then(|a| a.to_str()).filter(|t| t.starts_with('-')) {
        let (name, inline) = text.split_once('=').map_or((text, false), |(n, _)| (n, true));
        let remote_takes = flag(&remote, name);
        let takes_value = !inline && remote_takes.or_else(|| flag(cli, name)).unwrap_or(false);
        let end = (i + 1 + usize::from(takes_value)).min(args.len());
        match remote_takes {
            Some(_) => hoisted.extend_from_slice(&args[i..end]),
            None => before.extend_from_slice(&args[i..end]),
        }
        i = end;
    }
    let command = args.get(i).and_then(|a| a.to_str()).and_then(|c| cli.find_subcommand(c));
    if hoisted.is_empty() || !command.is_some_and(takes_url) {
        return args;
    }
    [&args[..1], &before[..], &args[i..], &hoisted[..]].concat()
}

/// `cli` with `--stream-prefix` left out of the help of the commands that
/// only talk to a registry over HTTP, where it does nothing. Each such
/// command gets a hidden copy of the flag of its own, which clap's
/// propagation of the global one then leaves alone; so `keyreg
/// --stream-prefix P keys list` still parses, as everywhere.
pub fn stream_prefix_unlisted(cli: clap::Command) -> clap::Command {
    let Some(flag) = cli.get_arguments().find(|a| a.get_id() == "stream_prefix").cloned() else { return cli };
    let hidden = flag.global(false).hide(true);
    // The copy goes on every command at and below one that takes `--url`
    // and not `--nats`: propagation stops at the first that has its own.
    fn walk(command: clap::Command, hidden: &clap::Arg, below_http: bool) -> clap::Command {
        let names: Vec<String> = command.get_subcommands().map(|s| s.get_name().to_owned()).collect();
        names.iter().fold(command, |command, name| {
            command.mut_subcommand(name, |sub| {
                let takes = |flag: &str| sub.get_arguments().any(|a| a.get_long() == Some(flag));
                let http_only = below_http || (takes("url") && !takes("nats"));
                let sub = if http_only { sub.arg(hidden.clone()) } else { sub };
                walk(sub, hidden, http_only)
            })
        })
    }
    walk(cli, &hidden, false)
}

/// Whether `command` or one below it takes `Remote`'s `--url`.
fn takes_url(command: &clap::Command) -> bool {
    command.get_arguments().any(|a| a.get_long() == Some("url")) || command.get_subcommands().any(takes_url)
}

impl Remote {
    /// A registry at `url`, presenting `token`.
    pub fn with(url: &str, token: Option<String>) -> Remote {
        Remote { url: url.to_owned(), token, acting_for: None, json: false }
    }

    /// The email of the person acting, from `--as`.
    pub fn person(&self) -> Option<&str> {
        self.acting_for.as_deref().map(|p| p.strip_prefix("user:").unwrap_or(p))
    }
}

pub struct Client {
    agent: ureq::Agent,
    /// The registry's nodes, in the order they are tried.
    urls: Vec<String>,
    /// None for the one call that presents no key: verify.
    token: Option<String>,
    /// `Keyreg-Actor`, when acting for a person.
    actor: Option<String>,
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
        Ok(Client { token: Some(token), ..Client::public(remote) })
    }

    /// A client that presents no key.
    pub fn public(remote: &Remote) -> Client {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let actor = remote.person().map(|email| format!("user:{email}"));
        let urls = remote.url.split(',').map(|u| u.trim().trim_end_matches('/').to_owned()).filter(|u| !u.is_empty());
        Client { agent, urls: urls.collect(), token: None, actor }
    }

    /// Sends `call` to the first node that can be reached. A node that
    /// refused the connection never saw the request, so even a write goes
    /// on to the next one; any answer, or a failure after connecting, ends
    /// the call there.
    pub fn send(&self, call: Call<'_>) -> anyhow::Result<Value> {
        let text = self.send_text(call)?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// `send`, answering the body's text as it came (events, notes).
    pub fn send_text(&self, call: Call<'_>) -> anyhow::Result<String> {
        let mut unreachable = vec![];
        for base in &self.urls {
            match self.send_to(base, &call) {
                Err(Sent::Not(e)) => unreachable.push(format!("{base} ({e})")),
                Err(Sent::Failed(e)) => return Err(e),
                Ok(value) => return Ok(value),
            }
        }
        bail!(
            "cannot reach the registry at {}: is `keyreg serve` running there? Set KEYREG_URL (or --url) to its \
             address",
            unreachable.join(", ")
        )
    }

    fn send_to(&self, base: &str, call: &Call<'_>) -> Result<String, Sent> {
        let url = format!("{base}{}", call.path);
        let mut headers: Vec<(String, String)> =
            self.token.iter().map(|t| ("Authorization".to_owned(), format!("Bearer {t}"))).collect();
        if let Some(actor) = &self.actor {
            headers.push(("Keyreg-Actor".to_owned(), actor.clone()));
        }
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
        let body = call.body.clone().unwrap_or(json!({}));
        let sent = match call.method {
            "GET" => prepare!(self.agent.get(&url)).call(),
            "DELETE" => prepare!(self.agent.delete(&url)).call(),
            "PATCH" => prepare!(self.agent.patch(&url)).send_json(body),
            "PUT" => prepare!(self.agent.put(&url)).send_json(body),
            _ => prepare!(self.agent.post(&url)).send_json(body),
        };
        let mut response = sent.map_err(|e| match e {
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => Sent::Not(e),
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => Sent::Not(ureq::Error::Io(io)),
            e => Sent::Failed(anyhow::Error::new(e).context(format!("the registry at {base} did not answer"))),
        })?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| Sent::Failed(anyhow::Error::new(e).context("cannot read the registry's answer")))?;
        if !status.is_success() {
            let value: Value = serde_json::from_str(&text).unwrap_or_default();
            let detail = value["detail"].as_str().unwrap_or("no detail");
            let code = value["code"].as_str().unwrap_or("?");
            return Err(Sent::Failed(anyhow::anyhow!("{detail} ({code}, HTTP {})", status.as_u16())));
        }
        Ok(text)
    }
}

/// Why a call to one node got no answer.
enum Sent {
    /// The connection was refused: the request never left.
    Not(ureq::Error),
    /// Sent, or answered with a refusal: nothing to try elsewhere.
    Failed(anyhow::Error),
}

/// Sets `field` of the body when a value is given.
pub fn set(body: &mut Value, field: &str, value: Option<Value>) {
    if let Some(v) = value {
        body[field] = v;
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::hoist_remote_flags;

    fn hoisted(line: &str) -> String {
        let args = line.split(' ').map(Into::into).collect();
        let cli = super::super::Cli::command();
        let out: Vec<String> =
            hoist_remote_flags(args, &cli).into_iter().map(|a| a.to_string_lossy().into_owned()).collect();
        out.join(" ")
    }

    #[test]
    fn remote_flags_before_a_remote_command_move_to_its_end() {
        assert_eq!(hoisted("keyreg --url U --as a@b keys list"), "keyreg keys list --url U --as a@b");
        assert_eq!(hoisted("keyreg --token=T --json keys show K"), "keyreg keys show K --token=T --json");
        assert_eq!(
            hoisted("keyreg --stream-prefix P --url U audit events"),
            "keyreg --stream-prefix P audit events --url U"
        );
        // Nothing moves before any other command, nor without remote flags.
        assert_eq!(hoisted("keyreg --url U serve --data d"), "keyreg --url U serve --data d");
        assert_eq!(hoisted("keyreg --token-prefix t_ keys list"), "keyreg --token-prefix t_ keys list");
        assert_eq!(hoisted("keyreg keys list --url U"), "keyreg keys list --url U");
        assert_eq!(hoisted("keyreg --url"), "keyreg --url");
    }
}
