//! Stream commit, the NATS side (`registry::Confirm`): the registry's
//! events are stored in `KEYREG_EVENTS` before any caller is told of them.
//!
//! Every event goes with `Nats-Expected-Last-Sequence: seq - 1`, so the
//! stream takes it only at its place in the log: the stream sequence stays
//! the log sequence, and that check is the fence against any other writer.
//! A decision with one event is a plain publish (`Nats-Msg-Id: seq`); a
//! decision with several is one atomic batch (`Nats-Batch-Id`,
//! `Nats-Batch-Sequence`, `Nats-Batch-Commit` on the last; nats-server
//! 2.12+, the stream's `allow_atomic`), all stored or none. The server takes
//! the expected-sequence header only on a batch's first message and no
//! message id inside a batch (ADR-50), so a batch's first message carries
//! the fence and none carries an id; the fence alone already refuses a
//! batch sent twice. Batches hold at most 1,000 messages, the server's
//! limit: consecutive decisions share one, and only a single decision of
//! more than 1,000 events is split.
//!
//! The writer thread calls in; the work runs on the server's runtime
//! within `--commit-timeout`. Once the stream holds the whole log, its
//! config records (with a MAC) that this registry commits to it: replicas
//! then take the stream's last sequence as proof of their freshness, no
//! registry needed (`replica::freshness`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use tokio::runtime::Handle;

use super::publisher::OutboxStatus;
use super::{COMMIT_MAC_METADATA, COMMIT_METADATA, Connection, HASH_HEADER, Nats, NatsError, event_mac};
use crate::domain::event;
use crate::domain::id::Seq;
use crate::domain::mac::{Kind, MAC_HEADER, MessageKeys};
use crate::registry::{Confirm, Unconfirmed};
use crate::store::log::{Head, Reader, Record};

/// The most messages one atomic batch may hold (nats-server's limit).
const MAX_BATCH: usize = 1000;

pub struct StreamCommit {
    nats: Nats,
    connection: Connection,
    keys: MessageKeys,
    timeout: Duration,
    runtime: Handle,
    /// What `/readyz` shows of the stream (shared with local commit's outbox).
    status: Arc<OutboxStatus>,
    /// The stream's last sequence as last confirmed here; `None` until
    /// learned, and again after any failure.
    known: Mutex<Option<Seq>>,
    /// Whether the stream takes atomic batches, as far as this node set it.
    atomic: AtomicBool,
    /// Whether the stream's config carries this registry's stream-commit mark.
    marked: AtomicBool,
    /// Atomic batches sent, for their ids.
    batches: AtomicU64,
}

impl StreamCommit {
    pub fn new(
        nats: Nats,
        connection: Connection,
        keys: MessageKeys,
        timeout: Duration,
        status: Arc<OutboxStatus>,
    ) -> StreamCommit {
        StreamCommit {
            nats,
            connection,
            keys,
            timeout,
            runtime: Handle::current(),
            status,
            known: Mutex::new(None),
            atomic: AtomicBool::new(false),
            marked: AtomicBool::new(false),
            batches: AtomicU64::new(0),
        }
    }

    fn known(&self) -> Option<Seq> {
        *self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_known(&self, seq: Option<Seq>) {
        *self.known.lock().unwrap_or_else(PoisonError::into_inner) = seq;
    }

    /// Runs `work` on the runtime within the commit timeout; a timeout is
    /// an unknown outcome.
    fn within<T>(&self, work: impl Future<Output = Result<T, Unconfirmed>>) -> Result<T, Unconfirmed> {
        let timeout = self.timeout;
        let result = self.runtime.block_on(async move {
            tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| {
                Err(Unconfirmed::Unknown(format!("no answer from JetStream within {} ms", timeout.as_millis())))
            })
        });
        if result.is_err() {
            self.set_known(None);
            self.status.set_connected(false);
        }
        result
    }

    /// The stream's last sequence, once its event there is found to be the
    /// log's (a stream ahead of the log, or holding other bytes, diverges).
    async fn last_stored(&self, log: &Reader, head: Head) -> Result<Seq, Unconfirmed> {
        let unknown = |e: NatsError| Unconfirmed::Unknown(e.to_string());
        let mut stream = self.nats.events_stream(&self.connection.js).await.map_err(unknown)?;
        let last = Seq(stream.info().await.map_err(|e| unknown(super::nats_err(e)))?.state.last_sequence);
        if last > head.seq {
            return Err(Unconfirmed::Overtaken(format!(
                "the stream holds {last} events, this node's log {}: another node wrote to it",
                head.seq
            )));
        }
        if last.0 > 0 {
            let record = super::publisher::read(log, last, Some(last)).await.map_err(unknown)?.pop();
            let record =
                record.ok_or_else(|| Unconfirmed::Diverged(format!("the log lacks the stream's event {last}")))?;
            super::publisher::check_stored(&self.nats, &self.connection.js, &record).await.map_err(|e| match e {
                NatsError::Diverged { .. } => Unconfirmed::Overtaken(e.to_string()),
                e => unknown(e),
            })?;
            self.status.set_published(last, record.hash);
        }
        self.status.set_connected(true);
        Ok(last)
    }

