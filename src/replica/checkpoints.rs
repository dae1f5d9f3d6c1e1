//! Holding the registry to its checkpoints: every checkpoint it sends
//! (`<prefix>.checkpoints`, MAC checked) must have the root of the tree
//! over the events this replica applied, at that size. A registry that
//! signed one history for its clients and auditors while streaming another
//! to its replicas is caught here, and the replica says so and stops
//! answering (`Unavailable::Fork`, `/readyz` 503): its table is built from
//! a history the registry does not stand behind.
//!
//! The replica keeps a `Trail` of the tree (the frontier some way back,
//! the leaves since), so a checkpoint arriving after more events still
//! finds its size; one for a size not reached yet waits until it is.

use std::sync::PoisonError;

use futures_util::StreamExt;

use super::Replica;
use crate::domain::merkle::{Frontier, Trail, leaf_hash};
use crate::domain::note::{Checkpoint, base64};
use crate::nats::{Connection, checkpoints};

impl Replica {
    /// The tree after a snapshot (or the stream's start, when empty).
    pub(super) fn tree_from(&self, frontier: Frontier) {
        *self.inner.trail.lock().unwrap_or_else(PoisonError::into_inner) = Trail::new(frontier);
    }

    /// One more event applied (its stored bytes): a checkpoint waiting for
    /// this size is checked now.
    pub(super) fn tree_grew(&self, bytes: &[u8]) {
        let mut trail = self.inner.trail.lock().unwrap_or_else(PoisonError::into_inner);
        trail.push(leaf_hash(bytes));
        let mut waiting = self.inner.waiting_checkpoint.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(due) = waiting.take_if(|c| c.size <= trail.size()) {
            drop(waiting);
            self.hold_to(&trail, &due);
        }
    }

    fn check(&self, checkpoint: Checkpoint) {
        let trail = self.inner.trail.lock().unwrap_or_else(PoisonError::into_inner);
        if checkpoint.size > trail.size() {
            *self.inner.waiting_checkpoint.lock().unwrap_or_else(PoisonError::into_inner) = Some(checkpoint);
            return;
        }
        self.hold_to(&trail, &checkpoint);
    }

    fn hold_to(&self, trail: &Trail, checkpoint: &Checkpoint) {
        match trail.root(checkpoint.size) {
            Some(root) if root == checkpoint.root => {}
            Some(root) => {
                let why = format!(
                    "the registry signed a checkpoint of {} events with root {}, but the events this replica \
                     applied give {}: the registry shows different histories to different readers",
                    checkpoint.size,
                    base64(&checkpoint.root),
                    base64(&root)
                );
                tracing::error!(%why, "the replica stops answering");
                let _ = self.inner.fork.set(why);
            }
            None => tracing::debug!(size = checkpoint.size, "a checkpoint older than this replica keeps; not checked"),
        }
    }

    pub(super) async fn listen_to_checkpoints(self, connection: Connection) {
        let subject = self.inner.config.nats.layout.checkpoint_subject();
        loop {
            let Ok(mut messages) = connection.client.subscribe(subject.clone()).await else {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            while let Some(message) = messages.next().await {
                match checkpoints::authentic(&message, &self.inner.keys) {
                    Some(checkpoint) => self.check(checkpoint),
                    None => tracing::debug!("a checkpoint whose MAC fails; ignored"),
                }
            }
        }
    }
}
