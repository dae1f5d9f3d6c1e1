//! Whether the replica's table is current: how far the stream goes (from
//! the stream itself, and from the registry's authenticated heartbeats),
//! when the replica caught up, and how fresh its table is.
//!
//! Two proofs of freshness, each "at time T the stream went to S": a
//! registry's heartbeat (T: when it arrived), and, while the stream carries
//! a registry's authentic stream-commit mark, the stream's own last
//! sequence (T: when the replica asked). Under stream commit no write is
//! acknowledged before the stream stored it, so a replica that has applied
//! S knows everything acknowledged before T, with every registry stopped.
//! Under local commit a registry acknowledges before publishing, so only
//! its heartbeat proves anything; it takes the mark off the stream before
//! it acknowledges a write (`nats::commit::unmark`).

use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;

use super::Replica;
use crate::nats::heartbeat::Heartbeat;
use crate::nats::{Connection, marked_stream_commit};

/// A replica that has fallen behind the heartbeat for this long, without
/// applying anything, starts its consumer again; at most once in this long,
/// so that a slow new consumer is not abandoned before it delivers.
const STUCK_AFTER: Duration = Duration::from_millis(300);
/// The longest pause between two questions to the stream.
const PROBE_AT_MOST: Duration = Duration::from_millis(500);
/// The pause after a question the stream did not answer.
const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(100);
/// The shortest: a tiny max staleness does not flood JetStream.
const PROBE_AT_LEAST: Duration = Duration::from_millis(25);

impl Replica {
    pub(super) fn last_beat(&self) -> (u64, u64) {
        *self.inner.last_beat.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Caught up once the replica has applied the stream's last sequence as
    /// the stream or a heartbeat last said it; as fresh as the last
    /// heartbeat whose sequence it has applied.
    pub(super) fn check_caught_up(&self) {
        let inner = &self.inner;
        let applied = self.applied().0;
        if inner.heard_stream.load(Ordering::Relaxed) && applied >= inner.known_last.load(Ordering::Relaxed) {
            inner.caught_up.store(true, Ordering::Relaxed);
        }
        let proof = *inner.last_proof.lock().unwrap_or_else(PoisonError::into_inner);
        for (seq, at) in [self.last_beat(), proof] {
            if at != 0 && applied >= seq {
                inner.fresh_at.fetch_max(at, Ordering::Relaxed);
            }
        }
    }

    /// Asks the stream how far it goes, often enough that a replica under
    /// stream commit stays fresh from the stream alone (a quarter of its
    /// max staleness, at most every `PROBE_AT_MOST`); this also keeps
    /// `stream_last` current while no events arrive.
    pub(super) async fn watch_stream(self, connection: Connection) {
        let every = self.inner.config.max_staleness.map_or(PROBE_AT_MOST, |m| (m / 4).min(PROBE_AT_MOST));
        let mut reconnected = connection.connected.clone();
        loop {
            let asked = self.inner.clockwork.now();
            let answered = match self.inner.config.nats.events_stream(&connection.js).await {
                Ok(mut stream) => stream.info().await.ok().cloned(),
                Err(_) => None,
            };
            if let Some(info) = &answered {
                let marked = marked_stream_commit(&info.config, &self.inner.keys);
                self.inner.stream_commit.store(marked, Ordering::Relaxed);
                if marked {
                    *self.inner.last_proof.lock().unwrap_or_else(PoisonError::into_inner) =
                        (info.state.last_sequence, asked);
                }
                self.saw_stream_last(info.state.last_sequence);
            }
            // Unanswered, ask again soon; and at once on a reconnection, so
            // a replica is current again moments after NATS returns.
            let pause = if answered.is_some() { every } else { every.min(RETRY_AFTER_FAILURE) };
            tokio::select! {
                _ = tokio::time::sleep(pause.max(PROBE_AT_LEAST)) => {}
                Ok(()) = reconnected.changed() => {}
            }
        }
    }

    /// Notes how far the stream goes, as the stream or the registry said it.
    pub(super) fn saw_stream_last(&self, last: u64) {
        let inner = &self.inner;
        inner.stream_last.fetch_max(last, Ordering::Relaxed);
        inner.known_last.fetch_max(last, Ordering::Relaxed);
        inner.heard_stream.store(true, Ordering::Relaxed);
        self.check_caught_up();
    }

    pub(super) async fn listen_to_heartbeats(self, connection: Connection) {
        let subject = self.inner.config.nats.layout.heartbeat_subject();
        loop {
            let Ok(mut beats) = connection.client.subscribe(subject.clone()).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            while let Some(message) = beats.next().await {
                match Heartbeat::authentic(&message, &self.inner.keys) {
                    Some(beat) if self.newer_beat(&beat) => self.heard(beat),
                    Some(_) => tracing::debug!("a heartbeat no newer than the last one; ignored"),
                    None => tracing::debug!("a heartbeat whose MAC fails; ignored"),
                }
            }
        }
    }

    /// Whether an authentic beat is newer than the last one taken (and if
    /// so, it is now the last one).
    pub(super) fn newer_beat(&self, beat: &Heartbeat) -> bool {
        let mut last = self.inner.last_beat_time.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|t| beat.time <= t) {
            return false;
        }
        *last = Some(beat.time);
        true
    }

    /// A heartbeat: the registry and NATS are there, and the stream goes up
    /// to `beat.seq`. A replica behind it that is not moving is kicked.
    pub(super) fn heard(&self, beat: Heartbeat) {
        let inner = &self.inner;
        let now = inner.clockwork.now();
        *inner.last_beat.lock().unwrap_or_else(PoisonError::into_inner) = (beat.seq.0, now);
        self.saw_stream_last(beat.seq.0);
        let (applied, head) = inner.followed.read().unwrap_or_else(PoisonError::into_inner).head();
        if applied == beat.seq && head != beat.hash && beat.seq.0 > 0 {
            self.halt(applied, format!("the registry's event {applied} hashes to {}, not {head}", beat.hash));
            return;
        }
        let clock = &inner.clockwork;
        let still = clock.since(inner.last_progress.load(Ordering::Relaxed)).unwrap_or(Duration::MAX);
        let last_kick = clock.since(inner.last_kick.load(Ordering::Relaxed)).unwrap_or(Duration::MAX);
        if applied < beat.seq && still > STUCK_AFTER && last_kick > STUCK_AFTER * 3 {
            inner.last_kick.store(now, Ordering::Relaxed);
            inner.kick.notify_one();
        }
    }
}
