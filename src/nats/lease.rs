//! Leadership among a registry's nodes: a lease in the JetStream KV bucket
//! `<PREFIX>_LEADER`, key `leader`, value `{"node","url"}`.
//!
//! Every change goes through the bucket's compare-and-set (create if
//! absent, update at the revision read), so two nodes never both win a
//! round. The holder renews by updating at its own revision; a standby
//! takes over only after it has seen the same revision for a whole
//! `--lease` on its own clock. The lease does not rely on the server
//! expiring anything, nor on clocks agreeing across machines: the holder
//! counts its lease from before it sent the renewal, the standby from
//! after it saw the renewal, so the holder's lease always ends first. A
//! clean stop deletes the key at its revision: a standby takes it at once.
//!
//! The lease only decides who may try to write; the stream's expected
//! last sequence keeps any stale leader from storing anything
//! (`registry::role`).

use std::time::{Duration, Instant};

use async_nats::jetstream::kv;

use super::{Connection, Nats, NatsError, nats_err};
use crate::registry::Leader;

const KEY: &str = "leader";

pub struct Lease {
    kv: kv::Store,
    /// The bucket's stream, read at its leader: the bucket's own reads may
    /// be answered by a lagging replica, which would show no leader.
    stream: async_nats::jetstream::stream::Stream,
    /// The lease's subject in that stream.
    subject: String,
    me: Leader,
    /// `me` as the lease's value.
    value: bytes::Bytes,
    lease: Duration,
    /// The revision this node last wrote, while it holds the lease.
    held: Option<u64>,
    /// The holder's revision as last seen, and since when.
    seen: Option<(u64, Instant)>,
}

/// What a round found.
pub enum Round {
    /// This node holds the lease; it may write until then.
    Held { until: Instant },
    /// Another node holds it, or nobody does.
    Other(Option<Leader>),
}

impl Lease {
    /// Opens the bucket, made with `--stream-replicas` copies if missing.
    pub async fn open(nats: &Nats, connection: &Connection, me: Leader, lease: Duration) -> Result<Lease, NatsError> {
        let bucket = nats.layout.leader_bucket();
        let kv = match connection.js.get_key_value(&bucket).await {
            Ok(kv) => kv,
            Err(_) => connection
                .js
                .create_key_value(kv::Config {
                    bucket,
                    history: 1,
                    num_replicas: nats.replicas.max(1),
                    storage: async_nats::jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(nats_err)?,
        };
        let stream = connection.js.get_stream(format!("KV_{}", nats.layout.leader_bucket())).await.map_err(nats_err)?;
        let subject = format!("$KV.{}.{KEY}", nats.layout.leader_bucket());
        let value = serde_json::to_vec(&me).map_err(nats_err)?.into();
        Ok(Lease { kv, stream, subject, me, value, lease, held: None, seen: None })
    }

    /// The lease as the bucket's leader holds it: its revision and value,
    /// or none when deleted or never taken.
    async fn current(&self) -> Result<Option<(u64, bytes::Bytes)>, NatsError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        match self.stream.get_last_raw_message_by_subject(&self.subject).await {
            Ok(m) => {
                let operation = m.headers.get("KV-Operation").map(|v| v.as_str().to_owned());
                let gone = matches!(operation.as_deref(), Some("DEL" | "PURGE"));
                Ok((!gone).then_some((m.sequence, m.payload)))
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(nats_err(e)),
        }
    }

    /// Renews the lease if this node holds it; otherwise looks at the
    /// holder, and takes the lease when `may_lead` and it is free, lapsed,
    /// or this node's own from before a restart (same name).
    pub async fn round(&mut self, may_lead: bool) -> Result<Round, NatsError> {
        let started = Instant::now();
        let value = self.value.clone();
        if let Some(revision) = self.held.take()
            && let Ok(revision) = self.kv.update(KEY, value.clone(), revision).await
        {
            self.held = Some(revision);
            return Ok(Round::Held { until: started + self.lease });
        }
        let Some((revision, held_by)) = self.current().await? else {
            self.seen = None;
            if may_lead && let Ok(revision) = self.kv.create(KEY, value).await {
                self.held = Some(revision);
                return Ok(Round::Held { until: started + self.lease });
            }
            return Ok(Round::Other(None));
        };
        let holder: Option<Leader> = serde_json::from_slice(&held_by).ok();
        let lapsed = match self.seen {
            Some((seen, since)) if seen == revision => since.elapsed() >= self.lease,
            _ => {
                self.seen = Some((revision, Instant::now()));
                false
            }
        };
        // Node names are unique among a registry's nodes: the lease under
        // this node's name is its own from before a restart.
        let mine = holder.as_ref().is_some_and(|h| h.node == self.me.node);
        if may_lead && (lapsed || mine) {
            if let Ok(revision) = self.kv.update(KEY, value, revision).await {
                if !mine {
                    let from = holder.as_ref().map_or("nobody", |h| h.node.as_str());
                    tracing::warn!(
                        from,
                        lease_ms = self.lease.as_millis() as u64,
                        "the leader's lease lapsed; taking it"
                    );
                }
                self.held = Some(revision);
                return Ok(Round::Held { until: started + self.lease });
            }
            return Ok(Round::Other(holder));
        }
        Ok(Round::Other(holder))
    }

    /// Gives the lease up, if held, so a standby takes it at once.
    pub async fn release(&mut self) {
        if let Some(revision) = self.held.take()
            && let Err(e) = self.kv.delete_expect_revision(KEY, Some(revision)).await
        {
            tracing::warn!(error = %e, "cannot hand the lease over; a standby takes it once it lapses");
        }
    }
}
