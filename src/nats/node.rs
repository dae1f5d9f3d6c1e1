//! One node of a registry of several, under stream commit: it leads while
//! it holds the lease (`lease.rs`) and stands by otherwise, following the
//! stream into its own log.
//!
//! The order that keeps every node's log a prefix of the stream:
//! - a standby first settles its log with the stream: it finds the last
//!   event both hold alike and cuts what follows (never stored by the
//!   stream, so never acknowledged), then follows from there, each event's
//!   MAC and chain link checked before it is stored;
//! - a node that wins the lease leads only once its log holds the stream's
//!   last event; until then it stays `starting` and follows on;
//! - a leader that loses the lease, or whose writer meets another
//!   leader's events in the stream, stands by at once;
//! - a node whose log holds acknowledged events the stream may lack
//!   (it committed locally before) must lead first, and publishes them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::lease::{Lease, Round};
use super::{Connection, Nats, NatsError, nats_err};
use crate::domain::id::Seq;
use crate::domain::mac::MessageKeys;
use crate::registry::{Confirm, Followed, Leader, Registry};

/// How a node takes part.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub name: String,
    /// Where the other nodes reach its HTTP API.
    pub url: String,
    /// How long the lease lasts unrenewed (`--lease`).
    pub lease: Duration,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions { name: "registry".into(), url: String::new(), lease: Duration::from_secs(3) }
    }
}

/// The most a standby looks back for the last event its log and the
/// stream hold alike: further back, something other than an unconfirmed
/// tail differs, and it refuses to guess.
const RECONCILE_AT_MOST: u64 = 100_000;
/// Events handed to the writer at once while catching up.
const FOLLOW_BATCH: usize = 1024;

struct Node {
    registry: Registry,
    nats: Nats,
    connection: Connection,
    keys: MessageKeys,
    confirm: Arc<dyn Confirm>,
}

