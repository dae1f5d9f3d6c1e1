//! A verifier replica: follows `KEYREG_EVENTS`, folds every event through
//! the same history fold as the registry (chain checked, then
//! `Table::apply`), and answers verify locally, without a round trip to the
//! registry. Its access counts travel back as reports.
//!
//! A replica that meets a gap, a bad hash or an event it cannot read stops
//! applying for good, reports why, and refuses to answer: it never serves
//! from a state it cannot vouch for. Restarting it rebuilds from sequence 1.
//! Its HTTP routes are in `http::replica`; this type is what a Rust service
//! embeds to verify in process.
//!
//! ```no_run
//! # async fn demo(pepper: keyreg::domain::token::Pepper) -> Result<(), Box<dyn std::error::Error>> {
//! use keyreg::domain::verifier::Question;
//! use keyreg::replica::{Replica, ReplicaConfig};
//!
//! let replica = Replica::start(ReplicaConfig::new("nats://127.0.0.1:4222", pepper)).await?;
//! let question = Question { action: Some("billing:read"), ..Question::default() };
//! let answer = replica.verify("kr_…", question)?;
//! if answer.valid { /* serve the request */ }
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use async_nats::jetstream;
use serde::Serialize;
use tokio::sync::watch;

use crate::access::AccessCounter;
use crate::domain::history::History;
use crate::domain::id::Seq;
use crate::domain::table::Table;
use crate::domain::time::{Clock, SystemClock, Timestamp};
use crate::domain::token::{Pepper, TokenFormat};
use crate::domain::verifier::{self, Answer, Question};
use crate::metrics::Metrics;
use crate::nats::{self, NatsError, StreamEvent};

pub struct ReplicaConfig {
    pub nats: String,
    pub pepper: Pepper,
    pub format: TokenFormat,
    /// This replica's name in access reports (`keyreg.access.<node>`).
    pub node: String,
    pub access_flush: Duration,
    pub min_seq_wait: Duration,
    pub clock: Arc<dyn Clock>,
}