    /// Publishes the log's events after the stream's last, through `head`,
    /// and waits for every acknowledgement.
    async fn store(&self, log: &Reader, head: Head, ends: &[Seq]) -> Result<(), Unconfirmed> {
        let from = match self.known() {
            Some(seq) => seq,
            None => self.last_stored(log, head).await?,
        };
        if from < head.seq && !self.atomic.load(Ordering::Relaxed) {
            self.configure(false).await.map_err(|e| Unconfirmed::Unknown(e.to_string()))?;
        }
        if from < head.seq {
            let unknown = |e: NatsError| Unconfirmed::Unknown(e.to_string());
            let records = super::publisher::read(log, from.next(), Some(head.seq)).await.map_err(unknown)?;
            let mut acks = Vec::new();
            for batch in batches(&records, ends) {
                acks.push((batch.last().map(|r| (r.seq, r.hash)), self.send(batch).await?));
            }
            for (last, ack) in acks {
                let ack = ack.await.map_err(|e| Unconfirmed::Unknown(e.to_string()))?;
                let Some((seq, hash)) = last else { continue };
                if ack.sequence != seq.0 {
                    return Err(Unconfirmed::Unknown(format!("the stream stored {seq} at {}", ack.sequence)));
                }
                self.status.set_published(seq, hash);
            }
        }
        self.set_known(Some(head.seq));
        self.status.set_connected(true);
        Ok(())
    }

    /// Sends one batch (a single event, or an atomic batch) and returns
    /// the future of its acknowledgement.
    async fn send(&self, batch: &[Record]) -> Result<async_nats::jetstream::context::PublishAckFuture, Unconfirmed> {
        let failed = |e: String| Unconfirmed::Unknown(e);
        // Unique for every attempt: a batch id the server still holds open
        // from an attempt that failed half-way must not be taken up again.
        let attempt = self.batches.fetch_add(1, Ordering::Relaxed);
        let batch_id = format!("keyreg-{}-{}-{attempt}", std::process::id(), batch[0].seq);
        for (i, record) in batch.iter().enumerate() {
            let decoded = event::decode(record.bytes()).map_err(|e| failed(e.to_string()))?;
            let subject = self.nats.layout.event_subject(decoded.event.org.as_str(), decoded.event.change.type_name());
            let mac = event_mac(&self.keys, record.seq, &record.hash, record.bytes());
            let mut message = PublishMessage::build()
                .payload(bytes::Bytes::copy_from_slice(record.bytes()))
                .header(HASH_HEADER, record.hash.to_hex().as_str())
                .header(MAC_HEADER, mac.as_str());
            if i == 0 {
                message = message.expected_last_sequence(record.seq.0 - 1);
            }
            if batch.len() == 1 {
                message = message.message_id(record.seq.to_string());
            } else {
                message = message
                    .header("Nats-Batch-Id", batch_id.as_str())
                    .header("Nats-Batch-Sequence", (i + 1).to_string().as_str());
            }
            if i + 1 < batch.len() {
                let outbound = message.outbound_message(subject);
                let headers = outbound.headers.unwrap_or_default();
                self.connection
                    .client
                    .publish_with_headers(outbound.subject, headers, outbound.payload)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                continue;
            }
            if batch.len() > 1 {
                message = message.header("Nats-Batch-Commit", "1");
            }
            return self.connection.js.send_publish(subject, message).await.map_err(|e| failed(e.to_string()));
        }
        Err(failed("an empty batch".into()))
    }

    /// Records in the stream's config that this registry commits to it. A
    /// failure is retried after the next write; until then replicas keep
    /// to the heartbeat.
    async fn mark_stream(&self) {
        match self.configure(true).await {
            Ok(()) => self.marked.store(true, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(error = %e, "cannot mark the stream as committed to; replicas keep to the heartbeat")
            }
        }
    }

    /// Has the events stream take atomic batches, keep `--stream-replicas`
    /// copies and, with `mark`, carry the stream-commit mark; changes its
    /// config only where it differs.
    async fn configure(&self, mark: bool) -> Result<(), NatsError> {
        let mut stream = self.nats.events_stream(&self.connection.js).await?;
        let mut config = stream.info().await.map_err(super::nats_err)?.config.clone();
        let before = config.clone();
        config.allow_atomic_publish = true;
        // A replica that came first may have made the stream with one copy.
        config.num_replicas = self.nats.replicas.max(1);
        if mark {
            config.metadata.insert(COMMIT_METADATA.into(), "stream".into());
            config.metadata.insert(COMMIT_MAC_METADATA.into(), self.keys.tag(Kind::Commit, &[b"stream"]));
        }
        if config != before {
            self.connection.js.update_stream(config).await.map_err(super::nats_err)?;
        }
        self.atomic.store(true, Ordering::Relaxed);
        Ok(())
    }
}

