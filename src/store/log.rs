//! The event log: an append-only, hash-chained sequence of events in sled.
//! Only this module touches sled.
//!
//! Guarantees:
//! - Sequence numbers are 1, 2, 3, … with no gap: `stage` always writes at
//!   head + 1, and the log has a single writer (it is `&mut self`).
//! - Each record holds the event's exact bytes and its chain hash; `next`'s
//!   prevhash is always the stored head hash.
//! - An event is durable once `commit` returns: sled's flush, then an
//!   `fsync` of sled's data file, because sled's own flush uses
//!   `sync_file_range`, which survives a process crash but not a power loss.
//!   Callers acknowledge nothing before `commit`. Staged events may reach
//!   disk earlier (sled flushes in the background); they were never
//!   acknowledged, and they are whole events in chain order, so the log stays
//!   valid either way.
//! - A failed commit poisons the log: the caller must stop, because what is
//!   on disk is no longer known (the fail-stop rule databases follow after a
//!   failed fsync).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::domain::chain::ChainHash;
use crate::domain::event::{self, Event};
use crate::domain::id::Seq;
use crate::domain::time::Timestamp;

const HASH_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(
        "the log in {0} is in use by another keyreg process (sled locks it); stop that process first, \
         or read history from the stream with --nats and --pepper-file"
    )]
    Locked(String),
    #[error("cannot open the log in {dir}: {why}")]
    Open { dir: String, why: String },
    #[error("the log storage failed: {0}")]
    Storage(#[from] sled::Error),
    #[error("cannot fsync the log: {0}")]
    Sync(#[from] std::io::Error),
    #[error("the stored record at sequence {0} is damaged")]
    Damaged(Seq),
    #[error("an earlier commit failed; restart the process to recover from what is on disk")]
    Poisoned,
}

/// The last event in the log: where the next one goes and what it chains to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: Seq,
    pub hash: ChainHash,
    pub time: Option<Timestamp>,
}

impl Head {
    pub const EMPTY: Head = Head { seq: Seq(0), hash: ChainHash::ZERO, time: None };
}

/// One stored event: its place, its chain hash and its exact bytes.
#[derive(Clone, Debug)]
pub struct Record {
    pub seq: Seq,
    pub hash: ChainHash,
    pub bytes: sled::IVec,
}

impl Record {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[HASH_LEN..]
    }
}

pub struct Log {
    db: sled::Db,
    events: sled::Tree,
    head: Head,
    /// sled's data file, kept open so `commit` can fsync it.
    data_file: File,
    poisoned: bool,
}

fn key(seq: Seq) -> [u8; 8] {
    seq.0.to_be_bytes()
}

impl Log {
    pub fn open(dir: &Path) -> Result<Log, LogError> {
        let shown = || dir.display().to_string();
        let db = open_db(dir).map_err(|e| match e {
            sled::Error::Io(_) if !unlocked(dir) => LogError::Locked(shown()),
            other => LogError::Open { dir: shown(), why: other.to_string() },
        })?;
        let events = db.open_tree("events")?;
        let data_file = File::open(data_file_path(dir))?;
        let head = match events.last()? {
            None => Head::EMPTY,
            Some((k, v)) => {
                let seq = Seq(u64::from_be_bytes(k.as_ref().try_into().map_err(|_| LogError::Damaged(Seq(0)))?));
                let record = to_record(seq, v)?;
                let decoded = event::decode(record.bytes()).map_err(|_| LogError::Damaged(seq))?;
                Head { seq, hash: record.hash, time: Some(decoded.event.time) }
            }
        };
        Ok(Log { db, events, head, data_file, poisoned: false })
    }

    pub fn head(&self) -> Head {
        self.head
    }

