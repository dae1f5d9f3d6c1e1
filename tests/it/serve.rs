//! A real `keyreg serve` process on a free loopback port, and an HTTP client
//! that records every exchange so the contract test can check the answers
//! against `schemas/openapi.json`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// The system key `keyreg init` printed, by data dir and by the URL of a
/// server started on it: health and metrics give their detail to the
/// operator only, and the tests read the log's head through them.
static OPERATORS: LazyLock<Mutex<HashMap<String, String>>> = LazyLock::new(Mutex::default);

pub struct Server {
    child: Child,
    pub url: String,
    pub data: PathBuf,
    /// The server's stderr, with debug logging on: grepped for secrets.
    pub log: PathBuf,
    /// Seconds the server's clock runs ahead of the system's
    /// (`--clock-offset-file`), moved by `advance`.
    clock: PathBuf,
}

impl Server {
    /// `keyreg init` in `dir/data`, then `keyreg serve`; returns the server
    /// and the system org's first token.
    pub fn init_and_start(dir: &Path, extra: &[&str]) -> (Server, String) {
        let data = dir.join("data");
        let init = keyreg(&["init", "--data", path_str(&data)]);
        assert!(init.status.success(), "{}", stderr(&init));
        let token = stdout(&init).trim().to_owned();
        Server::operator_is(&data, &token);
        (Server::start(&data, extra), token)
    }

    /// Tells the servers started on `data` from now on who the operator
    /// is (a data dir made without `init_and_start`).
    pub fn operator_is(data: &Path, token: &str) {
        OPERATORS.lock().unwrap().insert(data.display().to_string(), token.to_owned());
    }

    pub fn start(data: &Path, extra: &[&str]) -> Server {
        // One file per server: two servers on one data dir (a restart) must
        // not write into the same log.
        static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = data.with_extension(format!("serve-{n}.log"));
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let clock = data.with_extension(format!("clock-{n}"));
        let (child, url) = spawn_listening(
            Command::new(keyreg_bin())
                .args(["serve", "--data", path_str(data), "--listen", "127.0.0.1:0"])
                .args(["--clock-offset-file", path_str(&clock)])
                .args(extra)
                .env("RUST_LOG", "keyreg=debug")
                .stderr(log_file),
        );
        let mut operators = OPERATORS.lock().unwrap();
        if let Some(token) = operators.get(&data.display().to_string()).cloned() {
            operators.insert(url.clone(), token);
        }
        Server { child, url, data: data.to_owned(), log, clock }
    }

    /// Moves the server's clock forward by `seconds`, instead of sleeping
    /// on the real one for time to pass.
    pub fn advance(&self, seconds: f64) {
        std::fs::write(&self.clock, (self.offset() + seconds).to_string()).unwrap();
        // The server reads the file again at most 10 ms after it changed.
        std::thread::sleep(Duration::from_millis(30));
    }

    fn offset(&self) -> f64 {
        std::fs::read_to_string(&self.clock).ok().and_then(|s| s.parse().ok()).unwrap_or(0.0)
    }

    /// The server's time now, its clock's offset included.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + chrono::Duration::microseconds((self.offset() * 1e6) as i64)
    }

    /// SIGKILL: no goodbye.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP: the process freezes with its sockets open, as a node
    /// stalled by its machine would.
    pub fn pause(&self) {
        Command::new("kill").args(["-STOP", &self.child.id().to_string()]).status().unwrap();
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) {
        Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status().unwrap();
    }

    /// SIGTERM, and wait for the graceful exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let started = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(started.elapsed() < Duration::from_secs(20), "the server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request and its answer, as the contract test needs them.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub method: String,
    pub template: String,
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

pub struct Api {
    agent: ureq::Agent,
    pub url: String,
    pub exchanges: RefCell<Vec<Exchange>>,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub json: Value,
    pub body: Vec<u8>,
    pub etag: Option<String>,
    pub retry_after: Option<String>,
    /// Every header, names in lower case.
    pub headers: Vec<(String, String)>,
}