/// Runs the node until `stop`: the lease, the role, the following. The
/// caller has made the registry one of several (`Registry::join`).
pub async fn run(
    registry: Registry,
    nats: Nats,
    connection: Connection,
    keys: MessageKeys,
    confirm: Arc<dyn Confirm>,
    options: NodeOptions,
    mut stop: watch::Receiver<bool>,
) {
    let me = Leader { node: options.name.clone(), url: options.url.clone() };
    let mut lease = loop {
        match Lease::open(&nats, &connection, me.clone(), options.lease).await {
            Ok(lease) => break lease,
            Err(e) => tracing::debug!(error = %e, "the node waits for NATS to open its lease"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.changed() => return,
        }
    };
    let node = Node { registry, nats, connection, keys, confirm };
    let every = (options.lease / 4).min(Duration::from_millis(250));
    let mut follower: Option<JoinHandle<()>> = None;
    loop {
        let registry = &node.registry;
        // An empty log has nothing to lead: a joined node first follows
        // the registry's first events.
        let may_lead = registry.refusing_writes().is_none() && registry.head().seq.0 > 0;
        match lease.round(may_lead).await {
            Ok(Round::Held { until }) => {
                registry.lease_until(until);
                registry.set_leader(Some(me.clone()));
                if registry.overtaken() {
                    // Another node wrote: settle as a standby, and lead
                    // again only once caught up.
                    lease.release().await;
                    registry.stand_by();
                } else if !registry.leads() && node.caught_up().await {
                    if let Some(f) = follower.take() {
                        f.abort();
                    }
                    registry.take_lead(node.confirm.clone());
                    tracing::info!(node = %me.node, head = %registry.head().seq, "this node leads");
                }
            }
            // Its own lease, seen while a renewal's outcome is unknown: the
            // next round takes it back.
            Ok(Round::Other(Some(holder))) if holder.node == me.node => {}
            Ok(Round::Other(holder)) => {
                if registry.leads() {
                    tracing::warn!("this node lost the lease; standing by");
                }
                registry.set_leader(holder);
                registry.stand_by();
            }
            Err(e) => tracing::debug!(error = %e, "cannot reach the lease; this node's own lapses on its clock"),
        }
        if !registry.leads() && registry.may_follow() && follower.as_ref().is_none_or(|f| f.is_finished()) {
            follower = Some(tokio::spawn(node.follow()));
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
    }
    if let Some(f) = follower.take() {
        f.abort();
    }
    if node.registry.leads() {
        lease.release().await;
    }
}

impl Node {
    /// Whether the log holds the stream's last event, so this node may lead.
    /// A node that may not follow (its log holds acknowledged events the
    /// stream may lack) leads at once: settling publishes them.
    async fn caught_up(&self) -> bool {
        if !self.registry.may_follow() {
            return true;
        }
        match self.stream_last().await {
            Ok(last) => self.registry.head().seq >= last,
            Err(_) => false,
        }
    }

    async fn stream_last(&self) -> Result<Seq, NatsError> {
        let mut stream = self.nats.events_stream(&self.connection.js).await?;
        Ok(Seq(stream.info().await.map_err(nats_err)?.state.last_sequence))
    }

    /// Follows the stream into the log until an error, then returns (the
    /// node loop starts it again).
    fn follow(&self) -> impl Future<Output = ()> + Send + 'static {
        let (registry, nats, connection, keys) =
            (self.registry.clone(), self.nats.clone(), self.connection.clone(), self.keys.clone());
        async move {
            if let Err(e) = follow_until_error(&registry, &nats, &connection, &keys).await {
                tracing::debug!(error = %e, "the standby stopped following the stream; starting again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn follow_until_error(
    registry: &Registry,
    nats: &Nats,
    connection: &Connection,
    keys: &MessageKeys,
) -> Result<(), NatsError> {
    reconcile(registry, nats, connection).await?;
    let stream = nats.events_stream(&connection.js).await?;
    let mut messages = super::follow(&stream, registry.head().seq.next()).await?;
    let mut batch = Vec::new();
    while let Some(event) = super::next_event(&mut messages).await {
        let event = event?;
        if !event.authentic(keys) {
            return Err(NatsError::Diverged {
                seq: event.seq,
                why: "its MAC does not hold under this node's pepper: no node of this registry published it".into(),
            });
        }
        let Some(hash) = event.hash else {
            return Err(NatsError::Diverged { seq: event.seq, why: "it carries no chain hash".into() });
        };
        let pending = event.pending;
        registry.saw_stream_last(Seq(event.seq.0 + pending));
        batch.push(Followed { seq: event.seq, hash, bytes: event.bytes });
        if pending == 0 || batch.len() >= FOLLOW_BATCH {
            registry.follow(std::mem::take(&mut batch)).await.map_err(NatsError::Nats)?;
        }
    }
    Err(NatsError::Nats("the consumer ended".into()))
}

/// Finds the last event the log and the stream hold alike and cuts the log
/// after it: what follows was never stored by the stream.
async fn reconcile(registry: &Registry, nats: &Nats, connection: &Connection) -> Result<(), NatsError> {
    let head = registry.head().seq;
    let mut stream = nats.events_stream(&connection.js).await?;
    let last = Seq(stream.info().await.map_err(nats_err)?.state.last_sequence);
    registry.saw_stream_last(last);
    let mut seq = head.min(last);
    let lowest = Seq(seq.0.saturating_sub(RECONCILE_AT_MOST));
    while seq.0 > 0 {
        let message = stream.get_raw_message(seq.0).await.map_err(nats_err)?;
        let ours = registry.log().get(seq).map_err(nats_err)?;
        if ours.is_some_and(|r| super::hash_header(Some(&message.headers)) == Some(r.hash)) {
            break;
        }
        if seq == lowest {
            return Err(NatsError::Diverged { seq, why: "the stream and this node's log differ too far back".into() });
        }
        seq = Seq(seq.0 - 1);
    }
    if seq < head {
        registry.cut_unstored(seq).await.map_err(NatsError::Nats)?;
    }
    Ok(())
}
