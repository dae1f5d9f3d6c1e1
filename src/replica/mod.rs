//! A verifier replica: follows the events stream, folds every event through
//! the same history fold as the registry (chain checked, then
//! `Table::apply`), and answers verify locally, without a round trip to the
//! registry. Its access counts travel back as reports.
//!
//! A replica answers only when it can vouch for its table; otherwise verify
//! is refused (`Unavailable`) and `/readyz` says why:
//!
//! - *halted*: it met a gap, a bad hash or an event it cannot read; it stops
//!   applying for good (restarting rebuilds from sequence 1);
//! - *wrong pepper*: the stream records another pepper's fingerprint, so
//!   every key would be `NOT_FOUND`;
//! - *catching up*: it has not yet reached the stream's end since it started;
//! - *stale*: its table may be older than `max_staleness`: the last
//!   registry heartbeat whose sequence it had applied arrived longer ago
//!   than that (fail closed: better a refused verify than a revoked key
//!   answered `VALID`).
//!
//! Nothing from NATS is taken on its word: an event, a heartbeat or a
//! snapshot object whose MAC (`domain::mac`) fails under the replica's
//! pepper is never applied. An unauthenticated event is not a halt (anyone
//! who can publish could then stop every replica with one message): the
//! replica stays where it was, says so in `/readyz`, and reads the stream
//! again a second later; the registry's authenticated heartbeats, which it
//! then cannot reach, make it stale within `max_staleness`.
//!
//! A new replica starts from the newest snapshot the registry published
//! that it can bind to the chain (`nats::snapshots`), and follows the
//! stream after it; without one, from the stream's first event.
//!
//! Its HTTP routes are in `replica::http`; this type is what a Rust service
//! embeds to verify in process.
//!
//! ```no_run
//! # async fn demo(pepper: keyreg::domain::token::Pepper) -> Result<(), Box<dyn std::error::Error>> {
//! use keyreg::domain::verifier::Question;
//! use keyreg::replica::{Refused, Replica, ReplicaConfig};
//!
//! let replica = Replica::start(ReplicaConfig::new("nats://127.0.0.1:4222", pepper)).await?;
//! let question = Question { action: Some("billing:read"), ..Question::default() };
//! match replica.verify("kr_…", question) {
//!     Ok(answer) if answer.valid => { /* serve the request */ }
//!     Ok(answer) => { /* refuse it: answer.code says why */ }
//!     Err(Refused::Unavailable(_)) => { /* the replica cannot vouch for its table: fail closed */ }
//!     Err(Refused::BadQuestion(why)) => { /* a bug in the caller: `why` says which rule */ }
//! }
//! # Ok(()) }
//! ```
//!
//! The replica's parts: `follow` (the stream into the table), `freshness`
//! (whether the table is current: the stream's extent and heartbeats),
//! `http` (its HTTP routes, with the `server` feature), `layer` (a `tower`
//! layer verifying in process for a service that embeds it); this file holds the
//! state they share, verify, health and the access flush.

mod checkpoints;
mod follow;
mod freshness;
#[cfg(feature = "server")]
pub mod http;
pub mod layer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Notify, watch};

use crate::access::AccessCounter;
use crate::domain::cidr::Cidr;
use crate::domain::history::History;
use crate::domain::id::Seq;
use crate::domain::mac::MessageKeys;
use crate::domain::merkle::Trail;
use crate::domain::note::Checkpoint;
use crate::domain::table::Table;
use crate::domain::time::{Clock, SystemClock, Timestamp};
use crate::domain::token::{Pepper, PepperFingerprint, TokenFormat};
use crate::domain::verifier::{self, Answer, BadQuestion, Question};
use crate::metrics::Metrics;
use crate::nats::{self, Connection, Nats, NatsError};

pub struct ReplicaConfig {
    pub nats: Nats,
    pub pepper: Pepper,
    pub format: TokenFormat,
    /// This replica's name in access reports (`<prefix>.access.<node>`).
    pub node: String,
    pub access_flush: Duration,
    pub min_seq_wait: Duration,
    /// Refuse verifies once the table may be older than this: the last
    /// heartbeat whose sequence the replica had applied arrived longer ago.
    /// `None` never refuses for staleness.
    pub max_staleness: Option<Duration>,
    /// Start from the newest snapshot in the object store that binds to
    /// the chain (`nats::snapshots`), rather than replaying the stream
    /// from its first event.
    pub bootstrap: bool,
    pub clock: Arc<dyn Clock>,
    /// The proxies whose `X-Forwarded-For` forward auth believes.
    pub trusted_proxies: Vec<Cidr>,
}

/// The default bound on staleness.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(2);

