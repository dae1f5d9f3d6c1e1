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

use crate::domain::id::Seq;
use crate::store::log::{Head, Reader};

/// The commit point beyond this machine's disk.
pub trait Confirm: Send + Sync {
    /// Whether the stream can be reached now. When it cannot, a write is
    /// refused before anything is staged.
    fn reachable(&self) -> bool;

    /// How long a write may wait for the stream (`--commit-timeout`).
    fn timeout(&self) -> std::time::Duration;

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
}
