//! The command line: flags (also read from `KEYREG_*` variables), logging
//! setup, and one function per command. The binary's `main` calls `main`
//! here; `anyhow` lives at this edge only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

use crate::id::{OrgId, Seq};
use crate::log::{ChainChecker, ChainReport, Log};
use crate::nats;
use crate::projection::Table;
use crate::registry::{self, Config, Registry};
use crate::replica::{Replica, ReplicaConfig};
use crate::server::{self, ServeOptions};
use crate::time::{SystemClock, Timestamp};
use crate::token::Pepper;
use crate::token::TokenFormat;

#[derive(Parser)]
#[command(name = "keyreg", version, about = "An event-sourced API-key registry")]
struct Cli {
    /// The token prefix of this deployment.
    #[arg(long, global = true, env = "KEYREG_TOKEN_PREFIX", default_value = crate::token::DEFAULT_PREFIX)]
    token_prefix: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Make a data dir: the pepper, the `_system` org and its first key.
    /// The key's token goes to stdout, once; everything else to stderr.
    Init {
        #[arg(long, env = "KEYREG_DATA")]
        data: PathBuf,
    },
    /// Run the registry: the HTTP API on --listen over the data dir.
    Serve {
        #[arg(long, env = "KEYREG_DATA")]
        data: PathBuf,
        /// Address to listen on; port 0 picks a free one (the address is printed).
        #[arg(long, env = "KEYREG_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// This node's name in access reports.
        #[arg(long, env = "KEYREG_NODE", default_value = "registry")]
        node: String,
        /// Milliseconds between flushes of access counts into `key.accessed` events.
        #[arg(long, env = "KEYREG_ACCESS_FLUSH_MS", default_value_t = 10_000)]
        access_flush_ms: u64,
        /// NATS URL to publish events to, or `none` (events wait in the log).
        #[arg(long, env = "KEYREG_NATS", default_value = "none")]
        nats: String,
    },
    /// Run a verifier replica: follow the stream, answer verify locally.
    Verifier {
        #[arg(long, env = "KEYREG_NATS")]
        nats: String,
        #[arg(long, env = "KEYREG_LISTEN", default_value = "127.0.0.1:8081")]
        listen: String,
        /// The registry's pepper (DIR/pepper), 32 bytes.
        #[arg(long, env = "KEYREG_PEPPER_FILE")]
        pepper_file: PathBuf,
        /// This replica's name in access reports.
        #[arg(long, env = "KEYREG_NODE", default_value = "replica")]
        node: String,
        #[arg(long, env = "KEYREG_ACCESS_FLUSH_MS", default_value_t = 10_000)]
        access_flush_ms: u64,
    },
    /// Print the key table as it stood at a time, as JSON.
    Replay {
        #[command(flatten)]
        source: Source,
        /// An RFC 3339 time, e.g. 2026-11-22T10:00:00Z.
        #[arg(long)]
        at: String,
        /// Only this organization.
        #[arg(long)]
        org: Option<String>,
    },
    /// Check or export the hash-chained history.
    Audit {
        #[command(subcommand)]
        command: AuditCmd,
    },
    /// Manage keys through a registry's HTTP API (token from KEYREG_TOKEN).
    Keys(crate::client::KeysArgs),
    /// Load generators for measuring keyreg (see BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        command: BenchCmd,
    },
}

