//! The registry core: a data dir, its log, the projections built from it, and
//! the single writer that turns commands into durable events.
//!
//! Writes go through one thread (`writer`), which owns the `Log`. It takes
//! every command waiting in its queue, decides each against the live table,
//! stages the resulting events and applies them, then commits once for the
//! whole batch and only then answers the callers: group commit, so 64
//! concurrent writers cost one flush, not 64. Readers (verify, listings)
//! take the table's read lock for the length of a lookup and never touch
//! the disk.
//!
//! Readers may see a batch's events a few milliseconds before its commit
//! returns. No caller has been told of them yet; if the commit fails the
//! registry stops serving writes and must be restarted, which rebuilds the
//! table from what is on disk.
//!
//! Data dir layout: `DIR/pepper` (32 bytes, 0600) and `DIR/log/` (sled).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::audit::AuditIndex;
use crate::command::{self, Command, Context, Decision, NewKey, NewSecret, Refusal};
use crate::event::{self, Event};
use crate::id::{Actor, IdGenerator, KeyId, OrgId, Seq};
use crate::log::{Head, Log, LogError, Record};
use crate::projection::{Key, Org, Table};
use crate::scope::Scope;
use crate::time::{Clock, Timestamp};
use crate::token::{Pepper, PepperError, Token, TokenFormat};

/// Scopes of the first key `keyreg init` makes in the system org.
pub const SYSTEM_ADMIN_SCOPES: &[&str] = &["orgs:create", "keys:admin", "keys:read", "audit:read"];
/// Scopes of the first key of every new organization.
pub const ORG_ADMIN_SCOPES: &[&str] = &["keys:admin", "keys:read", "audit:read"];

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0} is already initialised (it has a pepper or a log); nothing was changed")]
    AlreadyInitialised(String),
    #[error("{0} is not an initialised keyreg data dir: run `keyreg init --data {0}` first")]
    NotInitialised(String),
    #[error("cannot create the data dir {dir}: {source}")]
    CreateDir { dir: String, source: std::io::Error },
    #[error(transparent)]
    Pepper(#[from] PepperError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("the stored event at sequence {seq} cannot be read: {why}; run `keyreg audit verify` on this data dir")]
    BadEvent { seq: Seq, why: String },
    #[error("initialising failed: {0}")]
    Init(String),
}

/// Why a command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Refused by the rules; nothing was recorded.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The log could not make the events durable, or the writer has stopped.
    /// Nothing was acknowledged; whether the events survive is decided by
    /// what reached the disk, and a restart will tell.
    #[error("the log is unavailable: {0}")]
    Unavailable(String),
}

/// What a command did: its events with their sequence numbers, and the state
/// after it of every key it touched and of its organization.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub events: Vec<(Seq, Event)>,
    pub keys: Vec<Key>,
    pub org: Option<Org>,
    /// The log head after the command (for a command that recorded nothing,
    /// the head when it was decided).
    pub head: Seq,
}

/// The live projections: the key table and the audit index, always at the
/// same sequence.
#[derive(Default)]
pub struct Projections {
    pub table: Table,
    pub audit: AuditIndex,
}

impl Projections {
    pub fn apply(&mut self, seq: Seq, event: &Event) {
        self.table.apply(seq, event);
        self.audit.apply(seq, event);
    }
}

pub struct Config {
    pub clock: Arc<dyn Clock>,
    pub format: TokenFormat,
}

struct Job {
    actor: Actor,
    org: OrgId,
    command: Command,
    reply: oneshot::Sender<Result<Outcome, ExecError>>,
}

struct Shared {
    projections: RwLock<Projections>,
    /// A read handle on the log; the writer thread owns the write side.
    log: crate::log::Reader,
    clock: Arc<dyn Clock>,
    pepper: Pepper,
    format: TokenFormat,
    /// Set when a commit failed: the registry refuses writes until restarted.
    failed: AtomicBool,
    /// Ids must increase in creation order across all callers.
    ids: Mutex<IdGenerator>,
    /// The last sequence applied to the projections, for callers that wait
    /// to read their own writes (`min_seq`).
    applied: tokio::sync::watch::Sender<Seq>,
    /// The last sequence made durable: the outbox publishes up to here and
    /// never further, so NATS never carries an event the log could lose.
    committed: tokio::sync::watch::Sender<Seq>,
}

/// A handle on an open registry; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
    writer: Arc<Writer>,
}

