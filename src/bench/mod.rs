//! `keyreg bench`: the measurements behind BENCHMARKS.md. Every figure is
//! the median of several runs, printed beside its target and a baseline
//! measured in the same process or script, so the ratio means something on
//! a shared machine where absolute times drift.

pub mod append;
pub mod http;
pub mod inprocess;
pub mod nats;

use std::fmt::Write as _;

/// Runs every measurement and prints the table on stdout.
pub fn run(size: Size, nats_server: Option<&std::path::Path>, only: &[String]) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let mut rows = vec![];
    // A measurement that fails becomes a row saying so; the others still run.
    let mut record = |name: &str, result: anyhow::Result<Vec<Row>>| match result {
        Ok(r) => rows.extend(r),
        Err(e) => rows.push(Row::new(format!("{name}: FAILED"), e.to_string(), "-", "-", Some(false))),
    };
    if wanted("verify") {
        record("1./6. verify and memory", Ok(inprocess::verify_and_memory(size)));
    }
    if wanted("replay") {
        record("5. replay", inprocess::replay(size));
    }
    if wanted("append") {
        record("4. append", append::measure(size));
    }
    if wanted("http") || wanted("nats") {
        match nats::start(nats_server) {
            Ok(server) => {
                if wanted("http") {
                    record("2. http", http::measure(size, Some(&server.url)));
                }
                if wanted("nats") {
                    record("3./7. nats", nats::measure(size, &server.url));
                }
            }
            Err(e) => record("2./3./7. NATS measurements", Err(e)),
        }
    }
    // In the order of the numbered measures (a stable sort keeps each
    // measure's own rows in order).
    rows.sort_by_key(|r| r.measure.split('.').next().and_then(|n| n.parse::<u32>().ok()).unwrap_or(99));
    println!("{}", render(&rows));
    eprintln!("bench: done in {:.0} s ({size:?})", started.elapsed().as_secs_f64());
    Ok(())
}

/// How big a run is: `quick` for `just bench`, `full` for `just bench-full`.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    pub keys: usize,
    pub events: usize,
    pub runs: usize,
    pub append_events: u64,
}

impl Size {
    pub fn quick() -> Self {
        Size { keys: 100_000, events: 200_000, runs: 3, append_events: 2_000 }
    }

    pub fn full() -> Self {
        Size { keys: 1_000_000, events: 1_000_000, runs: 5, append_events: 20_000 }
    }
}

/// One line of the results table.
pub struct Row {
    pub measure: String,
    pub figure: String,
    pub target: String,
    pub baseline: String,
    pub verdict: &'static str,
}

impl Row {
    pub fn new(
        measure: impl Into<String>,
        figure: impl Into<String>,
        target: impl Into<String>,
        baseline: impl Into<String>,
        met: Option<bool>,
    ) -> Row {
        Row {
            measure: measure.into(),
            figure: figure.into(),
            target: target.into(),
            baseline: baseline.into(),
            verdict: match met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "-",
            },
        }
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

/// The `p` quantile (0..=1) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A Markdown table of the rows.
pub fn render(rows: &[Row]) -> String {
    let mut out =
        String::from("| measure | result (median) | target | baseline, same run | verdict |\n|---|---|---|---|---|\n");
    for r in rows {
        let _ = writeln!(out, "| {} | {} | {} | {} | {} |", r.measure, r.figure, r.target, r.baseline, r.verdict);
    }
    out
}

/// Progress on stderr: benchmarks are long work.
pub fn progress(what: &str) {
    eprintln!("bench: {what}");
}

/// Resident memory of this process, in bytes.
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}
