//! The registry's side of the transparency log: which events a signed
//! checkpoint may cover, the tree's root at a size, and the proofs, each
//! computed from the live tree (`Projections::tree`) and, for its lowest
//! levels, from the stored events themselves.

use std::sync::atomic::Ordering;

use super::Registry;
use crate::domain::id::Seq;
use crate::domain::merkle::{Hash, ProofError, leaf_hash};
use crate::store::CommitMark;

/// Why the tree cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("the tree has {size} events; {asked} is beyond it")]
    Beyond { asked: u64, size: u64 },
    #[error("cannot read event {0} of the log: {1}")]
    Log(Seq, String),
}

impl From<ProofError<TreeError>> for TreeError {
    fn from(e: ProofError<TreeError>) -> TreeError {
        match e {
            ProofError::OutOfRange { asked, size } => TreeError::Beyond { asked, size },
            ProofError::Leaf(e) => e,
        }
    }
}

impl Registry {
    /// The last event a checkpoint may cover: an acknowledged one that no
    /// settling with the stream can cut. Under stream commit that is the
    /// last the stream confirmed; a checkpoint over an event later cut
    /// would be a fork signed by the log's own key.
    pub fn acknowledged(&self) -> Seq {
        let head = self.head().seq;
        match self.shared.dir.commit_mark() {
            CommitMark::Local => head,
            CommitMark::Stream | CommitMark::StreamSettled => {
                head.min(Seq(self.shared.confirmed_floor.load(Ordering::Relaxed)))
            }
        }
    }

    /// The tree's root over the first `size` events.
    pub fn tree_root(&self, size: u64) -> Result<Hash, TreeError> {
        let tree = &self.read().tree;
        Ok(tree.root(size, |i| self.leaf(i))?)
    }

    /// The inclusion proof of event `seq` in the tree of `size` events.
    pub fn inclusion_proof(&self, seq: Seq, size: u64) -> Result<Vec<Hash>, TreeError> {
        let index = seq.0.checked_sub(1).ok_or(TreeError::Beyond { asked: 0, size })?;
        Ok(self.read().tree.inclusion(index, size, |i| self.leaf(i))?)
    }

    /// The consistency proof from the tree of `from` events to that of `to`.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, TreeError> {
        Ok(self.read().tree.consistency(from, to, |i| self.leaf(i))?)
    }

    /// Leaf `i`: event i + 1 as stored.
    fn leaf(&self, i: u64) -> Result<Hash, TreeError> {
        let seq = Seq(i + 1);
        match self.shared.log.get(seq) {
            Ok(Some(record)) => Ok(leaf_hash(record.bytes())),
            Ok(None) => Err(TreeError::Log(seq, "it is not there".into())),
            Err(e) => Err(TreeError::Log(seq, e.to_string())),
        }
    }
}