/// Where history is read from: a data dir or the NATS stream.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct Source {
    /// A data dir (of a registry that is not running: sled locks it).
    #[arg(long, env = "KEYREG_DATA")]
    data: Option<PathBuf>,
    /// A NATS server holding the KEYREG_EVENTS stream.
    #[arg(long)]
    nats: Option<String>,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the whole chain; exit 1 naming the first bad sequence.
    Verify {
        #[command(flatten)]
        source: Source,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the stored events, one per line, byte for byte.
    Export {
        #[arg(long, env = "KEYREG_DATA")]
        data: PathBuf,
        /// Only events at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only events at or before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Run the benchmarks and print the results table (BENCHMARKS.md).
    Run {
        /// The full sizes (1,000,000 keys and events) instead of the quick ones.
        #[arg(long)]
        full: bool,
        /// Path to a nats-server binary for the propagation and outbox runs.
        #[arg(long, env = "NATS_SERVER_BIN")]
        nats_server: Option<PathBuf>,
        /// Only these measurements (verify, replay, append, http, nats); all if absent.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Durable appends straight on the log: each writer creates and revokes
    /// keys in the system org, waiting for every acknowledgement.
    Append {
        #[arg(long, env = "KEYREG_DATA")]
        data: PathBuf,
        #[arg(long, default_value_t = 1)]
        writers: usize,
        /// Events in all (0: until killed).
        #[arg(long, default_value_t = 1000)]
        events: u64,
        /// Print each acknowledged sequence number on stdout as it comes.
        #[arg(long)]
        print_acks: bool,
    },
}

pub fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr through `tracing`, warnings only unless `RUST_LOG` says
/// otherwise.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn config(prefix: &str) -> anyhow::Result<Config> {
    let format = TokenFormat::new(prefix).context("--token-prefix must be 1 to 16 characters of [a-z0-9_]")?;
    Ok(Config { clock: Arc::new(SystemClock), format })
}

fn parse_time(flag: &str, s: &str) -> anyhow::Result<Timestamp> {
    Timestamp::parse(s).with_context(|| format!("{flag} {s:?} is not an RFC 3339 time (e.g. 2026-11-22T10:00:00Z)"))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Cmd::Init { data } => init(&data, config(&cli.token_prefix)?),
        Cmd::Serve { data, listen, node, access_flush_ms, nats } => {
            let options = ServeOptions {
                node,
                access_flush: Duration::from_millis(access_flush_ms.max(10)),
                nats: (nats != "none").then_some(nats),
                ..ServeOptions::default()
            };
            serve(&data, config(&cli.token_prefix)?, &listen, options)
        }
        Cmd::Keys(args) => crate::client::run(args).map(|_| ExitCode::SUCCESS),
        Cmd::Replay { source, at, org } => {
            let at = parse_time("--at", &at)?;
            let org = org.as_deref().map(OrgId::parse).transpose()?;
            match (source.data, source.nats) {
                (Some(data), _) => replay(&data, at, org.as_ref()),
                (None, Some(url)) => replay_nats(&url, at, org.as_ref()),
                (None, None) => bail!("give --data or --nats"),
            }
        }
        Cmd::Verifier { nats, listen, pepper_file, node, access_flush_ms } => {
            let config = config(&cli.token_prefix)?;
            let mut replica = ReplicaConfig::new(&nats, Pepper::load(&pepper_file)?);
            replica.format = config.format;
            replica.node = node;
            replica.access_flush = Duration::from_millis(access_flush_ms.max(10));
            verifier(replica, &listen)
        }
        Cmd::Audit { command: AuditCmd::Verify { source, json } } => {
            let report = match (source.data, source.nats) {
                (Some(data), _) => open_log(&data)?.reader().verify(progress("verify")),
                (None, Some(url)) => stream_chain(&url)?,
                (None, None) => bail!("give --data or --nats"),
            };
            print_report(&report, json)
        }
        Cmd::Audit { command: AuditCmd::Export { data, since, until } } => {
            let since = since.map(|s| parse_time("--since", &s)).transpose()?;
            let until = until.map(|s| parse_time("--until", &s)).transpose()?;
            audit_export(&data, since, until)
        }
        Cmd::Bench { command: BenchCmd::Run { full, nats_server, only } } => {
            let size = if full { crate::bench::Size::full() } else { crate::bench::Size::quick() };
            crate::bench::run(size, nats_server.as_deref(), &only)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench { command: BenchCmd::Append { data, writers, events, print_acks } } => {
            bench_append(&data, config(&cli.token_prefix)?, writers, events, print_acks)
        }
    }
}

fn init(data: &Path, config: Config) -> anyhow::Result<ExitCode> {
    let (registry, token) = Registry::init(data, config)?;
    let head = registry.head();
    drop(registry);
    eprintln!("initialised {} (log head {}).", data.display(), head.seq);
    eprintln!(
        "The token of the system org's first key follows on stdout. It is shown once and never stored: keep it now."
    );
    println!("{}", token.expose());
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn serve(data: &Path, config: Config, listen: &str, options: ServeOptions) -> anyhow::Result<ExitCode> {
    let registry = Registry::open(data, config)?;
    runtime()?.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        println!("keyreg listening on http://{addr}");
        std::io::stdout().flush()?;
        tracing::info!(%addr, head = %registry.head().seq, "serving");
        server::serve(listener, registry, options, server::shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    eprintln!("keyreg stopped");
    Ok(ExitCode::SUCCESS)
}

/// The log of an initialised data dir, opened for reading and checking.
fn open_log(data: &Path) -> anyhow::Result<Log> {
    let dir = data.join("log");
    if !dir.exists() {
        bail!(
            "{} is not an initialised keyreg data dir: run `keyreg init --data {}` first",
            data.display(),
            data.display()
        );
    }
    Ok(Log::open(&dir)?)
}

fn progress(what: &'static str) -> impl FnMut(u64) {
    move |n| eprintln!("{what}: {n} events")
}

#[derive(serde::Serialize)]
struct ReplayOutput<'a> {
    at: Timestamp,
    seq: Seq,
    orgs: Vec<&'a crate::projection::Org>,
    keys: Vec<crate::projection::KeyView<'a>>,
}

fn replay(data: &Path, at: Timestamp, org: Option<&OrgId>) -> anyhow::Result<ExitCode> {
    let log = open_log(data)?.reader();
    // Times in the log never go backwards, so the state at `at` is a prefix:
    // fold until the first later event, in one pass.
    let mut table = Table::default();
    let mut report = progress("replay");
    for record in log.read(Seq(1), None) {
        let record = record?;
        let decoded = crate::event::decode(record.bytes())?;
        if decoded.event.time > at {
            break;
        }
        table.apply(record.seq, &decoded.event);
        if record.seq.0.is_multiple_of(100_000) {
            report(record.seq.0);
        }
    }
    print_table(&table, at, org)?;
    Ok(ExitCode::SUCCESS)
}

/// The table at `at`, folded from the NATS stream after checking its chain
/// up to there.
fn replay_nats(url: &str, at: Timestamp, org: Option<&OrgId>) -> anyhow::Result<ExitCode> {
    let mut table = Table::default();
    let mut checker = ChainChecker::default();
    runtime()?.block_on(nats::read_all(url, |ev| {
        if !check_stream_event(&mut checker, &ev) {
            return false;
        }
        match crate::event::decode(&ev.bytes) {
            Ok(d) if d.event.time <= at => {
                table.apply(ev.seq, &d.event);
                true
            }
            _ => false,
        }
    }))?;
    let report = checker.report();
    if !report.ok {
        bail!(
            "the stream's chain is broken at seq {}: {}",
            report.first_bad_seq.unwrap_or_default(),
            report.problem.unwrap_or_default()
        );
    }
    print_table(&table, at, org)?;
    Ok(ExitCode::SUCCESS)
}

/// One stream event through the chain check; its `Keyreg-Hash` header must
/// be there and agree.
fn check_stream_event(checker: &mut ChainChecker, ev: &nats::StreamEvent) -> bool {
    match &ev.hash {
        Some(hash) => checker.check(ev.seq, &ev.bytes, Some(hash)),
        None => {
            checker.fail(ev.seq, "the message has no Keyreg-Hash header".into());
            false
        }
    }
}

fn stream_chain(url: &str) -> anyhow::Result<ChainReport> {
    let mut checker = ChainChecker::default();
    let mut report = progress("verify");
    runtime()?.block_on(nats::read_all(url, |ev| {
        let ok = check_stream_event(&mut checker, &ev);
        if ev.seq.0.is_multiple_of(100_000) {
            report(ev.seq.0);
        }
        ok
    }))?;
    Ok(checker.report())
}

fn verifier(config: ReplicaConfig, listen: &str) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let replica = Replica::start(config).await?;
        println!("keyreg verifier listening on http://{addr}");
        std::io::stdout().flush()?;
        replica.serve(listener, server::shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    eprintln!("keyreg verifier stopped");
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print_table(table: &crate::projection::Table, at: Timestamp, org: Option<&OrgId>) -> anyhow::Result<()> {
    let mut orgs: Vec<_> = table.orgs().filter(|o| org.is_none_or(|x| &o.id == x)).collect();
    orgs.sort_by(|a, b| a.id.cmp(&b.id));
    let keys = table.all_keys().into_iter().filter(|k| org.is_none_or(|x| &k.org == x)).map(|k| k.view(at)).collect();
    let out = ReplayOutput { at, seq: table.applied(), orgs, keys };
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &out)?;
    writeln!(stdout)?;
    Ok(())
}

fn print_report(report: &ChainReport, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else if report.ok {
        println!("ok: {} events, head seq {}, head hash {}", report.events, report.head_seq, report.head_hash);
    } else {
        println!(
            "BROKEN at seq {}: {} ({} events verified before it)",
            report.first_bad_seq.unwrap_or_default(),
            report.problem.as_deref().unwrap_or("unknown"),
            report.events
        );
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn audit_export(data: &Path, since: Option<Timestamp>, until: Option<Timestamp>) -> anyhow::Result<ExitCode> {
    let log = open_log(data)?.reader();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut report = progress("export");
    let mut n = 0u64;
    for record in log.read(Seq(1), None) {
        let record = record?;
        if since.is_some() || until.is_some() {
            let time = crate::event::decode(record.bytes())?.event.time;
            if since.is_some_and(|s| time < s) {
                continue;
            }
            if until.is_some_and(|u| time > u) {
                break;
            }
        }
        out.write_all(record.bytes())?;
        out.write_all(b"\n")?;
        n += 1;
        if n.is_multiple_of(100_000) {
            report(n);
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn bench_append(
    data: &Path,
    config: Config,
    writers: usize,
    events: u64,
    print_acks: bool,
) -> anyhow::Result<ExitCode> {
    let registry = match Registry::open(data, Config { clock: config.clock.clone(), format: config.format.clone() }) {
        Ok(r) => r,
        Err(registry::OpenError::NotInitialised(_)) => Registry::init(data, config)?.0,
        Err(e) => return Err(e.into()),
    };
    let stats = crate::bench::append::on_log(&registry, writers, events, print_acks)?;
    eprintln!("{stats}");
    Ok(ExitCode::SUCCESS)
}
