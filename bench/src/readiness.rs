//! Readiness and the chain's report at scale: how long a registry takes
//! from `serve` to `/readyz` 200 on a large log (with its sealed mark, and
//! without one, when the whole chain is checked in the background), and
//! what `/v1/audit/verify` costs once the mark is as far behind the head as
//! a running registry ever lets it fall.

use std::time::{Duration, Instant};

use keyreg::domain::command::Command;
use keyreg::domain::id::{Actor, OrgId};
use keyreg::registry::Registry;
use keyreg::server::{ServeOptions, serve};
use keyreg::store::DataDir;

use crate::{Row, median, percentile, progress};

/// p50 and p99, in ms.
type Percentiles = (f64, f64);

/// How far behind the head a running registry lets its mark fall
/// (`registry::check`'s stride).
const STRIDE: u64 = 4096;

/// `data` holds a large log, a snapshot and a mark at its head (a clean
/// stop wrote both).
pub(crate) fn measure(data: &DataDir, runs: usize) -> anyhow::Result<Vec<Row>> {
    let n = keyreg::store::log::Log::open(&data.log_path())?.head().seq.0;
    anyhow::ensure!(
        keyreg::store::log::wait_unlocked(&data.log_path(), Duration::from_secs(10)),
        "the log stayed locked"
    );
    let mut marked = vec![];
    let mut unmarked = vec![];
    let mut checked_after = vec![];
    for run in 0..runs {
        progress(&format!("readiness: run {} of {runs}", run + 1));
        marked.push(ready(data)?.0);
        let mark = std::fs::read(data.path().join("checked"))?;
        std::fs::remove_file(data.path().join("checked"))?;
        let (ready_s, whole_s) = ready(data)?;
        unmarked.push(ready_s);
        checked_after.push(whole_s);
        std::fs::write(data.path().join("checked"), mark)?;
    }
    let (system, tenant, whole_chain) = chain_reports(data)?;
    let (marked, unmarked, whole) = (median(marked), median(unmarked), median(checked_after));
    Ok(vec![
        Row::new(
            format!("5. ready (`serve` to `/readyz` 200) with {n} events, from a snapshot and its mark"),
            format!("{:.0} ms", marked * 1e3),
            "< 1 s",
            format!(
                "no mark, so the whole chain is checked in the background: ready in {:.0} ms, the check done after \
                 {whole:.2} s",
                unmarked * 1e3
            ),
            Some(marked < 1.0 && unmarked < 1.0),
        ),
        Row::new(
            format!("5. `/v1/audit/verify` at {n} events, {} after the mark (in process)", STRIDE - 1),
            format!(
                "_system: p50 {:.1} ms, p99 {:.1} ms; a tenant: p50 {:.1} ms, p99 {:.1} ms",
                system.0, system.1, tenant.0, tenant.1
            ),
            "p99 < 50 ms",
            format!("the whole chain folded per request, as before: {:.0} ms", whole_chain * 1e3),
            Some(system.1 < 50.0 && tenant.1 < 50.0),
        ),
    ])
}

/// Opens the registry and serves it; returns the seconds to `/readyz` 200
/// and to the end of the background check.
fn ready(data: &DataDir) -> anyhow::Result<(f64, f64)> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let started = Instant::now();
    let registry = Registry::open(data, crate::config())?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("http://{}/readyz", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(serve(listener, registry.clone(), ServeOptions::default(), async {
        let _ = stopped.await;
    }));
    let agent = ureq::Agent::new_with_defaults();
    while agent.get(&url).call().map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "never ready");
        std::thread::sleep(Duration::from_millis(1));
    }
    let ready = started.elapsed().as_secs_f64();
    while !registry.chain_checked() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let whole = started.elapsed().as_secs_f64();
    anyhow::ensure!(registry.broken().is_none(), "the benchmark's chain broke");
    let _ = stop.send(());
    runtime.block_on(server)??;
    // Kept-alive connections hold the router, and with it the registry.
    drop(runtime);
    registry.close()?;
    Ok((ready, whole))
}

/// p50 and p99 in ms of the chain's report for `_system` and for a tenant
/// (the report and the tenant's own count from the audit index), with the
/// head `STRIDE - 1` events past the mark: the most a running registry
/// leaves after it.
/// Also the seconds of one check of the whole chain, the baseline.
fn chain_reports(data: &DataDir) -> anyhow::Result<(Percentiles, Percentiles, f64)> {
    let registry = Registry::open(data, crate::config())?;
    let acme = OrgId::parse("acme")?;
    for _ in 1..STRIDE {
        let token = registry.format().generate();
        let key = registry.new_key(&token, "after the mark", "", &["read"]);
        registry.execute_blocking(Actor::system("bench"), acme.clone(), Command::CreateKey(key))?;
    }
    let n = registry.head().seq.0;
    anyhow::ensure!(registry.checked_through().0 + STRIDE > n, "the mark moved: {}", registry.checked_through());
    // Measured alone, not beside the background check that starts at open.
    crate::nats::wait_for("the chain check", std::time::Duration::from_secs(300), || registry.chain_checked())?;
    let mut system = vec![];
    let mut tenant = vec![];
    for _ in 0..200 {
        let t = Instant::now();
        let report = registry.verify_chain()?;
        anyhow::ensure!(report.ok && report.events == n, "the chain's report: {report:?}");
        system.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let report = registry.verify_chain()?;
        let (events, _) = registry.read().audit.org_events(&acme, report.head_seq);
        std::hint::black_box(events);
        tenant.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let t = Instant::now();
    anyhow::ensure!(registry.check_chain()?.ok, "the whole chain does not check out");
    let whole = t.elapsed().as_secs_f64();
    registry.close()?;
    system.sort_by(f64::total_cmp);
    tenant.sort_by(f64::total_cmp);
    let (s, t) = (&system, &tenant);
    Ok(((percentile(s, 0.5), percentile(s, 0.99)), (percentile(t, 0.5), percentile(t, 0.99)), whole))
}