    /// Encodes `event` at head + 1 and writes it; durable only after `commit`.
    pub fn stage(&mut self, event: &Event) -> Result<Record, LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        let seq = self.head.seq.next();
        let bytes = event::encode(seq, &self.head.hash, event);
        let hash = self.head.hash.next(&bytes);
        let mut value = Vec::with_capacity(HASH_LEN + bytes.len());
        value.extend_from_slice(&hash.0);
        value.extend_from_slice(&bytes);
        let value = sled::IVec::from(value);
        if let Err(e) = self.events.insert(key(seq), value.clone()) {
            self.poisoned = true;
            return Err(e.into());
        }
        self.head = Head { seq, hash, time: Some(event.time) };
        Ok(Record { seq, hash, bytes: value })
    }

    /// Writes an event another node appended, at head + 1, exactly as it
    /// came (a standby following the stream); the caller has checked its
    /// chain link. Durable only after `commit`.
    pub fn stage_followed(&mut self, seq: Seq, hash: ChainHash, bytes: &[u8], time: Timestamp) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        if seq != self.head.seq.next() {
            return Err(LogError::Damaged(seq));
        }
        let mut value = Vec::with_capacity(HASH_LEN + bytes.len());
        value.extend_from_slice(&hash.0);
        value.extend_from_slice(bytes);
        if let Err(e) = self.events.insert(key(seq), value) {
            self.poisoned = true;
            return Err(e.into());
        }
        self.head = Head { seq, hash, time: Some(time) };
        Ok(())
    }

    /// Makes everything staged so far durable. One call covers any number of
    /// staged events: this is where group commit saves its flushes.
    pub fn commit(&mut self) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        let result = self.db.flush().map_err(LogError::from).and_then(|_| Ok(self.data_file.sync_data()?));
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// Removes every event after `seq` and makes that durable: for events
    /// the event stream never stored, which no caller was told of (stream
    /// commit). The chain stays whole, since it is cut at its end.
    pub fn discard_after(&mut self, seq: Seq) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        let head = match seq {
            Seq(0) => Head::EMPTY,
            seq => {
                let record = self.reader().get(seq)?.ok_or(LogError::Damaged(seq))?;
                let decoded = event::decode(record.bytes()).map_err(|_| LogError::Damaged(seq))?;
                Head { seq, hash: record.hash, time: Some(decoded.event.time) }
            }
        };
        for item in self.events.range(key(seq.next())..) {
            let (k, _) = item?;
            self.events.remove(k)?;
        }
        self.head = head;
        self.commit()
    }

    /// A read handle that other threads can use while this one writes.
    pub fn reader(&self) -> Reader {
        Reader { events: self.events.clone() }
    }

    /// Overwrites a stored record's event bytes without touching its hash,
    /// as an attacker with disk access would. For tamper tests only.
    #[doc(hidden)]
    pub fn tamper(&mut self, seq: Seq, f: impl FnOnce(&mut Vec<u8>)) -> Result<(), LogError> {
        let v = self.events.get(key(seq))?.ok_or(LogError::Damaged(seq))?;
        let mut bytes = v[HASH_LEN..].to_vec();
        f(&mut bytes);
        let mut value = v[..HASH_LEN].to_vec();
        value.extend_from_slice(&bytes);
        self.events.insert(key(seq), value)?;
        self.commit()
    }
}

/// Reads the log from any thread. sled trees are safe to share: a reader
/// sees every event staged before its call.
#[derive(Clone)]
pub struct Reader {
    events: sled::Tree,
}

impl Reader {
    /// Records from `from` (inclusive) up to `to` (inclusive, or the end).
    pub fn read(&self, from: Seq, to: Option<Seq>) -> impl Iterator<Item = Result<Record, LogError>> + use<> {
        let range = match to {
            Some(to) => self.events.range(key(from)..=key(to)),
            None => self.events.range(key(from)..),
        };
        range.map(|item| {
            let (k, v) = item?;
            let seq = Seq(u64::from_be_bytes(k.as_ref().try_into().map_err(|_| LogError::Damaged(Seq(0)))?));
            to_record(seq, v)
        })
    }

    pub fn get(&self, seq: Seq) -> Result<Option<Record>, LogError> {
        self.events.get(key(seq))?.map(|v| to_record(seq, v)).transpose()
    }
}

