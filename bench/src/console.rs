//! The console's keys list: the first page of an org with 10,000 keys,
//! rendered by the server over HTTP (baseline, same run and server: the
//! JSON page `GET /v1/keys?limit=50` that the console itself calls).

use std::time::Instant;

use serde_json::json;
use tokio::net::TcpListener;

use crate::{Row, percentile, progress};
use keyreg::registry::Registry;
use keyreg::server::{ServeOptions, serve};
use keyreg::store::DataDir;

const KEYS: usize = 10_000;
const CLIENTS: usize = 8;
const SAMPLES: usize = 300;

pub(crate) fn measure() -> anyhow::Result<Vec<Row>> {
    let dir = std::env::temp_dir().join(format!("keyreg-bench-console-{}", std::process::id()));
    let (registry, system) = Registry::init(&DataDir::new(&dir.join("data")), crate::config())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let base = format!("http://{}", listener.local_addr()?);
    runtime.spawn(serve(listener, registry.clone(), ServeOptions::default(), std::future::pending()));

    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    let bearer = |t: &str| format!("Bearer {t}");
    let org: serde_json::Value = agent
        .post(format!("{base}/v1/orgs"))
        .header("Authorization", bearer(system.expose()))
        .send_json(json!({"id": "bench", "name": "Bench", "max_keys": 20_000}))?
        .body_mut()
        .read_json()?;
    let admin = org["secret"].as_str().ok_or_else(|| anyhow::anyhow!("no admin key: {org}"))?.to_owned();

    progress(&format!("console: creating {KEYS} keys"));
    std::thread::scope(|s| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (agent, base, admin) = (agent.clone(), &base, &admin);
                s.spawn(move || -> anyhow::Result<()> {
                    for i in (c..KEYS).step_by(CLIENTS) {
                        let body = json!({"name": format!("service-{i:05}"), "owner": format!("team-{}@example.com", i % 40), "scopes": ["read", "billing:read"], "expires_in_days": 90});
                        let answer = agent.post(format!("{base}/v1/keys")).header("Authorization", bearer(admin)).send_json(body)?;
                        anyhow::ensure!(answer.status() == 201, "create answered {}", answer.status());
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("a worker panicked"))?)
    })?;

    let cookie = sign_in(&agent, &base, &admin)?;
    progress(&format!("console: {SAMPLES} renders of the keys list, and as many JSON pages"));
    let (mut page, mut json_page) = (Vec::new(), Vec::new());
    for i in 0..SAMPLES + 20 {
        let started = Instant::now();
        let mut answer = agent.get(format!("{base}/console/keys")).header("Cookie", &cookie).call()?;
        let html = answer.body_mut().read_to_string()?;
        let took = started.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(html.matches("name=\"id\"").count() == 50, "the page does not list 50 keys");
        let started = Instant::now();
        let mut answer =
            agent.get(format!("{base}/v1/keys?limit=50")).header("Authorization", bearer(&admin)).call()?;
        answer.body_mut().read_to_string()?;
        let json_took = started.elapsed().as_secs_f64() * 1e3;
        if i >= 20 {
            page.push(took);
            json_page.push(json_took);
        }
    }
    page.sort_by(f64::total_cmp);
    json_page.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&page, 0.5), percentile(&page, 0.99));
    let (j50, j99) = (percentile(&json_page, 0.5), percentile(&json_page, 0.99));
    drop(runtime);
    registry.close()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(vec![Row::new(
        format!("10. console keys list, first page (50 of {KEYS} keys) rendered over HTTP"),
        format!("p50 {p50:.2} ms, p99 {p99:.2} ms"),
        "< 50 ms",
        format!("the JSON page it calls, GET /v1/keys?limit=50: p50 {j50:.2} ms, p99 {j99:.2} ms; ×{:.2}", p50 / j50),
        Some(p99 < 50.0),
    )])
}

/// Signs in as a browser would; answers the `Cookie` header of the session.
fn sign_in(agent: &ureq::Agent, base: &str, key: &str) -> anyhow::Result<String> {
    let form = agent.get(format!("{base}/console/sign-in")).call()?;
    let first = form.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let pre = first.split(';').next().unwrap_or_default().to_owned();
    let csrf = pre.split_once('=').map(|(_, v)| v.to_owned()).unwrap_or_default();
    let answer = agent.post(format!("{base}/console/sign-in")).header("Cookie", &pre).send_form([
        ("csrf", csrf.as_str()),
        ("key", key),
        ("user", ""),
    ])?;
    let session = answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("keyreg_session="))
        .ok_or_else(|| anyhow::anyhow!("sign-in answered {} with no session", answer.status()))?;
    Ok(session.split(';').next().unwrap_or_default().to_owned())
}
