//! Running the registry as a service: the HTTP server plus its background
//! duties: the expiry sweeper, the access-count flush, and with NATS the
//! outbox, the access-report ingest and the heartbeat. The entry takes its
//! listener and a shutdown future, so tests start it on any port and stop
//! it without signals.
//!
//! Shutdown order: stop accepting, let in-flight requests finish (their
//! writes are committed and answered), flush pending access counts, stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::access::AccessCounter;
use crate::console;
use crate::domain::command::Command;
use crate::domain::id::Actor;
use crate::domain::mac::MessageKeys;
use crate::http::listen::Limits;
use crate::http::{self, ApiOptions, AppState};
use crate::metrics::Metrics;
use crate::nats::commit::{self, StreamCommit};
use crate::nats::node::{self, NodeOptions};
use crate::nats::publisher::{self, OutboxStatus};
use crate::nats::{Connection, Nats, heartbeat, ingest, notices, reports, snapshots};
use crate::registry::{ExecError, Registry};
use crate::transparency;

#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// This node's name (in access reports and the lease), where the
    /// other nodes reach it, and how long its lease lasts.
    pub node: NodeOptions,
    /// How often pending access counts become `key.accessed` events.
    pub access_flush: Duration,
    /// How often the sweeper looks for keys past their expiry.
    pub sweep_every: Duration,
    /// Where to publish events and take access reports from; `None` runs
    /// without NATS (events wait in the log, the outbox, for later).
    pub nats: Option<Nats>,
    /// When a write is acknowledged (stream commit needs `nats`).
    pub commit: Commit,
    pub api: ApiOptions,
    /// How long a console session may stay unused (at most an hour).
    pub console_idle: Duration,
    pub limits: Limits,
    /// Witnesses (`http://` URLs) each new checkpoint is sent to.
    pub witnesses: Vec<String>,
    /// How often the leader looks for keys to send expiry notices about;
    /// zero sends none.
    pub notice_every: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            node: NodeOptions::default(),
            access_flush: Duration::from_secs(10),
            sweep_every: Duration::from_millis(250),
            nats: None,
            commit: Commit::Local,
            api: ApiOptions::default(),
            console_idle: Duration::from_secs(console::IDLE_SECONDS as u64),
            limits: Limits::default(),
            witnesses: Vec::new(),
            notice_every: Duration::from_secs(3600),
        }
    }
}

/// How long a node switching from stream to local commit waits for each
/// answer of the stream while it settles.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(2);

/// When a write is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit {
    /// Once sled made it durable; the outbox feeds NATS after.
    Local,
    /// Once sled and JetStream both stored it; JetStream silent for
    /// `timeout`: 503.
    Stream { timeout: Duration },
}

impl Commit {
    pub fn name(self) -> &'static str {
        match self {
            Commit::Local => "local",
            Commit::Stream { .. } => "stream",
        }
    }
}

pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let access = Arc::new(AccessCounter::new(&options.node.name, registry.now()));
    let mut node = options.node.clone();
    if node.url.is_empty() {
        node.url = format!("http://{}", listener.local_addr()?);
    }
    let outbox = options.nats.as_ref().map(|_| Arc::new(OutboxStatus::default()));
    let state = AppState {
        registry: registry.clone(),
        access: access.clone(),
        metrics: Arc::new(Metrics::default()),
        options: options.api.clone(),
        outbox: outbox.clone(),
        heavy: Arc::default(),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = vec![
        tokio::spawn(sweep(registry.clone(), options.sweep_every, stop_rx.clone())),
        tokio::spawn(flush_access(registry.clone(), access.clone(), options.access_flush, stop_rx.clone())),
    ];
    if options.nats.is_none() && registry.last_committed_to_stream() {
        return Err(std::io::Error::other(
            "this data dir last committed to the event stream, so replicas may take the stream as proof of \
             freshness; start it with --nats (it takes that mark off the stream before committing locally)",
        ));
    }
    let mut checkpoints_to = None;
    if let (Some(nats), Some(outbox)) = (options.nats, outbox) {
        match nats.connect().await {
            Ok(connection) => {
                checkpoints_to = Some((nats.clone(), connection.clone()));
                let duties =
                    nats_duties(&registry, &nats, connection.clone(), options.commit, &node, &outbox, &stop_rx);
                tasks.extend(duties.await?);
                let (n, c, k, r) =
                    (nats.clone(), connection.clone(), MessageKeys::new(registry.pepper()), registry.clone());
                tasks.push(tokio::spawn(notices::run(n, c, k, r, options.notice_every, stop_rx.clone())));
                tasks.push(tokio::spawn(publish_access(
                    registry.clone(),
                    nats,
                    connection,
                    access.clone(),
                    stop_rx.clone(),
                )));
            }
            Err(e) if options.commit != Commit::Local => return Err(std::io::Error::other(e)),
            Err(e) => tracing::error!(error = %e, "cannot use NATS; events wait in the log"),
        }
    }
    let witnesses = options.witnesses.clone();
    tasks.push(tokio::spawn(transparency::run(registry.clone(), witnesses, checkpoints_to, stop_rx.clone())));
    let result = http::listen::serve(listener, app(state, options.console_idle), options.limits, shutdown).await;
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    if registry.leads() {
        flush_once(&registry, &access).await;
    }
    result
}

