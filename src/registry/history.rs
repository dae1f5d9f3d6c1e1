//! Reading the log into the one history fold (`domain::history`): the
//! registry's start-up, its `as_of` tables, and the command line's replay
//! and chain check of a data dir all come through `fold_log`.

use crate::domain::history::{Apply, History, Step};
use crate::domain::id::Seq;
use crate::store::log::{LogError, Reader};

/// Progress is reported every this many events.
pub const PROGRESS_EVERY: u64 = 100_000;

/// Feeds the log's records after `history`'s head, up to `to` (inclusive;
/// the end of the log if `None`), into `history`. Stops at the first record
/// that breaks the chain (the break stays in `history`) and at the first
/// event past its time limit. Calls `progress` with the number of events
/// folded every `PROGRESS_EVERY`. An error is a failure to read the disk,
/// not a fact about the chain.
pub fn fold_log<T: Apply>(
    reader: &Reader,
    history: &mut History<T>,
    to: Option<Seq>,
    mut progress: impl FnMut(u64),
) -> Result<(), LogError> {
    let from = history.head().0.next();
    if to.is_some_and(|to| to < from) {
        return Ok(());
    }
    let mut n = 0u64;
    for record in reader.read(from, to) {
        let record = match record {
            Ok(r) => r,
            Err(LogError::Damaged(seq)) => {
                history.fail(seq, "the stored record is damaged".into());
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        match history.push(record.seq, record.bytes(), Some(record.hash)) {
            Ok(Step::Applied | Step::Held) => {}
            Ok(Step::Past) | Err(_) => return Ok(()),
        }
        n += 1;
        if n.is_multiple_of(PROGRESS_EVERY) {
            progress(n);
        }
    }
    Ok(())
}