impl ReplicaConfig {
    pub fn new(nats: &str, pepper: Pepper) -> Self {
        ReplicaConfig {
            nats: nats.to_owned(),
            pepper,
            format: TokenFormat::default(),
            node: "replica".into(),
            access_flush: Duration::from_secs(10),
            min_seq_wait: Duration::from_secs(1),
            clock: Arc::new(SystemClock),
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

struct Inner {
    config: ReplicaConfig,
    /// The table and the chain it was folded from, always together.
    followed: RwLock<History<Table>>,
    applied: watch::Sender<Seq>,
    /// The stream's last sequence as last seen, for the lag.
    stream_last: AtomicU64,
    /// Set once the replica has caught up with the stream after starting.
    caught_up: AtomicBool,
    halted: Mutex<Option<Halt>>,
    access: AccessCounter,
    metrics: Metrics,
}

/// A running replica; cheap to clone.
#[derive(Clone)]
pub struct Replica {
    inner: Arc<Inner>,
}

/// What `/healthz` reports.
#[derive(Serialize)]
pub struct ReplicaHealth {
    pub status: &'static str,
    pub applied_seq: Seq,
    pub head_hash: String,
    pub stream_last_seq: u64,
    pub lag: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halted: Option<Halt>,
}

impl Replica {
    /// Connects (retrying while NATS is down) and starts following the
    /// stream and flushing access reports in the background.
    pub async fn start(config: ReplicaConfig) -> Result<Replica, NatsError> {
        let client = nats::connect(&config.nats).await?;
        let boot = config.clock.now();
        let replica = Replica {
            inner: Arc::new(Inner {
                access: AccessCounter::new(&config.node, boot),
                config,
                followed: RwLock::new(History::new(Table::default())),
                applied: watch::Sender::new(Seq(0)),
                stream_last: AtomicU64::new(0),
                caught_up: AtomicBool::new(false),
                halted: Mutex::new(None),
                metrics: Metrics::default(),
            }),
        };
        let js = jetstream::new(client);
        tokio::spawn(replica.clone().follow(js.clone()));
        tokio::spawn(replica.clone().watch_stream(js.clone()));
        tokio::spawn(replica.clone().flush_reports(js));
        Ok(replica)
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

    /// Whether the replica has caught up with the stream at least once.
    pub fn caught_up(&self) -> bool {
        self.inner.caught_up.load(Ordering::Relaxed)
    }

    /// The table, read-locked; refused while the replica is halted.
    pub fn table(&self) -> Result<RwLockReadGuard<'_, History<Table>>, Halt> {
        match self.halted() {
            Some(h) => Err(h),
            None => Ok(self.inner.followed.read().unwrap_or_else(PoisonError::into_inner)),
        }
    }

    /// Verifies a presented key, as `POST /v1/verify` would, and counts the
    /// access. Refused while the replica is halted.
    pub fn verify(&self, presented: &str, question: Question<'_>) -> Result<Answer, Halt> {
        let config = &self.inner.config;
        let now = config.clock.now();
        let answer = {
            let history = self.table()?;
            let table = history.state();
            verifier::verify(table, &config.format, &config.pepper, presented, &question, now).answer(table.applied())
        };
        self.counted(&answer, now, question.ip);
        Ok(answer)
    }

    /// Counts an answer that found a key as an access, and the answer's code.
    pub fn counted(&self, answer: &Answer, now: Timestamp, ip: Option<std::net::IpAddr>) {
        if let Some(found) = &answer.found {
            self.inner.access.record(&found.org, &found.key_id, now, ip);
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
        let halted = self.halted();
        ReplicaHealth {
            status: if halted.is_some() { "halted" } else { "ok" },
            applied_seq: applied,
            head_hash: head.to_hex(),
            stream_last_seq: stream_last,
            lag: stream_last - applied.0,
            halted,
        }
    }

    /// The state digest, as `GET /v1/state/digest` answers it.
    pub fn digest(&self) -> (Seq, blake3::Hash) {
        let history = self.inner.followed.read().unwrap_or_else(PoisonError::into_inner);
        (history.state().applied(), history.state().digest())
    }

    /// Sends the pending access reports once; `serve` calls it on shutdown.
    pub async fn flush_now(&self) {
        if let Ok(client) = nats::connect(&self.inner.config.nats).await {
            self.flush_once(&jetstream::new(client)).await;
        }
    }

    fn halt(&self, seq: Seq, why: String) {
        tracing::error!(%seq, %why, "the replica stops applying");
        *self.inner.halted.lock().unwrap_or_else(PoisonError::into_inner) = Some(Halt { seq, why });
    }

    /// Folds one stream event; false once halted.
    fn apply(&self, ev: StreamEvent) -> bool {
        let mut history = self.inner.followed.write().unwrap_or_else(PoisonError::into_inner);
        if ev.seq <= history.head().0 {
            return true; // A redelivery after the consumer was recreated.
        }
        if let Err(broken) = history.push(ev.seq, &ev.bytes, ev.hash) {
            drop(history);
            self.halt(broken.seq, broken.why);
            return false;
        }
        drop(history);
        self.inner.applied.send_replace(ev.seq);
        self.inner.stream_last.fetch_max(ev.seq.0 + ev.pending, Ordering::Relaxed);
        if ev.pending == 0 {
            self.inner.caught_up.store(true, Ordering::Relaxed);
        }
        true
    }

    async fn follow(self, js: jetstream::Context) {
        let mut backoff = Duration::from_millis(100);
        while self.halted().is_none() {
            match self.follow_until_error(&js).await {
                Ok(()) => return,
                Err(e) => tracing::debug!(error = %e, "the replica waits for NATS"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn follow_until_error(&self, js: &jetstream::Context) -> Result<(), NatsError> {
        let stream = nats::events_stream(js).await?;
        let mut messages = nats::follow(&stream, self.applied().next()).await?;
        while let Some(ev) = nats::next_event(&mut messages).await {
            if !self.apply(ev?) {
                return Ok(());
            }
        }
        Err(NatsError::Nats("the consumer ended".into()))
    }

    /// Keeps `stream_last` current while no events arrive (for the lag, and
    /// for "caught up" on an empty or idle stream).
    async fn watch_stream(self, js: jetstream::Context) {
        loop {
            if let Ok(mut stream) = nats::events_stream(&js).await
                && let Ok(info) = stream.info().await
            {
                let last = info.state.last_sequence;
                self.inner.stream_last.store(last, Ordering::Relaxed);
                if self.applied().0 >= last {
                    self.inner.caught_up.store(true, Ordering::Relaxed);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn flush_reports(self, js: jetstream::Context) {
        loop {
            tokio::time::sleep(self.inner.config.access_flush).await;
            self.flush_once(&js).await;
        }
    }

    async fn flush_once(&self, js: &jetstream::Context) {
        let reports = self.inner.access.take();
        if reports.is_empty() {
            return;
        }
        for report in nats::reports::publish(js, &self.inner.config.node, reports).await {
            self.inner.access.retry(report);
        }
    }
}
