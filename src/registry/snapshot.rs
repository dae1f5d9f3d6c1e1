//! Snapshots of the projections, for the registry: their form on disk,
//! which one start-up may trust (`newest_snapshot`), folding the log from
//! it (`fold_projections`; the chain it stands for is checked after
//! start-up, `check.rs`), and writing one (on a clean stop, or every
//! `Config::snapshot_every` events on a thread of its own, from the previous
//! snapshot and the log), and the newest as the table alone, for replicas.
//! The sealed form is `domain::snapshot`'s, the files `store::snapshot`'s;
//! the encoding is each state's own.

use std::path::Path;

use super::check::Unchecked;
use super::history::fold_log;
use super::{OpenError, Projections, Shared};
use crate::domain::audit::AuditIndex;
use crate::domain::chain::ChainHash;
use crate::domain::history::History;
use crate::domain::id::Seq;
use crate::domain::merkle::{Frontier, Tree};
use crate::domain::snapshot::{Binding, Decoder, Encoder, SnapshotError, damaged, seal};
use crate::domain::table::Table;
use crate::domain::token::Pepper;
use crate::store::log::{Head, Reader};
use crate::store::snapshot;

impl Projections {
    /// The snapshot form: the table and the tree's frontier (the part a
    /// replica loads), the audit index, the tree; and the length of the
    /// first part.
    pub fn encode(&self) -> (Vec<u8>, usize) {
        let mut w = Encoder::default();
        self.table.encode(&mut w);
        // A replica gets this first part alone: its table, and the tree's
        // frontier to check checkpoints against.
        self.tree.frontier().encode(&mut w);
        let table_len = w.bytes.len();
        self.audit.encode(&mut w);
        self.tree.encode(&mut w);
        (w.bytes, table_len)
    }

    pub fn decode(bytes: &[u8]) -> Result<Projections, SnapshotError> {
        let mut r = Decoder::new(bytes);
        let table = Table::decode(&mut r)?;
        let frontier = Frontier::decode(&mut r)?;
        let projections = Projections { table, audit: AuditIndex::decode(&mut r)?, tree: Tree::decode(&mut r)? };
        if !r.is_empty() {
            return Err(damaged("bytes after the projections"));
        }
        if projections.tree.frontier() != frontier {
            return Err(damaged("a frontier that is not the tree's"));
        }
        Ok(projections)
    }
}

/// The newest snapshot that checks out: sealed under this pepper, taken at
/// an event the log holds with the same chain hash, and decoding to a state
/// at that event. One that does not unseal is passed over with a warning.
/// One that does (keyreg wrote it) but names an event the log lacks, or
/// holds with another hash, is a log rolled back under it: an error, since
/// the events lost may include revocations.
fn newest_snapshot(
    dir: &Path,
    pepper: &Pepper,
    log: &Reader,
) -> Result<Option<(Projections, Seq, ChainHash)>, OpenError> {
    for path in snapshot::files(dir) {
        let why = match snapshot::read(&path, pepper) {
            Ok(s) => {
                let rollback = |why: &str| OpenError::Rollback {
                    file: path.display().to_string(),
                    seq: s.binding.seq,
                    why: why.to_owned(),
                };
                match log.get(s.binding.seq) {
                    Ok(Some(record)) if record.hash == s.binding.hash => match Projections::decode(s.payload()) {
                        Ok(p) if p.table.applied() == s.binding.seq && p.tree.size() == s.binding.seq.0 => {
                            return Ok(Some((p, s.binding.seq, s.binding.hash)));
                        }
                        Ok(_) => "its state is not at the sequence it names".to_owned(),
                        Err(e) => e.to_string(),
                    },
                    Ok(Some(_)) => return Err(rollback("the log holds another event there")),
                    Ok(None) => return Err(rollback("the log ends before that event")),
                    Err(e) => e.to_string(),
                }
            }
            Err(why) => why,
        };
        tracing::warn!(file = %path.display(), %why, "ignoring a snapshot; the log is replayed instead");
    }
    Ok(None)
}