/// Splits `records` into batches of at most `MAX_BATCH`, each ending at a
/// decision's end (`ends`) where it can: a decision is split only when it
/// alone holds more than `MAX_BATCH` events.
fn batches<'a>(records: &'a [Record], ends: &[Seq]) -> Vec<&'a [Record]> {
    let mut out = Vec::new();
    let mut rest = records;
    while !rest.is_empty() {
        let room = rest.len().min(MAX_BATCH);
        let cut = rest[..room]
            .iter()
            .rposition(|r| ends.contains(&r.seq))
            .map(|i| i + 1)
            .filter(|_| room < rest.len())
            .unwrap_or(room);
        let (batch, next) = rest.split_at(cut);
        out.push(batch);
        rest = next;
    }
    out
}

impl Confirm for StreamCommit {
    fn reachable(&self) -> bool {
        self.connection.client.connection_state() == async_nats::connection::State::Connected
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn mark(&self) {
        if !self.marked.load(Ordering::Relaxed) && self.reachable() {
            let _ = self.within(async {
                self.mark_stream().await;
                Ok(())
            });
        }
    }

    fn confirm(&self, log: &Reader, head: Head, ends: &[Seq]) -> Result<(), Unconfirmed> {
        if !self.reachable() {
            return Err(Unconfirmed::Unreachable("not connected to NATS".into()));
        }
        self.within(self.store(log, head, ends))
    }

    fn stored(&self, log: &Reader, head: Head) -> Result<Seq, Unconfirmed> {
        self.within(async {
            // Anything still queued in this client goes out before the
            // stream is asked, so an answer is not overtaken by it.
            self.connection.client.flush().await.map_err(|e| Unconfirmed::Unknown(e.to_string()))?;
            let last = self.last_stored(log, head).await?;
            if last == head.seq {
                self.set_known(Some(last));
            }
            Ok(last)
        })
    }
}

/// Takes the stream-commit mark off the events stream, for a node that
/// committed to the stream and now commits locally: replicas must stop
/// taking the stream's last sequence as proof of freshness before a write
/// is acknowledged that the stream may lack. Tries for `UNMARK_FOR`.
pub async fn unmark(nats: &Nats, connection: &Connection) -> Result<(), NatsError> {
    let deadline = tokio::time::Instant::now() + UNMARK_FOR;
    loop {
        let attempt = async {
            let mut stream = nats.events_stream(&connection.js).await?;
            let mut config = stream.info().await.map_err(super::nats_err)?.config.clone();
            let had = config.metadata.remove(COMMIT_METADATA).is_some();
            config.metadata.remove(COMMIT_MAC_METADATA);
            if had {
                connection.js.update_stream(config).await.map_err(super::nats_err)?;
            }
            Ok::<(), NatsError>(())
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(NatsError::Nats(format!(
                    "this data dir last committed to the stream, so replicas may take the stream as proof of \
                     freshness; keyreg could not take that mark off the stream on {} ({e}) and will not commit \
                     locally: start it again when NATS answers, or with --commit stream",
                    nats.url
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// How long a node switching to local commit tries to reach NATS.
const UNMARK_FOR: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chain::ChainHash;

    fn records(n: u64) -> Vec<Record> {
        (1..=n)
            .map(|seq| Record { seq: Seq(seq), hash: ChainHash::ZERO, bytes: sled::IVec::from(vec![0; 32]) })
            .collect()
    }

    fn sizes(batches: &[&[Record]]) -> Vec<usize> {
        batches.iter().map(|b| b.len()).collect()
    }

    #[test]
    fn batches_hold_whole_decisions_up_to_the_servers_limit() {
        let all = records(2500);
        // Decisions of 700 events: two never share a batch of 1,000.
        let ends: Vec<Seq> = (1..=3).map(|i| Seq(i * 700)).chain([Seq(2500)]).collect();
        assert_eq!(sizes(&batches(&all, &ends)), [700, 700, 700, 400]);
        // Small decisions pack together.
        let ends: Vec<Seq> = (1..=2500).map(Seq).collect();
        assert_eq!(sizes(&batches(&all, &ends)), [1000, 1000, 500]);
        // One decision larger than the limit is split, the only way to send it.
        assert_eq!(sizes(&batches(&all, &[Seq(2500)])), [1000, 1000, 500]);
        assert!(batches(&[], &[]).is_empty());
    }
}