/// sled's page cache. The projections live in memory anyway; the log is
/// read back only for audit answers, `as_of` and the outbox, which read
/// recent events: a small cache keeps the registry's memory flat as the
/// log grows (the soak test's measure), at no cost to appends.
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// Opens sled. sled takes an exclusive `flock` on its data file and fails
/// at once if it cannot, so a failure to open is retried for a while: a
/// handle dropped a moment ago in this process, or a child process between
/// fork and exec (it holds a copy of every open file), may hold it still.
fn open_db(dir: &Path) -> Result<sled::Db, sled::Error> {
    let config = sled::Config::new().path(dir).cache_capacity(CACHE_BYTES);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match config.open() {
            Err(sled::Error::Io(_)) if Instant::now() < deadline && !unlocked(dir) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Whether nothing holds the lock on the log in `dir` (a log not made yet
/// is free).
fn unlocked(dir: &Path) -> bool {
    match File::open(data_file_path(dir)) {
        Ok(f) => f.try_lock().is_ok(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Waits, at most `limit`, until nothing holds sled's lock on the log in
/// `dir`; true once it is free. `Registry::close` uses it, so a closed
/// registry's dir opens again at once.
pub fn wait_unlocked(dir: &Path, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let free = unlocked(dir);
        if free || Instant::now() >= deadline {
            return free;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn to_record(seq: Seq, v: sled::IVec) -> Result<Record, LogError> {
    if v.len() < HASH_LEN {
        return Err(LogError::Damaged(seq));
    }
    let hash = ChainHash(v[..HASH_LEN].try_into().map_err(|_| LogError::Damaged(seq))?);
    Ok(Record { seq, hash, bytes: v })
}

/// sled 0.34 keeps its log-structured pages in one file, `db`, beside `conf`
/// and `snap.*`; the snapshot is derived and rebuilt from `db` on recovery.
fn data_file_path(dir: &Path) -> PathBuf {
    dir.join("db")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{Change, OrgSettings};
    use crate::domain::history::History;
    use crate::domain::id::{Actor, IdGenerator, OrgId};

    fn event(n: u32) -> Event {
        let time = Timestamp::from_micros(1_000_000 + n as i64);
        Event {
            id: IdGenerator::default().event_id(time),
            time,
            org: OrgId::parse("acme").unwrap(),
            actor: Actor::system("test"),
            via: None,
            batch_rest: 0,
            change: Change::OrgUpdated(OrgSettings {
                name: format!("Acme {n}"),
                max_keys: 5,
                ..OrgSettings::default()
            }),
        }
    }

    #[test]
    fn appends_chain_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path()).unwrap();
        for n in 0..5 {
            log.stage(&event(n)).unwrap();
        }
        log.commit().unwrap();
        let head = log.head();
        assert_eq!(head.seq, Seq(5));
        drop(log);
        let log = Log::open(dir.path()).unwrap();
        assert_eq!(log.head(), head);
        let report = check(&log.reader());
        assert!(report.ok, "{report:?}");
        assert_eq!((report.events, report.head_hash), (5, head.hash));
        let seqs: Vec<u64> = log.reader().read(Seq(2), Some(Seq(4))).map(|r| r.unwrap().seq.0).collect();
        assert_eq!(seqs, [2, 3, 4]);
    }

    fn check(reader: &Reader) -> crate::domain::chain::ChainReport {
        let mut history = History::new(());
        for r in reader.read(Seq(1), None) {
            let r = r.unwrap();
            if history.push(r.seq, r.bytes(), Some(r.hash)).is_err() {
                break;
            }
        }
        history.report()
    }

    #[test]
    fn a_changed_byte_is_named_by_its_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path()).unwrap();
        for n in 0..4 {
            log.stage(&event(n)).unwrap();
        }
        log.commit().unwrap();
        log.tamper(Seq(3), |b| {
            let at = b.len() - 20;
            b[at] = if b[at] == b'5' { b'6' } else { b'5' };
        })
        .unwrap();
        let report = check(&log.reader());
        assert!(!report.ok);
        assert_eq!(report.first_bad_seq, Some(Seq(3)));
        assert_eq!(report.head_seq, Seq(2));
    }
}
