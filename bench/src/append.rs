//! Durable appends: events acknowledged per second and their latency with
//! 1, 16 and 64 concurrent writers, straight on the log (group commit),
//! under local commit and under stream commit (acknowledged once JetStream
//! stored it too: one nats-server, R1, and a 3-node cluster, R3, both with
//! `sync_interval: always`), and the baseline: PostgreSQL INSERTs with
//! `synchronous_commit=on` at the same concurrency, driven by `pgbench`
//! against the local server.

use std::process::Command as Process;
use std::time::Instant;

use anyhow::Context;

use std::time::Duration;

use crate::nats_server::{NatsCluster, NatsServer};
use crate::{Row, Size, percentile, progress};
use keyreg::domain::command::Command;
use keyreg::domain::id::{Actor, OrgId};
use keyreg::domain::mac::MessageKeys;
use keyreg::nats::commit::StreamCommit;
use keyreg::nats::publisher::OutboxStatus;
use keyreg::nats::{Layout, Nats};
use keyreg::registry::Registry;
use keyreg::store::DataDir;

pub struct AppendStats {
    pub events: usize,
    pub writers: usize,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl std::fmt::Display for AppendStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "appended {} events with {} writers: {:.0} events/s, latency p50 {:.2} ms, p99 {:.2} ms",
            self.events, self.writers, self.per_sec, self.p50_ms, self.p99_ms
        )
    }
}

