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

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::rate::Buckets;
use super::snapshot::{Unchecked, write_periodic};
use super::{ExecError, Outcome, Shared};
use crate::domain::command::{Acting, Command, Context, Refusal};
use crate::domain::decide::decide;
use crate::domain::event::Event;
use crate::domain::id::{Actor, IdGenerator, OrgId, Seq};
use crate::store::log::{Log, LogError};

/// Commands taken from the queue into one batch (one commit) at most.
const MAX_BATCH: usize = 4096;

pub(super) struct Job {
    pub who: Acting,
    pub org: OrgId,
    pub command: Command,
    pub reply: oneshot::Sender<Result<Outcome, ExecError>>,
}

/// The queue into the writer thread, and the thread itself so that closing
/// the registry can wait for the last commit.
pub(super) struct Writer {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread. It first checks the chain a snapshot
    /// stands for, if any: commands queue meanwhile.
    pub fn start(log: Log, shared: std::sync::Arc<Shared>, unchecked: Option<Unchecked>) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new().name("keyreg-writer".into()).spawn(move || {
            if let Some(unchecked) = unchecked {
                unchecked.check(&shared);
            }
            write_loop(log, &shared, rx)
        })?;
        Ok(Writer { tx: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)) })
    }

    /// Queues a job; false when the writer has stopped.
    pub fn submit(&self, job: Job) -> bool {
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

fn write_loop(mut log: Log, shared: &Shared, rx: mpsc::Receiver<Job>) {
    let mut ids = IdGenerator::default();
    // Each tenant's allowance; only this thread appends, so only it counts.
    let mut rates = Buckets::new(shared.org_rate);
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter().take(MAX_BATCH - 1));
        let mut answers = Vec::with_capacity(jobs.len());
        let mut failure: Option<LogError> = None;
        let broken = shared.broken.get().map(|b| format!("{b}; the registry refuses writes"));
        for job in jobs {
            let result = match (&failure, &broken) {
                (Some(_), _) => Err(ExecError::Unavailable("the log failed".into())),
                (_, Some(why)) => Err(ExecError::Unavailable(why.clone())),
                (None, None) => run(&mut log, shared, &mut ids, &mut rates, &job).map_err(|e| match e {
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
        let staged = shared.committed.borrow().seq != log.head().seq;
        if failure.is_none() && staged {
            match log.commit() {
                Ok(()) => {
                    // A registry that is killed rather than stopped still
                    // starts from a recent snapshot.
                    let before = shared.committed.send_replace(log.head());
                    let every = shared.snapshot_every;
                    if before.seq.0 / every < log.head().seq.0 / every {
                        snapshot_in_background(shared);
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
    let spawned = std::thread::Builder::new().name("keyreg-snapshot".into()).spawn(move || {
        if write_periodic(&dir, &pepper, &log, head) {
            written.send_replace(head.seq);
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
    let mut bytes = 0;
    for event in decision.events(&ctx, ids) {
        let record = log.stage(&event).map_err(Failed::Log)?;
        bytes += record.bytes().len();
        events.push((record.seq, event));
    }
    if metered {
        rates.charge(&decision.org, now, events.len(), bytes);
    }
    let mut projections = shared.projections.write().unwrap_or_else(PoisonError::into_inner);
    for (seq, event) in &events {
        projections.apply(*seq, event);
    }
    shared.applied.send_replace(projections.table.applied());
    Ok(Outcome::of(&projections.table, &job.command, decision, events, before.seq))
}
