//! A node's part in a registry of several nodes: one leads and writes,
//! the others stand by, following the stream into their own logs. The
//! registry knows only its role and how long its lease lets it write; who
//! holds the lease, and the stream itself, are the edge's business
//! (`nats::lease`, `nats::node`).
//!
//! The rules the writer keeps (`writer.rs`):
//! - a command is decided only on the leader, and only while its lease is
//!   good by this machine's clock (a node paused past its lease, then
//!   resumed, finds it lapsed before it writes anything);
//! - a standby's log grows only by events the stream holds, each checked
//!   against the chain before it is stored, and applied a whole decision
//!   at a time;
//! - a standby cuts from its log only events the stream never stored
//!   (never acknowledged: it confirmed nothing past them), and never below
//!   what the stream confirmed to it.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use super::Shared;
use super::confirm::Unconfirmed;
use super::writer::{Work, committed, cut, diverged};
use super::{Confirm, ExecError, Registry};
use crate::domain::chain::ChainChecker;
use crate::domain::chain::ChainHash;
use crate::domain::event::Event;
use crate::domain::id::Seq;
use crate::domain::merkle::leaf_hash;
use crate::store::CommitMark;
use crate::store::log::Head;
use crate::store::log::Log;

/// How long a write may wait for a starting node to lead.
const STARTING_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a node does now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Neither leading nor following yet (or catching up to lead).
    Starting,
    Leader,
    Standby,
}

/// The node that leads, as its lease names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    pub node: String,
    /// Where the other nodes reach its HTTP API (`--advertise`).
    pub url: String,
}

/// One event off the stream, for a standby's log.
pub struct Followed {
    pub seq: Seq,
    pub hash: ChainHash,
    pub bytes: bytes::Bytes,
}

/// The node's role, shared by the handle, the writer and the edge.
pub(super) struct NodeState {
    /// Whether writes wait for a lease (several nodes); otherwise the node
    /// always leads.
    leased: AtomicBool,
    /// Moves whenever the role does, for writes waiting out a start.
    changed: watch::Sender<NodeRole>,
    /// This node's name among them.
    name: RwLock<Option<String>>,
    role: AtomicU8,
    leader: RwLock<Option<Leader>>,
    /// Until when the lease lets this node write.
    lease_until: Mutex<Option<Instant>>,
    /// The stream's last sequence as the follower last saw it (0: never).
    stream_last: AtomicU64,
    /// Set by the writer when the stream turned out to hold events of
    /// another leader: the edge stands the node down.
    overtaken: AtomicBool,
}

impl Default for NodeState {
    fn default() -> Self {
        NodeState {
            leased: AtomicBool::new(false),
            changed: watch::Sender::new(NodeRole::Leader),
            name: RwLock::new(None),
            role: AtomicU8::new(NodeRole::Leader as u8),
            leader: RwLock::new(None),
            lease_until: Mutex::new(None),
            stream_last: AtomicU64::new(0),
            overtaken: AtomicBool::new(false),
        }
    }
}

impl NodeState {
    pub fn role(&self) -> NodeRole {
        match self.role.load(Ordering::Relaxed) {
            r if r == NodeRole::Leader as u8 => NodeRole::Leader,
            r if r == NodeRole::Standby as u8 => NodeRole::Standby,
            _ => NodeRole::Starting,
        }
    }

    fn set_role(&self, role: NodeRole) {
        self.role.store(role as u8, Ordering::Relaxed);
        self.changed.send_replace(role);
    }

    /// Waits, at most `STARTING_WAIT`, for a starting node to lead or stand
    /// by: a write that arrives as the node starts is not refused for it.
    pub async fn started(&self) {
        let mut changed = self.changed.subscribe();
        let settled = changed.wait_for(|role| *role != NodeRole::Starting);
        let _ = tokio::time::timeout(STARTING_WAIT, settled).await;
    }

