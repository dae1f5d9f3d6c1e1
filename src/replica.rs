//! A verifier replica: follows `KEYREG_EVENTS`, checks every event's
//! sequence and hash chain, folds it into its own key table with the same
//! `Table::apply` as the registry, and answers verify locally, without a
//! round trip to the registry. Its access counts travel back as reports.
//!
//! A replica that meets a gap, a bad hash or an event it cannot read stops
//! applying for good, reports why on `/healthz`, and refuses to answer: it
//! never serves from a state it cannot vouch for. Restarting it rebuilds
//! from sequence 1.
//!
//! Embedding (a Rust service verifying in process):
//!
//! ```no_run
//! # async fn demo(pepper: keyreg::token::Pepper) -> Result<(), Box<dyn std::error::Error>> {
//! use keyreg::replica::{Replica, ReplicaConfig};
//! use keyreg::verifier::Question;
//!
//! let replica = Replica::start(ReplicaConfig::new("nats://127.0.0.1:4222", pepper)).await?;
//! let question = Question { action: Some("billing:read"), ..Question::default() };
//! let answer = replica.verify("kr_…", question)?;
//! if answer.valid { /* serve the request */ }
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_nats::jetstream;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::sync::watch;

use crate::access::AccessCounter;
use crate::api::verify::{Checked, VerifyAnswer, answer, verify};
use crate::api::{ApiError, Node, track};
use crate::event::{self, ChainHash};
use crate::id::Seq;
use crate::metrics::Metrics;
use crate::nats::{self, NatsError, StreamEvent};
use crate::projection::Table;
use crate::time::{Clock, SystemClock, Timestamp};
use crate::token::{Pepper, TokenFormat, TokenHash};
use crate::verifier::{self, Code, Question};

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

/// The table and the hash of the last event folded into it, always together.
#[derive(Default)]
struct Followed {
    table: Table,
    head: ChainHash,
}

struct Inner {
    config: ReplicaConfig,
    followed: RwLock<Followed>,
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
                followed: RwLock::default(),
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

    pub fn applied(&self) -> Seq {
        *self.inner.applied.borrow()
    }

    pub fn halted(&self) -> Option<Halt> {
        self.inner.halted.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Verifies a presented key, as `POST /v1/verify` would, and counts the
    /// access. Refused while the replica is halted.
    pub fn verify(&self, presented: &str, question: Question<'_>) -> Result<VerifyAnswer, Halt> {
        if let Some(h) = self.halted() {
            return Err(h);
        }
        let now = self.inner.config.clock.now();
        let config = &self.inner.config;
        let answer = {
            let table = &self.inner.followed.read().unwrap_or_else(|e| e.into_inner()).table;
            answer(verifier::verify(table, &config.format, &config.pepper, presented, &question, now), table)
        };
        if let Some(found) = &answer.found {
            self.inner.access.record(&found.org, &found.key_id, now, question.ip);
        }
        self.inner.metrics.verified(answer.code);
        Ok(answer)
    }

    pub fn health(&self) -> ReplicaHealth {
        let (applied, head) = {
            let f = self.inner.followed.read().unwrap_or_else(|e| e.into_inner());
            (f.table.applied(), f.head)
        };
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
        let f = self.inner.followed.read().unwrap_or_else(|e| e.into_inner());
        (f.table.applied(), f.table.digest())
    }

    /// The replica's HTTP API: verify, health, readiness, metrics, digest.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/verify", post(verify::<Replica>))
            .route("/v1/state/digest", get(digest))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .route_layer(axum::middleware::from_fn_with_state(self.clone(), track::<Replica>))
            .fallback(|| async { ApiError::NotFound("no such route on a verifier replica".into()) })
            .layer(axum::extract::DefaultBodyLimit::max(crate::api::BODY_LIMIT))
            .with_state(self.clone())
    }