pub struct Req<'a> {
    api: &'a Api,
    method: &'static str,
    template: &'static str,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Api {
    pub fn new(url: &str) -> Api {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Api { agent, url: url.to_owned(), exchanges: RefCell::default() }
    }

    /// A request to `template`, with `{id}` (or `{name}`) replaced by `id`
    /// if given.
    pub fn req(&self, method: &'static str, template: &'static str, id: Option<&str>) -> Req<'_> {
        let path = match id {
            Some(id) => template.replace("{id}", id).replace("{name}", id),
            None => template.to_owned(),
        };
        Req { api: self, method, template, path, query: vec![], headers: vec![], body: None }
    }

    pub fn get(&self, template: &'static str) -> Req<'_> {
        self.req("GET", template, None)
    }

    pub fn post(&self, template: &'static str) -> Req<'_> {
        self.req("POST", template, None)
    }

    /// The log head the server reports.
    pub fn head(&self) -> u64 {
        self.ops("/healthz").json["head_seq"].as_u64().unwrap()
    }

    /// `GET path` as the operator, when the server's system key is known
    /// (a registry these tests started); plainly otherwise (a replica).
    pub fn ops(&self, path: &'static str) -> Resp {
        let operator = OPERATORS.lock().unwrap().get(&self.url).cloned();
        match operator {
            Some(token) => self.get(path).auth(&token).send(),
            None => self.get(path).send(),
        }
    }
}

impl Req<'_> {
    pub fn auth(mut self, token: &str) -> Self {
        self.headers.push(("Authorization".into(), format!("Bearer {token}")));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(serde_json::to_vec(&body).unwrap());
        self
    }

    pub fn raw(mut self, body: &[u8]) -> Self {
        self.body = Some(body.to_vec());
        self
    }

    pub fn send(self) -> Resp {
        let method = self.method;
        self.try_send().unwrap_or_else(|e| panic!("{method} {e}"))
    }

    /// `send`, or why no answer came (the server is gone).
    pub fn try_send(self) -> Result<Resp, String> {
        let url = format!("{}{}", self.api.url, self.path);
        macro_rules! prepare {
            ($r:expr) => {{
                let mut r = $r;
                for (k, v) in &self.query {
                    r = r.query(k, v);
                }
                for (k, v) in &self.headers {
                    r = r.header(k, v);
                }
                r
            }};
        }
        let agent = &self.api.agent;
        let body = self.body.clone().unwrap_or_default();
        let result = match self.method {
            "GET" => prepare!(agent.get(&url)).call(),
            "DELETE" => prepare!(agent.delete(&url)).call(),
            "PUT" => prepare!(agent.put(&url)).send(&body[..]),
            "PATCH" => prepare!(agent.patch(&url)).send(&body[..]),
            _ => prepare!(agent.post(&url)).send(&body[..]),
        };
        let mut response = result.map_err(|e| format!("{url}: {e}"))?;
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let content_type = header("content-type").unwrap_or_default();
        let etag = header("etag");
        let retry_after = header("retry-after");
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap_or_default().to_owned()))
            .collect();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .map_err(|e| format!("{url}: {e}"))?;
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        self.api.exchanges.borrow_mut().push(Exchange {
            method: self.method.to_owned(),
            template: self.template.to_owned(),
            status,
            content_type,
            body: bytes.clone(),
        });
        Ok(Resp { status, json, body: bytes, etag, retry_after, headers })
    }
}

impl Resp {
    /// The header's value, if the answer has it.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a problem+json answer with this status and code.
    pub fn problem(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.json["code"].as_str()),
            (status, Some(code)),
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.json["status"], status);
    }

    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.body));
        &self.json
    }
}

/// A fresh org on `server` and its admin token, made with the system token.
pub fn new_org(api: &Api, system: &str, id: &str) -> String {
    let r = api.post("/v1/orgs").auth(system).json(serde_json::json!({"id": id, "name": format!("Org {id}")})).send();
    r.ok(201)["secret"].as_str().unwrap().to_owned()
}

/// Creates a key and returns (id, secret).
pub fn new_key(api: &Api, admin: &str, body: Value) -> (String, String) {
    let r = api.post("/v1/keys").auth(admin).json(body).send();
    let v = r.ok(201);
    (v["key"]["id"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned())
}

/// `POST /v1/verify` with this body; returns the answer's code.
pub fn verify(api: &Api, body: Value) -> String {
    let r = api.post("/v1/verify").json(body).send();
    r.ok(200)["code"].as_str().unwrap().to_owned()
}

/// A request that must be refused with `status` and `code`, and append
/// nothing.
pub fn refused(api: &Api, what: &str, req: Req<'_>, status: u16, code: &str) -> Value {
    let head = api.head();
    let r = req.send();
    assert_eq!(
        (r.status, r.json["code"].as_str()),
        (status, Some(code)),
        "{what}: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(api.head(), head, "{what} appended an event");
    r.json
}

/// `/readyz` once the registry has checked its whole chain: a registry
/// that started from a snapshot checks the chain before it in the
/// background, and says `chain_check_running` until then.
pub fn readyz(api: &Api) -> Resp {
    let checked = eventually(Duration::from_secs(20), || api.ops("/readyz").json["chain_check_running"] != true);
    assert!(checked, "the registry was still checking its chain after 20 s");
    api.ops("/readyz")
}

/// Polls `f` until it is true, for at most `limit`.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}