    /// Why this node may not decide a command now, if it may not.
    pub fn not_leading(&self) -> Option<ExecError> {
        if !self.leased.load(Ordering::Relaxed) {
            return None;
        }
        let lease_good =
            self.lease_until.lock().unwrap_or_else(PoisonError::into_inner).is_some_and(|until| Instant::now() < until);
        (self.role() != NodeRole::Leader || !lease_good).then(|| ExecError::NotLeader(self.other_leader()))
    }

    /// Whether the node is one of several, leading by lease.
    pub fn leased(&self) -> bool {
        self.leased.load(Ordering::Relaxed)
    }

    /// Whether this node leads (always, with a single node).
    pub fn leads(&self) -> bool {
        self.role() == NodeRole::Leader
    }

    pub fn leader(&self) -> Option<Leader> {
        self.leader.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The leader, unless it is this node (whose lease lapsed).
    pub fn other_leader(&self) -> Option<Leader> {
        let name = self.name.read().unwrap_or_else(PoisonError::into_inner).clone();
        self.leader().filter(|l| Some(&l.node) != name.as_ref())
    }

    /// The writer met another leader's events in the stream.
    pub fn overtake(&self) {
        self.overtaken.store(true, Ordering::Relaxed);
    }
}

impl Registry {
    /// Makes this node, `name`, one of several: it writes nothing until it
    /// leads (`take_lead`), and meanwhile may follow the stream.
    pub fn join(&self, name: &str) {
        let node = &self.shared.node;
        *node.name.write().unwrap_or_else(PoisonError::into_inner) = Some(name.to_owned());
        node.leased.store(true, Ordering::Relaxed);
        node.set_role(NodeRole::Starting);
    }

    pub fn role(&self) -> NodeRole {
        self.shared.node.role()
    }

    /// Returns once the node leads or stands by (at most a few seconds).
    pub async fn started(&self) {
        self.shared.node.started().await
    }

    /// The stream's last sequence, as a standby following it last saw it.
    pub fn stream_last(&self) -> Option<Seq> {
        Some(Seq(self.shared.node.stream_last.load(Ordering::Relaxed))).filter(|s| s.0 > 0)
    }

    /// A standby saw the stream reach `seq`.
    pub fn saw_stream_last(&self, seq: Seq) {
        self.shared.node.stream_last.fetch_max(seq.0, Ordering::Relaxed);
    }

