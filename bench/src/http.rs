//! Verify over HTTP under `wrk` (keep-alive, loopback): the registry and a
//! replica, and the baseline in the same run: an empty handler behind the
//! same axum stack (the HTTP layer's own limit).

use std::net::SocketAddr;
use std::process::Command as Process;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::post;
use tokio::net::TcpListener;

use crate::{Row, Size, median, progress};
use keyreg::domain::command::Command;
use keyreg::domain::id::{Actor, OrgId};
use keyreg::domain::token::TokenFormat;
use keyreg::http::listen::Limits;
use keyreg::registry::Registry;
use keyreg::server::{ServeOptions, serve};
use keyreg::store::DataDir;

/// CPU time (user + system, in seconds) used so far by this process (every
/// server under test runs in it) and by all PostgreSQL processes (the
/// baseline's backends), read from /proc.
fn cpu_seconds() -> (f64, f64) {
    // USER_HZ, the unit of /proc's times, is 100 on Linux.
    let ticks = |stat: &str| -> Option<f64> {
        let after_comm = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        Some((fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?) / 100.0)
    };
    let own = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| ticks(&s)).unwrap_or(0.0);
    let postgres = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|s| s.contains("(postgres)"))
        .filter_map(|s| ticks(&s))
        .sum();
    (own, postgres)
}

/// One measured target: wrk's figures, and the CPU the servers spent.
#[derive(Clone, Copy)]
struct Run {
    rps: f64,
    p50: f64,
    p99: f64,
    /// Microseconds of CPU per request: this process's, PostgreSQL's.
    cpu_us: (f64, f64),
}

fn measured(url: &str, body: &str, seconds: u64) -> anyhow::Result<Run> {
    let before = cpu_seconds();
    let (rps, p50, p99) = wrk(url, &Request::post(body, None), seconds, 32)?;
    let after = cpu_seconds();
    let requests = rps * seconds as f64;
    let per = |a: f64, b: f64| (a - b) * 1e6 / requests;
    Ok(Run { rps, p50, p99, cpu_us: (per(after.0, before.0), per(after.1, before.1)) })
}

/// What wrk sends, every time: a method, headers, a body.
pub(crate) struct Request<'a> {
    pub method: &'a str,
    pub headers: Vec<(&'a str, String)>,
    pub body: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// A JSON POST, with a key in `Authorization` when given.
    pub fn post(body: &'a str, authorization: Option<&str>) -> Self {
        let mut headers = vec![("Content-Type", "application/json".to_owned())];
        headers.extend(authorization.map(|a| ("Authorization", format!("Bearer {a}"))));
        Request { method: "POST", headers, body: Some(body) }
    }
}

