//! The registry: a data dir, its log, the projections folded from it, and
//! the single writer (`writer.rs`) that turns commands into durable events.
//!
//! Readers (verify, listings) take the projections' read lock for the
//! length of a lookup and never touch the disk. Readers may see a batch's
//! events a few milliseconds before its commit returns; no caller has been
//! told of them yet, and if the commit fails the registry refuses writes
//! until a restart rebuilds it from what is on disk.
//!
//! Opening folds the log through the chain checker (`history.rs`), from the
//! newest snapshot that checks out when there is one: then only the events
//! after it are applied, and the chain before it is checked by the writer
//! thread before it takes its first command (reads are served meanwhile,
//! writes wait, `/readyz` says the check is running). A log whose chain
//! breaks opens anyway, with the projections as they stood just before the
//! break, and refuses every write: `broken()` names the sequence, so the
//! operator learns of it from `/readyz` rather than from a registry that
//! will not start.
//!
//! (Over 450 lines: the handle answers every question the edges ask of the
//! registry, one small method each; opening from a snapshot is in
//! `snapshot.rs`, the writer in `writer.rs`, stream commit in `confirm.rs`,
//! a node's role among several in `role.rs`, the background check of the
//! chain in `check.rs`, outcomes and dry runs in `outcome.rs`, the errors
//! in `error.rs`.)

mod check;
mod confirm;
mod error;
mod history;
mod outcome;
mod past;
mod rate;
mod role;
mod snapshot;
mod transparency;
mod writer;

pub use check::ReadError;
pub use confirm::{Confirm, Unconfirmed};
pub use error::{ExecError, OpenError};
pub use outcome::Outcome;
pub use rate::OrgRate;
pub use role::{Followed, Leader, NodeRole};
pub use transparency::TreeError;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

pub use history::{PROGRESS_EVERY, fold_log};

use crate::domain::audit::AuditIndex;
use crate::domain::chain::{ChainBreak, ChainReport};
use crate::domain::command::{Acting, Command, Expiry, NewKey, NewSecret};
use crate::domain::event::Event;
use crate::domain::history::{Apply, History};
use crate::domain::id::{Actor, IdGenerator, KeyId, OrgId, Seq};
use crate::domain::merkle::{Tree, leaf_hash};
use crate::domain::scope::Scope;
use crate::domain::table::Table;
use crate::domain::time::{Clock, Timestamp};
use crate::domain::token::{Pepper, Token, TokenFormat};
use crate::store::log::{Head, Log, LogError, Reader};
use crate::store::{CommitMark, DataDir};
use snapshot::{fold_projections, write_snapshot};
use writer::{Job, Work, Writer};

/// Scopes of the first key `keyreg init` (and `keyreg recover`) makes in
/// the system org: every management permission.
pub const SYSTEM_ADMIN_SCOPES: &[&str] = &crate::domain::permission::MANAGEMENT;
/// Scopes of the first key of every new organization.
pub const ORG_ADMIN_SCOPES: &[&str] = &["keys:admin", "keys:read", "audit:read", "roles:admin", "actors:assert"];

/// The live projections: the key table and the audit index, always at the
/// same sequence, and the Merkle tree over every stored event (ahead of
/// them only by a decision's events still arriving).
#[derive(Clone, Default)]
pub struct Projections {
    pub table: Table,
    pub audit: AuditIndex,
    pub tree: Tree,
}

impl Projections {
    pub fn apply(&mut self, seq: Seq, event: &Event) {
        self.table.apply(seq, event);
        self.audit.apply(seq, event);
    }
}

impl Apply for Projections {
    fn apply(&mut self, seq: Seq, event: &Event) {
        Projections::apply(self, seq, event);
    }

    fn stored(&mut self, _: Seq, bytes: &[u8]) {
        self.tree.push(leaf_hash(bytes));
    }
}