    /// This node's name, when it is one of several.
    pub fn node_name(&self) -> Option<String> {
        self.shared.node.name.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether this node leads: it alone appends, sweeps and counts usage.
    pub fn leads(&self) -> bool {
        self.shared.node.leads()
    }

    /// The leader as last seen in the lease.
    pub fn leader(&self) -> Option<Leader> {
        self.shared.node.leader()
    }

    /// The leader, when it is another node: where a write goes.
    pub fn other_leader(&self) -> Option<Leader> {
        self.shared.node.other_leader()
    }

    pub fn set_leader(&self, leader: Option<Leader>) {
        *self.shared.node.leader.write().unwrap_or_else(PoisonError::into_inner) = leader;
    }

    /// The lease lets this node write until `until`.
    pub fn lease_until(&self, until: Instant) {
        *self.shared.node.lease_until.lock().unwrap_or_else(PoisonError::into_inner) = Some(until);
    }

    /// Whether the log may end in events no caller was told of (the node
    /// was committing to the stream): a node whose log holds acknowledged
    /// events the stream may lack must lead, and publish them, before it
    /// can follow anyone.
    pub fn may_follow(&self) -> bool {
        self.dir.commit_mark() != CommitMark::Local
    }

    /// Leads from now on, writing through `confirm`; call once the log
    /// holds everything the stream does and the lease is held.
    pub fn take_lead(&self, confirm: Arc<dyn Confirm>) {
        self.shared.node.overtaken.store(false, Ordering::Relaxed);
        self.commit_to(confirm);
        self.shared.node.set_role(NodeRole::Leader);
    }

    /// Stops leading (or starting): commands are refused, the stream may be
    /// followed.
    pub fn stand_by(&self) {
        *self.shared.node.lease_until.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.shared.node.set_role(NodeRole::Standby);
    }

    /// Whether the writer found another leader's events in the stream since
    /// this node took the lead.
    pub fn overtaken(&self) -> bool {
        self.shared.node.overtaken.load(Ordering::Relaxed)
    }

    /// Stores and applies events of the stream after the head; returns the
    /// new head. Fails on a chain that does not hold or a node that leads.
    pub async fn follow(&self, events: Vec<Followed>) -> Result<Head, String> {
        let (reply, rx) = oneshot::channel();
        if !self.writer.submit(Work::Follow(events, reply)) {
            return Err("the writer stopped".into());
        }
        rx.await.map_err(|_| "the writer stopped".to_owned())?
    }

    /// Cuts the log after `seq`: the events there were never stored by the
    /// stream. Refused below what the stream confirmed to this node.
    pub async fn cut_unstored(&self, seq: Seq) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        if !self.writer.submit(Work::Cut(seq, reply)) {
            return Err("the writer stopped".into());
        }
        rx.await.map_err(|_| "the writer stopped".to_owned())?
    }
}

/// Checks events off the stream against the chain, stores them, makes
/// them durable, and applies each decision once its last event is in.
pub(super) fn follow(
    log: &mut Log,
    shared: &Shared,
    held: &mut Vec<(Seq, Event)>,
    events: Vec<Followed>,
) -> Result<Head, String> {
    if shared.node.leads() {
        return Err("this node leads; it takes no events from the stream".into());
    }
    let head = log.head();
    let mut checker = ChainChecker::after(head.seq, head.hash);
    let mut checked = Vec::with_capacity(events.len());
    for followed in events.iter().filter(|f| f.seq > head.seq) {
        let decoded = checker.check(followed.seq, &followed.bytes, Some(followed.hash)).map_err(|b| b.to_string())?;
        checked.push((followed, decoded.event));
    }
    if checked.is_empty() {
        return Ok(head);
    }
    let staged = checked.iter().try_for_each(|(f, event)| log.stage_followed(f.seq, f.hash, &f.bytes, event.time));
    if let Err(e) = staged.and_then(|()| log.commit()) {
        tracing::error!(error = %e, "the log failed; refusing writes until restart");
        shared.failed.store(true, Ordering::Relaxed);
        return Err(e.to_string());
    }
    {
        let mut projections = shared.projections.write().unwrap_or_else(PoisonError::into_inner);
        for (followed, event) in checked {
            projections.tree.push(leaf_hash(&followed.bytes));
            let whole = event.batch_rest == 0;
            held.push((followed.seq, event));
            if whole {
                for (seq, event) in held.drain(..) {
                    projections.apply(seq, &event);
                }
            }
        }
        shared.applied.send_replace(projections.table.applied());
    }
    shared.confirmed_floor.fetch_max(log.head().seq.0, Ordering::Relaxed);
    committed(shared, log.head());
    Ok(log.head())
}

/// Cuts a standby's log after `seq`, the last event the stream holds as
/// this log does: what follows was never stored, so never acknowledged.
pub(super) fn cut_unstored(log: &mut Log, shared: &Shared, seq: Seq) -> Result<(), String> {
    if shared.node.leads() {
        return Err("this node leads; it cuts nothing".into());
    }
    let floor = shared.confirmed_floor.load(Ordering::Relaxed);
    if seq.0 < floor {
        let e = Unconfirmed::Diverged(format!(
            "the stream agrees with this node's log only up to {seq}, but it had confirmed {floor}: was the \
             stream reset, or its storage lost?"
        ));
        diverged(shared, &e);
        return Err(e.to_string());
    }
    if seq < log.head().seq {
        tracing::warn!(from = %seq.next(), to = %log.head().seq, "the stream never stored these events; discarding them");
        cut(log, shared, seq);
    }
    match shared.failed.load(Ordering::Relaxed) {
        true => Err("cannot cut the log back to what the stream holds".into()),
        false => {
            // The stream holds the log up to `seq`: nothing there can be cut.
            shared.confirmed_floor.fetch_max(seq.0, Ordering::Relaxed);
            Ok(())
        }
    }
}
