//! The registry's side of the transparency log: its signing key
//! (`DIR/log-key`), which events a signed checkpoint may cover, the newest
//! checkpoint with its cosignatures, the tree's root at a size, and the
//! proofs, each computed from the live tree (`Projections::tree`) and,
//! for its lowest levels, from the stored events themselves. Sending
//! checkpoints to witnesses and replicas is the server's
//! (`transparency`).

use std::sync::atomic::Ordering;
use std::sync::{PoisonError, RwLock};

use tokio::sync::watch;

use super::{OpenError, Registry};
use crate::domain::id::Seq;
use crate::domain::merkle::{Hash, ProofError, leaf_hash};
use crate::domain::note::{Checkpoint, LOG_KEY, Note, SigningKey, VerifierKey};
use crate::store::{CommitMark, DataDir, key};

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

/// The origin of a log whose data dir was made without one.
pub const DEFAULT_ORIGIN: &str = "keyreg/keyreg";

/// The data dir's log key, made (named `origin`) if it has none yet: by
/// `keyreg init`, or on the first start of a data dir from before keys.
pub(super) fn log_key(dir: &DataDir, origin: &str) -> Result<SigningKey, OpenError> {
    let path = dir.log_key_path();
    if !path.exists() {
        let made = key::generate(origin, LOG_KEY).map_err(|e| OpenError::Init(format!("--log-origin: {e}")))?;
        key::save_new(&made, &path)?;
        tracing::info!(key = %made.verifier(), "made the log's signing key; give this verifier key to witnesses and auditors");
    }
    Ok(key::load(&path, LOG_KEY)?)
}

/// The log's key and the newest checkpoint it signed, with the
/// cosignatures collected for it.
pub(super) struct Checkpoints {
    key: SigningKey,
    newest: RwLock<Option<Note>>,
    /// The size of the newest checkpoint, for whoever waits for one.
    size: watch::Sender<u64>,
}

impl Checkpoints {
    pub(super) fn new(key: SigningKey) -> Checkpoints {
        Checkpoints { key, newest: RwLock::new(None), size: watch::Sender::new(0) }
    }
}

impl Registry {
    /// The log's public key, as a signed-note verifier key.
    pub fn log_key(&self) -> &VerifierKey {
        self.shared.checkpoints.key.verifier()
    }

    /// Signs a checkpoint of every acknowledged event, unless the newest
    /// one covers them already. It is not served until `publish_checkpoint`,
    /// so that its witnesses' cosignatures come with it from the first
    /// answer.
    pub fn sign_checkpoint(&self) -> Result<Option<Note>, TreeError> {
        let c = &self.shared.checkpoints;
        let size = self.acknowledged().0;
        if size == 0 || *c.size.borrow() >= size {
            return Ok(None);
        }
        let checkpoint = Checkpoint { origin: c.key.verifier().name.clone(), size, root: self.tree_root(size)? };
        Ok(Some(checkpoint.sign(&c.key)))
    }

    /// Serves `note`, signed by `sign_checkpoint` and with whatever
    /// cosignatures it collected, as the newest checkpoint.
    pub fn publish_checkpoint(&self, note: Note) {
        let c = &self.shared.checkpoints;
        let size = Checkpoint::parse(&note.text).map_or(0, |p| p.size);
        *c.newest.write().unwrap_or_else(PoisonError::into_inner) = Some(note);
        c.size.send_replace(size);
    }

    /// The newest checkpoint and every cosignature collected for it.
    pub fn checkpoint(&self) -> Option<Note> {
        self.shared.checkpoints.newest.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Follows the size of the newest checkpoint.
    pub fn checkpoints(&self) -> watch::Receiver<u64> {
        self.shared.checkpoints.size.subscribe()
    }
}