/// Each writer creates a key and revokes it, again and again, waiting for
/// every acknowledgement, until `events` are appended.
pub fn on_log(registry: &Registry, writers: usize, events: u64) -> anyhow::Result<AppendStats> {
    let writers = writers.max(1);
    let per_writer = events.div_ceil(writers as u64);
    let started = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let registry = registry.clone();
            std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
                let mut latencies = vec![];
                let actor = Actor::system("bench");
                let mut i = 0u64;
                while i < per_writer {
                    let token = registry.format().generate();
                    let key = registry.new_key(&token, &format!("bench {w}-{i}"), "", &["bench:read"]);
                    let id = key.id;
                    for command in [Command::CreateKey(key), Command::Revoke { id, expected: None, reason: None }] {
                        let t = Instant::now();
                        registry.execute_blocking(actor.clone(), OrgId::system(), command)?;
                        latencies.push(t.elapsed().as_secs_f64() * 1e3);
                        i += 1;
                    }
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut latencies = vec![];
    for h in handles {
        latencies.extend(h.join().map_err(|_| anyhow::anyhow!("a writer panicked"))??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Ok(AppendStats {
        events: latencies.len(),
        writers,
        per_sec: latencies.len() as f64 / elapsed,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
    })
}

/// (transactions/s, average latency in ms) of single-row INSERTs from
/// `clients` pgbench clients for `seconds`, each committed durably.
fn postgres(clients: usize, seconds: u64) -> anyhow::Result<(f64, f64)> {
    let psql = Process::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-q", "-c"])
        .arg("CREATE TABLE IF NOT EXISTS keyreg_bench_events (seq bigserial PRIMARY KEY, body text NOT NULL)")
        .output()
        .context("psql is needed for the PostgreSQL baseline")?;
    anyhow::ensure!(psql.status.success(), "psql: {}", String::from_utf8_lossy(&psql.stderr));
    let script = std::env::temp_dir().join(format!("keyreg-bench-{}.sql", std::process::id()));
    std::fs::write(&script, "INSERT INTO keyreg_bench_events (body) VALUES (repeat('x', 400));\n")?;
    let out = Process::new("pgbench")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-n", "-M", "prepared"])
        .args(["-c", &clients.to_string(), "-j", "2", "-T", &seconds.to_string(), "-f"])
        .arg(&script)
        .arg("postgres")
        .env("PGOPTIONS", "-c synchronous_commit=on")
        .output()
        .context("pgbench is needed for the PostgreSQL baseline")?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| -> Option<f64> {
        text.lines().find(|l| l.starts_with(prefix))?.split('=').nth(1)?.split_whitespace().next()?.parse().ok()
    };
    match (field("tps"), field("latency average")) {
        (Some(tps), Some(latency)) => Ok((tps, latency)),
        _ => anyhow::bail!("cannot read pgbench's output: {text}{}", String::from_utf8_lossy(&out.stderr)),
    }
}

pub(crate) fn measure(size: Size) -> anyhow::Result<Vec<Row>> {
    let mut rows = vec![];
    let work = crate::tempdir()?;
    // Streams the stream-commit rows commit to; a row whose NATS cannot
    // start says so instead.
    std::fs::create_dir_all(work.join("r1"))?;
    let single = NatsServer::start_configured(&work.join("r1"), Some("jetstream { sync_interval: always }\n"));
    let cluster = NatsCluster::start(&work.join("r3"), 3);
    let modes: [(&str, Option<Result<Stream, String>>); 3] = [
        ("local commit", None),
        ("stream commit, R1", Some(single.as_ref().map(|s| (s.url.as_str(), 1)).map_err(Clone::clone))),
        ("stream commit, R3", Some(cluster.as_ref().map(|c| (c.url.as_str(), 3)).map_err(Clone::clone))),
    ];
    for writers in [1usize, 16, 64] {
        progress(&format!("append: PostgreSQL baseline, {writers} clients"));
        let baseline = postgres(writers, if size.runs > 3 { 10 } else { 4 });
        for (mode, stream) in &modes {
            let stream = match stream {
                None => None,
                Some(Ok(s)) => Some(*s),
                Some(Err(e)) => {
                    rows.push(Row::new(format!("4. durable append, {mode}: FAILED"), e.clone(), "-", "-", Some(false)));
                    continue;
                }
            };
            let mut runs = vec![];
            for run in 0..size.runs {
                progress(&format!("append, {mode}: {writers} writers, run {} of {}", run + 1, size.runs));
                runs.push(one_run(stream, writers, size.append_events.max(writers as u64 * 20), run)?);
            }
            runs.sort_by(|a, b| a.per_sec.total_cmp(&b.per_sec));
            let ours = &runs[runs.len() / 2];
            let (baseline_text, met) = match &baseline {
                Ok((tps, latency)) => (
                    format!("PostgreSQL {tps:.0} INSERT/s, avg {latency:.2} ms; ×{:.2}", ours.per_sec / tps),
                    (writers > 1).then_some(ours.per_sec >= *tps),
                ),
                Err(e) => (format!("not measured: {e}"), None),
            };
            rows.push(Row::new(
                format!("4. durable append, {mode}, {writers} writers"),
                format!("{:.0} events/s, p50 {:.2} ms, p99 {:.2} ms", ours.per_sec, ours.p50_ms, ours.p99_ms),
                if writers > 1 { "≥ PostgreSQL" } else { "-" },
                baseline_text,
                met,
            ));
        }
    }
    drop((single, cluster));
    let _ = std::fs::remove_dir_all(&work);
    rows.push(verify_while_appending(size)?);
    Ok(rows)
}

/// Where stream commit commits: NATS URLs, and the stream's replicas.
type Stream<'a> = (&'a str, usize);

/// One run on a fresh data dir: local commit, or stream commit to `stream`
/// under its own prefix.
fn one_run(stream: Option<Stream<'_>>, writers: usize, events: u64, run: usize) -> anyhow::Result<AppendStats> {
    let dir = std::env::temp_dir().join(format!("keyreg-bench-append-{}-{writers}-{run}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (registry, _) = Registry::init(&DataDir::new(&dir), crate::config())?;
    let runtime = tokio::runtime::Runtime::new()?;
    if let Some((url, replicas)) = stream {
        let prefix = format!("APPEND{}X{writers}X{run}", replicas);
        let nats = Nats { layout: Layout::new(&prefix)?, replicas, ..Nats::new(url) };
        let _entered = runtime.enter();
        let connection = runtime.block_on(nats.connect())?;
        let keys = MessageKeys::new(registry.pepper());
        let status = std::sync::Arc::new(OutboxStatus::default());
        let commit = StreamCommit::new(nats, connection, keys, Duration::from_secs(10), status.clone());
        registry.commit_to(std::sync::Arc::new(commit));
        // The events of `init` reach the stream first.
        let settled = || status.published().0 >= registry.head().seq;
        crate::nats::wait_for("stream commit to settle", Duration::from_secs(60), settled)?;
    }
    let stats = on_log(&registry, writers, events)?;
    registry.close()?;
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(stats)
}

/// What appends cost verifies: the latency of single in-process verifies on
/// the registry's live table (its read lock included), alone and while 64
/// writers append. The writer takes the table's write lock only to apply a
/// decided, already staged command, so the two should be close.
fn verify_while_appending(size: Size) -> anyhow::Result<Row> {
    let dir = crate::tempdir()?;
    let (registry, _) = Registry::init(&DataDir::new(&dir), crate::config())?;
    let token = registry.format().generate();
    let key = registry.new_key(&token, "verified", "", &["read"]);
    registry.execute_blocking(Actor::system("bench"), OrgId::system(), Command::CreateKey(key))?;
    let sample = |until: &dyn Fn() -> bool| -> Vec<f64> {
        let mut latencies = vec![];
        while !until() || latencies.len() < 1000 {
            let t = Instant::now();
            let p = registry.read();
            std::hint::black_box(keyreg::domain::verifier::verify(
                &p.table,
                registry.format(),
                registry.pepper(),
                token.expose(),
                &Default::default(),
                registry.now(),
            ));
            drop(p);
            latencies.push(t.elapsed().as_secs_f64() * 1e6);
        }
        latencies.sort_by(f64::total_cmp);
        latencies
    };
    progress("append: verify latency alone");
    let started = Instant::now();
    let alone = sample(&|| started.elapsed().as_secs_f64() > 2.0);
    progress("append: verify latency while 64 writers append");
    let done = std::sync::atomic::AtomicBool::new(false);
    let loaded = std::thread::scope(|scope| -> anyhow::Result<Vec<f64>> {
        let writers = scope.spawn(|| {
            let stats = on_log(&registry, 64, size.append_events.max(4000));
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            stats
        });
        let latencies = sample(&|| done.load(std::sync::atomic::Ordering::Relaxed));
        writers.join().map_err(|_| anyhow::anyhow!("the writers panicked"))??;
        Ok(latencies)
    })?;
    registry.close()?;
    let _ = std::fs::remove_dir_all(&dir);
    let spread = |l: &[f64]| {
        format!(
            "p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.0} µs",
            percentile(l, 0.5),
            percentile(l, 0.99),
            percentile(l, 0.999),
            l.last().copied().unwrap_or(0.0)
        )
    };
    Ok(Row::new(
        "4. verify in process while 64 writers append",
        spread(&loaded),
        "appends do not stall verifies",
        format!("alone: {}", spread(&alone)),
        None,
    ))
}
