//! Legacy keys: importing 100,000 of them through the HTTP API (baseline,
//! same run: creating as many keys), and verifying a legacy secret beside a
//! native token in the same table (baseline: the native token).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use serde_json::json;
use tokio::net::TcpListener;

use crate::{Row, Size, median, progress};
use keyreg::domain::command::{Command, NewSecret};
use keyreg::domain::id::{Actor, OrgId};
use keyreg::domain::legacy;
use keyreg::domain::verifier::{self, Question};
use keyreg::registry::Registry;
use keyreg::server::{ServeOptions, serve};
use keyreg::store::DataDir;

/// How many keys a migration imports, in this measure.
const IMPORTED: usize = 100_000;
/// Concurrent clients, as a migration script would run.
const CLIENTS: usize = 16;

pub(crate) fn measure(size: Size) -> anyhow::Result<Vec<Row>> {
    let dir = std::env::temp_dir().join(format!("keyreg-bench-legacy-{}", std::process::id()));
    let (registry, admin) = Registry::init(&DataDir::new(&dir.join("data")), crate::config())?;
    let room = Command::UpdateOrg { name: None, max_keys: Some(10_000_000) };
    registry.execute_blocking(Actor::system("bench"), OrgId::system(), room)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    runtime.spawn(serve(listener, registry.clone(), ServeOptions::default(), std::future::pending()));

    let created = post_many(addr, admin.expose(), "/v1/keys", |_| json!({"name": "created", "scopes": ["read"]}))?;
    let imported = post_many(
        addr,
        admin.expose(),
        "/v1/keys/import",
        |i| json!({"name": "imported", "scopes": ["read"], "secret": format!("sk_live_bench_{i:08}_{}", std::process::id())}),
    )?;
    let mut rows = vec![Row::new(
        format!("9. import 100,000 legacy keys through the HTTP API, {CLIENTS} connections"),
        format!("{imported:.0} keys/s ({:.1} s)", IMPORTED as f64 / imported),
        "-",
        format!("creating 100,000 keys the same way: {created:.0} keys/s; ×{:.2}", imported / created),
        None,
    )];
    rows.push(verify_legacy_beside_native(&registry, size)?);
    drop(runtime);
    registry.close()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rows)
}

/// Keys per second for `IMPORTED` POSTs of `body(i)` from `CLIENTS` threads,
/// each waiting for its answer (so every key is durable when counted).
fn post_many(
    addr: SocketAddr,
    token: &str,
    path: &str,
    body: impl Fn(usize) -> serde_json::Value + Sync,
) -> anyhow::Result<f64> {
    progress(&format!("legacy: {IMPORTED} POSTs to {path}"));
    let url = format!("http://{addr}{path}");
    let started = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (url, body) = (&url, &body);
                s.spawn(move || -> anyhow::Result<()> {
                    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                    for i in (c..IMPORTED).step_by(CLIENTS) {
                        let answer =
                            agent.post(url).header("Authorization", format!("Bearer {token}")).send_json(body(i))?;
                        anyhow::ensure!(answer.status() == 201, "{path} answered {}", answer.status());
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("a client panicked"))?)
    })?;
    Ok(IMPORTED as f64 / started.elapsed().as_secs_f64())
}

/// A legacy secret costs a SHA-256 and a second index on top of a native
/// verify; measured in the registry's own table, which now holds the
/// imported and the created keys.
fn verify_legacy_beside_native(registry: &Registry, size: Size) -> anyhow::Result<Row> {
    let format = registry.format().clone();
    let pepper = registry.pepper().clone();
    let now = registry.now();
    let native: Vec<String> = (0..1000).map(|_| format.generate().expose().to_owned()).collect();
    let legacies: Vec<String> = (0..1000).map(|i| format!("ghp_bench_legacy_secret_{i:06}")).collect();
    for (n, l) in native.iter().zip(&legacies) {
        let token = format.parse(n)?;
        let key = registry.new_key(&token, "native", "", &["read"]);
        registry.execute_blocking(Actor::system("bench"), OrgId::system(), Command::CreateKey(key))?;
        let mut key = registry.new_key(&token, "legacy", "", &["read"]);
        key.secret = NewSecret { hash: legacy::hash_secret(&pepper, l), display_prefix: legacy::display_prefix(l) };
        registry.execute_blocking(Actor::system("bench"), OrgId::system(), Command::ImportKey(key))?;
    }
    let rounds = 200;
    let time = |tokens: &[String]| {
        let p = registry.read();
        let t = Instant::now();
        for _ in 0..rounds {
            for token in tokens {
                let verdict = verifier::verify(&p.table, &format, &pepper, token, &Question::default(), now);
                black_box(verdict.code);
            }
        }
        t.elapsed().as_nanos() as f64 / (rounds * tokens.len()) as f64
    };
    let (mut legacy_ns, mut native_ns) = (vec![], vec![]);
    for run in 0..size.runs {
        progress(&format!("legacy: verify, run {} of {}", run + 1, size.runs));
        native_ns.push(time(&native));
        legacy_ns.push(time(&legacies));
    }
    let (legacy_ns, native_ns) = (median(legacy_ns), median(native_ns));
    let keys = registry.read().table.all_keys().len();
    Ok(Row::new(
        format!("9. verify in process, a legacy secret, a table of {keys} keys, half of them legacy"),
        format!("{legacy_ns:.0} ns = {:.2} M/s", 1e3 / legacy_ns),
        "-",
        format!("a native token in the same table: {native_ns:.0} ns; ×{:.2}", legacy_ns / native_ns),
        None,
    ))
}