pub struct Config {
    pub clock: Arc<dyn Clock>,
    pub format: TokenFormat,
    /// A snapshot is taken each time the log passes a multiple of this
    /// many events (and on a clean stop).
    pub snapshot_every: u64,
    /// How fast each tenant may grow the log (`rate`).
    pub org_rate: OrgRate,
    /// How long the background check of the chain waits before it starts:
    /// a test seam, so a test can see the node ready before the check ends.
    pub check_delay: Duration,
    /// The name of the log's signing key, and so its checkpoints' origin,
    /// when the data dir has no key yet (`keyreg init`).
    pub log_origin: String,
}

impl Config {
    pub fn new(clock: Arc<dyn Clock>, format: TokenFormat) -> Config {
        Config {
            clock,
            format,
            snapshot_every: 100_000,
            org_rate: OrgRate::UNLIMITED,
            check_delay: Duration::ZERO,
            log_origin: transparency::DEFAULT_ORIGIN.to_owned(),
        }
    }
}

struct Shared {
    projections: RwLock<Projections>,
    /// A read handle on the log; the writer thread owns the write side.
    log: Reader,
    clock: Arc<dyn Clock>,
    pepper: Pepper,
    format: TokenFormat,
    /// Set when a commit failed: the registry refuses writes until restarted.
    failed: AtomicBool,
    /// Stream commit, when the node has it (`confirm.rs`).
    confirm: RwLock<Option<Arc<dyn Confirm>>>,
    /// True while the end of the log may hold events the stream has not
    /// confirmed: the writer settles them before it takes a write.
    unsettled: AtomicBool,
    /// True while the end of the log holds events acknowledged before
    /// stream commit began (local commit): settling publishes them, and
    /// only then records in the data dir that the node commits to the
    /// stream.
    tail_acknowledged: AtomicBool,
    dir: DataDir,
    /// The last event the stream confirmed, as far as this node knows: no
    /// settling ever cuts below it.
    confirmed_floor: AtomicU64,
    /// Set when the stream holds something the log does not: writes stop.
    diverged: OnceLock<String>,
    /// Where the stored chain breaks, if it does: writes are refused. Set
    /// at open, or by the writer's check of the chain before a snapshot.
    broken: OnceLock<ChainBreak>,
    /// False while the chain before the loaded snapshot is being checked
    /// (`check.rs`).
    chain_checked: AtomicBool,
    /// The sealed "checked through" mark, as trusted at open or last
    /// written (`check.rs`).
    mark: check::Mark,
    /// The background check of the chain, while it runs.
    checking: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set by `close`: the background check stops.
    stopping: AtomicBool,
    /// Where snapshots are written, and how often.
    snapshots: std::path::PathBuf,
    snapshot_every: u64,
    /// The periodic snapshot being written, if one is: the writer starts no
    /// other meanwhile, and `close` waits for it (it reads the log).
    snapshotting: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The sequence of the last snapshot written since opening (0: none),
    /// for the task that publishes them to replicas.
    snapshot_written: Arc<watch::Sender<Seq>>,
    /// Ids must increase in creation order across all callers.
    ids: Mutex<IdGenerator>,
    /// Each tenant's allowance of events and bytes per minute (the writer
    /// keeps the buckets).
    org_rate: OrgRate,
    /// The last sequence applied to the projections, for callers that wait
    /// to read their own writes (`min_seq`).
    applied: watch::Sender<Seq>,
    /// The last event made durable: the outbox publishes up to here and
    /// never further, so NATS never carries an event the log could lose.
    /// Kept in memory so that health checks never read the disk.
    committed: watch::Sender<Head>,
    /// Leading or standing by, with several nodes (`role.rs`).
    node: role::NodeState,
    /// The log's signing key and the newest checkpoint (`transparency.rs`).
    checkpoints: transparency::Checkpoints,
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, Projections> {
        self.projections.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn confirm(&self) -> Option<Arc<dyn Confirm>> {
        self.confirm.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// A handle on an open registry; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
    writer: Arc<Writer>,
    dir: DataDir,
}

impl Registry {
    /// Makes a new data dir: pepper, log, the `_system` org and its first
    /// key. Returns the open registry and that key's secret.
    pub fn init(dir: &DataDir, config: Config) -> Result<(Registry, Token), OpenError> {
        dir.create(&Pepper::generate())?;
        let registry = Registry::open(dir, config)?;
        let token = registry.shared.format.generate();
        let admin = registry.new_key(
            &token,
            "init",
            "the first key of the system org, made by keyreg init",
            SYSTEM_ADMIN_SCOPES,
        );
        let command = Command::Init { admin, pepper: registry.shared.pepper.fingerprint() };
        registry
            .execute_blocking(Actor::system("init"), OrgId::system(), command)
            .map_err(|e| OpenError::Init(e.to_string()))?;
        Ok((registry, token))
    }

    /// `keyreg recover`: opens a stopped registry's data dir and adds a new
    /// `_system` key holding every management permission (as `init`'s
    /// first key), recorded as the work of `system:recovery`. Returns the open registry and the key's secret.
    pub fn recover(dir: &DataDir, config: Config) -> Result<(Registry, Token), OpenError> {
        if dir.commit_mark() == CommitMark::Stream {
            return Err(OpenError::Unsettled(dir.path().display().to_string()));
        }
        let registry = Registry::open(dir, config)?;
        let token = registry.shared.format.generate();
        let admin = registry.new_key(&token, "recovery", "a system key made by keyreg recover", &[]);
        registry
            .execute_blocking(Actor::system("recovery"), OrgId::system(), Command::Recover(admin))
            .map_err(|e| OpenError::Init(e.to_string()))?;
        Ok((registry, token))
    }

    /// Opens an initialised data dir and folds its log into the
    /// projections, checking the chain on the way.
    pub fn open(dir: &DataDir, config: Config) -> Result<Registry, OpenError> {
        let pepper = dir.pepper()?;
        let log = Log::open(&dir.log_path())?;
        if dir.restrict()? {
            tracing::warn!(
                dir = %dir.path().display(),
                "the data dir was open to other users; restricted it to its owner (dirs 0700, files 0600)"
            );
        }
        let (history, unchecked) = fold_projections(&dir.snapshots_path(), &pepper, &log.reader(), None)?;
        let recorded = history.state().table.pepper_fingerprint();
        if recorded.is_some_and(|fp| fp != pepper.fingerprint()) {
            return Err(OpenError::WrongPepper(dir.path().display().to_string()));
        }
        let broken = OnceLock::new();
        match history.broken().cloned() {
            Some(b) => {
                tracing::error!(seq = %b.seq, why = %b.why, "the stored chain is broken; refusing writes");
                let _ = broken.set(b);
            }
            None => tracing::info!(head = %log.head().seq, "log opened"),
        }
        let applied = history.head().0;
        let shared = Arc::new(Shared {
            projections: RwLock::new(history.into_state()),
            log: log.reader(),
            clock: config.clock,
            pepper,
            format: config.format,
            failed: AtomicBool::new(false),
            confirm: RwLock::new(None),
            unsettled: AtomicBool::new(false),
            tail_acknowledged: AtomicBool::new(false),
            dir: dir.clone(),
            confirmed_floor: AtomicU64::new(0),
            diverged: OnceLock::new(),
            broken,
            chain_checked: AtomicBool::new(unchecked.is_none()),
            mark: Arc::default(),
            checking: Mutex::new(None),
            stopping: AtomicBool::new(false),
            snapshots: dir.snapshots_path(),
            snapshot_every: config.snapshot_every.max(1),
            snapshotting: Mutex::new(None),
            snapshot_written: Arc::new(watch::Sender::new(Seq(0))),
            ids: Mutex::new(IdGenerator::default()),
            org_rate: config.org_rate,
            applied: watch::Sender::new(applied),
            committed: watch::Sender::new(log.head()),
            node: role::NodeState::default(),
            checkpoints: transparency::Checkpoints::new(transparency::log_key(dir, &config.log_origin)?),
        });
        // The chain a snapshot stands for is checked in the background,
        // from the sealed mark on; without a snapshot, opening checked it all.
        let trusted = check::trusted_mark(&shared);
        *shared.mark.lock().unwrap_or_else(PoisonError::into_inner) = trusted;
        match (unchecked, trusted) {
            (Some(u), Some((seq, _))) if seq >= u.seq => shared.chain_checked.store(true, Ordering::Relaxed),
            (Some(u), _) => check::start(shared.clone(), u, config.check_delay).map_err(OpenError::Thread)?,
            (None, _) if shared.broken.get().is_none() && applied.0 > 0 => {
                let head = log.head();
                check::mark(&shared, head.seq, head.hash);
            }
            (None, _) => {}
        }
        let writer = Writer::start(log, shared.clone()).map_err(OpenError::Thread)?;
        let registry = Registry { shared, writer: Arc::new(writer), dir: dir.clone() };
        let made_before_fingerprints = recorded.is_none() && registry.read().table.org(&OrgId::system()).is_some();
        if made_before_fingerprints && registry.refusing_writes().is_none() {
            let record = Command::RecordPepper(registry.shared.pepper.fingerprint());
            let outcome = registry
                .execute_blocking(Actor::system("upgrade"), OrgId::system(), record)
                .map_err(|e| OpenError::Init(format!("cannot record the pepper's fingerprint: {e}")))?;
            tracing::warn!(
                seq = %outcome.head,
                "this data dir was made before keyreg recorded its pepper's fingerprint; recorded it now"
            );
        }
        Ok(registry)
    }

    /// Closes the registry: queued commands are committed and answered, the
    /// writer stops, and this returns once the log's lock is released, so
    /// the data dir can be opened again at once (dropping the last handle
    /// also closes, but sled releases its lock when it gets round to it).
    /// Other handles still in use make this an error.
    pub fn close(self) -> Result<(), OpenError> {
        let Registry { shared, writer, dir } = self;
        // Every handle holds the writer; the writer thread holds `shared`.
        if Arc::strong_count(&writer) > 1 {
            return Err(OpenError::Init("close: other handles on this registry are still open".into()));
        }
        shared.stopping.store(true, Ordering::Relaxed);
        let checking = shared.checking.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(t) = checking {
            let _ = t.join();
        }
        writer.stop();
        let periodic = shared.snapshotting.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(t) = periodic {
            let _ = t.join();
        }
        if shared.broken.get().is_none() && !shared.failed.load(Ordering::Relaxed) {
            write_snapshot(&shared);
        }
        if shared.confirm().is_some() && !shared.unsettled.load(Ordering::Relaxed) {
            // Stopped with every event confirmed: what the log holds was
            // all acknowledged.
            if let Err(e) = dir.set_commit_mark(CommitMark::StreamSettled) {
                tracing::warn!(error = %e, "cannot record the clean stop; the next start settles with the stream");
            }
        }
        drop((writer, shared));
        crate::store::log::wait_unlocked(&dir.log_path(), Duration::from_secs(10))
            .then_some(())
            .ok_or_else(|| OpenError::StillLocked(dir.path().display().to_string()))
    }

    pub fn pepper(&self) -> &Pepper {
        &self.shared.pepper
    }

    pub fn format(&self) -> &TokenFormat {
        &self.shared.format
    }

    pub fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }

    /// The live projections, read-locked. Hold the guard only for a lookup.
    pub fn read(&self) -> RwLockReadGuard<'_, Projections> {
        self.shared.read()
    }

