//! The transparency log's costs: how long after an event is acknowledged a
//! checkpoint covering it carries a witness's cosignature (beside the same
//! without a witness); how long an inclusion proof takes on a large log,
//! and how big proofs are (beside reading the one event the proof is for);
//! and what keeping the tree costs a durable append (the tree's work per
//! event, timed on the very events a run appended, against the time the
//! run took per event). `just bench-ab` measures that last one as an A/B
//! against a build from before the tree.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyreg::domain::command::Command;
use keyreg::domain::id::{Actor, OrgId, Seq};
use keyreg::domain::merkle::{Tree, leaf_hash};
use keyreg::domain::time::SystemClock;
use keyreg::registry::Registry;
use keyreg::store::DataDir;
use keyreg::store::log::Log;
use keyreg::witness::Witness;

use crate::{Row, Size, median, percentile, progress};

/// Rows 11 (checkpoint latency) and 12 (the tree's share of an append).
pub(crate) fn measure(size: Size) -> anyhow::Result<Vec<Row>> {
    let events = if size.runs > 3 { 300 } else { 100 };
    progress(&format!("transparency: {events} events to a witnessed checkpoint"));
    let witnessed = to_checkpoint(true, events)?;
    progress(&format!("transparency: {events} events to a checkpoint, no witness"));
    let alone = to_checkpoint(false, events)?;
    let spread = |l: &[f64]| {
        format!("p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms", percentile(l, 0.5), percentile(l, 0.99), l[l.len() - 1])
    };
    let mut rows = vec![Row::new(
        format!("11. acknowledged event to a checkpoint covering it with a witness's cosignature, {events} events"),
        spread(&witnessed),
        "p99 < 1 s",
        format!("the same registry's checkpoints without a witness: {}", spread(&alone)),
        Some(percentile(&witnessed, 0.99) < 1000.0),
    )];
    for writers in [1usize, 16, 64] {
        let mut shares = vec![];
        let mut costs = vec![];
        let mut rates = vec![];
        for run in 0..size.runs {
            progress(&format!("transparency: the tree's share of appends, {writers} writers, run {}", run + 1));
            let (per_sec, tree_us) = tree_share(writers, size.append_events.max(writers as u64 * 20))?;
            shares.push(tree_us * per_sec / 1e6 * 100.0);
            costs.push(tree_us);
            rates.push(per_sec);
        }
        let share = median(shares);
        rows.push(Row::new(
            format!("12. durable append, local commit, {writers} writers, with the tree kept"),
            format!("{:.0} events/s; the tree's work {:.2} µs an event", median(rates), median(costs)),
            "≤ 5% slower than without the tree",
            format!("the tree's work is {share:.2}% of the time the run took an event, at most what it slows appends"),
            Some(share <= 5.0),
        ));
    }
    Ok(rows)
}

