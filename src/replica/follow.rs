//! Following the stream: every event's MAC checked, then folded through
//! the history (chain checked, then applied); a start from a published
//! snapshot; starting over after NATS reconnects or when stuck.

use std::sync::atomic::Ordering;
use std::sync::{PoisonError, RwLockWriteGuard};
use std::time::Duration;

use super::{Halt, Replica};
use crate::domain::event::Change;
use crate::domain::history::History;
use crate::domain::id::Seq;
use crate::domain::table::Table;
use crate::nats::snapshots::{self, Bootstrap};
use crate::nats::{self, Connection, NatsError, StreamEvent};

/// The pause before reading the stream again after a message whose MAC
/// failed.
const UNTRUSTED_RETRY: Duration = Duration::from_secs(1);

/// Why the follower stopped reading the stream.
pub(super) enum Stop {
    /// The chain broke: for good.
    Halted,
    /// A message failed its MAC: it is read again after a pause.
    Untrusted,
}

impl Replica {
    pub(super) fn halt(&self, seq: Seq, why: String) {
        tracing::error!(%seq, %why, "the replica stops applying");
        self.set_halted(Halt { seq, why });
    }

    /// From now on the replica applies nothing and answers nothing.
    pub(super) fn set_halted(&self, halt: Halt) {
        *self.inner.halted.lock().unwrap_or_else(PoisonError::into_inner) = Some(halt);
        self.inner.stopped.store(true, Ordering::Relaxed);
    }

    /// Folds one stream event, if the registry wrote it.
    pub(super) fn apply(&self, ev: StreamEvent) -> Result<(), Stop> {
        let mut history = self.inner.followed.write().unwrap_or_else(PoisonError::into_inner);
        if ev.seq <= history.head().0 {
            return Ok(()); // A redelivery after the consumer was recreated.
        }
        if !ev.authentic(&self.inner.keys) {
            drop(history);
            if self.records_another_pepper(&ev.bytes) {
                // Most likely this replica was given the wrong pepper file:
                // say so, rather than only that nothing checks out.
                self.inner.wrong_pepper.store(true, Ordering::Relaxed);
            }
            let why = "its MAC does not hold under this replica's pepper: the registry did not publish it".to_owned();
            let mut untrusted = self.inner.untrusted.lock().unwrap_or_else(PoisonError::into_inner);
            if untrusted.as_ref().is_none_or(|u| u.seq != ev.seq) {
                tracing::error!(seq = %ev.seq, %why, "the replica does not apply a message from the stream");
            }
            *untrusted = Some(Halt { seq: ev.seq, why });
            return Err(Stop::Untrusted);
        }
        if let Err(broken) = history.push(ev.seq, &ev.bytes, ev.hash) {
            drop(history);
            self.halt(broken.seq, broken.why);
            return Err(Stop::Halted);
        }
        *self.inner.untrusted.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.advanced(history, ev.seq.0 + ev.pending);
        // Once the table's write lock is let go: verifies never wait on the
        // leaf's hash. Events are applied one task at a time, so the tree
        // still grows in order.
        self.tree_grew(&ev.bytes);
        Ok(())
    }

    /// Whether an event (not authenticated: only a diagnosis) records a
    /// pepper fingerprint other than this replica's.
    pub(super) fn records_another_pepper(&self, bytes: &[u8]) -> bool {
        let Ok(decoded) = crate::domain::event::decode(bytes) else { return false };
        match decoded.event.change {
            Change::OrgCreated(s) | Change::OrgUpdated(s) => {
                s.pepper_fingerprint.is_some_and(|fp| fp != self.inner.fingerprint)
            }
            _ => false,
        }
    }

    /// Starts from a snapshot's table instead of the stream's first event,
    /// if nothing was applied yet. The next event must chain onto it.
    pub(super) fn start_from(&self, start: Bootstrap) {
        let mut history = self.inner.followed.write().unwrap_or_else(PoisonError::into_inner);
        if history.head().0 != Seq(0) {
            return;
        }
        tracing::info!(seq = %start.seq, "starting from a snapshot; following the stream after it");
        *history = History::resume(start.table, start.seq, start.hash);
        self.tree_from(start.frontier);
        self.inner.started_from.store(start.seq.0, Ordering::Relaxed);
        self.advanced(history, start.seq.0);
    }

    /// After the table moved on: readiness, lag and progress.
    pub(super) fn advanced(&self, history: RwLockWriteGuard<'_, History<Table>>, stream_last: u64) {
        let wrong_pepper = history.state().pepper_fingerprint().is_some_and(|fp| fp != self.inner.fingerprint);
        // Behind the last event while the rest of its decision is to come.
        let applied = history.state().applied();
        drop(history);
        let inner = &self.inner;
        inner.wrong_pepper.store(wrong_pepper, Ordering::Relaxed);
        inner.applied.send_replace(applied);
        inner.last_progress.store(inner.clockwork.now(), Ordering::Relaxed);
        inner.stream_last.fetch_max(stream_last, Ordering::Relaxed);
        self.check_caught_up();
    }

    /// Follows the stream from the next sequence, starting over whenever NATS
    /// reconnects or the replica is found stuck behind the heartbeat.
    pub(super) async fn follow(self, connection: Connection) {
        let mut reconnected = connection.connected.clone();
        let mut backoff = Duration::from_millis(20);
        while self.halted().is_none() {
            // Outside the race with a kick: a start from a snapshot takes
            // seconds at a million keys, applies nothing meanwhile, and a
            // kick for "stuck" would start it over for ever.
            let result = match self.bootstrap(&connection).await {
                Err(e) => Err(e),
                Ok(()) => tokio::select! {
                    result = self.follow_until_error(&connection) => result,
                    _ = reconnected.changed() => {
                        backoff = Duration::from_millis(20);
                        continue;
                    }
                    _ = self.inner.kick.notified() => continue,
                },
            };
            match result {
                Ok(Stop::Halted) => return,
                Ok(Stop::Untrusted) => backoff = UNTRUSTED_RETRY,
                Err(e) => tracing::debug!(error = %e, "the replica waits for NATS"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = reconnected.changed() => {}
                _ = self.inner.kick.notified() => {}
            }
            backoff = (backoff * 2).min(Duration::from_millis(250));
        }
    }

    /// Starts from the newest published snapshot, if asked to and nothing
    /// was applied yet.
    async fn bootstrap(&self, connection: &Connection) -> Result<(), NatsError> {
        let config = &self.inner.config;
        if config.bootstrap
            && self.applied() == Seq(0)
            && let Some(start) =
                snapshots::newest(&connection.js, &config.nats.layout, &config.pepper, &self.inner.keys).await?
        {
            self.start_from(start);
        }
        Ok(())
    }

    async fn follow_until_error(&self, connection: &Connection) -> Result<Stop, NatsError> {
        let config = &self.inner.config;
        let stream = config.nats.events_stream(&connection.js).await?;
        let mut messages = nats::follow(&stream, self.applied().next()).await?;
        while let Some(ev) = nats::next_event(&mut messages).await {
            if let Err(stop) = self.apply(ev?) {
                return Ok(stop);
            }
        }
        Err(NatsError::Nats("the consumer ended".into()))
    }
}