impl ReplicaConfig {
    pub fn new(nats: &str, pepper: Pepper) -> Self {
        ReplicaConfig {
            nats: Nats::new(nats),
            pepper,
            format: TokenFormat::default(),
            node: "replica".into(),
            access_flush: Duration::from_secs(10),
            min_seq_wait: Duration::from_secs(1),
            max_staleness: Some(DEFAULT_MAX_STALENESS),
            bootstrap: true,
            clock: Arc::new(SystemClock),
            trusted_proxies: Cidr::loopback(),
        }
    }
}

/// Why a replica stopped applying.
#[derive(Clone, Debug, Serialize, thiserror::Error)]
#[error("the replica stopped applying at sequence {seq}: {why}")]
pub struct Halt {
    pub seq: Seq,
    pub why: String,
}

/// Why a replica refuses to answer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("{0}; it cannot vouch for its state")]
    Halted(Halt),
    #[error(
        "this replica's pepper is not the registry's (the stream records another fingerprint); give it the registry's pepper file"
    )]
    WrongPepper,
    #[error("this replica is catching up with the stream (applied {applied} of {stream_last}); try again")]
    CatchingUp { applied: Seq, stream_last: u64 },
    #[error("{0}; try again")]
    Stale(String),
    #[error("{0}; this replica answers nothing until an operator has looked")]
    Fork(String),
}

/// Why an embedded verify gave no answer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Refused {
    /// The replica cannot vouch for its table: fail closed.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// The question breaks the verify rules (the caller's mistake).
    #[error(transparent)]
    BadQuestion(#[from] BadQuestion),
}

/// Times kept as microseconds since the replica started, in atomics, so
/// that every verify can check readiness without a lock.
struct Clockwork {
    started: Instant,
}

impl Clockwork {
    /// Microseconds since start, never 0 (0 means "never").
    fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64 + 1
    }

    fn since(&self, micros: u64) -> Option<Duration> {
        (micros != 0).then(|| Duration::from_micros(self.now().saturating_sub(micros)))
    }
}

