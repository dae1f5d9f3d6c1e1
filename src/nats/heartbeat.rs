//! The registry's heartbeat: every 100 ms, on core NATS (not a stream),
//! `{seq, hash, time}` of the registry's last durable event. A replica that
//! hears it knows both that the registry and NATS are there and how far the
//! log goes, so it can refuse to answer when it has heard nothing for too
//! long, or has stayed behind for too long (`--max-staleness`), instead of
//! answering from a stale table. The beat names the log's head, not the
//! stream's: a revocation the outbox has not published yet still makes a
//! replica behind.
//!
//! A beat carries its MAC (`Keyreg-Mac`); a replica ignores a beat whose
//! MAC fails, and one whose time is not after the last beat it took, so a
//! recorded beat played again cannot keep a cut-off replica "fresh".

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::chain::ChainHash;
use crate::domain::id::Seq;
use crate::domain::mac::{Kind, MAC_HEADER, MessageKeys};
use crate::domain::time::Timestamp;

/// How often the registry beats.
pub const EVERY: Duration = Duration::from_millis(100);

/// One beat: the registry's last durable sequence and its hash, and the
/// registry's time (for people; replicas time beats by their own clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub seq: Seq,
    pub hash: ChainHash,
    pub time: Timestamp,
}

impl Heartbeat {
    /// The message a registry sends: the body and its MAC.
    pub fn message(&self, keys: &MessageKeys) -> (async_nats::HeaderMap, bytes::Bytes) {
        let body = serde_json::to_vec(self).expect("a heartbeat serialises");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(MAC_HEADER, keys.tag(Kind::Heartbeat, &[&body]).as_str());
        (headers, body.into())
    }

    /// The beat a message carries, if its MAC holds under `keys`.
    pub fn authentic(message: &async_nats::Message, keys: &MessageKeys) -> Option<Heartbeat> {
        serde_json::from_slice(super::authentic_body(message, keys, Kind::Heartbeat)?).ok()
    }
}

#[cfg(feature = "server")]
pub use publish::run;

#[cfg(feature = "server")]
mod publish {
    use std::sync::Arc;

    use tokio::sync::watch;

    use super::{EVERY, Heartbeat};
    use crate::domain::mac::MessageKeys;
    use crate::nats::publisher::OutboxStatus;
    use crate::nats::{Connection, Nats};
    use crate::registry::Registry;

    /// Publishes a beat every `EVERY` while the outbox holds the stream, until
    /// `stop`.
    pub async fn run(
        nats: Nats,
        connection: Connection,
        keys: MessageKeys,
        outbox: Arc<OutboxStatus>,
        registry: Registry,
        mut stop: watch::Receiver<bool>,
    ) {
        let subject = nats.layout.heartbeat_subject();
        let mut every = tokio::time::interval(EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.changed() => return,
            }
            // Only a stream the outbox has checked against the log is vouched for.
            // A standby's head may lag what the leader acknowledged.
            if !outbox.connected() || !registry.leads() {
                continue;
            }
            let head = registry.head();
            let beat = Heartbeat { seq: head.seq, hash: head.hash, time: registry.now() };
            let (headers, body) = beat.message(&keys);
            let _ = connection.client.publish_with_headers(subject.clone(), headers, body).await;
        }
    }
}