/// wrk's requests/s and p50/p99 latency (ms) for sending `request` to `url`
/// over `connections` keep-alive connections.
pub(crate) fn wrk(
    url: &str,
    request: &Request<'_>,
    seconds: u64,
    connections: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    let script = std::env::temp_dir().join(format!("keyreg-bench-{}.lua", std::process::id()));
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut lua = format!("wrk.method = {}\n", quote(request.method));
    if let Some(body) = request.body {
        lua.push_str(&format!("wrk.body = {}\n", quote(body)));
    }
    for (name, value) in &request.headers {
        lua.push_str(&format!("wrk.headers[{}] = {}\n", quote(name), quote(value)));
    }
    std::fs::write(&script, lua)?;
    let out = Process::new("wrk")
        .args(["-t", &connections.min(2).to_string(), "-c", &connections.to_string()])
        .args(["-d", &format!("{seconds}s"), "--latency", "-s"])
        .arg(&script)
        .arg(url)
        .output()
        .context("wrk is needed for the HTTP benchmark: apt-get install wrk")?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    let ms = |s: &str| -> Option<f64> {
        let (n, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
        let n: f64 = n.parse().ok()?;
        Some(match unit {
            "us" => n / 1e3,
            "ms" => n,
            "s" => n * 1e3,
            _ => return None,
        })
    };
    let percentile = |p: &str| {
        text.lines().find(|l| l.trim_start().starts_with(p)).and_then(|l| l.split_whitespace().nth(1)).and_then(ms)
    };
    let rps =
        text.lines().find(|l| l.starts_with("Requests/sec:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
    match (rps, percentile("50%"), percentile("99%")) {
        (Some(r), Some(p50), Some(p99)) => Ok((r, p50, p99)),
        _ => anyhow::bail!("cannot read wrk's output: {text}"),
    }
}

pub(crate) fn measure(size: Size, nats_url: Option<&str>) -> anyhow::Result<Vec<Row>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let dir = std::env::temp_dir().join(format!("keyreg-bench-http-{}", std::process::id()));
    let (registry, admin) = Registry::init(&DataDir::new(&dir.join("data")), crate::config())?;
    let token = registry.format().generate();
    let key = registry.new_key(&token, "http bench", "", &["billing:*"]);
    registry.execute_blocking(Actor::system("bench"), OrgId::system(), Command::CreateKey(key))?;
    let body = format!("{{\"key\":\"{}\",\"action\":\"billing:read\"}}", token.expose());

    let bind = |runtime: &tokio::runtime::Runtime| -> anyhow::Result<(TcpListener, SocketAddr)> {
        let l = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let a = l.local_addr()?;
        Ok((l, a))
    };
    let (listener, registry_addr) = bind(&runtime)?;
    let options = ServeOptions {
        access_flush: Duration::from_secs(1),
        nats: nats_url.map(keyreg::nats::Nats::new),
        ..ServeOptions::default()
    };
    runtime.spawn(serve(listener, registry.clone(), options, std::future::pending()));
    let (listener, empty_addr) = bind(&runtime)?;
    let empty = Router::new()
        .route("/v1/verify", post(|_body: axum::body::Bytes| async { axum::Json(serde_json::json!({"valid": true})) }))
        .layer(axum::extract::DefaultBodyLimit::max(keyreg::http::BODY_LIMIT));
    runtime.spawn(keyreg::http::listen::serve(listener, empty, Limits::default(), std::future::pending()));
    let replica_addr = match nats_url {
        Some(url) => {
            let replica = runtime.block_on(keyreg::replica::Replica::start(keyreg::replica::ReplicaConfig::new(
                url,
                registry.pepper().clone(),
            )))?;
            let (listener, addr) = bind(&runtime)?;
            let r = replica.clone();
            runtime.spawn(async move {
                keyreg::replica::http::serve(&r, listener, Limits::default(), std::future::pending()).await
            });
            let started = std::time::Instant::now();
            while replica.unavailable().is_some() {
                anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "the replica did not become ready");
                std::thread::sleep(Duration::from_millis(20));
            }
            Some(addr)
        }
        None => None,
    };
    let seconds = if size.runs > 3 { 10 } else { 4 };
    let mut targets = vec![("empty handler", empty_addr), ("registry", registry_addr)];
    targets.extend(replica_addr.map(|a| ("replica", a)));
    let postgres = postgres_verifier(&runtime, registry.pepper(), &token);
    if let Ok(addr) = &postgres {
        targets.push(("PostgreSQL-backed verifier", *addr));
    }
    let mut results = vec![];
    for (name, addr) in &targets {
        let mut runs = vec![];
        for run in 0..size.runs.min(3) {
            progress(&format!("http: {name}, run {} of {}", run + 1, size.runs.min(3)));
            runs.push(measured(&format!("http://{addr}/v1/verify"), &body, seconds)?);
        }
        let rps = median(runs.iter().map(|r| r.rps).collect());
        let run = runs.iter().find(|r| r.rps == rps).copied().unwrap_or(runs[0]);
        results.push((*name, run));
    }
    let appends = appends_over_http(&registry, registry_addr, admin.expose(), size)?;
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);
    let floor = results[0].1;
    let pg = results.iter().find(|(n, _)| n.starts_with("PostgreSQL")).map(|(_, r)| *r);
    let mut rows: Vec<Row> = results[1..]
        .iter()
        .filter(|(name, _)| !name.starts_with("PostgreSQL"))
        .map(|(name, r)| {
            Row::new(
                format!("2. verify over HTTP on the {name} (wrk, 32 connections)"),
                format!(
                    "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {:.1} µs CPU/verify",
                    r.rps, r.p50, r.p99, r.cpu_us.0
                ),
                "≥ 0.8 × empty handler",
                format!(
                    "empty handler {:.0} req/s (p50 {:.2}, p99 {:.2} ms, {:.1} µs CPU/request); ×{:.2}",
                    floor.rps,
                    floor.p50,
                    floor.p99,
                    floor.cpu_us.0,
                    r.rps / floor.rps
                ),
                Some(r.rps / floor.rps >= 0.8),
            )
        })
        .collect();
    rows.extend(appends);
    let registry = results[1].1;
    if let Some(pg) = pg {
        let (ours, theirs) = (registry.cpu_us.0 + registry.cpu_us.1, pg.cpu_us.0 + pg.cpu_us.1);
        rows.push(Row::new(
            "2. CPU time per verify over HTTP: registry vs a PostgreSQL-backed verifier",
            format!("{ours:.1} µs (the registry's process, /proc)"),
            "≥ 5× less",
            format!(
                "{theirs:.1} µs: its server process {:.1} µs + PostgreSQL's backends {:.1} µs; ×{:.2} less",
                pg.cpu_us.0,
                pg.cpu_us.1,
                theirs / ours
            ),
            Some(theirs / ours >= 5.0),
        ));
    }
    rows.push(match (pg.map(|r| r.rps), postgres) {
        (Some(pg_rps), _) => Row::new(
            "2. verify over HTTP: registry vs a PostgreSQL-backed verifier, throughput",
            format!("×{:.2}", registry.rps / pg_rps),
            "≥ 5×",
            format!("same axum stack doing an indexed SELECT by hash: {pg_rps:.0} req/s; on 2 shared cores wrk's share hides the difference, hence the CPU row"),
            Some(registry.rps / pg_rps >= 5.0),
        ),
        (None, Err(e)) => Row::new(
            "2. verify over HTTP: registry vs a PostgreSQL-backed verifier",
            "not measured",
            "≥ 5×",
            e.to_string(),
            None,
        ),
        (None, Ok(_)) => {
            Row::new("2. verify over HTTP: registry vs a PostgreSQL-backed verifier", "not measured", "≥ 5×", "-", None)
        }
    });
    Ok(rows)
}

