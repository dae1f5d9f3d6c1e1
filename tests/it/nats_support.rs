//! A private `nats-server` per test, on a free loopback port with its own
//! store dir, that a test can stop and restart; and `keyreg verifier`
//! processes.

use std::path::Path;
use std::process::{Child, Command, Stdio};

pub use crate::nats_server::NatsServer;
use std::time::Duration;

use serde_json::Value;

use crate::serve::*;
use crate::support::*;

/// A private nats-server for one test; fails the test, saying how to
/// install one, when the machine has none.
pub fn start_nats(dir: &Path) -> NatsServer {
    NatsServer::start(dir).unwrap_or_else(|e| panic!("{e}"))
}

/// A `keyreg verifier` process.
pub struct Verifier {
    child: Child,
    pub url: String,
}

impl Verifier {
    /// A replica that answers: it has caught up and heard the registry.
    pub fn start(nats: &str, data: &Path, node: &str, flush_ms: u64) -> Verifier {
        Verifier::spawn(nats, data, node, flush_ms, &[]).ready()
    }

    /// Waits until the replica answers verifies.
    pub fn ready(self) -> Verifier {
        let ready = crate::serve::eventually(std::time::Duration::from_secs(20), || {
            crate::serve::Api::new(&self.url).ops("/readyz").status == 200
        });
        assert!(ready, "the replica at {} did not become ready", self.url);
        self
    }

    /// A replica process, as it starts, ready or not.
    pub fn spawn(nats: &str, data: &Path, node: &str, flush_ms: u64, extra: &[&str]) -> Verifier {
        let flush = flush_ms.to_string();
        let args: Vec<&str> = ["--access-flush-ms", flush.as_str()].into_iter().chain(extra.iter().copied()).collect();
        Verifier::run(nats, data, node, &args, Stdio::null())
    }

    /// A replica whose log (at `debug`) goes to `log`.
    pub fn spawn_logged(nats: &str, data: &Path, node: &str, log: &Path) -> Verifier {
        let file = std::fs::File::create(log).unwrap();
        Verifier::run(nats, data, node, &["--access-flush-ms", "3600000"], file.into())
    }

    fn run(nats: &str, data: &Path, node: &str, args: &[&str], stderr: Stdio) -> Verifier {
        let (child, url) = spawn_listening(
            Command::new(keyreg_bin())
                .args(["verifier", "--nats", nats, "--listen", "127.0.0.1:0", "--node", node, "--pepper-file"])
                .arg(data.join("pepper"))
                .args(args)
                .env("RUST_LOG", "keyreg=debug")
                .stderr(stderr),
        );
        Verifier { child, url }
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every message of KEYREG_EVENTS: (stream sequence, bytes, Keyreg-Hash).
pub fn stream_events(url: &str) -> Vec<(u64, Vec<u8>, Option<String>)> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut out = vec![];
    rt.block_on(keyreg::nats::Nats::new(url).read_all(|ev| {
        out.push((ev.seq.0, ev.bytes.to_vec(), ev.hash.map(|h| h.to_hex())));
        true
    }))
    .expect("read the stream");
    out
}

/// Publishes a raw message with headers on a subject, through JetStream.
pub fn publish_raw(url: &str, subject: &str, headers: &[(&str, &str)], body: Vec<u8>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut map = async_nats::HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, *v);
        }
        js.publish_with_headers(subject.to_owned(), map, body.into()).await.unwrap().await.unwrap();
    });
}

/// Every message body and header value in a stream, read by sequence.
pub fn stream_contents(url: &str, stream: &str) -> Vec<Vec<u8>> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut s = js.get_stream(stream).await.unwrap();
        let last = s.info().await.unwrap().state.last_sequence;
        let mut out = vec![];
        for seq in 1..=last {
            if let Ok(m) = s.get_raw_message(seq).await {
                let mut bytes = m.payload.to_vec();
                for (_, values) in m.headers.iter() {
                    for v in values {
                        bytes.extend_from_slice(v.as_str().as_bytes());
                    }
                }
                out.push(bytes);
            }
        }
        out
    })
}

/// A verify's answer code: `VALID`, `REVOKED`…, or a problem's (`STALE`).
pub fn verify_code(api: &Api, key: &str) -> String {
    let r = api.post("/v1/verify").json(serde_json::json!({"key": key})).send();
    r.json["code"].as_str().unwrap_or("?").to_owned()
}

/// The names of an org's active keys.
pub fn key_names(api: &Api, admin: &str) -> Vec<String> {
    let keys = api.get("/v1/keys").auth(admin).send().ok(200)["keys"].as_array().unwrap().clone();
    keys.iter().map(|k| k["name"].as_str().unwrap().to_owned()).collect()
}

/// The events stream's last sequence, asked of NATS directly.
pub fn stream_last(url: &str) -> u64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.get_stream("KEYREG_EVENTS").await.unwrap().info().await.unwrap().state.last_sequence
    })
}

/// The name of the NATS node that leads the events stream (`n0`…).
pub fn stream_leader(url: &str) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let servers: Vec<&str> = url.split(',').collect();
        let client = async_nats::connect(servers).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let info = js.get_stream("KEYREG_EVENTS").await.unwrap().info().await.unwrap().clone();
        info.cluster.and_then(|c| c.leader).expect("a clustered stream has a leader")
    })
}

/// The names of the JetStream streams on a server.
pub fn stream_names(url: &str) -> Vec<String> {
    use futures_util::StreamExt;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.stream_names().map(|n| n.unwrap()).collect().await
    })
}

/// A registry publishing to a private nats-server, with an org `acme`.
pub struct Cluster {
    pub _dir: tempfile::TempDir,
    pub nats: NatsServer,
    pub server: Server,
    pub system: String,
    pub admin: String,
}

impl Cluster {
    /// Under stream commit, the default.
    pub fn start(flush_ms: u64) -> Cluster {
        Cluster::start_with(flush_ms, &[])
    }

    /// Under local commit: for tests of the outbox, and of what a replica
    /// does with messages forged into the stream (under stream commit a
    /// forged event at the registry's next place stops its writes first).
    pub fn start_local(flush_ms: u64) -> Cluster {
        Cluster::start_with(flush_ms, &["--commit", "local"])
    }

    pub fn start_with(flush_ms: u64, extra: &[&str]) -> Cluster {
        let dir = tempdir();
        let nats = start_nats(dir.path());
        let flush = flush_ms.to_string();
        let mut flags = vec!["--nats", nats.url.as_str(), "--access-flush-ms", flush.as_str()];
        flags.extend_from_slice(extra);
        let (server, system) = Server::init_and_start(dir.path(), &flags);
        let admin = new_org(&Api::new(&server.url), &system, "acme");
        Cluster { _dir: dir, nats, server, system, admin }
    }

    pub fn api(&self) -> Api {
        Api::new(&self.server.url)
    }

    pub fn replica(&self, node: &str, flush_ms: u64) -> Verifier {
        Verifier::start(&self.nats.url, &self.server.data, node, flush_ms)
    }

    pub fn digest(&self) -> Value {
        self.api().get("/v1/state/digest").auth(&self.system).send().ok(200).clone()
    }
}

pub fn replica_digest(r: &Verifier) -> Value {
    Api::new(&r.url).get("/v1/state/digest").send().ok(200).clone()
}

pub fn applied(r: &Verifier) -> u64 {
    Api::new(&r.url).ops("/healthz").json["applied_seq"].as_u64().unwrap_or(0)
}

pub fn wait_applied(r: &Verifier, seq: u64) {
    assert!(eventually(Duration::from_secs(20), || applied(r) >= seq), "the replica did not reach {seq}");
}
