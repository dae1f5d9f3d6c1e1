//! The outbox: feeds every durable event from the sled log to
//! `KEYREG_EVENTS`, once and in order.
//!
//! The log is the source of truth and the stream a copy of it, so the
//! publisher keeps no state of its own: where to resume is read from the
//! stream itself (its last sequence, and that message's `Keyreg-Hash`
//! checked against the log). Each event is published with
//! `Nats-Expected-Last-Sequence: seq - 1` and `Nats-Msg-Id: seq`, so the
//! stream refuses anything out of place: no gap and no duplicate can enter,
//! whatever crashes in between. Publishes are pipelined in batches; any
//! failure (NATS down, a timeout whose outcome is unknown, a wrong last
//! sequence after a retried publish that did land) ends the batch and
//! resynchronises from the stream's actual last message. Writes to the log
//! go on meanwhile; the outbox catches up when NATS returns.
//!
//! Each message carries its MAC (`Keyreg-Mac`), so replicas can tell the
//! registry's events from anyone else's. An ack that says "duplicate" is
//! not taken on trust: someone else may have published under that id
//! first, so the stored message is read back and must be the log's bytes,
//! or the outbox stops as diverged. An event larger than NATS accepts is
//! logged and fails `/readyz` (the outbox tries again every few seconds,
//! in case the server's `max_payload` was raised), never retried in silence.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use tokio::sync::watch;

use super::{Connection, Nats, NatsError, event_mac, hash_header, nats_err};
use crate::domain::chain::ChainHash;
use crate::domain::event;
use crate::domain::id::Seq;
use crate::domain::mac::{MAC_HEADER, MessageKeys};
use crate::store::log::{Head, Reader, Record};

/// Events published per pipelined batch.
const BATCH: u64 = 512;
/// The longest pause between two attempts to reach NATS.
const MAX_BACKOFF: Duration = Duration::from_millis(250);
/// The pause before trying again to publish an event NATS refused as too
/// large (its configuration has to change first).
const STUCK_RETRY: Duration = Duration::from_secs(5);

/// What the outbox reports to `/readyz`, `/metrics` and the heartbeat.
#[derive(Default)]
pub struct OutboxStatus {
    /// The last event the stream acknowledged, and its hash.
    published: Mutex<(Seq, ChainHash)>,
    /// Whether the stream was last found to agree with the log and NATS
    /// answered since.
    connected: AtomicBool,
    /// Set when the stream holds something the log does not: the outbox
    /// stops, because publishing on would hide the divergence.
    diverged: Mutex<Option<String>>,
    /// Set while an event cannot be published at all (larger than the
    /// server's `max_payload`): the outbox retries, slowly, and fails
    /// `/readyz` meanwhile.
    stuck: Mutex<Option<String>>,
}

