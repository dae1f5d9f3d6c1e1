//! The whole-log check of the chain, off the start-up path. A registry that
//! started from a snapshot is ready once the events after the snapshot are
//! checked and applied; the chain the snapshot stands for is checked here,
//! on a thread of its own, while reads, verifies and writes go on.
//!
//! The check resumes from a sealed mark, `DIR/checked`: "checked through
//! seq N, hash H", with a MAC under a key derived from the pepper, written
//! as the check advances and with each snapshot once the whole chain before
//! it is checked. A mark is believed only if its MAC holds and the log
//! still holds H at N; a forged or stale one is ignored and the check
//! starts from the first event. Records before the mark are not read again
//! at start: a history read checks the links of what it returns instead
//! (`Registry::read_checked`).
//!
//! A break found here is handled as one found at start: the projections
//! are folded again up to it, and writes are refused, `/readyz` naming the
//! sequence.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::history::fold_log;
use super::{Projections, Registry, Shared};
use crate::domain::chain::{ChainBreak, ChainChecker, ChainHash, ChainReport};
use crate::domain::history::History;
use crate::domain::id::Seq;
use crate::domain::mac::{Kind, MessageKeys};
use crate::store::DataDir;
use crate::store::log::{Head, LogError, Reader, Record};

/// Events checked between two marks.
const MARK_EVERY: u64 = 100_000;
/// Events a running registry appends between two marks, once its whole
/// chain is checked: it chained them itself, so the mark may pass them,
/// and `/v1/audit/verify` never checks more than these after it.
const MARK_STRIDE: u64 = 4096;

/// The chain through `seq`, whose event hashes to `hash`, still to check.
pub(super) struct Unchecked {
    pub seq: Seq,
    pub hash: ChainHash,
}

/// The MAC over a mark.
fn mark_mac(keys: &MessageKeys, seq: Seq, hash: &ChainHash) -> String {
    keys.tag(Kind::Checked, &[&seq.0.to_be_bytes(), &hash.0])
}

/// How far the chain is checked, as this node last marked or trusted it.
pub(super) type Mark = Arc<Mutex<Option<(Seq, ChainHash)>>>;

/// The sealed mark on disk, if its MAC holds and the log still holds its
/// hash at its sequence. Read once, at open; from then on the mark is kept
/// in memory (`Shared::mark`) and written through.
pub(super) fn trusted_mark(shared: &Shared) -> Option<(Seq, ChainHash)> {
    let (seq, hash, mac) = shared.dir.checked_mark()?;
    let keys = MessageKeys::new(&shared.pepper);
    if !keys.check(Kind::Checked, &[&seq.0.to_be_bytes(), &hash.0], Some(&mac)) {
        tracing::warn!("the chain-check mark's MAC does not hold; checking the whole chain");
        return None;
    }
    match shared.log.get(seq) {
        Ok(Some(record)) if record.hash == hash => Some((seq, hash)),
        _ => {
            tracing::warn!(%seq, "the log no longer holds the chain-check mark's event; checking the whole chain");
            None
        }
    }
}

/// Records that the chain is checked through `seq`.
pub(super) fn mark(shared: &Shared, seq: Seq, hash: ChainHash) {
    Marker::of(shared).mark(seq, hash);
}