struct Inner {
    config: ReplicaConfig,
    /// Its connection to NATS, which the final flush of `stop` also uses.
    connection: Connection,
    fingerprint: PepperFingerprint,
    keys: MessageKeys,
    /// The table and the chain it was folded from, always together.
    followed: RwLock<History<Table>>,
    applied: watch::Sender<Seq>,
    /// The stream's last sequence as last seen (stream info, pending counts,
    /// heartbeats), for the lag.
    stream_last: AtomicU64,
    /// The stream's last sequence as the stream itself or a heartbeat said
    /// it (0: not heard yet), for "caught up". A consumer's pending count
    /// is a hint, not an authority: a replica never calls itself caught up
    /// on it.
    known_last: AtomicU64,
    /// Set once the replica has caught up with the stream after starting.
    caught_up: AtomicBool,
    /// Whether the stream's extent was ever heard (an empty stream's is 0).
    heard_stream: AtomicBool,
    halted: Mutex<Option<Halt>>,
    /// A copy of `halted.is_some()`, and of "the stream records another
    /// pepper", for the verify path.
    stopped: AtomicBool,
    wrong_pepper: AtomicBool,
    clockwork: Clockwork,
    /// The last heartbeat: its sequence and when it arrived (0: never).
    last_beat: Mutex<(u64, u64)>,
    /// The last proof from the stream itself, while the stream carries the
    /// stream-commit mark: its last sequence, and when the replica asked
    /// (0: never). Everything any registry acknowledged before the asking
    /// is at or below that sequence.
    last_proof: Mutex<(u64, u64)>,
    /// Whether the stream carried the stream-commit mark when last asked.
    stream_commit: AtomicBool,
    /// The registry's time in the last heartbeat taken: a beat must be
    /// newer to count, so a recorded one played again does nothing.
    last_beat_time: Mutex<Option<Timestamp>>,
    /// The last message from the stream whose MAC failed, and why it was
    /// not applied (cleared when an event is applied after it).
    untrusted: Mutex<Option<Halt>>,
    /// How fresh the table is: the arrival of the last heartbeat whose
    /// sequence the replica had applied (0: none yet). Everything the
    /// registry had made durable by then, the replica knows.
    fresh_at: AtomicU64,
    /// When the replica last applied an event.
    last_progress: AtomicU64,
    /// The sequence of the snapshot it started from (0: the stream's start).
    started_from: AtomicU64,
    /// Wakes the follower to start its consumer again; when it last did.
    kick: Notify,
    last_kick: AtomicU64,
    access: AccessCounter,
    metrics: Metrics,
    /// The Merkle tree over the events applied, as far as checkpoints
    /// need it; a checkpoint for a size not reached yet; set for good when
    /// a checkpoint's root is not the tree's (`checkpoints.rs`).
    trail: Mutex<Trail>,
    waiting_checkpoint: Mutex<Option<Checkpoint>>,
    fork: OnceLock<String>,
    /// The background tasks, so that `stop` can end them.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// A running replica; cheap to clone.
#[derive(Clone)]
pub struct Replica {
    inner: Arc<Inner>,
}

/// What `/healthz` and `/readyz` report.
#[derive(Serialize)]
pub struct ReplicaHealth {
    pub status: &'static str,
    pub applied_seq: Seq,
    pub head_hash: String,
    pub stream_last_seq: u64,
    pub lag: u64,
    /// Milliseconds since the last heartbeat (absent: none heard yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_ms: Option<u64>,
    /// What proves the table current: `stream` (the stream's last
    /// sequence, while a registry commits to the stream) or `heartbeat`.
    pub freshness_source: &'static str,
    /// Age in milliseconds of the newest proof the table is current
    /// (absent: none yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed_ms: Option<u64>,
    /// Why the replica refuses verifies, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halted: Option<Halt>,
    /// A message on the stream that failed its MAC, not applied: the
    /// replica waits, and goes stale, rather than take it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub untrusted: Option<Halt>,
    /// The snapshot it started from, if it did not replay the stream from
    /// its first event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_from_snapshot: Option<Seq>,
}

impl Replica {
    /// Connects (retrying while NATS is down) and starts following the
    /// stream and its heartbeats and flushing access reports in the
    /// background.
    pub async fn start(config: ReplicaConfig) -> Result<Replica, NatsError> {
        let connection = config.nats.connect().await?;
        let boot = config.clock.now();
        let replica = Replica {
            inner: Arc::new(Inner {
                access: AccessCounter::new(&config.node, boot),
                fingerprint: config.pepper.fingerprint(),
                keys: MessageKeys::new(&config.pepper),
                config,
                connection: connection.clone(),
                followed: RwLock::new(History::new(Table::default())),
                applied: watch::Sender::new(Seq(0)),
                stream_last: AtomicU64::new(0),
                known_last: AtomicU64::new(0),
                caught_up: AtomicBool::new(false),
                heard_stream: AtomicBool::new(false),
                halted: Mutex::new(None),
                stopped: AtomicBool::new(false),
                wrong_pepper: AtomicBool::new(false),
                clockwork: Clockwork { started: Instant::now() },
                last_beat: Mutex::new((0, 0)),
                last_proof: Mutex::new((0, 0)),
                stream_commit: AtomicBool::new(false),
                last_beat_time: Mutex::new(None),
                untrusted: Mutex::new(None),
                fresh_at: AtomicU64::new(0),
                last_progress: AtomicU64::new(0),
                started_from: AtomicU64::new(0),
                kick: Notify::new(),
                last_kick: AtomicU64::new(0),
                metrics: Metrics::default(),
                trail: Mutex::default(),
                waiting_checkpoint: Mutex::new(None),
                fork: OnceLock::new(),
                tasks: Mutex::default(),
            }),
        };
        let tasks = vec![
            tokio::spawn(replica.clone().follow(connection.clone())),
            tokio::spawn(replica.clone().watch_stream(connection.clone())),
            tokio::spawn(replica.clone().listen_to_heartbeats(connection.clone())),
            tokio::spawn(replica.clone().listen_to_checkpoints(connection.clone())),
            tokio::spawn(replica.clone().flush_reports()),
        ];
        *replica.inner.tasks.lock().unwrap_or_else(PoisonError::into_inner) = tasks;
        Ok(replica)
    }

    /// Stops following the stream, listening and flushing, after sending
    /// the access reports still pending. Verifies are refused from then on
    /// (the table would only grow stale); every clone of this handle stops
    /// with it.
    pub async fn stop(&self) {
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        self.flush_now().await;
        self.set_halted(Halt { seq: self.applied(), why: "the replica was stopped".into() });
    }

