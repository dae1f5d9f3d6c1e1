//! `keyreg-bench`: the measurements behind BENCHMARKS.md. Every figure is
//! the median of several runs, printed beside its target and a baseline
//! measured in the same process or script, so the ratio means something on
//! a shared machine where absolute times drift.
//!
//! A crate of its own so that PostgreSQL's client, the orchestration of
//! wrk, psql and pgbench, and the search for a nats-server binary stay out
//! of keyreg's library and its production binary.

mod append;
mod authz;
mod bootstrap;
mod console;
mod http;
mod index;
mod inprocess;
mod legacy;
mod nats;
// Shared with the tests, which also drive faults and clusters the bench
// does not.
#[allow(dead_code)]
#[path = "../../tests/common/nats_server.rs"]
mod nats_server;
mod readiness;
mod soak;
mod transparency;

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use keyreg::registry::{Config, Registry};
use keyreg::store::{DataDir, DirError};

#[derive(Parser)]
#[command(name = "keyreg-bench", about = "keyreg's benchmarks (BENCHMARKS.md)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the benchmarks and print the results table.
    Run {
        /// The full sizes (1,000,000 keys and events) instead of the quick ones.
        #[arg(long)]
        full: bool,
        /// Only these measurements (verify, index, replay, append, http, authz, nats, bootstrap, legacy, console, transparency); all if absent.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Mixed load on a registry and two replicas while NATS restarts every
    /// minute; prints a report for RELIABILITY.md.
    Soak {
        #[arg(long, default_value_t = 10)]
        minutes: u64,
    },
    /// Durable appends straight on the log: each writer creates and revokes
    /// keys in the system org, waiting for every acknowledgement.
    Append {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 1)]
        writers: usize,
        /// Events in all.
        #[arg(long, default_value_t = 1000)]
        events: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Run { full, only } => run(if full { Size::full() } else { Size::quick() }, &only),
        Cmd::Soak { minutes } => soak::run(minutes),
        Cmd::Append { data, writers, events } => {
            let dir = DataDir::new(&data);
            let registry = match Registry::open(&dir, config()) {
                Ok(r) => r,
                Err(keyreg::registry::OpenError::Dir(DirError::NotInitialised(_))) => Registry::init(&dir, config())?.0,
                Err(e) => return Err(e.into()),
            };
            let stats = append::on_log(&registry, writers, events)?;
            registry.close()?;
            eprintln!("{stats}");
            Ok(())
        }
    }
}

/// A registry's configuration on the system clock.
fn config() -> Config {
    Config::new(std::sync::Arc::new(keyreg::domain::time::SystemClock), Default::default())
}

/// Runs every measurement and prints the table on stdout.
fn run(size: Size, only: &[String]) -> anyhow::Result<()> {
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
    if wanted("index") {
        record("8. index", Ok(index::measure(size)));
    }
    if wanted("replay") {
        record("5. replay", inprocess::replay(size));
    }
    if wanted("append") {
        record("4. append", append::measure(size));
    }
    if wanted("legacy") {
        record("9. legacy keys", legacy::measure(size));
    }
    if wanted("console") {
        record("10. console", console::measure());
    }
    if wanted("transparency") {
        record("11./12. transparency", transparency::measure(size));
    }
    if wanted("authz") {
        record("2c. forward auth", authz::measure(size));
    }
    if wanted("http") || wanted("nats") || wanted("bootstrap") {
        let dir = tempdir()?;
        match nats_server::NatsServer::start(&dir) {
            Ok(server) => {
                if wanted("http") {
                    record("2. http", http::measure(size, Some(&server.url)));
                }
                if wanted("nats") {
                    record("3./7. nats", nats::measure(size, &server.url));
                    record("3. nats, stream commit R3", nats::measure_r3(size));
                }
                if wanted("bootstrap") {
                    record("5. bootstrap", bootstrap::measure(size, &server.url));
                }
            }
            Err(e) => record("2./3./7. NATS measurements", Err(anyhow::anyhow!(e))),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    // In the order of the numbered measures (a stable sort keeps each
    // measure's own rows in order).
    rows.sort_by_key(|r| {
        let digits: String = r.measure.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().unwrap_or(99)
    });
    println!("{}", render(&rows));
    eprintln!("bench: done in {:.0} s ({size:?})", started.elapsed().as_secs_f64());
    Ok(())
}

/// How big a run is: `quick` for `just bench`, `full` for `just bench-full`.
#[derive(Clone, Copy, Debug)]
struct Size {
    pub keys: usize,
    pub events: usize,
    pub runs: usize,
    pub append_events: u64,
}

impl Size {
    fn quick() -> Self {
        Size { keys: 100_000, events: 200_000, runs: 3, append_events: 2_000 }
    }

    fn full() -> Self {
        Size { keys: 1_000_000, events: 1_000_000, runs: 5, append_events: 20_000 }
    }
}

/// One line of the results table.
struct Row {
    pub measure: String,
    pub figure: String,
    pub target: String,
    pub baseline: String,
    pub verdict: &'static str,
}

impl Row {
    fn new(
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

/// The `p` quantile (0..=1) of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A Markdown table of the rows.
fn render(rows: &[Row]) -> String {
    let mut out =
        String::from("| measure | result (median) | target | baseline, same run | verdict |\n|---|---|---|---|---|\n");
    for r in rows {
        let _ = writeln!(out, "| {} | {} | {} | {} | {} |", r.measure, r.figure, r.target, r.baseline, r.verdict);
    }
    out
}

/// Progress on stderr: benchmarks are long work.
fn progress(what: &str) {
    eprintln!("bench: {what}");
}

/// Resident memory of this process, in bytes.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

/// A fresh temp dir for one measurement; the caller removes it.
fn tempdir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "keyreg-bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
