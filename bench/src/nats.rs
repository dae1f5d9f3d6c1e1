//! Measurements that need NATS, against a private nats-server started for
//! the run: revocation propagation from the registry's acknowledgement to
//! the first `REVOKED` answer of each of two replicas while verifies run at
//! load, the same for a role edit (one event changing a thousand keys), and
//! the outbox's publish rate and lag under 64 writers; and propagation
//! again under stream commit on a 3-node NATS cluster (R3).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::{Row, Size, percentile, progress};
use keyreg::domain::command::{Command, RoleEdit};
use keyreg::domain::id::{Actor, KeyId, OrgId, RoleName};
use keyreg::domain::scope::Scope;
use keyreg::domain::verifier::{Code, Question};
use keyreg::nats::Nats;
use keyreg::nats::node::NodeOptions;
use keyreg::nats::publisher::OutboxStatus;
use keyreg::registry::Registry;
use keyreg::replica::{Replica, ReplicaConfig};
use keyreg::server::{Commit, nats_duties};
use keyreg::store::DataDir;

pub(crate) fn measure(size: Size, nats_url: &str) -> anyhow::Result<Vec<Row>> {
    let dir = std::env::temp_dir().join(format!("keyreg-bench-nats-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (registry, _) = Registry::init(&DataDir::new(&dir.join("data")), crate::config())?;
    let outbox = Arc::new(OutboxStatus::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let nats = Nats::new(nats_url);
    let connection = runtime.block_on(nats.connect())?;
    local_duties(&runtime, &registry, &nats, connection, &outbox, &stop_rx)?;
    let replicas = ready_replicas(&runtime, &registry, nats_url, ["bench-r1", "bench-r2"])?;
    let result = (|| -> anyhow::Result<Vec<Row>> {
        let mut rows = propagation(&registry, &replicas, if size.runs > 3 { 1000 } else { 300 })?;
        rows.push(outbox_rate(&registry, &outbox, size.append_events.max(4000))?);
        rows.push(catch_up(&registry, nats_url, &runtime)?);
        Ok(rows)
    })();
    let _ = stop_tx.send(true);
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Revocation and role-edit propagation with the registry committing to an
/// R3 stream on a 3-node cluster (`sync_interval: always`) that shares the
/// two cores: the acknowledgement now waits for the stream, so what is
/// measured is from an acknowledged revoke to the replicas' answers.
pub(crate) fn measure_r3(size: Size) -> anyhow::Result<Vec<Row>> {
    let dir = crate::tempdir()?;
    let cluster = crate::nats_server::NatsCluster::start(&dir.join("nats"), 3).map_err(|e| anyhow::anyhow!(e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (registry, _) = Registry::init(&DataDir::new(&dir.join("data")), crate::config())?;
    let outbox = Arc::new(OutboxStatus::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let nats = Nats { replicas: 3, ..Nats::new(&cluster.url) };
    let connection = runtime.block_on(nats.connect())?;
    let commit = Commit::Stream { timeout: Duration::from_secs(10) };
    runtime.block_on(nats_duties(&registry, &nats, connection, commit, &NodeOptions::default(), &outbox, &stop_rx))?;
    wait_for("stream commit to settle", Duration::from_secs(60), || outbox.published().0 >= registry.head().seq)?;
    let replicas = ready_replicas(&runtime, &registry, &cluster.url, ["bench-r3-1", "bench-r3-2"])?;
    let result = propagation(&registry, &replicas, if size.runs > 3 { 1000 } else { 300 }).map(|rows| {
        rows.into_iter().map(|r| Row { measure: format!("{} (stream commit, R3)", r.measure), ..r }).collect()
    });
    let _ = stop_tx.send(true);
    drop(runtime);
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Two replicas of `registry` following `nats_url`, once both answer.
fn ready_replicas(
    runtime: &tokio::runtime::Runtime,
    registry: &Registry,
    nats_url: &str,
    nodes: [&str; 2],
) -> anyhow::Result<Vec<Replica>> {
    let replicas: Vec<Replica> = nodes
        .iter()
        .map(|node| {
            let mut c = ReplicaConfig::new(nats_url, registry.pepper().clone());
            c.node = (*node).into();
            c.access_flush = Duration::from_secs(3600);
            runtime.block_on(Replica::start(c))
        })
        .collect::<Result<_, _>>()?;
    wait_for("the replicas to be ready", Duration::from_secs(30), || {
        replicas.iter().all(|r| r.unavailable().is_none())
    })?;
    Ok(replicas)
}

/// A registry's NATS duties under local commit (the outbox), started as
/// `serve` starts them.
pub(crate) fn local_duties(
    runtime: &tokio::runtime::Runtime,
    registry: &Registry,
    nats: &Nats,
    connection: keyreg::nats::Connection,
    outbox: &Arc<OutboxStatus>,
    stop: &watch::Receiver<bool>,
) -> std::io::Result<Vec<tokio::task::JoinHandle<()>>> {
    runtime.block_on(nats_duties(registry, nats, connection, Commit::Local, &NodeOptions::default(), outbox, stop))
}

pub(crate) fn wait_for(what: &str, limit: Duration, f: impl Fn() -> bool) -> anyhow::Result<()> {
    let started = Instant::now();
    while !f() {
        anyhow::ensure!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn propagation(registry: &Registry, replicas: &[Replica], revokes: usize) -> anyhow::Result<Vec<Row>> {
    progress(&format!("propagation: creating {revokes} keys"));
    let actor = Actor::system("bench");
    let org = OrgId::system();
    let room = Command::UpdateOrg { name: None, max_keys: Some(10_000_000) };
    registry.execute_blocking(actor.clone(), org.clone(), room)?;
    let mut keys: Vec<(KeyId, String)> = vec![];
    for i in 0..revokes + 50 {
        let token = registry.format().generate();
        let new = registry.new_key(&token, &format!("p{i}"), "", &["read"]);
        let id = new.id;
        registry.execute_blocking(actor.clone(), org.clone(), Command::CreateKey(new))?;
        keys.push((id, token.expose().to_owned()));
    }
    let head = registry.head().seq;
    wait_for("the replicas to catch up", Duration::from_secs(60), || replicas.iter().all(|r| r.applied() >= head))?;
    // Load: a thread verifying the 50 keys that stay valid, on both replicas
    // (one, not two: on two cores a second spinning thread would measure the
    // scheduler, not the propagation).
    let stop = Arc::new(AtomicBool::new(false));
    let load_count = Arc::new(AtomicU64::new(0));
    let loaders: Vec<_> = (0..1)
        .map(|t| {
            let (replicas, stop, count) = (replicas.to_vec(), stop.clone(), load_count.clone());
            let tokens: Vec<String> = keys[revokes..].iter().map(|(_, s)| s.clone()).collect();
            std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let _ = replicas[i % 2].verify(&tokens[i % tokens.len()], Question::default());
                    count.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    progress(&format!("propagation: {revokes} revokes under verify load"));
    let started = Instant::now();
    let mut delays: Vec<f64> = vec![];
    for (id, token) in &keys[..revokes] {
        registry.execute_blocking(
            actor.clone(),
            org.clone(),
            Command::Revoke { id: *id, expected: None, reason: None },
        )?;
        delays.extend(until_seen(replicas, token, Question::default(), Code::Revoked)?);
    }
    let load_rate = load_count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        let _ = l.join();
    }
    let revoked = delay_row(
        format!("3. revocation propagation, {revokes} revokes × 2 replicas, under {:.0} verifies/s", load_rate),
        delays,
        "Unkey up to 60 s, Kong 5 s poll, Zuplo 60 s cache",
    );
    Ok(vec![revoked, role_propagation(registry, replicas, revokes)?])
}

/// Milliseconds from now until each replica answers `want` for `token`.
fn until_seen(replicas: &[Replica], token: &str, question: Question<'_>, want: Code) -> anyhow::Result<Vec<f64>> {
    let acked = Instant::now();
    let mut delays = vec![];
    let mut pending = vec![true; replicas.len()];
    while pending.iter().any(|p| *p) {
        for (i, r) in replicas.iter().enumerate() {
            if pending[i] && r.verify(token, question).is_ok_and(|a| a.code == want) {
                pending[i] = false;
                delays.push(acked.elapsed().as_secs_f64() * 1e3);
            }
        }
        anyhow::ensure!(acked.elapsed() < Duration::from_secs(10), "a change did not reach the replicas");
        std::thread::sleep(Duration::from_micros(50));
    }
    Ok(delays)
}

fn delay_row(name: String, mut delays: Vec<f64>, baseline: &str) -> Row {
    delays.sort_by(f64::total_cmp);
    let (p50, p99, max) = (percentile(&delays, 0.5), percentile(&delays, 0.99), delays.last().copied().unwrap_or(0.0));
    Row::new(
        name,
        format!("p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"),
        "p99 < 10 ms",
        baseline,
        Some(p99 < 10.0),
    )
}

/// A role held by 1,000 keys, its scopes flipped between `read` and
/// `write`: from the registry's acknowledgement to each replica answering
/// with the new scopes. One event changes every holder.
fn role_propagation(registry: &Registry, replicas: &[Replica], edits: usize) -> anyhow::Result<Row> {
    const HOLDERS: usize = 1000;
    progress(&format!("role propagation: a role held by {HOLDERS} keys"));
    let actor = Actor::system("bench");
    let org = OrgId::system();
    let name = RoleName::parse("flip")?;
    let scopes = |s: &str| vec![Scope::parse(s).expect("a bench scope parses")];
    let create = Command::CreateRole { name: name.clone(), description: String::new(), scopes: scopes("read") };
    registry.execute_blocking(actor.clone(), org.clone(), create)?;
    let mut token = String::new();
    for i in 0..HOLDERS {
        let secret = registry.format().generate();
        let mut new = registry.new_key(&secret, &format!("holder {i}"), "", &[]);
        new.roles = vec![name.clone()];
        registry.execute_blocking(actor.clone(), org.clone(), Command::CreateKey(new))?;
        token = secret.expose().to_owned();
    }
    let head = registry.head().seq;
    wait_for("the replicas to catch up", Duration::from_secs(60), || replicas.iter().all(|r| r.applied() >= head))?;
    progress(&format!("role propagation: {edits} role edits"));
    let mut delays = vec![];
    for i in 0..edits {
        let verb = if i % 2 == 0 { "write" } else { "read" };
        let edit = RoleEdit { scopes: Some(scopes(verb)), ..RoleEdit::default() };
        registry.execute_blocking(
            actor.clone(),
            org.clone(),
            Command::EditRole { name: name.clone(), expected: None, edit },
        )?;
        let question = Question { action: Some(verb), ..Question::default() };
        delays.extend(until_seen(replicas, &token, question, Code::Valid)?);
    }
    Ok(delay_row(
        format!("3b. role-edit propagation, {edits} edits of a role held by {HOLDERS} keys × 2 replicas"),
        delays,
        "Unkey: permissions cached up to 60 s",
    ))
}

/// A new replica follows the whole stream from sequence 1.
fn catch_up(registry: &Registry, nats_url: &str, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Row> {
    let head = registry.head().seq;
    progress(&format!("catch-up: a new replica reads {head} events"));
    let started = Instant::now();
    let mut config = ReplicaConfig::new(nats_url, registry.pepper().clone());
    config.bootstrap = false;
    let replica = runtime.block_on(Replica::start(config))?;
    wait_for("the new replica to catch up", Duration::from_secs(300), || replica.applied() >= head)?;
    let rate = head.0 as f64 / started.elapsed().as_secs_f64();
    Ok(Row::new(
        format!("5. replica catch-up from the stream, {head} events"),
        format!("{:.0} events/s ({:.2} s)", rate, started.elapsed().as_secs_f64()),
        "-",
        "replay from the local log: the row above",
        None,
    ))
}

/// 64 writers append; the outbox publishes with acknowledgements meanwhile.
fn outbox_rate(registry: &Registry, outbox: &OutboxStatus, events: u64) -> anyhow::Result<Row> {
    progress(&format!("outbox: {events} events from 64 writers"));
    let start_seq = registry.head().seq.0;
    let done = Arc::new(AtomicBool::new(false));
    let lags = Arc::new(std::sync::Mutex::new(vec![]));
    let started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let sampler = scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let lag = registry.head().seq.0.saturating_sub(outbox.published().0.0);
                lags.lock().unwrap_or_else(|e| e.into_inner()).push(lag as f64);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let stats = crate::append::on_log(registry, 64, events);
        done.store(true, Ordering::Relaxed);
        let _ = sampler.join();
        stats.map(|_| ())
    })?;
    let head = registry.head().seq.0;
    wait_for("the outbox to catch up", Duration::from_secs(120), || outbox.published().0.0 >= head)?;
    let rate = (head - start_seq) as f64 / started.elapsed().as_secs_f64();
    let mut lags = std::mem::take(&mut *lags.lock().unwrap_or_else(|e| e.into_inner()));
    lags.sort_by(f64::total_cmp);
    Ok(Row::new(
        "7. outbox to JetStream, acknowledged, 64 writers",
        format!(
            "{rate:.0} events/s published; lag p50 {:.0}, p99 {:.0}, max {:.0} events",
            percentile(&lags, 0.5),
            percentile(&lags, 0.99),
            lags.last().copied().unwrap_or(0.0)
        ),
        "keeps up (lag drains)",
        "-",
        None,
    ))
}