/// A registry node's duties on NATS, started on `connection`: stream commit
/// with its lease among several nodes (or, under local commit, the
/// outbox), the access-report ingest, the snapshot publisher and the
/// heartbeat, each stopping when `stop` turns true. `serve` and the
/// benchmarks start a node this one way.
pub async fn nats_duties(
    registry: &Registry,
    nats: &Nats,
    connection: Connection,
    commit: Commit,
    me: &NodeOptions,
    outbox: &Arc<OutboxStatus>,
    stop: &watch::Receiver<bool>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let keys = MessageKeys::new(registry.pepper());
    let stream_commit = |timeout| {
        let (n, c, k, o) = (nats.clone(), connection.clone(), keys.clone(), outbox.clone());
        Arc::new(StreamCommit::new(n, c, k, timeout, o))
    };
    let mut tasks = vec![];
    match commit {
        Commit::Stream { timeout } => {
            nats.check_atomic_batches(&connection, Duration::from_secs(1)).await.map_err(std::io::Error::other)?;
            registry.join(&me.name);
            let (r, n, c, k) = (registry.clone(), nats.clone(), connection.clone(), keys.clone());
            tasks.push(tokio::spawn(node::run(r, n, c, k, stream_commit(timeout), me.clone(), stop.clone())));
        }
        Commit::Local => {
            if registry.last_committed_to_stream() {
                // Events the stream never confirmed are cut, not published;
                // then no replica may take the stream as proof any more.
                registry.commit_to(stream_commit(SWITCH_TIMEOUT));
                let deadline = tokio::time::Instant::now() + SWITCH_TIMEOUT * 15;
                while !registry.settled() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if !registry.settled() {
                    return Err(std::io::Error::other(
                        "this data dir committed to the event stream, and keyreg could not settle its log with \
                         the stream to switch to local commit: start it again when NATS answers, or with \
                         --commit stream",
                    ));
                }
                commit::unmark(nats, &connection).await.map_err(std::io::Error::other)?;
                registry.commit_locally()?;
            }
            let (log, committed) = (registry.log().clone(), registry.committed());
            let (n, c, k, o) = (nats.clone(), connection.clone(), keys.clone(), outbox.clone());
            tasks.push(tokio::spawn(publisher::run(n, c, k, log, committed, o, stop.clone())));
        }
    }
    let (n, c, k, r) = (nats.clone(), connection.clone(), keys.clone(), registry.clone());
    tasks.push(tokio::spawn(ingest::run(n, c, k, r, stop.clone())));
    let (c, n, k, r) = (connection.clone(), nats.clone(), keys.clone(), registry.clone());
    tasks.push(tokio::spawn(snapshots::run(c, n, k, r, stop.clone())));
    let (n, o, r) = (nats.clone(), outbox.clone(), registry.clone());
    tasks.push(tokio::spawn(heartbeat::run(n, connection, keys, o, r, stop.clone())));
    Ok(tasks)
}

/// The registry's router: the API, and the console beside it calling it.
pub fn app(state: AppState, console_idle: Duration) -> axum::Router {
    let api = http::api(state.clone());
    // A person who opens the registry's address finds the console.
    let root =
        axum::Router::new().route("/", axum::routing::get(|| async { axum::response::Redirect::to("/console") }));
    api.clone().merge(console::router(state, api, console_idle)).merge(root)
}

/// Records `key.expired` for every key whose expiry has passed.
async fn sweep(registry: Registry, every: Duration, mut stop: watch::Receiver<bool>) {
    let actor = Actor::system("sweeper");
    loop {
        let due = match registry.leads() {
            true => registry.read().table.due_to_expire(registry.now()),
            false => vec![],
        };
        for (org, id) in due {
            match registry.execute(actor.clone(), org, Command::Expire { id }).await {
                Ok(_) | Err(ExecError::Refused(_)) => {}
                // The others would meet the same; the next sweep tries again.
                Err(e) => {
                    tracing::debug!(key = %id, error = %e, "the sweeper could not record an expiry");
                    break;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn flush_access(
    registry: Registry,
    access: Arc<AccessCounter>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            // Only the leader appends; a standby's counts go over NATS.
            _ = tokio::time::sleep(every) => if registry.leads() {
                flush_once(&registry, &access).await
            },
            _ = stop.changed() => return,
        }
    }
}

/// Hands a standby's access counts to the leader, as access reports over
/// NATS (the leader appends each once, as it does a replica's); the
/// leader appends its own (`flush_access`).
async fn publish_access(
    registry: Registry,
    nats: Nats,
    connection: Connection,
    access: Arc<AccessCounter>,
    mut stop: watch::Receiver<bool>,
) {
    let keys = MessageKeys::new(registry.pepper());
    let node = access.node().to_owned();
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => false,
            _ = stop.changed() => true,
        };
        if registry.leads() {
            if stopping {
                return;
            }
            continue;
        }
        let pending = access.take();
        if !pending.is_empty() {
            let failed = reports::publish(&connection.js, &nats.layout, &keys, &node, pending).await;
            failed.into_iter().for_each(|r| access.retry(r));
        }
        if stopping {
            return;
        }
    }
}

/// Appends every pending access report. A report the log could not take is
/// put back for the next flush; one refused (its key is gone from the org)
/// is dropped, as there is nothing left to count it against.
pub async fn flush_once(registry: &Registry, access: &AccessCounter) {
    let actor = Actor::system("usage");
    let mut pending = access.take().into_iter();
    while let Some((org, id, report)) = pending.next() {
        let command = Command::RecordAccess { id, report: report.clone() };
        match registry.execute(actor.clone(), org.clone(), command).await {
            Ok(_) => {}
            Err(ExecError::Refused(r)) => {
                tracing::warn!(key = %id, refusal = %r, "an access report was refused")
            }
            Err(e @ (ExecError::Unavailable(_) | ExecError::RateLimited { .. } | ExecError::NotLeader(_))) => {
                // The rest would meet the same (under stream commit, each
                // after waiting out the commit timeout): all wait for the
                // next flush.
                tracing::warn!(error = %e, "access reports wait for the next flush");
                access.retry((org, id, report));
                pending.by_ref().for_each(|rest| access.retry(rest));
            }
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
