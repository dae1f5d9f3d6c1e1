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

use super::{Row, Size, median, progress};
use crate::command::Command;
use crate::id::{Actor, OrgId};
use crate::registry::{Config, Registry};
use crate::server::{ServeOptions, serve};
use crate::time::SystemClock;
use crate::token::TokenFormat;

/// wrk's requests/s and p50/p99 latency (ms) for POSTing `body` to `url`.
fn wrk(url: &str, body: &str, seconds: u64) -> anyhow::Result<(f64, f64, f64)> {
    let script = std::env::temp_dir().join(format!("keyreg-bench-{}.lua", std::process::id()));
    let escaped = body.replace('\\', "\\\\").replace('"', "\\\"");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = \"{escaped}\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        ),
    )?;
    let out = Process::new("wrk")
        .args([
            "-t",
            "2",
            "-c",
            "32",
            "-d",
            &format!("{seconds}s"),
            "--latency",
            "-s",
        ])
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
        text.lines()
            .find(|l| l.trim_start().starts_with(p))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(ms)
    };
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
    match (rps, percentile("50%"), percentile("99%")) {
        (Some(r), Some(p50), Some(p99)) => Ok((r, p50, p99)),
        _ => anyhow::bail!("cannot read wrk's output: {text}"),
    }
}

pub fn measure(size: Size, nats_url: Option<&str>) -> anyhow::Result<Vec<Row>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = std::env::temp_dir().join(format!("keyreg-bench-http-{}", std::process::id()));
    let (registry, _) = Registry::init(
        &dir.join("data"),
        Config {
            clock: Arc::new(SystemClock),
            format: TokenFormat::default(),
        },
    )?;
    let token = registry.format().generate();
    let key = registry.new_key(&token, "http bench", "", &["billing:*"]);
    registry.execute_blocking(
        Actor::system("bench"),
        OrgId::system(),
        Command::CreateKey(key),
    )?;
    let body = format!(
        "{{\"key\":\"{}\",\"action\":\"billing:read\"}}",
        token.expose()
    );

    let bind = |runtime: &tokio::runtime::Runtime| -> anyhow::Result<(TcpListener, SocketAddr)> {
        let l = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let a = l.local_addr()?;
        Ok((l, a))
    };
    let (listener, registry_addr) = bind(&runtime)?;
    let options = ServeOptions {
        access_flush: Duration::from_secs(1),
        ..ServeOptions::default()
    };
    runtime.spawn(serve(
        listener,
        registry.clone(),
        options,
        std::future::pending(),
    ));
    let (listener, empty_addr) = bind(&runtime)?;
    let empty = Router::new()
        .route(
            "/v1/verify",
            post(|_body: axum::body::Bytes| async {
                axum::Json(serde_json::json!({"valid": true}))
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(crate::api::BODY_LIMIT));
    runtime.spawn(async move { axum::serve(listener, empty).await });
    let replica_addr = match nats_url {
        Some(url) => {
            let replica = runtime.block_on(crate::replica::Replica::start(
                crate::replica::ReplicaConfig::new(url, registry.pepper().clone()),
            ))?;
            let (listener, addr) = bind(&runtime)?;
            let r = replica.clone();
            runtime.spawn(async move { r.serve(listener, std::future::pending()).await });
            let head = registry.head().seq;
            let started = std::time::Instant::now();
            while replica.applied() < head && started.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(20));
            }
            Some(addr)
        }
        None => None,
    };
    let seconds = if size.runs > 3 { 10 } else { 4 };
    let mut targets = vec![("empty handler", empty_addr), ("registry", registry_addr)];
    targets.extend(replica_addr.map(|a| ("replica", a)));
    let mut results = vec![];
    for (name, addr) in &targets {
        let mut runs = vec![];
        for run in 0..size.runs.min(3) {
            progress(&format!(
                "http: {name}, run {} of {}",
                run + 1,
                size.runs.min(3)
            ));
            runs.push(wrk(&format!("http://{addr}/v1/verify"), &body, seconds)?);
        }
        let rps = median(runs.iter().map(|r| r.0).collect());
        let run = runs.iter().find(|r| r.0 == rps).copied().unwrap_or(runs[0]);
        results.push((*name, run));
    }
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);
    let (_, (floor, floor_p50, floor_p99)) = results[0];
    Ok(results[1..]
        .iter()
        .map(|(name, (rps, p50, p99))| {
            Row::new(
                format!("2. verify over HTTP on the {name} (wrk, 32 connections)"),
                format!("{rps:.0} req/s, p50 {p50:.2} ms, p99 {p99:.2} ms"),
                "≥ 0.7 × empty handler",
                format!("empty handler {floor:.0} req/s (p50 {floor_p50:.2}, p99 {floor_p99:.2} ms); ×{:.2}", rps / floor),
                Some(rps / floor >= 0.7),
            )
        })
        .collect())
}
