//! Everything that touches NATS: the JetStream layout (streams, subjects,
//! headers), connecting, and reading the event stream back. Only this
//! module and its children talk to NATS.
//!
//! - `KEYREG_EVENTS`, subjects `keyreg.events.>`: one message per event on
//!   `keyreg.events.<org>.<type>`, body = the stored bytes, `Nats-Msg-Id` =
//!   the sequence, `Keyreg-Hash` = the event's chain hash. The stream's own
//!   sequence equals the event's: the publisher sends each event with
//!   `Nats-Expected-Last-Sequence: seq - 1`.
//! - `KEYREG_ACCESS`, subjects `keyreg.access.>`: access reports from
//!   verifier replicas, deduplicated by report id (`Nats-Msg-Id`).

#[cfg(feature = "server")]
pub mod ingest;
#[cfg(feature = "server")]
pub mod publisher;
pub mod reports;

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;

use crate::domain::chain::ChainHash;
use crate::domain::id::Seq;

pub const EVENTS_STREAM: &str = "KEYREG_EVENTS";
pub const ACCESS_STREAM: &str = "KEYREG_ACCESS";
pub const HASH_HEADER: &str = "Keyreg-Hash";
/// How long JetStream remembers message ids for deduplication.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("the stream's event {seq} is not what the log holds there: {why}")]
    Diverged { seq: Seq, why: String },
}

fn nats_err(e: impl std::fmt::Display) -> NatsError {
    NatsError::Nats(e.to_string())
}

/// Connects, retrying in the background while NATS is down: the caller gets
/// a client at once and NATS calls fail until it is up.
pub async fn connect(url: &str) -> Result<async_nats::Client, NatsError> {
    async_nats::ConnectOptions::new().retry_on_initial_connect().name("keyreg").connect(url).await.map_err(nats_err)
}

/// The subject an event is published on.
pub fn event_subject(org: &str, type_name: &str) -> String {
    format!("keyreg.events.{org}.{type_name}")
}

/// The events stream, created if missing.
pub async fn events_stream(js: &jetstream::Context) -> Result<stream::Stream, NatsError> {
    file_stream(js, EVENTS_STREAM, "keyreg.events.>").await
}

/// The access-report stream, created if missing.
pub async fn access_stream(js: &jetstream::Context) -> Result<stream::Stream, NatsError> {
    file_stream(js, ACCESS_STREAM, "keyreg.access.>").await
}

async fn file_stream(js: &jetstream::Context, name: &str, subjects: &str) -> Result<stream::Stream, NatsError> {
    js.get_or_create_stream(stream::Config {
        name: name.into(),
        subjects: vec![subjects.into()],
        storage: stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    })
    .await
    .map_err(nats_err)
}

/// The chain hash a message carries in `Keyreg-Hash`.
pub fn hash_header(headers: Option<&async_nats::HeaderMap>) -> Option<ChainHash> {
    headers?.get(HASH_HEADER).and_then(|v| ChainHash::from_hex(v.as_str()))
}

/// One event as it came off the stream.
pub struct StreamEvent {
    pub seq: Seq,
    pub bytes: bytes::Bytes,
    pub hash: Option<ChainHash>,
    /// Messages the stream holds after this one.
    pub pending: u64,
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
        bytes: message.payload.clone(),
        pending: info.1,
    }))
}

/// Connects once, failing at once when NATS does not answer: for the
/// command line, where waiting for NATS to come back helps nobody.
async fn connect_now(url: &str) -> Result<jetstream::Context, NatsError> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|e| NatsError::Nats(format!("cannot reach NATS at {url}: {e}")))?;
    Ok(jetstream::new(client))
}

/// Deletes the events stream: the next registry to publish to this NATS
/// starts it again from its own log's first event. True if there was one.
/// The way out of a divergence (a wiped data dir, or another registry's
/// events): stop the registry, reset, start it again, restart replicas.
pub async fn reset_events_stream(url: &str) -> Result<bool, NatsError> {
    let js = connect_now(url).await?;
    match js.delete_stream(EVENTS_STREAM).await {
        Ok(_) => Ok(true),
        Err(e) => match e.kind() {
            jetstream::context::DeleteStreamErrorKind::JetStream(js)
                if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(false)
            }
            _ => Err(nats_err(e)),
        },
    }
}

/// Reads the whole events stream as it is now, in order, calling `each` on
/// every event; stops early when `each` returns false.
pub async fn read_all(url: &str, mut each: impl FnMut(StreamEvent) -> bool) -> Result<(), NatsError> {
    let js = connect_now(url).await?;
    let mut stream = js.get_stream(EVENTS_STREAM).await.map_err(nats_err)?;
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
                return Err(NatsError::Nats(format!("the stream stopped delivering after sequence {seen} of {last}")));
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