/// Durable appends through the API: `POST /v1/keys` (one event each) from
/// 1, 16 and 64 connections; compare with the log-level rows of measure 4.
fn appends_over_http(registry: &Registry, addr: SocketAddr, admin: &str, size: Size) -> anyhow::Result<Vec<Row>> {
    let room = Command::UpdateOrg { name: None, max_keys: Some(10_000_000) };
    registry.execute_blocking(Actor::system("bench"), OrgId::system(), room)?;
    let body = r#"{"name":"appended over http","scopes":["read"]}"#;
    let seconds = if size.runs > 3 { 5 } else { 3 };
    let mut rows = vec![];
    for connections in [1usize, 16, 64] {
        progress(&format!("http: appends from {connections} connections"));
        let (rps, p50, p99) =
            wrk(&format!("http://{addr}/v1/keys"), &Request::post(body, Some(admin)), seconds, connections)?;
        rows.push(Row::new(
            format!("4. durable append through the HTTP API, {connections} connections"),
            format!("{rps:.0} events/s, p50 {p50:.2} ms, p99 {p99:.2} ms"),
            if connections > 1 { "≥ PostgreSQL" } else { "-" },
            "the PostgreSQL rows of measure 4, same run",
            None,
        ));
    }
    Ok(rows)
}

/// The usual design, for the baseline: the same HTTP stack, the same token
/// check and keyed hash, then an indexed SELECT by hash on the local
/// PostgreSQL over a pool of connections.
fn postgres_verifier(
    runtime: &tokio::runtime::Runtime,
    pepper: &keyreg::domain::token::Pepper,
    token: &keyreg::domain::token::Token,
) -> anyhow::Result<SocketAddr> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hash = hex_bytes(&token.hash(pepper).to_hex());
    let pepper = pepper.clone();
    runtime.block_on(async move {
        let mut pool = vec![];
        for _ in 0..8 {
            let (client, connection) = tokio_postgres::connect("host=127.0.0.1 user=postgres dbname=postgres", tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            pool.push(client);
        }
        pool[0]
            .batch_execute(
                "DROP TABLE IF EXISTS keyreg_bench_keys;
                 CREATE TABLE keyreg_bench_keys (hash bytea PRIMARY KEY, key_id text NOT NULL, org text NOT NULL,
                   scopes text[] NOT NULL, status text NOT NULL, expires_at timestamptz);
                 INSERT INTO keyreg_bench_keys SELECT sha256(i::text::bytea), 'key_' || i, 'acme', ARRAY['read'], 'active', NULL
                   FROM generate_series(1, 100000) i;",
            )
            .await?;
        pool[0]
            .execute(
                "INSERT INTO keyreg_bench_keys VALUES ($1, 'key_bench', '_system', ARRAY['billing:*'], 'active', NULL)",
                &[&hash],
            )
            .await?;
        let mut statements = vec![];
        for client in &pool {
            statements.push(client.prepare("SELECT key_id, org, scopes, status FROM keyreg_bench_keys WHERE hash = $1").await?);
        }
        let state = Arc::new((pool, statements, AtomicUsize::new(0), pepper));
        let app = Router::new().route(
            "/v1/verify",
            post(move |body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let presented = v["key"].as_str().unwrap_or_default();
                    let Ok(hash) = TokenFormat::default().hash_presented(&state.3, presented) else {
                        return axum::Json(serde_json::json!({"valid": false, "code": "MALFORMED"}));
                    };
                    let i = state.2.fetch_add(1, Ordering::Relaxed) % state.0.len();
                    let row = state.0[i].query_opt(&state.1[i], &[&hex_bytes(&hash.to_hex())]).await.ok().flatten();
                    let answer = match row {
                        Some(r) => {
                            let scopes: Vec<String> = r.get(2);
                            let granted = scopes.iter().any(|s| keyreg::domain::scope::Scope::parse(s).is_ok_and(|s| s.grants("billing:read", None)));
                            serde_json::json!({"valid": granted, "code": if granted { "VALID" } else { "FORBIDDEN_SCOPE" }, "key_id": r.get::<_, String>(0)})
                        }
                        None => serde_json::json!({"valid": false, "code": "NOT_FOUND"}),
                    };
                    axum::Json(answer)
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        anyhow::Ok(addr)
    })
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect()
}
