//! The single writer: one thread owns the `Log`, takes every command
//! waiting in its queue, and for each decides it against the live table,
//! stamps and stages its events, and applies them; then it commits once
//! for the whole batch and only then answers the callers (group commit: 64
//! concurrent writers cost one flush, not 64).
//!
//! Locks: deciding reads the table under its read lock; encoding, hashing
//! and staging into sled happen under no lock at all; only applying takes
//! the write lock, for as long as `apply` runs. Verifies never wait for the
//! disk. This is sound because this thread is the table's only writer:
//! nothing can change the table between the decision and the apply.
//!
//! With stream commit (`confirm.rs`) the batch is answered only after the
//! stream confirmed it too; a batch the stream refused or never confirmed
//! is cut off the log and the table is folded again from disk, so the
//! registry never shows, keeps or publishes what no caller was told of.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::check::Marker;
use super::confirm::Unconfirmed;
use super::rate::Buckets;
use super::role::Followed;
use super::snapshot::{fold_projections, write_periodic};
use super::{ExecError, Outcome, Shared};
use crate::domain::command::{Acting, Command, Context, Refusal};
use crate::domain::decide::decide;
use crate::domain::event::Event;
use crate::domain::id::{Actor, IdGenerator, OrgId, Seq};
use crate::domain::merkle::leaf_hash;
use crate::store::log::{Head, Log, LogError};

/// Commands taken from the queue into one batch (one commit) at most.
const MAX_BATCH: usize = 4096;
/// How often a node with unsettled events asks the stream again while no
/// write arrives, so that what no caller was told of does not linger.
const SETTLE_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// What the writer thread is asked to do.
pub(super) enum Work {
    /// Decide and record a command (the leader). Boxed: commands are
    /// large, and most work is one.
    Command(Box<Job>),
    /// Store and apply events off the stream (a standby).
    Follow(Vec<Followed>, oneshot::Sender<Result<Head, String>>),
    /// Cut events the stream never stored (a standby rejoining).
    Cut(Seq, oneshot::Sender<Result<(), String>>),
}

pub(super) struct Job {
    pub who: Acting,
    pub org: OrgId,
    pub command: Command,
    pub reply: oneshot::Sender<Result<Outcome, ExecError>>,
}