    pub fn config(&self) -> &ReplicaConfig {
        &self.inner.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn access(&self) -> &AccessCounter {
        &self.inner.access
    }

    pub fn applied(&self) -> Seq {
        *self.inner.applied.borrow()
    }

    pub fn halted(&self) -> Option<Halt> {
        self.inner.halted.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Why the replica refuses to answer now, if it does.
    pub fn unavailable(&self) -> Option<Unavailable> {
        let inner = &self.inner;
        if inner.stopped.load(Ordering::Relaxed)
            && let Some(h) = self.halted()
        {
            return Some(Unavailable::Halted(h));
        }
        if inner.wrong_pepper.load(Ordering::Relaxed) {
            return Some(Unavailable::WrongPepper);
        }
        if let Some(why) = inner.fork.get() {
            return Some(Unavailable::Fork(why.clone()));
        }
        if !inner.caught_up.load(Ordering::Relaxed) {
            let stream_last = inner.stream_last.load(Ordering::Relaxed);
            return Some(Unavailable::CatchingUp { applied: self.applied(), stream_last });
        }
        let max = inner.config.max_staleness?;
        match inner.clockwork.since(inner.fresh_at.load(Ordering::Relaxed)) {
            None => Some(Unavailable::Stale(
                "this replica has not yet heard the registry's heartbeat, nor found the stream committed to".into(),
            )),
            Some(age) if age > max => Some(Unavailable::Stale(format!(
                "this replica's table may be {} ms behind the registry (it answers only within {} ms)",
                age.as_millis(),
                max.as_millis()
            ))),
            Some(_) => None,
        }
    }

    /// The table, read-locked, if the replica can vouch for it.
    pub fn table(&self) -> Result<RwLockReadGuard<'_, History<Table>>, Unavailable> {
        match self.unavailable() {
            Some(u) => Err(u),
            None => Ok(self.inner.followed.read().unwrap_or_else(PoisonError::into_inner)),
        }
    }

    /// Verifies a presented key, as `POST /v1/verify` would, and counts the
    /// access. Refused while the replica cannot vouch for its table, and
    /// for a question `POST /v1/verify` refuses (400 there).
    pub fn verify(&self, presented: &str, question: Question<'_>) -> Result<Answer, Refused> {
        question.check()?;
        let config = &self.inner.config;
        let now = config.clock.now();
        let answer = {
            let history = self.table()?;
            let table = history.state();
            verifier::verify(table, &config.format, &config.pepper, presented, &question, now).answer(table)
        };
        self.counted(&answer, now, question.ip);
        Ok(answer)
    }

    /// Counts an answer that found a key as an access, and the answer's code.
    pub fn counted(&self, answer: &Answer, now: Timestamp, ip: Option<std::net::IpAddr>) {
        if let Some(found) = &answer.found {
            self.inner.access.record(&found.org, &found.key_id, answer.code, now, ip);
        }
        self.inner.metrics.verified(answer.code);
    }

    /// Waits until the replica has applied `seq`, at most `timeout`.
    pub async fn wait_applied(&self, seq: Seq, timeout: Duration) -> bool {
        let mut rx = self.inner.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= seq)).await.is_ok_and(|r| r.is_ok())
    }

    pub fn health(&self) -> ReplicaHealth {
        let (applied, head) = self.inner.followed.read().unwrap_or_else(PoisonError::into_inner).head();
        let stream_last = self.inner.stream_last.load(Ordering::Relaxed).max(applied.0);
        let unavailable = self.unavailable();
        let status = match &unavailable {
            None => "ok",
            Some(Unavailable::Halted(_)) => "halted",
            Some(Unavailable::WrongPepper) => "wrong_pepper",
            Some(Unavailable::Fork(_)) => "fork",
            Some(Unavailable::CatchingUp { .. }) => "catching_up",
            Some(Unavailable::Stale(_)) => "stale",
        };
        let clock = &self.inner.clockwork;
        ReplicaHealth {
            status,
            applied_seq: applied,
            head_hash: head.to_hex(),
            stream_last_seq: stream_last,
            lag: stream_last - applied.0,
            last_heartbeat_ms: clock.since(self.last_beat().1).map(|d| d.as_millis() as u64),
            freshness_source: match self.inner.stream_commit.load(Ordering::Relaxed) {
                true => "stream",
                false => "heartbeat",
            },
            confirmed_ms: clock.since(self.inner.fresh_at.load(Ordering::Relaxed)).map(|d| d.as_millis() as u64),
            unavailable: unavailable.as_ref().map(ToString::to_string),
            halted: self.halted(),
            untrusted: self.inner.untrusted.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            started_from_snapshot: match self.inner.started_from.load(Ordering::Relaxed) {
                0 => None,
                seq => Some(Seq(seq)),
            },
        }
    }

    /// The state digest, as `GET /v1/state/digest` answers it.
    pub fn digest(&self) -> (Seq, blake3::Hash) {
        let history = self.inner.followed.read().unwrap_or_else(PoisonError::into_inner);
        (history.state().applied(), history.state().digest())
    }

    /// Sends the pending access reports once; `serve` calls it on shutdown.
    pub async fn flush_now(&self) {
        let connection = &self.inner.connection;
        let reports = self.inner.access.take();
        if reports.is_empty() {
            return;
        }
        let config = &self.inner.config;
        for report in
            nats::reports::publish(&connection.js, &config.nats.layout, &self.inner.keys, &config.node, reports).await
        {
            self.inner.access.retry(report);
        }
    }

    async fn flush_reports(self) {
        loop {
            tokio::time::sleep(self.inner.config.access_flush).await;
            self.flush_now().await;
        }
    }
}