/// The queue into the writer thread, and the thread itself so that dropping
/// the last handle waits for the last commit.
struct Writer {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

fn log_dir(dir: &Path) -> PathBuf {
    dir.join("log")
}

fn pepper_path(dir: &Path) -> PathBuf {
    dir.join("pepper")
}

impl Registry {
    /// Makes a new data dir: pepper, log, the `_system` org and its first
    /// key. Returns the open registry and that key's secret.
    pub fn init(dir: &Path, config: Config) -> Result<(Registry, Token), OpenError> {
        let shown = dir.display().to_string();
        if pepper_path(dir).exists() || log_dir(dir).exists() {
            return Err(OpenError::AlreadyInitialised(shown));
        }
        std::fs::create_dir_all(dir).map_err(|source| OpenError::CreateDir { dir: shown.clone(), source })?;
        Pepper::generate().save_new(&pepper_path(dir))?;
        let registry = Registry::open(dir, config)?;
        let token = registry.shared.format.generate();
        let admin = registry.new_key(
            &token,
            "init",
            "the first key of the system org, made by keyreg init",
            SYSTEM_ADMIN_SCOPES,
        );
        let command = Command::CreateOrg { id: OrgId::system(), name: "System".into(), max_keys: None, admin };
        registry
            .execute_blocking(Actor::system("init"), OrgId::system(), command)
            .map_err(|e| OpenError::Init(e.to_string()))?;
        Ok((registry, token))
    }

    /// Opens an initialised data dir and rebuilds the projections from its log.
    pub fn open(dir: &Path, config: Config) -> Result<Registry, OpenError> {
        if !pepper_path(dir).exists() {
            return Err(OpenError::NotInitialised(dir.display().to_string()));
        }
        let pepper = Pepper::load(&pepper_path(dir))?;
        let log = Log::open(&log_dir(dir))?;
        let projections = rebuild(&log.reader(), None, |n| tracing::info!(events = n, "replaying the log"))?;
        tracing::info!(head = %log.head().seq, "log opened");
        let shared = Arc::new(Shared {
            projections: RwLock::new(projections),
            log: log.reader(),
            clock: config.clock,
            pepper,
            format: config.format,
            failed: AtomicBool::new(false),
            ids: Mutex::new(IdGenerator::default()),
            applied: tokio::sync::watch::Sender::new(log.head().seq),
            committed: tokio::sync::watch::Sender::new(log.head().seq),
        });
        let (tx, rx) = mpsc::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("keyreg-writer".into())
            .spawn(move || write_loop(log, &thread_shared, rx))
            .map_err(|e| OpenError::Init(format!("cannot start the writer thread: {e}")))?;
        let writer = Arc::new(Writer { tx: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)) });
        Ok(Registry { shared, writer })
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
        self.shared.projections.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn log(&self) -> &crate::log::Reader {
        &self.shared.log
    }

    /// False once a commit has failed: writes are refused until a restart.
    pub fn healthy(&self) -> bool {
        !self.shared.failed.load(Ordering::Relaxed)
    }

    /// Waits until the projections have applied `seq`, at most `timeout`.
    pub async fn wait_applied(&self, seq: Seq, timeout: std::time::Duration) -> bool {
        let mut rx = self.shared.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= seq)).await.is_ok_and(|r| r.is_ok())
    }

    /// Follows the last durable sequence.
    pub fn committed(&self) -> tokio::sync::watch::Receiver<Seq> {
        self.shared.committed.subscribe()
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
            allowed_cidrs: vec![],
            expires_at: None,
        }
    }

    pub fn secret_of(&self, token: &Token) -> NewSecret {
        NewSecret { hash: token.hash(&self.shared.pepper), display_prefix: token.display_prefix() }
    }

    pub fn next_key_id(&self) -> KeyId {
        self.shared.ids.lock().unwrap_or_else(|e| e.into_inner()).key_id(self.now())
    }

    /// Decides and records `command`; returns once its events are durable.
    pub async fn execute(&self, actor: Actor, org: OrgId, command: Command) -> Result<Outcome, ExecError> {
        let rx = self.submit(actor, org, command)?;
        rx.await.map_err(|_| ExecError::Unavailable("the writer stopped".into()))?
    }

    /// `execute` for callers outside an async runtime.
    pub fn execute_blocking(&self, actor: Actor, org: OrgId, command: Command) -> Result<Outcome, ExecError> {
        let rx = self.submit(actor, org, command)?;
        rx.blocking_recv().map_err(|_| ExecError::Unavailable("the writer stopped".into()))?
    }

    fn submit(
        &self,
        actor: Actor,
        org: OrgId,
        command: Command,
    ) -> Result<oneshot::Receiver<Result<Outcome, ExecError>>, ExecError> {
        if !self.healthy() {
            return Err(ExecError::Unavailable("an earlier commit failed; restart the registry".into()));
        }
        let (reply, rx) = oneshot::channel();
        let tx = self.writer.tx.lock().unwrap_or_else(|e| e.into_inner());
        let sent = tx.as_ref().map(|tx| tx.send(Job { actor, org, command, reply }).is_ok());
        if sent != Some(true) {
            return Err(ExecError::Unavailable("the writer stopped".into()));
        }
        Ok(rx)
    }

    /// What `command` would do, decided against the live table and applied
    /// to a scratch copy: nothing is recorded. For `?dry_run=true`.
    pub fn preview(&self, actor: Actor, org: OrgId, command: &Command) -> Result<Outcome, Refusal> {
        let p = self.read();
        let now = self.now().max(p.table.last_time().unwrap_or(Timestamp::from_micros(i64::MIN)));
        let ctx = Context { actor: actor.clone(), org: org.clone(), now };
        let decision = command::decide(&p.table, &ctx, command)?;
        let touched: Vec<KeyId> = decision
            .changes
            .iter()
            .filter_map(|c| match c {
                event::Change::Key(id, _) => Some(*id),
                _ => None,
            })
            .collect();
        let mut scratch = p.table.scratch(&decision.org, &touched);
        let mut ids = IdGenerator::default();
        let mut events = vec![];
        let mut seq = p.table.applied();
        for change in decision.changes {
            seq = seq.next();
            let event =
                Event { id: ids.event_id(now), time: now, org: decision.org.clone(), actor: actor.clone(), change };
            scratch.apply(seq, &event);
            events.push((seq, event));
        }
        Ok(outcome(&scratch, &decision.org, events, p.table.applied()))
    }

    /// The key table as it stood at `at`: the log replayed up to the last
    /// event at or before `at`.
    pub fn table_as_of(&self, at: Timestamp) -> Result<Table, OpenError> {
        let last = self.read().audit.last_seq_at(at);
        Ok(rebuild(&self.shared.log, Some(last), |_| {})?.table)
    }
}