/// Folds the log up to `to` (its end if `None`) into the projections, from
/// the newest good snapshot in `dir` when there is one; then the chain up
/// to the snapshot is still to be checked (`Unchecked`): a snapshot saves
/// applying those events, never checking them.
pub(super) fn fold_projections(
    dir: &Path,
    pepper: &Pepper,
    log: &Reader,
    to: Option<Seq>,
) -> Result<(History<Projections>, Option<Unchecked>), OpenError> {
    let progress = |n| tracing::info!(events = n, "replaying the log");
    let (mut history, unchecked) = match newest_snapshot(dir, pepper, log)? {
        Some((projections, seq, hash)) => {
            tracing::info!(%seq, "loaded a snapshot; replaying the events after it");
            (History::resume(projections, seq, hash), Some(Unchecked { seq, hash }))
        }
        None => (History::new(Projections::default()), None),
    };
    fold_log(log, &mut history, to, progress)?;
    Ok((history, unchecked))
}

/// Snapshots the projections at the committed head on a clean stop,
/// unless a snapshot of that head exists already.
pub(super) fn write_snapshot(shared: &Shared) {
    let head = *shared.committed.borrow();
    // Events applied but not yet confirmed by the stream may still be cut:
    // a snapshot never stands for them.
    if shared.read().table.applied() != head.seq {
        tracing::info!(seq = %head.seq, "unconfirmed events are in the table; no snapshot at stop");
        return;
    }
    let newest = snapshot::files(&shared.snapshots).first().and_then(|f| snapshot::read(f, &shared.pepper).ok());
    if head.seq != Seq(0)
        && newest.is_none_or(|s| s.binding.seq != head.seq)
        && write_snapshot_of(&shared.snapshots, &shared.pepper, head, &shared.read())
    {
        shared.snapshot_written.send_replace(head.seq);
    }
    if head.seq != Seq(0) && super::check::chain_whole(shared) {
        super::check::mark(shared, head.seq, head.hash);
    }
}

/// The periodic snapshot at `head`, off the writer: the previous snapshot
/// and the log's events after it, up to `head`, folded on this thread, so
/// the writer never waits for a copy of the projections. (The chain before
/// the previous snapshot was checked when it was written or at start-up.)
pub(super) fn write_periodic(dir: &Path, pepper: &Pepper, log: &Reader, head: Head) -> bool {
    match fold_projections(dir, pepper, log, Some(head.seq)) {
        Ok((history, _)) if history.broken().is_none() && history.head() == (head.seq, head.hash) => {
            write_snapshot_of(dir, pepper, head, history.state())
        }
        Ok(_) => {
            tracing::warn!(seq = %head.seq, "the log does not fold to the committed head; no snapshot taken");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the log for a snapshot; the next start replays more of it");
            false
        }
    }
}

/// Writes `projections`, folded up to `head`, as a snapshot; true if it
/// was written. A failure costs only a longer next start.
pub(super) fn write_snapshot_of(dir: &Path, pepper: &Pepper, head: Head, projections: &Projections) -> bool {
    let (payload, table_len) = projections.encode();
    let binding = Binding { seq: head.seq, hash: head.hash, digest: *projections.table.digest().as_bytes() };
    match snapshot::write(dir, head.seq, &seal(pepper, binding, &payload, table_len)) {
        Ok(file) => {
            tracing::info!(seq = %head.seq, bytes = payload.len(), file = %file.display(), "wrote a snapshot");
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot write a snapshot; the next start replays more of the log");
            false
        }
    }
}

/// The newest snapshot file that unseals, as the table alone sealed again:
/// what the registry publishes for replicas to start from.
pub(super) fn newest_table(dir: &Path, pepper: &Pepper) -> Option<(Seq, Vec<u8>)> {
    snapshot::files(dir)
        .iter()
        .find_map(|f| snapshot::read(f, pepper).ok())
        .map(|s| (s.binding.seq, s.table_only(pepper)))
}
