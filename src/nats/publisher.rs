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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use tokio::sync::watch;

use super::{NatsError, event_subject, events_stream, hash_header, nats_err};
use crate::domain::event;
use crate::domain::id::Seq;
use crate::store::log::{Head, Reader, Record};

/// Events published per pipelined batch.
const BATCH: u64 = 512;

/// What the outbox reports to `/readyz` and `/metrics`.
#[derive(Default)]
pub struct OutboxStatus {
    /// The last sequence the stream acknowledged.
    pub published: AtomicU64,
    /// Whether the last attempt to reach NATS succeeded.
    pub connected: AtomicBool,
    /// Set when the stream holds something the log does not: the outbox
    /// stops, because publishing on would hide the divergence.
    pub diverged: std::sync::Mutex<Option<String>>,
}

/// Runs until `stop` turns true.
pub async fn run(
    url: String,
    log: Reader,
    mut committed: watch::Receiver<Head>,
    status: Arc<OutboxStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let client = match super::connect(&url).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the outbox cannot use NATS");
            return;
        }
    };
    let js = jetstream::new(client);
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        match publish_until_error(&js, &log, &mut committed, &status, &mut stop).await {
            Ok(()) => return,
            Err(NatsError::Diverged { seq, why }) => {
                let message = format!("the stream diverges from the log at {seq}: {why}");
                tracing::error!("{message}; the outbox stops");
                *status.diverged.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
                return;
            }
            Err(e) => {
                status.connected.store(false, Ordering::Relaxed);
                tracing::debug!(error = %e, "the outbox waits for NATS");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Resynchronises with the stream, then publishes committed events as they
/// come; returns on the first error, or `Ok` when told to stop.
async fn publish_until_error(
    js: &jetstream::Context,
    log: &Reader,
    committed: &mut watch::Receiver<Head>,
    status: &OutboxStatus,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), NatsError> {
    let mut next = resume_point(js, log).await?.next();
    status.published.store(next.0 - 1, Ordering::Relaxed);
    status.connected.store(true, Ordering::Relaxed);
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
        for record in read(log, next, Some(last)).await? {
            let decoded = event::decode(record.bytes()).map_err(nats_err)?;
            let subject = event_subject(decoded.event.org.as_str(), decoded.event.change.type_name());
            let message = PublishMessage::build()
                .payload(bytes::Bytes::copy_from_slice(record.bytes()))
                .message_id(record.seq.to_string())
                .expected_last_sequence(record.seq.0 - 1)
                .header(super::HASH_HEADER, record.hash.to_hex().as_str());
            acks.push((record.seq, js.send_publish(subject, message).await.map_err(nats_err)?));
        }
        for (seq, ack) in acks {
            let ack = ack.await.map_err(nats_err)?;
            if ack.sequence != seq.0 {
                return Err(NatsError::Diverged { seq, why: format!("the stream stored it at {}", ack.sequence) });
            }
            status.published.store(seq.0, Ordering::Relaxed);
            next = seq.next();
        }
    }
}

/// The last sequence the stream holds, after checking that it holds what
/// the log holds there.
async fn resume_point(js: &jetstream::Context, log: &Reader) -> Result<Seq, NatsError> {
    let mut stream = events_stream(js).await?;
    let last = Seq(stream.info().await.map_err(nats_err)?.state.last_sequence);
    if last == Seq(0) {
        return Ok(last);
    }
    let message = stream.get_raw_message(last.0).await.map_err(nats_err)?;
    let record = read(log, last, Some(last))
        .await?
        .pop()
        .ok_or_else(|| NatsError::Diverged { seq: last, why: "the stream is ahead of the log".into() })?;
    if hash_header(Some(&message.headers)) != Some(record.hash) || message.payload.as_ref() != record.bytes() {
        return Err(NatsError::Diverged { seq: last, why: "its bytes or hash differ from the log's".into() });
    }
    Ok(last)
}

/// Records `from..=to` of the log, read off the async runtime (sled reads
/// block).
async fn read(log: &Reader, from: Seq, to: Option<Seq>) -> Result<Vec<Record>, NatsError> {
    let log = log.clone();
    tokio::task::spawn_blocking(move || log.read(from, to).collect::<Result<Vec<_>, _>>())
        .await
        .map_err(nats_err)?
        .map_err(nats_err)
}