    pub fn log(&self) -> &Reader {
        &self.shared.log
    }

    /// Why the registry refuses writes, if it does: a broken chain found at
    /// start, or a failed commit.
    pub fn refusing_writes(&self) -> Option<String> {
        if let Some(b) = self.shared.broken.get() {
            return Some(format!(
                "{b}; run `keyreg audit verify` on the data dir (the registry refuses writes until the log is repaired)"
            ));
        }
        if let Some(why) = self.shared.diverged.get() {
            return Some(format!("{why}; the node takes no write until an operator has looked"));
        }
        self.shared.failed.load(Ordering::Relaxed).then(|| "an earlier commit failed; restart the registry".to_owned())
    }

    /// Where the stored chain breaks, if it does.
    pub fn broken(&self) -> Option<&ChainBreak> {
        self.shared.broken.get()
    }

    /// Whether the whole chain has been checked since the registry opened
    /// (the part a snapshot stands for is checked after start-up).
    pub fn chain_checked(&self) -> bool {
        self.shared.chain_checked.load(Ordering::Relaxed)
    }

    /// Waits until the projections have applied `seq`, at most `timeout`.
    pub async fn wait_applied(&self, seq: Seq, timeout: Duration) -> bool {
        let mut rx = self.shared.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= seq)).await.is_ok_and(|r| r.is_ok())
    }

    /// The last durable event.
    pub fn head(&self) -> Head {
        *self.shared.committed.borrow()
    }

    /// Follows the last durable event.
    pub fn committed(&self) -> watch::Receiver<Head> {
        self.shared.committed.subscribe()
    }

    /// Follows the snapshots written since opening (their sequences).
    pub fn snapshots_written(&self) -> watch::Receiver<Seq> {
        self.shared.snapshot_written.subscribe()
    }

    /// The newest snapshot on disk, as the table alone, sealed: what
    /// replicas start from. Reads the whole file.
    pub fn newest_table_snapshot(&self) -> Option<(Seq, Vec<u8>)> {
        snapshot::newest_table(&self.shared.snapshots, &self.shared.pepper)
    }

    /// A `NewKey` for a fresh token, with a new id.
    pub fn new_key(&self, token: &Token, name: &str, description: &str, scopes: &[&str]) -> NewKey {
        NewKey {
            id: self.next_key_id(),
            secret: self.secret_of(token),
            name: name.to_owned(),
            description: description.to_owned(),
            owner: String::new(),
            scopes: scopes.iter().filter_map(|s| Scope::parse(s).ok()).collect(),
            roles: vec![],
            allowed_cidrs: vec![],
            expiry: Expiry::Never,
            meta: None,
        }
    }

    pub fn secret_of(&self, token: &Token) -> NewSecret {
        NewSecret { hash: token.hash(&self.shared.pepper), display_prefix: token.display_prefix() }
    }

    pub fn next_key_id(&self) -> KeyId {
        self.shared.ids.lock().unwrap_or_else(PoisonError::into_inner).key_id(self.now())
    }

    /// Decides and records `command`; returns once its events are durable.
    pub async fn execute(&self, who: impl Into<Acting>, org: OrgId, command: Command) -> Result<Outcome, ExecError> {
        self.shared.node.started().await;
        let rx = self.submit(who.into(), org, command)?;
        rx.await.map_err(|_| ExecError::Unavailable("the writer stopped".into()))?
    }

    /// `execute` for callers outside an async runtime.
    pub fn execute_blocking(&self, who: impl Into<Acting>, org: OrgId, command: Command) -> Result<Outcome, ExecError> {
        let rx = self.submit(who.into(), org, command)?;
        rx.blocking_recv().map_err(|_| ExecError::Unavailable("the writer stopped".into()))?
    }

    fn submit(
        &self,
        who: Acting,
        org: OrgId,
        command: Command,
    ) -> Result<oneshot::Receiver<Result<Outcome, ExecError>>, ExecError> {
        if let Some(why) = self.refusing_writes() {
            return Err(ExecError::Unavailable(why));
        }
        if let Some(e) = self.shared.node.not_leading() {
            return Err(e);
        }
        let (reply, rx) = oneshot::channel();
        if !self.writer.submit(Work::Command(Box::new(Job { who, org, command, reply }))) {
            return Err(ExecError::Unavailable("the writer stopped".into()));
        }
        Ok(rx)
    }

    /// Checks the whole stored chain (blocking: it reads the whole log).
    pub fn check_chain(&self) -> Result<ChainReport, LogError> {
        let mut history = History::new(());
        fold_log(&self.shared.log, &mut history, None, |_| {})?;
        Ok(history.report())
    }
}

/// Lowers the calling thread's priority to the least (nice 19). The
/// snapshot and the chain check are seconds of work beside a writer whose
/// acknowledgements are waited for: on two cores, a snapshot at normal
/// priority made appends' p99 ×8.8. On Linux each thread has its own nice
/// value; elsewhere this does nothing.
#[allow(unsafe_code)]
pub(super) fn yield_to_writes() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain integers in, an integer out; `who = 0` is the calling
    // thread, whose scheduling is all that changes.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}
