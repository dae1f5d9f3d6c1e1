//! Stream commit as the registry sees it: a seam through which the writer
//! has its events stored by the event stream before it acknowledges them.
//! The registry knows nothing of NATS; the edge (`nats::commit`) implements
//! [`Confirm`] and the server hands it in with `Registry::commit_to`.
//!
//! The rules the writer keeps with it (`writer.rs`):
//! - a write is answered only once `confirm` returned: its events are in
//!   sled (fsynced) and in the stream;
//! - a stream that cannot be reached refuses the write before anything is
//!   staged, and says nothing changed;
//! - a confirm whose outcome is unknown answers 503, and the writer takes
//!   no other write until it has *settled*: asked the stream how far it
//!   holds the log, kept what it holds, and cut off the rest (never
//!   published later, never acknowledged);
//! - a stream that holds something else than the log (another writer)
//!   stops writes: the node never forks the history.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use super::Registry;
use crate::domain::id::Seq;
use crate::store::CommitMark;
use crate::store::log::{Head, Reader};

/// The commit point beyond this machine's disk.
pub trait Confirm: Send + Sync {
    /// Whether the stream can be reached now. When it cannot, a write is
    /// refused before anything is staged.
    fn reachable(&self) -> bool;

    /// How long a write may wait for the stream (`--commit-timeout`).
    fn timeout(&self) -> std::time::Duration;

    /// Records in the stream that this node commits to it, so replicas may
    /// take the stream as proof of freshness. Called once the stream holds
    /// the whole log and the data dir says so (never before: a node that
    /// switches back to local commit learns from its data dir that it must
    /// take the mark off). Retried after later writes if it fails.
    fn mark(&self);

    /// Has the stream store every log event it lacks, through `head`, and
    /// returns once it confirmed them all, or fails within the commit
    /// timeout. `ends` holds the last sequence of each decision among
    /// them: a decision's events are stored all or none.
    fn confirm(&self, log: &Reader, head: Head, ends: &[Seq]) -> Result<(), Unconfirmed>;

    /// How far the stream holds this log: its last sequence, once its event
    /// there is checked to be the log's. Asked after a confirm whose
    /// outcome is unknown, and before the first write of a node whose log
    /// may end in events no stream confirmed.
    fn stored(&self, log: &Reader, head: Head) -> Result<Seq, Unconfirmed>;
}

#[derive(Debug, thiserror::Error)]
pub enum Unconfirmed {
    /// Nothing was sent: the stream was not reachable.
    #[error("the event stream is unreachable ({0}); nothing changed")]
    Unreachable(String),
    /// Sent, but not confirmed in time: the outcome is unknown until settled.
    #[error("the event stream did not confirm the change ({0})")]
    Unknown(String),
    /// The stream holds something the log does not.
    #[error("the event stream diverges from this node's log: {0}")]
    Diverged(String),
    /// The stream holds events this log lacks, past or instead of its
    /// unconfirmed end: another node wrote to it. With several nodes this
    /// node stands by; alone, it is a divergence.
    #[error("another node wrote to the event stream ({0}); nothing changed here")]
    Overtaken(String),
}

impl Registry {
    /// From now on a write is acknowledged only once `confirm` stored it
    /// in the event stream too (stream commit; `confirm.rs`). The end of
    /// the log is settled with the stream before the first write (`settled`
    /// says when). Call before serving writes.
    pub fn commit_to(&self, confirm: Arc<dyn Confirm>) {
        // A dir that committed locally, or stopped cleanly, ends in events
        // callers were told of: settling publishes any the stream lacks.
        // One whose node was committing to the stream when it stopped may
        // end in events nobody was told of: settling cuts them.
        let tail_acknowledged = self.dir.commit_mark() != CommitMark::Stream;
        self.shared.tail_acknowledged.store(tail_acknowledged, Ordering::Relaxed);
        self.shared.unsettled.store(true, Ordering::Relaxed);
        *self.shared.confirm.write().unwrap_or_else(PoisonError::into_inner) = Some(confirm);
    }

    /// Whether the end of the log is settled with the stream (always, under
    /// local commit).
    pub fn settled(&self) -> bool {
        !self.shared.unsettled.load(Ordering::Relaxed)
    }

    /// Whether this data dir's node last committed to the event stream:
    /// replicas may still take the stream as proof of freshness, so local
    /// commit must first take that mark off the stream, and settle any
    /// event the stream never confirmed (`commit_to`, then
    /// `commit_locally`).
    pub fn last_committed_to_stream(&self) -> bool {
        self.dir.commit_mark() != CommitMark::Local
    }

    /// Acknowledges writes once on disk from now on; call once the stream
    /// no longer carries the stream-commit mark and the log is settled.
    pub fn commit_locally(&self) -> std::io::Result<()> {
        *self.shared.confirm.write().unwrap_or_else(PoisonError::into_inner) = None;
        self.dir.set_commit_mark(CommitMark::Local)
    }

    /// Whether writes wait for the event stream (stream commit).
    pub fn commits_to_stream(&self) -> bool {
        self.shared.confirm().is_some() || self.shared.node.leased()
    }
}