/// Replays the log (up to `to`, inclusive) into fresh projections.
pub fn rebuild(
    log: &crate::log::Reader,
    to: Option<Seq>,
    mut progress: impl FnMut(u64),
) -> Result<Projections, OpenError> {
    let mut p = Projections::default();
    if to == Some(Seq(0)) {
        return Ok(p);
    }
    let mut n = 0u64;
    for record in log.read(Seq(1), to) {
        let record = record?;
        let decoded =
            event::decode(record.bytes()).map_err(|e| OpenError::BadEvent { seq: record.seq, why: e.to_string() })?;
        p.apply(record.seq, &decoded.event);
        n += 1;
        if n.is_multiple_of(100_000) {
            progress(n);
        }
    }
    Ok(p)
}

/// The state after `events` of the keys they touched and of `org`.
fn outcome(table: &Table, org: &OrgId, events: Vec<(Seq, Event)>, before: Seq) -> Outcome {
    let mut keys: Vec<Key> = vec![];
    for (_, e) in &events {
        if let Some(id) = e.key_id()
            && !keys.iter().any(|k| &k.id == id)
            && let Some(k) = table.key(id)
        {
            keys.push(k.clone());
        }
    }
    let head = events.last().map(|(s, _)| *s).unwrap_or(before);
    Outcome { events, keys, org: table.org(org).cloned(), head }
}

/// The writer thread: batches jobs, decides, stages, commits once, answers.
fn write_loop(mut log: Log, shared: &Shared, rx: mpsc::Receiver<Job>) {
    const MAX_BATCH: usize = 4096;
    let mut ids = IdGenerator::default();
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut answers = Vec::with_capacity(jobs.len());
        let mut staged_any = false;
        let mut failure: Option<LogError> = None;
        {
            let mut p = shared.projections.write().unwrap_or_else(|e| e.into_inner());
            for job in jobs {
                if failure.is_some() {
                    answers.push((job.reply, Err(ExecError::Unavailable("the log failed".into()))));
                    continue;
                }
                let before = log.head();
                // Event times never go backwards, so "as of T" is a prefix of the log.
                let now = before.time.map_or(shared.clock.now(), |t| shared.clock.now().max(t));
                let ctx = Context { actor: job.actor, org: job.org, now };
                let result = match command::decide(&p.table, &ctx, &job.command) {
                    Err(refusal) => Err(ExecError::Refused(refusal)),
                    Ok(Decision { org, changes }) => {
                        let mut events = Vec::with_capacity(changes.len());
                        for change in changes {
                            let event = Event {
                                id: ids.event_id(now),
                                time: now,
                                org: org.clone(),
                                actor: ctx.actor.clone(),
                                change,
                            };
                            match log.stage(&event) {
                                Ok(Record { seq, .. }) => {
                                    p.apply(seq, &event);
                                    events.push((seq, event));
                                    staged_any = true;
                                }
                                Err(e) => {
                                    failure = Some(e);
                                    break;
                                }
                            }
                        }
                        match &failure {
                            Some(e) => Err(ExecError::Unavailable(e.to_string())),
                            None => Ok(outcome(&p.table, &org, events, before.seq)),
                        }
                    }
                };
                answers.push((job.reply, result));
            }
            shared.applied.send_replace(p.table.applied());
        }
        if failure.is_none() && staged_any {
            match log.commit() {
                Ok(()) => {
                    shared.committed.send_replace(log.head().seq);
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

/// The head of the log as the live projections know it.
impl Registry {
    pub fn head(&self) -> Head {
        self.shared.log.head()
    }
}