impl OutboxStatus {
    pub fn published(&self) -> (Seq, ChainHash) {
        *self.published.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn diverged(&self) -> Option<String> {
        self.diverged.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn stuck(&self) -> Option<String> {
        self.stuck.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(super) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    fn set_stuck(&self, why: Option<String>) {
        *self.stuck.lock().unwrap_or_else(PoisonError::into_inner) = why;
    }

    pub(super) fn set_published(&self, seq: Seq, hash: ChainHash) {
        *self.published.lock().unwrap_or_else(PoisonError::into_inner) = (seq, hash);
    }
}

/// Runs until `stop` turns true. A (re)connection to NATS abandons
/// whatever was waiting on the old one and starts over from the stream's
/// last message.
pub async fn run(
    nats: Nats,
    connection: Connection,
    keys: MessageKeys,
    log: Reader,
    mut committed: watch::Receiver<Head>,
    status: Arc<OutboxStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let mut reconnected = connection.connected.clone();
    let mut backoff = Duration::from_millis(20);
    loop {
        if *stop.borrow() {
            return;
        }
        let result = tokio::select! {
            result = publish_until_error(&nats, &connection.js, &keys, &log, &mut committed, &status, &mut stop) => result,
            _ = reconnected.changed() => Err(NatsError::Nats("NATS reconnected; starting over".into())),
        };
        match result {
            Ok(()) => return,
            Err(NatsError::Diverged { seq, why }) => {
                let message = format!("the stream diverges from the log at {seq}: {why}");
                // What to run, when the log is the truth (a data dir made
                // again on the same prefix is the usual cause).
                let reset = format!(
                    "stop this registry, run `keyreg stream reset --nats {} --stream-prefix {} --yes`, start it \
                     again (docs/operations.md, \"Resetting a diverged stream\")",
                    nats.url,
                    nats.layout.prefix()
                );
                tracing::error!("{message}; the outbox stops. If this data dir holds the truth: {reset}");
                *status.diverged.lock().unwrap_or_else(PoisonError::into_inner) = Some(message);
                status.connected.store(false, Ordering::Relaxed);
                return;
            }
            Err(NatsError::TooLarge { seq, bytes, max }) => {
                let message = format!(
                    "the event {seq} is {bytes} bytes, more than this NATS server accepts (max_payload {max}); \
                     raise max_payload in the server's configuration: replicas stay behind until then"
                );
                if status.stuck().is_none() {
                    tracing::error!("{message}");
                }
                status.set_stuck(Some(message));
                status.connected.store(false, Ordering::Relaxed);
                tokio::select! {
                    _ = tokio::time::sleep(STUCK_RETRY) => {}
                    _ = stop.changed() => return,
                }
            }
            Err(e) => {
                status.connected.store(false, Ordering::Relaxed);
                tracing::debug!(error = %e, "the outbox waits for NATS");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = reconnected.changed() => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Resynchronises with the stream, then publishes committed events as they
/// come; returns on the first error, or `Ok` when told to stop.
async fn publish_until_error(
    nats: &Nats,
    js: &jetstream::Context,
    keys: &MessageKeys,
    log: &Reader,
    committed: &mut watch::Receiver<Head>,
    status: &OutboxStatus,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), NatsError> {
    let (last, hash) = resume_point(nats, js, log).await?;
    status.set_published(last, hash);
    status.connected.store(true, Ordering::Relaxed);
    let mut next = last.next();
    loop {
        let head = committed.borrow_and_update().seq;
        if next > head {
            tokio::select! {
                changed = committed.changed() => if changed.is_err() { return Ok(()) },
                _ = stop.changed() => return Ok(()),
            }
            continue;
        }
        let last = Seq(head.0.min(next.0 + BATCH - 1));
        let mut acks = Vec::with_capacity((last.0 - next.0 + 1) as usize);
        let max_payload = js.client().server_info().max_payload;
        for record in read(log, next, Some(last)).await? {
            let decoded = event::decode(record.bytes()).map_err(nats_err)?;
            let subject = nats.layout.event_subject(decoded.event.org.as_str(), decoded.event.change.type_name());
            // Room for the subject and headers beside the body.
            if max_payload > 0 && record.bytes().len() + 1024 > max_payload {
                return Err(NatsError::TooLarge { seq: record.seq, bytes: record.bytes().len(), max: max_payload });
            }
            let mac = event_mac(keys, record.seq, &record.hash, record.bytes());
            let message = PublishMessage::build()
                .payload(bytes::Bytes::copy_from_slice(record.bytes()))
                .message_id(record.seq.to_string())
                .expected_last_sequence(record.seq.0 - 1)
                .header(super::HASH_HEADER, record.hash.to_hex().as_str())
                .header(MAC_HEADER, mac.as_str());
            let ack = js.send_publish(subject, message).await.map_err(nats_err)?;
            acks.push((record, ack));
        }
        for (record, ack) in acks {
            let (seq, hash) = (record.seq, record.hash);
            let ack = ack.await.map_err(nats_err)?;
            if ack.sequence != seq.0 {
                return Err(NatsError::Diverged { seq, why: format!("the stream stored it at {}", ack.sequence) });
            }
            if ack.duplicate {
                check_stored(nats, js, &record).await?;
            }
            status.set_stuck(None);
            status.set_published(seq, hash);
            next = seq.next();
        }
    }
}

/// The last sequence the stream holds and its hash, after checking that it
/// holds what the log holds there.
async fn resume_point(nats: &Nats, js: &jetstream::Context, log: &Reader) -> Result<(Seq, ChainHash), NatsError> {
    let mut stream = nats.events_stream(js).await?;
    let last = Seq(stream.info().await.map_err(nats_err)?.state.last_sequence);
    if last == Seq(0) {
        return Ok((last, ChainHash::ZERO));
    }
    let record = read(log, last, Some(last))
        .await?
        .pop()
        .ok_or_else(|| NatsError::Diverged { seq: last, why: "the stream is ahead of the log".into() })?;
    check_stored(nats, js, &record).await?;
    Ok((last, record.hash))
}

/// The stream holds exactly the log's bytes and hash at the record's
/// sequence, whoever published them.
pub(super) async fn check_stored(nats: &Nats, js: &jetstream::Context, record: &Record) -> Result<(), NatsError> {
    let stream = nats.events_stream(js).await?;
    let message = stream.get_raw_message(record.seq.0).await.map_err(nats_err)?;
    if hash_header(Some(&message.headers)) != Some(record.hash) || message.payload.as_ref() != record.bytes() {
        return Err(NatsError::Diverged { seq: record.seq, why: "its bytes or hash differ from the log's".into() });
    }
    Ok(())
}

/// Records `from..=to` of the log, read off the async runtime (sled reads
/// block).
pub(super) async fn read(log: &Reader, from: Seq, to: Option<Seq>) -> Result<Vec<Record>, NatsError> {
    let log = log.clone();
    tokio::task::spawn_blocking(move || log.read(from, to).collect::<Result<Vec<_>, _>>())
        .await
        .map_err(nats_err)?
        .map_err(nats_err)
}
