//! `keyreg-bench soak`: mixed writes and verifies against a registry and two
//! replicas (real `keyreg` processes, release build) for many minutes, while
//! NATS is restarted every minute and one replica is SIGKILLed and started
//! again. Afterwards: every acknowledged write is there, every digest
//! agrees, the stream equals the log byte for byte, the chain verifies,
//! and the registry's resident memory grew less than 10% after warm-up. It
//! prints a Markdown report for RELIABILITY.md.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use crate::nats_server::NatsServer;
use crate::progress;

/// Keys made before the load starts.
const POPULATION: usize = 100_000;

/// A `keyreg` process whose first stdout line names its URL.
struct Process {
    child: Child,
    url: String,
}

impl Process {
    /// Starts `keyreg ARGS`, its log (at debug) in `log`.
    fn start(args: &[&str], log: &Path) -> anyhow::Result<Process> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let mut child = Command::new(keyreg_bin())
            .args(args)
            .env("RUST_LOG", "keyreg=debug")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("start keyreg")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let url = line.split("listening on ").nth(1).context("no address printed")?.trim().to_owned();
        Ok(Process { child, url })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait for the graceful exit.
    fn stop(&mut self) -> anyhow::Result<()> {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        self.child.wait()?;
        Ok(())
    }

    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `keyreg` binary built beside this one (`just soak` builds both).
fn keyreg_bin() -> PathBuf {
    std::env::current_exe().ok().and_then(|p| Some(p.parent()?.join("keyreg"))).unwrap_or_else(|| "keyreg".into())
}

/// The registry's log head, from its `/healthz` (asked as the operator:
/// only `_system` keys are told the head).
fn head_seq(url: &str, system: &str) -> u64 {
    call(&new_agent(), "GET", &format!("{url}/healthz"), Some(system), None).1["head_seq"].as_u64().unwrap_or_default()
}

fn new_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// One HTTP exchange: status and JSON body (Null when not JSON).
fn call(agent: &ureq::Agent, method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        request = request.header("Authorization", format!("Bearer {t}"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let Ok(request) = request.header("Content-Type", "application/json").body(body) else { return (0, Value::Null) };
    match agent.run(request) {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let text = r.body_mut().read_to_string().unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

fn replica(nats: &str, pepper: &Path, node: &str) -> anyhow::Result<Process> {
    let log = pepper.with_file_name(format!("../{node}.log"));
    let pepper = pepper.to_str().context("a UTF-8 path")?;
    Process::start(
        &["verifier", "--nats", nats, "--listen", "127.0.0.1:0", "--pepper-file", pepper, "--node", node],
        &log,
    )
}

#[derive(Default)]
struct Tally {
    writes: AtomicU64,
    verifies: AtomicU64,
    stale: AtomicU64,
    wrong: AtomicU64,
    /// The first wrong answers, for the report.
    samples: Mutex<Vec<String>>,
}

pub(crate) fn run(minutes: u64) -> anyhow::Result<()> {
    let dir = crate::tempdir()?;
    let mut nats = NatsServer::start(&dir).map_err(anyhow::Error::msg)?;
    let data = dir.join("data");
    let init = Command::new(keyreg_bin()).args(["init", "--data"]).arg(&data).output()?;
    ensure!(init.status.success(), "keyreg init: {}", String::from_utf8_lossy(&init.stderr));
    let system = String::from_utf8(init.stdout)?.trim().to_owned();
    let data_str = data.to_str().context("a UTF-8 path")?;
    let serve_args = ["serve", "--data", data_str, "--listen", "127.0.0.1:0", "--nats", &nats.url];
    let registry = Process::start(&serve_args, &dir.join("registry.log"))?;
    let pepper = data.join("pepper");
    let replicas =
        Arc::new(Mutex::new(vec![replica(&nats.url, &pepper, "soak-1")?, replica(&nats.url, &pepper, "soak-2")?]));
    let agent = new_agent();
    let (status, org) = call(
        &agent,
        "POST",
        &format!("{}/v1/orgs", registry.url),
        Some(&system),
        Some(json!({"id": "soak", "name": "Soak", "max_keys": 10_000_000})),
    );
    ensure!(status == 201, "create the org: {status} {org}");
    let admin = org["secret"].as_str().context("the admin's secret")?.to_owned();

    let duration = Duration::from_secs(minutes * 60);
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    // Every acknowledged write: the key, its version, and whether it ended revoked.
    let acknowledged: Arc<Mutex<Vec<(String, u64, bool)>>> = Arc::default();
    // Tokens that stay valid, and tokens revoked, each with when it was
    // acknowledged: replicas may not know of either for a moment.
    let valid: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let revoked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();

    // A registry of a realistic size, 100,000 keys, made first; then the
    // first 2,000 edited over and over, with one write in ten making and
    // revoking a key. Memory then measures what the registry keeps per
    // event, over a base that is not a toy's.
    progress(&format!("soak: making {POPULATION} keys"));
    let population: Vec<(String, String)> = std::thread::scope(|scope| {
        let makers: Vec<_> = (0..4)
            .map(|m| {
                let (url, admin) = (&registry.url, &admin);
                scope.spawn(move || {
                    let agent = new_agent();
                    (m..POPULATION)
                        .step_by(4)
                        .map(|i| {
                            let body = json!({"name": format!("steady {i}"), "scopes": ["read", "billing:*"], "owner": format!("team-{}", i % 7)});
                            let (_, key) = call(&agent, "POST", &format!("{url}/v1/keys"), Some(admin), Some(body));
                            (key["key"]["id"].as_str().unwrap_or_default().to_owned(), key["secret"].as_str().unwrap_or_default().to_owned())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        makers.into_iter().flat_map(|m| m.join().unwrap_or_default()).collect()
    });
    ensure!(population.iter().all(|(id, _)| !id.is_empty()), "some keys were not made");
    valid.lock().unwrap().extend(population.iter().take(2000).map(|(_, secret)| (secret.clone(), Instant::now())));
    let population = Arc::new(population.into_iter().take(2000).map(|(id, _)| id).collect::<Vec<_>>());
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (url, admin, done, tally) = (registry.url.clone(), admin.clone(), done.clone(), tally.clone());
            let (acknowledged, revoked, population) = (acknowledged.clone(), revoked.clone(), population.clone());
            std::thread::spawn(move || {
                let agent = new_agent();
                let mut i = 0u64;
                while !done.load(Ordering::Relaxed) {
                    i += 1;
                    std::thread::sleep(Duration::from_millis(10));
                    if !i.is_multiple_of(10) {
                        let id = &population[(i as usize * 7 + w) % population.len()];
                        let edit = json!({"description": format!("edit {w}-{i}")});
                        let (status, key) =
                            call(&agent, "PATCH", &format!("{url}/v1/keys/{id}"), Some(&admin), Some(edit));
                        if status == 200 {
                            acknowledged.lock().unwrap().push((
                                id.clone(),
                                key["key"]["version"].as_u64().unwrap_or(0),
                                false,
                            ));
                            tally.writes.fetch_add(1, Ordering::Relaxed);
                        }
                        continue;
                    }
                    let body = json!({"name": format!("short-lived {w}-{i}"), "scopes": ["read"]});
                    let (status, key) = call(&agent, "POST", &format!("{url}/v1/keys"), Some(&admin), Some(body));
                    if status != 201 {
                        continue;
                    }
                    let id = key["key"]["id"].as_str().unwrap_or_default().to_owned();
                    let secret = key["secret"].as_str().unwrap_or_default().to_owned();
                    tally.writes.fetch_add(1, Ordering::Relaxed);
                    let (status, key) = call(
                        &agent,
                        "POST",
                        &format!("{url}/v1/keys/{id}/revoke"),
                        Some(&admin),
                        Some(json!({"reason": "soak"})),
                    );
                    if status == 200 {
                        acknowledged.lock().unwrap().push((id, key["key"]["version"].as_u64().unwrap_or(0), true));
                        revoked.lock().unwrap().push((secret, Instant::now()));
                        tally.writes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    let verifiers: Vec<_> = (0..2)
        .map(|v| {
            let (done, tally, replicas) = (done.clone(), tally.clone(), replicas.clone());
            let (valid, revoked) = (valid.clone(), revoked.clone());
            std::thread::spawn(move || {
                let agent = new_agent();
                let mut i = 0usize;
                while !done.load(Ordering::Relaxed) {
                    i += 1;
                    let url = replicas.lock().unwrap()[(i + v) % 2].url.clone();
                    let (token, must_be) = if i.is_multiple_of(4) {
                        let r = revoked.lock().unwrap();
                        // A revoke acknowledged over 3 s ago: past any max-staleness.
                        match r.iter().rev().find(|(_, at)| at.elapsed() > Duration::from_secs(3)) {
                            Some((t, _)) => (t.clone(), Some("REVOKED")),
                            None => continue,
                        }
                    } else {
                        // A key created over 3 s ago (every replica that answers
                        // has it), among the 200 in use.
                        let list = valid.lock().unwrap();
                        let settled = list.partition_point(|(_, at)| at.elapsed() > Duration::from_secs(3)).min(200);
                        if settled == 0 {
                            continue;
                        }
                        (list[i % settled].0.clone(), None)
                    };
                    let (status, answer) = call(
                        &agent,
                        "POST",
                        &format!("{url}/v1/verify"),
                        None,
                        Some(json!({"key": token, "action": "billing:read"})),
                    );
                    tally.verifies.fetch_add(1, Ordering::Relaxed);
                    match status {
                        200 => {
                            let code = answer["code"].as_str().unwrap_or_default();
                            if must_be.is_some_and(|m| m != code) || (must_be.is_none() && code != "VALID") {
                                tally.wrong.fetch_add(1, Ordering::Relaxed);
                                let mut samples = tally.samples.lock().unwrap();
                                if samples.len() < 5 {
                                    samples
                                        .push(format!("{url}: expected {}, got {answer}", must_be.unwrap_or("VALID")));
                                }
                            }
                        }
                        503 => {
                            tally.stale.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
            })
        })
        .collect();

    // Warm-up, then the memory baseline; then NATS restarted every minute
    // and the second replica killed and started again halfway.
    let mut rss_warm = 0;
    let mut seq_warm = 0;
    let mut restarts = 0;
    let mut killed = false;
    let mut next_restart = Duration::from_secs(60);
    while started.elapsed() < duration {
        std::thread::sleep(Duration::from_secs(1));
        let t = started.elapsed();
        if rss_warm == 0 && t >= Duration::from_secs(120).min(duration / 3) {
            rss_warm = registry.rss_kib();
            seq_warm = head_seq(&registry.url, &system);
            progress(&format!("soak: warm, registry RSS {rss_warm} KiB at seq {seq_warm}"));
        }
        if t >= next_restart && t + Duration::from_secs(20) < duration {
            progress(&format!("soak: {:.0} s: NATS down for 3 s", t.as_secs_f64()));
            nats.stop();
            std::thread::sleep(Duration::from_secs(3));
            nats.restart().map_err(anyhow::Error::msg)?;
            restarts += 1;
            next_restart += Duration::from_secs(60);
        }
        if !killed && t >= duration / 2 {
            progress("soak: SIGKILL replica 2 and start it again");
            let mut r = replicas.lock().unwrap();
            r[1].kill();
            r[1] = replica(&nats.url, &pepper, "soak-2b")?;
            killed = true;
        }
        if t.as_secs().is_multiple_of(30) {
            progress(&format!(
                "soak: {:.0} s, {} writes, {} verifies ({} refused while stale, {} wrong), registry RSS {} KiB",
                t.as_secs_f64(),
                tally.writes.load(Ordering::Relaxed),
                tally.verifies.load(Ordering::Relaxed),
                tally.stale.load(Ordering::Relaxed),
                tally.wrong.load(Ordering::Relaxed),
                registry.rss_kib()
            ));
        }
    }
    done.store(true, Ordering::Relaxed);
    for t in writers.into_iter().chain(verifiers) {
        let _ = t.join();
    }
    let rss_end = registry.rss_kib();
    progress("soak: load stopped; checking");

    // Nothing acknowledged is lost.
    let acknowledged = acknowledged.lock().unwrap().clone();
    let mut lost = 0;
    for (id, version, revoked) in &acknowledged {
        let (status, key) = call(&agent, "GET", &format!("{}/v1/keys/{id}", registry.url), Some(&admin), None);
        let ok = status == 200
            && key["key"]["version"].as_u64().unwrap_or(0) >= *version
            && (!revoked || key["key"]["status"] == "revoked");
        lost += usize::from(!ok);
    }
    // Every node agrees, once the last access reports are in and the
    // replicas have caught up: the head still for 3 s, every replica at it.
    let replica_urls: Vec<String> = replicas.lock().unwrap().iter().map(|r| r.url.clone()).collect();
    let registry_head = || head_seq(&registry.url, &system);
    let mut head = 0;
    let mut still_since = Instant::now();
    let caught_up = (0..1200).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let now = registry_head();
        if now != head {
            (head, still_since) = (now, Instant::now());
        }
        still_since.elapsed() > Duration::from_secs(3)
            && replica_urls.iter().all(|u| {
                call(&agent, "GET", &format!("{u}/healthz"), None, None).1["applied_seq"].as_u64() == Some(head)
            })
    });
    if !caught_up {
        let health: Vec<Value> =
            replica_urls.iter().map(|u| call(&agent, "GET", &format!("{u}/healthz"), None, None).1).collect();
        bail!("the replicas did not catch up with {head}: {health:?}; their logs are in {}", dir.display());
    }
    let digest = |url: &str, token: Option<&str>| call(&agent, "GET", &format!("{url}/v1/state/digest"), token, None).1;
    let registry_digest = digest(&registry.url, Some(&system));
    let digests_agree = replica_urls.iter().all(|u| digest(u, None) == registry_digest);
    // The stream equals the log, byte for byte.
    let mut log = vec![];
    let mut after = 0u64;
    loop {
        let mut r = agent
            .get(format!("{}/v1/events?limit=10000&after_seq={after}", registry.url))
            .header("Authorization", format!("Bearer {system}"))
            .call()?;
        let body = r.body_mut().with_config().limit(1 << 30).read_to_vec()?;
        let lines: Vec<Vec<u8>> = body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
        if lines.is_empty() {
            break;
        }
        after += lines.len() as u64;
        log.extend(lines);
    }
    let mut streamed = vec![];
    tokio::runtime::Runtime::new()?.block_on(keyreg::nats::Nats::new(&nats.url).read_all(|ev| {
        streamed.push(ev.bytes.to_vec());
        true
    }))?;
    let stream_equals_log = streamed == log;
    let mut registry = registry;
    registry.stop()?;
    let verify = Command::new(keyreg_bin()).args(["audit", "verify", "--data", data_str]).output()?;
    let chain = String::from_utf8_lossy(&verify.stdout).trim().to_owned();
    let growth = if rss_warm == 0 { 0.0 } else { (rss_end as f64 - rss_warm as f64) / rss_warm as f64 * 100.0 };

    println!("| | |\n|---|---|");
    println!("| duration | {minutes} min |");
    println!("| NATS restarts (3 s down each) | {restarts} |");
    println!("| replica SIGKILLed and restarted | {} |", if killed { "once, halfway" } else { "no" });
    println!("| acknowledged writes | {} |", tally.writes.load(Ordering::Relaxed));
    println!(
        "| verifies | {} ({} refused 503 while stale or catching up) |",
        tally.verifies.load(Ordering::Relaxed),
        tally.stale.load(Ordering::Relaxed)
    );
    println!(
        "| wrong answers (a valid key not VALID, a key revoked 3 s earlier not REVOKED) | {} |",
        tally.wrong.load(Ordering::Relaxed)
    );
    println!("| acknowledged writes lost | {lost} of {} |", acknowledged.len());
    println!(
        "| digests of the registry and both replicas at seq {head} | {} |",
        if digests_agree { "equal" } else { "DIFFER" }
    );
    println!(
        "| stream = log, byte for byte | {} ({} events) |",
        if stream_equals_log { "yes" } else { "NO" },
        log.len()
    );
    println!("| `keyreg audit verify` | {chain} |");
    println!("| registry RSS after warm-up → end | {rss_warm} KiB → {rss_end} KiB ({growth:+.1}%) |");
    println!(
        "| history added after warm-up | {} events (the in-memory audit index keeps about 24 bytes of each) |",
        head.saturating_sub(seq_warm)
    );
    for sample in tally.samples.lock().unwrap().iter() {
        println!("\nwrong: {sample}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    if lost > 0
        || !digests_agree
        || !stream_equals_log
        || !verify.status.success()
        || growth >= 10.0
        || tally.wrong.load(Ordering::Relaxed) > 0
    {
        bail!("the soak found a problem (see the table)");
    }
    Ok(())
}