    /// Serves the router on `listener` until `shutdown`, then flushes the
    /// pending access reports.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self.router().into_make_service_with_connect_info::<SocketAddr>();
        let result = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
        if let Ok(client) = nats::connect(&self.inner.config.nats).await {
            let js = jetstream::new(client);
            self.flush_once(&js).await;
        }
        result
    }

    fn halt(&self, seq: Seq, why: String) {
        tracing::error!(%seq, %why, "the replica stops applying");
        *self.inner.halted.lock().unwrap_or_else(|e| e.into_inner()) = Some(Halt { seq, why });
    }

    /// Checks one event against the chain and applies it; false once halted.
    fn apply(&self, ev: StreamEvent) -> bool {
        let mut f = self.inner.followed.write().unwrap_or_else(|e| e.into_inner());
        let expected = f.table.applied().next();
        if ev.seq < expected {
            return true; // A redelivery after the consumer was recreated.
        }
        if ev.seq > expected {
            drop(f);
            self.halt(expected, format!("gap: the stream skipped from {} to {}", expected.0 - 1, ev.seq));
            return false;
        }
        let problem = match event::decode(&ev.bytes) {
            Err(e) => Some(format!("not a keyreg event: {e}")),
            Ok(d) if d.seq != ev.seq => Some(format!("the event says seq {}, the stream has it at {}", d.seq, ev.seq)),
            Ok(d) if d.prevhash != f.head => {
                Some(format!("prevhash {} is not the previous event's hash {}", d.prevhash, f.head))
            }
            Ok(d) => {
                let hash = f.head.next(&ev.bytes);
                if ev.hash != Some(hash) {
                    Some("the Keyreg-Hash header does not match the event's bytes".to_owned())
                } else {
                    f.table.apply(ev.seq, &d.event);
                    f.head = hash;
                    None
                }
            }
        };
        drop(f);
        match problem {
            Some(why) => {
                self.halt(ev.seq, why);
                false
            }
            None => {
                self.inner.applied.send_replace(ev.seq);
                let last = ev.seq.0 + ev.pending;
                self.inner.stream_last.fetch_max(last, Ordering::Relaxed);
                if ev.pending == 0 {
                    self.inner.caught_up.store(true, Ordering::Relaxed);
                }
                true
            }
        }
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
            self.inner.access.restore(report);
        }
    }
}

impl Node for Replica {
    fn format(&self) -> &TokenFormat {
        &self.inner.config.format
    }

    fn pepper(&self) -> &Pepper {
        &self.inner.config.pepper
    }

    fn now(&self) -> Timestamp {
        self.inner.config.clock.now()
    }

    fn min_seq_wait(&self) -> Duration {
        self.inner.config.min_seq_wait
    }

    fn access(&self) -> &AccessCounter {
        &self.inner.access
    }

    fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    async fn wait_applied(&self, seq: Seq, timeout: Duration) -> bool {
        let mut rx = self.inner.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= seq)).await.is_ok_and(|r| r.is_ok())
    }

    fn answer(
        &self,
        checked: &Checked,
        hash: Result<TokenHash, Code>,
        now: Timestamp,
    ) -> Result<VerifyAnswer, ApiError> {
        if let Some(h) = self.halted() {
            return Err(ApiError::Unavailable(format!(
                "this replica stopped applying at sequence {}: {}; it cannot vouch for its state",
                h.seq, h.why
            )));
        }
        Ok(checked.answer(hash, &self.inner.followed.read().unwrap_or_else(|e| e.into_inner()).table, now))
    }
}

async fn healthz(State(r): State<Replica>) -> Response {
    let h = r.health();
    let status = if h.halted.is_some() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (status, axum::Json(h)).into_response()
}

/// Ready once caught up with the stream at least once, and not halted.
async fn readyz(State(r): State<Replica>) -> Response {
    let h = r.health();
    let ready = h.halted.is_none() && r.inner.caught_up.load(Ordering::Relaxed);
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, axum::Json(h)).into_response()
}

async fn metrics(State(r): State<Replica>) -> Response {
    let h = r.health();
    let text = r.inner.metrics.render(&[
        ("keyreg_replica_applied_seq", "The last sequence this replica applied.", h.applied_seq.0 as f64),
        ("keyreg_replica_stream_last_seq", "The stream's last sequence as last seen.", h.stream_last_seq as f64),
        ("keyreg_replica_apply_lag", "Stream last sequence minus applied sequence.", h.lag as f64),
        (
            "keyreg_replica_halted",
            "1 when the replica stopped applying on a broken chain.",
            h.halted.is_some() as u8 as f64,
        ),
    ]);
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], text).into_response()
}

async fn digest(State(r): State<Replica>) -> Response {
    let (seq, digest) = r.digest();
    axum::Json(crate::api::Digest { seq, digest: digest.to_hex().to_string() }).into_response()
}