/// The queue into the writer thread, and the thread itself so that closing
/// the registry can wait for the last commit.
pub(super) struct Writer {
    tx: Mutex<Option<mpsc::Sender<Work>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread.
    pub fn start(log: Log, shared: std::sync::Arc<Shared>) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel();
        let thread =
            std::thread::Builder::new().name("keyreg-writer".into()).spawn(move || write_loop(log, &shared, rx))?;
        Ok(Writer { tx: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)) })
    }

    /// Queues work; false when the writer has stopped.
    pub fn submit(&self, job: Work) -> bool {
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        tx.as_ref().is_some_and(|tx| tx.send(job).is_ok())
    }

    /// Stops taking jobs, lets the thread finish the ones queued (their
    /// commit included), and waits for it; the log is closed when this
    /// returns.
    pub fn stop(&self) {
        self.tx.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_loop(mut log: Log, shared: &Shared, rx: mpsc::Receiver<Work>) {
    let mut ids = IdGenerator::default();
    // Each tenant's allowance; only this thread appends, so only it counts.
    let mut rates = Buckets::new(shared.org_rate);
    // A standby's followed events of a decision whose last has not come.
    let mut held = vec![];
    loop {
        // Wakes now and then even with no write, so that stream commit,
        // once set up, settles at once rather than at the first write.
        let first = match rx.recv_timeout(SETTLE_EVERY) {
            Ok(job) => Some(job),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        if shared.unsettled.load(Ordering::Relaxed) && shared.node.leads() {
            settle(&mut log, shared);
        }
        let Some(first) = first else { continue };
        let mut jobs = vec![];
        for work in std::iter::once(first).chain(rx.try_iter().take(MAX_BATCH - 1)) {
            match work {
                Work::Command(job) => jobs.push(*job),
                Work::Follow(events, reply) => {
                    let _ = reply.send(super::role::follow(&mut log, shared, &mut held, events));
                }
                Work::Cut(seq, reply) => {
                    held.clear();
                    let _ = reply.send(super::role::cut_unstored(&mut log, shared, seq));
                }
            }
        }
        if jobs.is_empty() {
            continue;
        }
        if shared.node.not_leading().is_some() {
            for job in jobs {
                let _ = job.reply.send(Err(ExecError::NotLeader(shared.node.other_leader())));
            }
            continue;
        }
        if let Some(why) = wait_for_stream(&mut log, shared) {
            for job in jobs {
                let _ = job.reply.send(Err(ExecError::Unavailable(why.clone())));
            }
            continue;
        }
        let start = log.head();
        // The last event of each decision: a decision's events reach the
        // stream all or none.
        let mut ends = vec![];
        let mut answers = Vec::with_capacity(jobs.len());
        let mut failure: Option<LogError> = None;
        let broken = shared.broken.get().map(|b| format!("{b}; the registry refuses writes"));
        for job in jobs {
            let result = match (&failure, &broken) {
                (Some(_), _) => Err(ExecError::Unavailable("the log failed".into())),
                (_, Some(why)) => Err(ExecError::Unavailable(why.clone())),
                (None, None) => run(&mut log, shared, &mut ids, &mut rates, &job)
                    .inspect(|_| {
                        if log.head().seq > ends.last().copied().unwrap_or(start.seq) {
                            ends.push(log.head().seq);
                        }
                    })
                    .map_err(|e| match e {
                        Failed::Refused(r) => ExecError::Refused(r),
                        Failed::RateLimited(retry_after) => ExecError::RateLimited { retry_after },
                        Failed::Log(e) => {
                            let shown = ExecError::Unavailable(e.to_string());
                            failure = Some(e);
                            shown
                        }
                    }),
            };
            answers.push((job.reply, result));
        }
        let staged = start.seq != log.head().seq;
        if failure.is_none() && staged {
            match log.commit().map(|()| confirm(&mut log, shared, start, &ends)) {
                Ok(Ok(())) => {
                    committed(shared, log.head());
                    if let Some(stream) = shared.confirm() {
                        stream.mark();
                    }
                }
                Ok(Err(unconfirmed)) => {
                    let why = unconfirmed.to_string();
                    for (_, result) in answers.iter_mut().filter(|(_, r)| r.is_ok()) {
                        *result = Err(ExecError::Unavailable(why.clone()));
                    }
                }
                Err(e) => failure = Some(e),
            }
        }
        if let Some(e) = &failure {
            tracing::error!(error = %e, "the log failed; refusing writes until restart");
            shared.failed.store(true, Ordering::Relaxed);
            for (reply, _) in answers {
                let _ = reply.send(Err(ExecError::Unavailable(e.to_string())));
            }
            return;
        }
        for (reply, result) in answers {
            let _ = reply.send(result);
        }
    }
}

/// `head` is durable, and confirmed where the stream must confirm it. A
/// registry that is killed rather than stopped still starts from a recent
/// snapshot: one is taken each time the head passes a multiple of
/// `snapshot_every` (never of unconfirmed events, which may be cut).
pub(super) fn committed(shared: &Shared, head: Head) {
    if shared.confirm().is_some() {
        shared.confirmed_floor.fetch_max(head.seq.0, Ordering::Relaxed);
    }
    let before = shared.committed.send_replace(head);
    super::check::advance(shared, head);
    let every = shared.snapshot_every;
    if before.seq.0 / every < head.seq.0 / every {
        snapshot_in_background(shared);
    }
}

/// Under stream commit, waits (at most the commit timeout) until the
/// stream can take a write: reachable, and every earlier event settled.
/// Returns why not when it cannot; asked before anything is staged.
fn wait_for_stream(log: &mut Log, shared: &Shared) -> Option<String> {
    let confirm = shared.confirm()?;
    let deadline = std::time::Instant::now() + confirm.timeout();
    loop {
        if let Some(why) = shared.diverged.get() {
            return Some(why.clone());
        }
        let reachable = confirm.reachable();
        if reachable && shared.unsettled.load(Ordering::Relaxed) {
            settle(log, shared);
        }
        let unsettled = shared.unsettled.load(Ordering::Relaxed);
        if reachable && !unsettled && shared.diverged.get().is_none() {
            return None;
        }
        if std::time::Instant::now() >= deadline {
            return Some(match unsettled {
                true => "the event stream has not settled an earlier change with this node; nothing changed".into(),
                false => Unconfirmed::Unreachable("not connected".into()).to_string(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Has the stream confirm the batch staged after `start` (and any older
/// event it lacks). What it did not take is cut off at once when nothing
/// was sent, or settled before the next write when the outcome is unknown.
fn confirm(log: &mut Log, shared: &Shared, start: Head, ends: &[crate::domain::id::Seq]) -> Result<(), Unconfirmed> {
    let Some(stream) = shared.confirm() else { return Ok(()) };
    match stream.confirm(&shared.log, log.head(), ends) {
        Ok(()) => Ok(()),
        Err(e @ Unconfirmed::Unreachable(_)) => {
            cut(log, shared, start.seq);
            Err(e)
        }
        Err(e @ Unconfirmed::Unknown(_)) => {
            tracing::warn!(error = %e, "a change is unconfirmed; settling it with the stream before the next write");
            shared.unsettled.store(true, Ordering::Relaxed);
            Err(e)
        }
        Err(e @ Unconfirmed::Diverged(_)) => {
            diverged(shared, &e);
            Err(e)
        }
        Err(Unconfirmed::Overtaken(why)) => {
            shared.unsettled.store(true, Ordering::Relaxed);
            overtaken(shared, &why);
            Err(Unconfirmed::Overtaken(why))
        }
    }
}

/// Asks the stream how far it holds the log. Events it lacks that callers
/// were told of (from before stream commit) are published; events it
/// lacks that nobody was told of are cut. Never cuts below what the
/// stream confirmed: a stream that lost confirmed events, or was replaced,
/// stops writes instead.
fn settle(log: &mut Log, shared: &Shared) {
    let Some(stream) = shared.confirm() else { return };
    if !stream.reachable() {
        return;
    }
    let head = log.head();
    let floor = shared.confirmed_floor.load(Ordering::Relaxed);
    let settled = match stream.stored(&shared.log, head) {
        Ok(stored) if stored >= head.seq => Ok(()),
        Ok(_) if shared.tail_acknowledged.load(Ordering::Relaxed) => stream.confirm(&shared.log, head, &[]),
        Ok(stored) if stored.0 < floor || (stored.0 == 0 && head.seq.0 > 0) => Err(Unconfirmed::Diverged(format!(
            "the stream holds this log only up to {stored}, but this node's log goes to {} and the stream had \
             confirmed {}: was the stream reset, or its storage lost?",
            head.seq, floor
        ))),
        Ok(stored) => {
            tracing::warn!(from = %stored.next(), to = %head.seq, "the stream never stored these events; discarding them");
            cut(log, shared, stored);
            Ok(())
        }
        Err(e) => Err(e),
    };
    // Only once the stream holds every acknowledged event may the data dir
    // say so: from then on, an event beyond the stream was never told of.
    let settled = settled.and_then(|()| {
        let recorded = shared.dir.set_commit_mark(crate::store::CommitMark::Stream);
        recorded.map_err(|e| Unconfirmed::Unknown(format!("cannot record it: {e}")))
    });
    match settled {
        Ok(()) => {
            shared.unsettled.store(false, Ordering::Relaxed);
            shared.tail_acknowledged.store(false, Ordering::Relaxed);
            committed(shared, log.head());
            stream.mark();
        }
        Err(e @ Unconfirmed::Diverged(_)) => diverged(shared, &e),
        Err(Unconfirmed::Overtaken(why)) => overtaken(shared, &why),
        Err(e) => tracing::debug!(error = %e, "cannot settle with the stream yet"),
    }
}

/// Another node wrote to the stream after this one: it no longer leads.
/// Its unconfirmed events are settled as a standby (`cut_unstored`).
fn overtaken(shared: &Shared, why: &str) {
    if !shared.node.leased() {
        return diverged(shared, &Unconfirmed::Diverged(why.to_owned()));
    }
    tracing::warn!(%why, "another node leads; standing by");
    shared.node.overtake();
}

/// Cuts the log after `seq` and folds the projections again from what is
/// left on disk.
pub(super) fn cut(log: &mut Log, shared: &Shared, seq: crate::domain::id::Seq) {
    let reloaded = log.discard_after(seq).map_err(|e| e.to_string()).and_then(|()| {
        fold_projections(&shared.snapshots, &shared.pepper, &shared.log, None).map_err(|e| e.to_string())
    });
    match reloaded {
        Ok((history, _)) if history.broken().is_none() => {
            let projections = history.into_state();
            let applied = projections.table.applied();
            *shared.projections.write().unwrap_or_else(PoisonError::into_inner) = projections;
            shared.applied.send_replace(applied);
            shared.committed.send_replace(log.head());
        }
        Ok(_) | Err(_) => {
            tracing::error!(seq = %seq, "cannot cut the log back to what the stream holds; refusing writes until restart");
            shared.failed.store(true, Ordering::Relaxed);
        }
    }
}

pub(super) fn diverged(shared: &Shared, e: &Unconfirmed) {
    tracing::error!(error = %e, "refusing writes");
    let _ = shared.diverged.set(e.to_string());
}

/// Starts the periodic snapshot at the committed head on a thread of its
/// own (`write_periodic`), unless the last one is still being written: the
/// writer only spawns it.
fn snapshot_in_background(shared: &Shared) {
    let mut running = shared.snapshotting.lock().unwrap_or_else(PoisonError::into_inner);
    if running.as_ref().is_some_and(|t| !t.is_finished()) {
        tracing::info!("the last snapshot is still being written; skipping this mark");
        return;
    }
    let head = *shared.committed.borrow();
    let (dir, pepper, log) = (shared.snapshots.clone(), shared.pepper.clone(), shared.log.clone());
    let written = shared.snapshot_written.clone();
    // Once the whole chain before it is checked, so is the snapshot's: its
    // fold from the previous one checked the rest.
    let marker = super::check::chain_whole(shared).then(|| Marker::of(shared));
    let spawned = std::thread::Builder::new().name("keyreg-snapshot".into()).spawn(move || {
        super::yield_to_writes();
        if write_periodic(&dir, &pepper, &log, head) {
            written.send_replace(head.seq);
            if let Some(marker) = marker {
                marker.mark(head.seq, head.hash);
            }
        }
    });
    match spawned {
        Ok(t) => *running = Some(t),
        Err(e) => tracing::warn!(error = %e, "cannot start the snapshot thread"),
    }
}

enum Failed {
    Refused(Refusal),
    RateLimited(std::time::Duration),
    Log(LogError),
}

/// Decides one job, stages its events and applies them.
fn run(
    log: &mut Log,
    shared: &Shared,
    ids: &mut IdGenerator,
    rates: &mut Buckets,
    job: &Job,
) -> Result<Outcome, Failed> {
    let before = log.head();
    // Event times never go backwards, so "as of T" is a prefix of the log.
    let now = before.time.map_or(shared.clock.now(), |t| shared.clock.now().max(t));
    let ctx = Context { who: job.who.clone(), org: job.org.clone(), now };
    // keyreg's own work (the sweeper, usage, recovery) is never held back.
    let metered = !matches!(job.who.actor, Actor::System(_));
    if metered {
        rates.admit(&job.org, now).map_err(Failed::RateLimited)?;
    }
    let decision = decide(&shared.read().table, &ctx, &job.command).map_err(Failed::Refused)?;
    let mut events: Vec<(Seq, Event)> = Vec::with_capacity(decision.changes.len());
    let mut leaves = Vec::with_capacity(decision.changes.len());
    let mut bytes = 0;
    for event in decision.events(&ctx, ids) {
        let record = log.stage(&event).map_err(Failed::Log)?;
        bytes += record.bytes().len();
        // Hashed here, so the write lock below is held only to add them.
        leaves.push(leaf_hash(record.bytes()));
        events.push((record.seq, event));
    }
    if metered {
        rates.charge(&decision.org, now, events.len(), bytes);
    }
    let mut projections = shared.projections.write().unwrap_or_else(PoisonError::into_inner);
    for (seq, event) in &events {
        projections.apply(*seq, event);
    }
    leaves.into_iter().for_each(|leaf| projections.tree.push(leaf));
    shared.applied.send_replace(projections.table.applied());
    Ok(Outcome::of(&projections.table, &job.command, decision, events, before.seq))
}