/// Milliseconds from each event's acknowledgement to the newest checkpoint
/// covering it (and cosigned, when `witnessed`), sorted. The events come at
/// pseudo-random gaps of 0 to 200 ms, so they fall anywhere between two
/// rounds of signing.
fn to_checkpoint(witnessed: bool, events: usize) -> anyhow::Result<Vec<f64>> {
    let dir = crate::tempdir()?;
    let (registry, _) = Registry::init(&DataDir::new(&dir.join("data")), crate::config())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut witnesses = vec![];
    if witnessed {
        let logs = vec![registry.log_key().clone()];
        let witness = Arc::new(Witness::open(&dir.join("witness"), "bench.example/w1", logs, Arc::new(SystemClock))?);
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        witnesses.push(format!("http://{}", listener.local_addr()?));
        runtime.spawn(async move { axum::serve(listener, witness.router()).await });
    }
    let signatures = witnesses.len() + 1;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    runtime.spawn(keyreg::transparency::run(registry.clone(), witnesses, None, stopped));
    let mut gap = 0x9e37_79b9_7f4a_7c15u64;
    let mut latencies = vec![];
    for i in 0..events {
        gap ^= gap << 13;
        gap ^= gap >> 7;
        gap ^= gap << 17;
        std::thread::sleep(Duration::from_millis(gap % 200));
        let token = registry.format().generate();
        let key = registry.new_key(&token, &format!("checkpointed {i}"), "", &["read"]);
        let seq = registry.execute_blocking(Actor::system("bench"), OrgId::system(), Command::CreateKey(key))?.head.0;
        let acked = Instant::now();
        let covered = || {
            registry.checkpoint().is_some_and(|note| {
                let size = note.text.lines().nth(1).and_then(|l| l.parse::<u64>().ok()).unwrap_or(0);
                size >= seq && note.signatures.len() >= signatures
            })
        };
        while !covered() {
            anyhow::ensure!(acked.elapsed() < Duration::from_secs(10), "no checkpoint covered event {seq} in 10 s");
            std::thread::sleep(Duration::from_micros(200));
        }
        latencies.push(acked.elapsed().as_secs_f64() * 1e3);
    }
    stop.send_replace(true);
    drop(runtime);
    registry.close()?;
    let _ = std::fs::remove_dir_all(&dir);
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

/// One run of durable appends; its events a second, and the µs the tree's
/// work (each event's leaf hash and its push) takes an event, timed on the
/// events the run appended, read back into memory first.
fn tree_share(writers: usize, events: u64) -> anyhow::Result<(f64, f64)> {
    let dir = crate::tempdir()?;
    let data = DataDir::new(&dir.join("data"));
    let (registry, _) = Registry::init(&data, crate::config())?;
    let stats = crate::append::on_log(&registry, writers, events)?;
    registry.close()?;
    anyhow::ensure!(
        keyreg::store::log::wait_unlocked(&data.log_path(), Duration::from_secs(10)),
        "the log stayed locked"
    );
    let log = Log::open(&data.log_path())?;
    let stored: Vec<Vec<u8>> =
        log.reader().read(Seq(1), None).map(|r| r.map(|r| r.bytes().to_vec())).collect::<Result<_, _>>()?;
    let started = Instant::now();
    let mut tree = Tree::default();
    stored.iter().for_each(|bytes| tree.push(leaf_hash(bytes)));
    std::hint::black_box(&tree);
    let tree_us = started.elapsed().as_secs_f64() * 1e6 / stored.len() as f64;
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((stats.per_sec, tree_us))
}

/// Row 13: inclusion proofs on the log of `data` (at the newest head),
/// in process, and the sizes of the proofs a tenant downloads.
pub(crate) fn proofs(data: &DataDir) -> anyhow::Result<Vec<Row>> {
    let registry = Registry::open(data, crate::config())?;
    let n = registry.head().seq.0;
    progress(&format!("transparency: inclusion proofs at {n} events"));
    let mut pick = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        pick ^= pick << 13;
        pick ^= pick >> 7;
        pick ^= pick << 17;
        1 + pick % n
    };
    let (mut proving, mut reading) = (vec![], vec![]);
    let mut longest = (Seq(1), vec![]);
    for _ in 0..20_000 {
        let seq = Seq(next());
        let t = Instant::now();
        let proof = registry.inclusion_proof(seq, n)?;
        proving.push(t.elapsed().as_secs_f64() * 1e3);
        if proof.len() > longest.1.len() {
            longest = (seq, proof);
        }
        let t = Instant::now();
        std::hint::black_box(registry.log().get(Seq(next()))?);
        reading.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let consistency = registry.consistency_proof(n / 3, n)?.len();
    registry.close()?;
    proving.sort_by(f64::total_cmp);
    reading.sort_by(f64::total_cmp);
    let most = longest.1.len();
    let hashes: Vec<String> = longest.1.iter().map(|h| keyreg::domain::note::base64(h)).collect();
    let json = serde_json::json!({"leaf_index": longest.0.0 - 1, "tree_size": n, "hashes": hashes}).to_string();
    let p = |l: &[f64]| format!("p50 {:.3} ms, p99 {:.3} ms", percentile(l, 0.5), percentile(l, 0.99));
    Ok(vec![Row::new(
        format!("13. inclusion proof of a random event at {n} events, in process (20,000 proofs)"),
        format!(
            "{}; at most {most} hashes ({} bytes; {} bytes of JSON on `GET /v1/proofs/inclusion`); a consistency \
             proof from {} events: {consistency} hashes",
            p(&proving),
            most * 32,
            json.len(),
            n / 3
        ),
        "p99 < 1 ms",
        format!("reading one random event from the log: {}", p(&reading)),
        Some(percentile(&proving, 0.99) < 1.0),
    )])
}
