//! `keyreg serve --clock-offset-file F`, a seam for tests only: the system
//! clock plus the seconds written in F. A test that needs time to pass (a
//! grace period ending, a key expiring, the sweeper noticing) writes a
//! larger offset instead of sleeping on the real clock. The file is read
//! again at most every `REREAD`; between reads a clock read costs a short lock
//! (a test seam: production runs on `SystemClock`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::domain::time::{Clock, SystemClock, Timestamp};

/// How stale the offset may be; a test waits this long after writing.
const REREAD: Duration = Duration::from_millis(10);

pub struct OffsetFileClock {
    path: PathBuf,
    offset_micros: AtomicI64,
    read_at: Mutex<Option<Instant>>,
}

impl OffsetFileClock {
    pub fn new(path: PathBuf) -> OffsetFileClock {
        OffsetFileClock { path, offset_micros: AtomicI64::new(0), read_at: Mutex::new(None) }
    }

    fn refresh(&self) {
        let mut read_at = self.read_at.lock().unwrap_or_else(PoisonError::into_inner);
        if read_at.is_some_and(|t| t.elapsed() < REREAD) {
            return;
        }
        *read_at = Some(Instant::now());
        // A missing or unreadable file is no offset, as at the start.
        let seconds: f64 = std::fs::read_to_string(&self.path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0.0);
        self.offset_micros.store((seconds * 1e6) as i64, Ordering::Relaxed);
    }
}

impl Clock for OffsetFileClock {
    fn now(&self) -> Timestamp {
        self.refresh();
        let now = SystemClock.now();
        Timestamp::from_micros(now.micros() + self.offset_micros.load(Ordering::Relaxed))
    }
}