/// The mark kept in memory.
fn marked(shared: &Shared) -> Option<(Seq, ChainHash)> {
    *shared.mark.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Moves the mark to `head`, a committed head this node appended, when
/// the whole chain before it is checked and the mark is `MARK_STRIDE`
/// behind.
pub(super) fn advance(shared: &Shared, head: Head) {
    let behind = head.seq.0.saturating_sub(marked(shared).map_or(0, |(seq, _)| seq.0));
    if behind >= MARK_STRIDE && chain_whole(shared) {
        mark(shared, head.seq, head.hash);
    }
}

/// Whether the whole stored chain is checked and holds.
pub(super) fn chain_whole(shared: &Shared) -> bool {
    shared.chain_checked.load(Ordering::Relaxed) && shared.broken.get().is_none()
}

/// What writing a mark needs, for a thread of its own (a snapshot's).
#[derive(Clone)]
pub(super) struct Marker {
    dir: DataDir,
    keys: MessageKeys,
    mark: Mark,
}

impl Marker {
    pub fn of(shared: &Shared) -> Marker {
        Marker { dir: shared.dir.clone(), keys: MessageKeys::new(&shared.pepper), mark: shared.mark.clone() }
    }

    pub fn mark(&self, seq: Seq, hash: ChainHash) {
        match self.dir.set_checked_mark(seq, &hash, &mark_mac(&self.keys, seq, &hash)) {
            Ok(()) => {
                let mut mark = self.mark.lock().unwrap_or_else(PoisonError::into_inner);
                if mark.is_none_or(|(marked, _)| marked < seq) {
                    *mark = Some((seq, hash));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot record how far the chain is checked; the next start checks more")
            }
        }
    }
}

/// Starts the check of the chain up to `unchecked` on its own thread, from
/// the mark trusted at open, if any.
pub(super) fn start(shared: Arc<Shared>, unchecked: Unchecked, delay: Duration) -> std::io::Result<()> {
    let thread = std::thread::Builder::new().name("keyreg-check".into()).spawn({
        let shared = shared.clone();
        move || {
            super::yield_to_writes();
            std::thread::sleep(delay);
            check(&shared, unchecked)
        }
    })?;
    *shared.checking.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
    Ok(())
}

fn check(shared: &Shared, unchecked: Unchecked) {
    let mut prefix = match marked(shared) {
        Some((seq, hash)) if seq <= unchecked.seq => {
            tracing::info!(%seq, "resuming the check of the chain from its mark");
            History::resume((), seq, hash)
        }
        _ => History::new(()),
    };
    while prefix.head().0 < unchecked.seq {
        if shared.stopping.load(Ordering::Relaxed) {
            return;
        }
        let to = Seq((prefix.head().0.0 + MARK_EVERY).min(unchecked.seq.0));
        let read = fold_log(&shared.log, &mut prefix, Some(to), |_| {});
        let broken = match read {
            Err(e) => Some(ChainBreak { seq: prefix.head().0.next(), why: format!("cannot read the log: {e}") }),
            Ok(()) => prefix.broken().cloned().or_else(|| {
                (prefix.head().0 < to).then(|| ChainBreak { seq: to, why: "the log ends before the snapshot".into() })
            }),
        };
        if let Some(b) = broken {
            return broke(shared, b);
        }
        tracing::info!(through = %to, of = %unchecked.seq, "checking the chain before the snapshot");
        let (seq, hash) = prefix.head();
        mark(shared, seq, hash);
    }
    if prefix.head() != (unchecked.seq, unchecked.hash) {
        let why = "the snapshot's event is not the one the chain leads to".into();
        return broke(shared, ChainBreak { seq: unchecked.seq, why });
    }
    shared.chain_checked.store(true, Ordering::Relaxed);
}

/// Handles a break found after start as one found at start: writes are
/// refused from now on, and the projections show the state before it.
fn broke(shared: &Shared, b: ChainBreak) {
    tracing::error!(seq = %b.seq, why = %b.why, "the stored chain is broken; refusing writes");
    let _ = shared.broken.set(b);
    let mut history = History::new(Projections::default());
    if fold_log(&shared.log, &mut history, None, |_| {}).is_ok() {
        *shared.projections.write().unwrap_or_else(PoisonError::into_inner) = history.into_state();
    }
    shared.chain_checked.store(true, Ordering::Relaxed);
}

impl Registry {
    /// The log's records `from..=to`, each checked against the chain (its
    /// hash, and the hash before it): a history read never returns a
    /// record whose link fails. Blocking; stops at the first that fails.
    pub fn read_checked(&self, from: Seq, to: Option<Seq>) -> impl Iterator<Item = Result<Record, ReadError>> + use<> {
        let reader: Reader = self.shared.log.clone();
        let records = reader.read(from.max(Seq(1)), to);
        let mut checker: Option<ChainChecker> = None;
        through_first_error(records.map(move |record| {
            let record = record?;
            let checker = match &mut checker {
                Some(c) => c,
                None => checker.insert(checker_before(&reader, record.seq)?),
            };
            checker.check(record.seq, record.bytes(), Some(record.hash)).map_err(ReadError::Broken)?;
            Ok(record)
        }))
    }

    /// The records at `seqs`, each checked against the chain (its hash,
    /// and the hash of the record before it); stops at the first that
    /// fails. Blocking.
    pub fn read_checked_at(&self, seqs: Vec<Seq>) -> impl Iterator<Item = Result<Record, ReadError>> + use<> {
        let reader: Reader = self.shared.log.clone();
        through_first_error(seqs.into_iter().map(move |seq| {
            let record = reader.get(seq)?.ok_or(LogError::Damaged(seq))?;
            checker_before(&reader, seq)?.check(seq, record.bytes(), Some(record.hash)).map_err(ReadError::Broken)?;
            Ok(record)
        }))
    }

    /// The chain's report from the sealed mark on: the events after it are
    /// checked (at most a snapshot interval's worth once the background
    /// check is done), those before it were. A chain found broken is
    /// checked whole, for its report to name the break.
    pub fn verify_chain(&self) -> Result<ChainReport, LogError> {
        let mark = marked(&self.shared).filter(|_| self.broken().is_none());
        let Some((seq, hash)) = mark else { return self.check_chain() };
        if self.shared.log.get(seq)?.is_none_or(|r| r.hash != hash) {
            // The log no longer holds the marked event: check it all.
            return self.check_chain();
        }
        let mut tail = History::resume((), seq, hash);
        fold_log(&self.shared.log, &mut tail, None, |_| {})?;
        let mut report = tail.report();
        report.events = report.head_seq.0;
        Ok(report)
    }

    /// How far the whole chain is known to be checked: once it is whole,
    /// through the head (this node chains what it appends itself).
    pub fn checked_through(&self) -> Seq {
        match chain_whole(&self.shared) {
            true => self.head().seq,
            false => marked(&self.shared).map_or(Seq(0), |(seq, _)| seq),
        }
    }
}

/// A checker expecting the record at `seq`: after the stored record before
/// it, or the chain's start.
fn checker_before(reader: &Reader, seq: Seq) -> Result<ChainChecker, LogError> {
    Ok(match seq.0 {
        0 | 1 => ChainChecker::default(),
        n => reader.get(Seq(n - 1))?.map_or(ChainChecker::default(), |r| ChainChecker::after(r.seq, r.hash)),
    })
}

/// `items` up to and including the first error.
fn through_first_error<T, E>(items: impl Iterator<Item = Result<T, E>>) -> impl Iterator<Item = Result<T, E>> {
    let mut failed = false;
    items.map_while(move |item| {
        (!failed).then(|| {
            failed = item.is_err();
            item
        })
    })
}

/// Why a history read stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("{0}; the registry returns nothing from there on")]
    Broken(ChainBreak),
}
