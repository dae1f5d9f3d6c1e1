//! The command line: flags (also read from `KEYREG_*` variables), logging
//! setup, and one function per command. The binary's `main` calls `main`
//! here; `anyhow` lives at this edge only. `history` holds replay, audit
//! verify and export; `keys` the HTTP client behind `keyreg keys`.

mod audit;
mod client;
mod clock;
mod config;
mod history;
mod init;
pub mod keys;
mod org;
mod parse;
mod roles;
mod show;
mod transparency;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::domain::cidr::Cidr;
use crate::domain::id::OrgId;
use crate::domain::time::SystemClock;
use crate::domain::token::TokenFormat;
use crate::http::ApiOptions;
use crate::http::listen::Limits;
use crate::nats::node::NodeOptions;
use crate::nats::{Layout, Nats};
use crate::registry::{Config, OrgRate, Registry};
use crate::replica::{Replica, ReplicaConfig};
use crate::server::{self, Commit, ServeOptions};
use crate::store::{self, DataDir};
use parse::{parse_duration, parse_node, parse_time, whole_day};

#[derive(Parser)]
#[command(name = "keyreg", version, about = "An event-sourced API-key registry")]
struct Cli {
    /// The token prefix of this deployment.
    #[arg(long, global = true, env = "KEYREG_TOKEN_PREFIX", default_value = crate::domain::token::DEFAULT_PREFIX)]
    token_prefix: String,
    /// Names this registry's NATS streams and subjects (PREFIX_EVENTS,
    /// prefix.events.>, …), so one NATS can carry several registries.
    #[arg(long, global = true, env = "KEYREG_STREAM_PREFIX", default_value = crate::nats::DEFAULT_PREFIX)]
    stream_prefix: String,
    /// A TOML file of flags named as here (`data = "DIR"`); flags and the environment win.
    // Read before parsing (`config.rs`); declared so clap takes and lists it.
    #[arg(long, global = true, env = "KEYREG_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Make a data dir: the pepper, the `_system` org and its first key.
    /// The key's token goes to stdout, once; everything else to stderr.
    ///
    /// With --join: the data dir of another node of an existing registry,
    /// holding a copy of its pepper and an empty log (no key is made; the
    /// node fills its log from the stream).
    Init {
        /// The data dir to make (pepper, log, snapshots); it must not exist
        /// or be empty.
        #[arg(long, env = "KEYREG_DATA")]
        data: PathBuf,
        /// Make a node of an existing registry (needs --pepper-file).
        #[arg(long, requires = "pepper_file")]
        join: bool,
        /// With --join: the registry's pepper (another node's DIR/pepper).
        #[arg(long, requires = "join")]
        pepper_file: Option<PathBuf>,
        /// With --join: the log's signing key (another node's DIR/log-key),
        /// so every node signs checkpoints as the same log.
        #[arg(long, requires = "join")]
        log_key_file: Option<PathBuf>,
        /// The name of the log's signing key and of its checkpoints' origin
        /// (default: keyreg/ and the stream prefix in lower case).
        #[arg(long, conflicts_with = "join")]
        log_origin: Option<String>,
    },
    /// Issue a new system key when every key that could make one is lost.
    /// The registry must be stopped. The token goes to stdout, once.
    Recover {
        /// The stopped registry's data dir.
        #[arg(long, env = "KEYREG_DATA")]
        data: PathBuf,
    },
    /// Run the registry: the HTTP API on --listen over the data dir.
    Serve {
        /// The data dir `keyreg init` made (pepper, log, snapshots).
        #[arg(long, env = "KEYREG_DATA")]
        data: PathBuf,
        /// Address to listen on; port 0 picks a free one (the address is printed).
        #[arg(long, env = "KEYREG_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// This node's name in access reports and in the leader's lease,
        /// unique among the registry's nodes (1-64 of [A-Za-z0-9._-]).
        #[arg(long, env = "KEYREG_NODE", default_value = "registry", value_parser = parse_node)]
        node: String,
        /// Where the registry's other nodes reach this one's HTTP API, to
        /// forward writes to it when it leads (default: http:// and the
        /// listen address).
        #[arg(long, env = "KEYREG_ADVERTISE")]
        advertise: Option<String>,
        /// With stream commit: how long the leader's lease lasts unrenewed;
        /// a standby leads within this plus a second of the leader's crash.
        #[arg(long, env = "KEYREG_LEASE", default_value = "3s", value_parser = parse_duration)]
        lease: Duration,
        /// Milliseconds between flushes of access counts into `key.accessed` events.
        #[arg(long, env = "KEYREG_ACCESS_FLUSH_MS", default_value_t = 10_000)]
        access_flush_ms: u64,
        /// NATS URL to publish events to (a cluster's seeds, comma-separated),
        /// or `none` (events wait in the log).
        #[arg(long, env = "KEYREG_NATS", default_value = "none")]
        nats: String,
        /// When a write is acknowledged: `stream` (the default with --nats)
        /// once sled and JetStream both stored it; `local` once sled stored
        /// it, NATS catching up later (always so with --nats none).
        #[arg(long, env = "KEYREG_COMMIT", value_enum)]
        commit: Option<CommitMode>,
        /// With stream commit: how long a write waits for JetStream before
        /// it answers 503 (e.g. 2s, 500ms).
        #[arg(long, env = "KEYREG_COMMIT_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
        commit_timeout: Duration,
        /// Copies NATS keeps of each stream and bucket (3 on a 3-node cluster).
        #[arg(long, env = "KEYREG_STREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
        stream_replicas: u8,
        /// Snapshot the projections each time the log passes a multiple of
        /// this many events (and on a clean stop); with NATS, each is also
        /// published for new replicas to start from.
        #[arg(long, env = "KEYREG_SNAPSHOT_EVERY", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
        snapshot_every: u64,
        /// Seconds a console session may stay unused before it ends (at
        /// most 3600, the default; a session never outlives 12 hours).
        #[arg(long, env = "KEYREG_CONSOLE_IDLE_SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=3600))]
        console_idle_secs: u64,
        /// Events one organization may append per minute (beyond: 429 with
        /// Retry-After); 0: no limit. keyreg's own events and the _system
        /// org's are not counted.
        #[arg(long, env = "KEYREG_ORG_EVENTS_PER_MINUTE", default_value_t = OrgRate::DEFAULT.events_per_minute)]
        org_events_per_minute: u64,
        /// Bytes of events one organization may append per minute; 0: no limit.
        #[arg(long, env = "KEYREG_ORG_BYTES_PER_MINUTE", default_value_t = OrgRate::DEFAULT.bytes_per_minute)]
        org_bytes_per_minute: u64,
        /// For tests only: the clock runs ahead of the system's by the
        /// seconds written in this file (`cli/clock.rs`).
        #[arg(long, hide = true)]
        clock_offset_file: Option<PathBuf>,
        /// For tests only: milliseconds the background check of the chain
        /// waits before it starts.
        #[arg(long, hide = true, default_value_t = 0)]
        chain_check_delay_ms: u64,
        /// A witness (http:// URL, C2SP tlog-witness) to send each new
        /// checkpoint to; repeat, or separate with commas.
        #[arg(long = "witness", env = "KEYREG_WITNESS", value_delimiter = ',')]
        witnesses: Vec<String>,
        /// A secret-scanning partner's public keys (GitHub's JSON shape:
        /// {"public_keys": [{"key_identifier", "key", "is_current"}]}),
        /// read on each report: POST /v1/leaks revokes the live keys it names.
        #[arg(long, env = "KEYREG_LEAK_KEYS", value_name = "FILE")]
        leak_keys: Option<PathBuf>,
        /// With NATS: how often the leader looks for keys expiring within 7
        /// days to send `key.expiring` notices about (each key is noticed
        /// once a week before and once a day before its expiry); 0: never.
        #[arg(long, env = "KEYREG_EXPIRY_NOTICES_EVERY", default_value = "1h", value_parser = parse_duration)]
        expiry_notices_every: Duration,
        #[command(flatten)]
        proxies: ProxyArgs,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Run a verifier replica: follow the stream, answer verify locally.
    Verifier {
        /// The NATS the registry publishes to (a cluster's seeds,
        /// comma-separated).
        #[arg(long, env = "KEYREG_NATS")]
        nats: String,
        /// Address to listen on; port 0 picks a free one (the address is printed).
        #[arg(long, env = "KEYREG_LISTEN", default_value = "127.0.0.1:8081")]
        listen: String,
        /// The registry's pepper (DIR/pepper), 32 bytes, mode 0600.
        #[arg(long, env = "KEYREG_PEPPER_FILE")]
        pepper_file: PathBuf,
        /// This replica's name in access reports (1-64 of [A-Za-z0-9._-]).
        #[arg(long, env = "KEYREG_NODE", default_value = "replica", value_parser = parse_node)]
        node: String,
        #[arg(long, env = "KEYREG_ACCESS_FLUSH_MS", default_value_t = 10_000)]
        access_flush_ms: u64,
        /// Refuse verifies (503 STALE) after hearing no registry heartbeat,
        /// or staying behind it, this long: e.g. 500ms, 2s; 0: never.
        #[arg(long, env = "KEYREG_MAX_STALENESS", default_value = "2s", value_parser = parse_duration)]
        max_staleness: Duration,
        /// Replay the stream from its first event instead of starting from
        /// the newest snapshot the registry published.
        #[arg(long)]
        from_stream: bool,
        #[command(flatten)]
        proxies: ProxyArgs,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Print the key table as it stood at a time, as JSON.
    Replay {
        #[command(flatten)]
        source: history::Source,
        /// An RFC 3339 time, e.g. 2026-11-22T10:00:00Z.
        #[arg(long)]
        at: String,
        /// Only this organization.
        #[arg(long)]
        org: Option<String>,
    },
    /// Print a completion script for your shell, e.g.
    /// `keyreg completions bash > ~/.local/share/bash-completion/completions/keyreg`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the log's public key (a signed-note verifier key), for
    /// witnesses and auditors.
    LogKey(transparency::LogKeyArgs),
    /// Run a witness: cosign a log's checkpoints that extend the last one
    /// it cosigned (C2SP tlog-witness).
    Witness(transparency::WitnessArgs),
    /// Check or export the hash-chained history.
    Audit {
        #[command(subcommand)]
        command: AuditCmd,
    },
    /// Manage keys through a registry's HTTP API (token from KEYREG_TOKEN).
    Keys(keys::KeysArgs),
    /// Manage the organization's roles: named bundles of scopes.
    Roles(roles::RolesArgs),
    /// Show or replace the organization's catalogue of actions.
    Catalog(roles::CatalogArgs),
    /// List the built-in presets of scopes.
    Presets(roles::PresetsArgs),
    /// Show or rename your organization.
    Org(org::OrgArgs),
    /// Create organizations and set their quotas (operators: a system key).
    Orgs(org::OrgsArgs),
    /// Your organization's use: verifies per day, as a chart.
    Usage(org::UsageArgs),
    /// Manage the NATS event stream.
    Stream {
        #[command(subcommand)]
        command: StreamCmd,
    },
}

/// `serve --commit`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum CommitMode {
    Stream,
    Local,
}

#[derive(Subcommand)]
enum StreamCmd {
    /// Delete the event stream, so that the registry republishes its whole
    /// log on its next start: the way out when the stream diverges from the
    /// log (a wiped data dir, another registry's events). Stop the registry
    /// first; restart replicas after.
    Reset {
        /// The NATS holding the stream (a cluster's seeds, comma-separated).
        #[arg(long, env = "KEYREG_NATS")]
        nats: String,
        /// Yes, delete it.
        #[arg(long)]
        yes: bool,
    },
}

/// What one HTTP connection may hold.
#[derive(clap::Args)]
struct LimitArgs {
    /// How long a request's headers, or its body, may take to arrive; also
    /// how long a kept-alive connection may sit idle: e.g. 500ms, 10s.
    #[arg(long, env = "KEYREG_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    read_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    #[arg(long, env = "KEYREG_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Connections one client address may hold open; more are closed at once.
    #[arg(long, env = "KEYREG_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 256)]
    max_connections_per_client: usize,
}

/// Whom forward auth (`/v1/authz`) believes about the caller's address.
#[derive(Args)]
struct ProxyArgs {
    /// A proxy (an address or a range) whose X-Forwarded-For forward auth
    /// believes; repeat, or separate with commas (default: loopback).
    #[arg(long = "trusted-proxy", env = "KEYREG_TRUSTED_PROXY", value_delimiter = ',', value_name = "CIDR", value_parser = parse_cidr)]
    trusted_proxies: Vec<Cidr>,
}

impl ProxyArgs {
    fn cidrs(self) -> Vec<Cidr> {
        if self.trusted_proxies.is_empty() { Cidr::loopback() } else { self.trusted_proxies }
    }
}

fn parse_cidr(s: &str) -> Result<Cidr, String> {
    Cidr::parse(s).map_err(|e| e.to_string())
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            read_timeout: self.read_timeout,
            max_connections: self.max_connections,
            max_per_client: self.max_connections_per_client,
        }
    }
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the whole chain; exit 1 naming the first bad sequence. With
    /// --url: check your organization's events against the log's signed,
    /// witnessed checkpoint instead.
    Verify {
        #[command(flatten)]
        source: history::Source,
        #[command(flatten)]
        tenant: transparency::TenantAudit,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The organization's events through the registry's API, newest first.
    Log(audit::LogArgs),
    /// Write the stored events, one per line, byte for byte.
    Export {
        /// The data dir whose log to export (the registry may be running).
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

pub fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().collect();
    let command = <Cli as clap::CommandFactory>::command();
    let loaded = config::load(&args, &command);
    init_tracing();
    // Made again once the config file has set its variables: clap reads a
    // flag's variable when the flag is made.
    let parse = |args| {
        let matches = client::stream_prefix_unlisted(<Cli as clap::CommandFactory>::command()).get_matches_from(args);
        <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    };
    match loaded.and_then(|()| run(parse(client::hoist_remote_flags(args, &command)))) {
        Ok(code) => code,
        // The reader went away (`keyreg replay | head`): not an error of ours.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", show::error(&e));
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr through `tracing`, warnings only unless `RUST_LOG` says
/// otherwise, coloured only for a terminal.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// The origin of a log made without --log-origin.
fn default_origin(stream_prefix: &str) -> String {
    format!("keyreg/{}", stream_prefix.to_ascii_lowercase())
}

fn config(prefix: &str) -> anyhow::Result<Config> {
    let format = TokenFormat::new(prefix).context("--token-prefix must be 1 to 16 characters of [a-z0-9_]")?;
    Ok(Config::new(Arc::new(SystemClock), format))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let layout = Layout::new(&cli.stream_prefix)?;
    let nats = |url: &str| Nats { url: url.to_owned(), layout: layout.clone(), replicas: 1 };
    match cli.command {
        Cmd::Init { data, join: true, pepper_file: Some(pepper), log_key_file, .. } => {
            init::join(&data, &pepper, log_key_file.as_deref())
        }
        Cmd::Init { data, log_origin, .. } => {
            let origin = log_origin.unwrap_or_else(|| default_origin(&cli.stream_prefix));
            init::init(&data, Config { log_origin: origin, ..config(&cli.token_prefix)? })
        }
        Cmd::LogKey(args) => transparency::log_key(args),
        Cmd::Witness(args) => transparency::witness(args),
        Cmd::Recover { data } => init::recover(&data, config(&cli.token_prefix)?),
        Cmd::Serve {
            data,
            listen,
            node,
            advertise,
            lease,
            access_flush_ms,
            nats: url,
            commit,
            commit_timeout,
            stream_replicas,
            snapshot_every,
            console_idle_secs,
            org_events_per_minute,
            org_bytes_per_minute,
            clock_offset_file,
            chain_check_delay_ms,
            witnesses,
            leak_keys,
            expiry_notices_every,
            proxies,
            limits,
        } => {
            let options = ServeOptions {
                node: NodeOptions { name: node, url: advertise.unwrap_or_default(), lease },
                access_flush: Duration::from_millis(access_flush_ms.max(10)),
                nats: (url != "none").then(|| Nats { replicas: stream_replicas.into(), ..nats(&url) }),
                commit: match commit {
                    Some(CommitMode::Local) => Commit::Local,
                    _ if url == "none" => Commit::Local,
                    Some(CommitMode::Stream) | None => Commit::Stream { timeout: commit_timeout },
                },
                limits: limits.limits(),
                console_idle: Duration::from_secs(console_idle_secs),
                witnesses,
                notice_every: expiry_notices_every,
                api: ApiOptions { trusted_proxies: proxies.cidrs().into(), leak_keys, ..ApiOptions::default() },
                ..ServeOptions::default()
            };
            let org_rate = OrgRate { events_per_minute: org_events_per_minute, bytes_per_minute: org_bytes_per_minute };
            let check_delay = Duration::from_millis(chain_check_delay_ms);
            let log_origin = default_origin(&cli.stream_prefix);
            let mut config = Config { snapshot_every, org_rate, check_delay, log_origin, ..config(&cli.token_prefix)? };
            if let Some(file) = clock_offset_file {
                config.clock = Arc::new(clock::OffsetFileClock::new(file));
            }
            serve(&data, config, &listen, options)
        }
        Cmd::Keys(args) => keys::run(args).map(|ok| if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }),
        Cmd::Roles(args) => roles::roles(args).map(|_| ExitCode::SUCCESS),
        Cmd::Catalog(args) => roles::catalog(args).map(|_| ExitCode::SUCCESS),
        Cmd::Presets(args) => roles::presets(args).map(|_| ExitCode::SUCCESS),
        Cmd::Org(args) => org::org(args).map(|_| ExitCode::SUCCESS),
        Cmd::Orgs(args) => org::orgs(args).map(|_| ExitCode::SUCCESS),
        Cmd::Usage(args) => org::org_usage(args).map(|_| ExitCode::SUCCESS),
        Cmd::Replay { source, at, org } => {
            let at = parse_time("--at", &at)?;
            let org = org.as_deref().map(OrgId::parse).transpose()?;
            history::replay(&source, &layout, at, org.as_ref())?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Verifier {
            nats: url,
            listen,
            pepper_file,
            node,
            access_flush_ms,
            max_staleness,
            from_stream,
            proxies,
            limits,
        } => {
            let config = config(&cli.token_prefix)?;
            let mut replica = ReplicaConfig::new(&url, store::load_pepper(&pepper_file)?);
            replica.nats = nats(&url);
            replica.format = config.format;
            replica.node = node;
            replica.access_flush = Duration::from_millis(access_flush_ms.max(10));
            replica.max_staleness = (!max_staleness.is_zero()).then_some(max_staleness);
            replica.bootstrap = !from_stream;
            replica.trusted_proxies = proxies.cidrs();
            verifier(replica, &listen, limits.limits())
        }
        Cmd::Audit { command: AuditCmd::Verify { tenant, .. } } if tenant.url.is_some() => {
            transparency::tenant_audit(tenant)
        }
        Cmd::Audit { command: AuditCmd::Verify { source, json, .. } } => {
            let report = history::verify(&source, &layout)?;
            history::print_report(&report, json)?;
            Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            // Written whole, then printed: a closed pipe is then an error
            // like any other, not a panic inside the generator.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "keyreg", &mut script);
            std::io::stdout().write_all(&script)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Stream { command: StreamCmd::Reset { nats: url, yes } } => {
            if !yes {
                eprintln!(
                    "would delete the stream {}, the access reports {}, the snapshots {} and the lease {} on {url} \
                     (nothing is deleted without --yes); stop the registry, then run again with --yes",
                    layout.events_stream(),
                    layout.access_stream(),
                    layout.snapshots_bucket(),
                    layout.leader_bucket()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let deleted = runtime()?.block_on(nats(&url).reset())?;
            match deleted.is_empty() {
                true => eprintln!("there was nothing of prefix {} on {url}", cli.stream_prefix),
                false => eprintln!(
                    "deleted {}; start the registry to publish its log from sequence 1, then restart the replicas",
                    deleted.join(", ")
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Audit { command: AuditCmd::Log(args) } => audit::log(args).map(|_| ExitCode::SUCCESS),
        Cmd::Audit { command: AuditCmd::Export { data, since, until } } => {
            let since = since.map(|s| parse_time("--since", &s)).transpose()?;
            let until = until.map(|s| parse_time("--until", &s)).transpose()?;
            history::export(&data, since, until)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn serve(data: &Path, config: Config, listen: &str, options: ServeOptions) -> anyhow::Result<ExitCode> {
    let registry = Registry::open(&DataDir::new(data), config)?;
    let served = registry.clone();
    runtime()?.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        println!("keyreg listening on http://{addr}");
        std::io::stdout().flush()?;
        tracing::info!(%addr, head = %served.head().seq, "serving");
        server::serve(listener, served, options, server::shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    registry.close()?;
    eprintln!("keyreg stopped");
    Ok(ExitCode::SUCCESS)
}

/// Progress of long work, on stderr.
fn progress(what: &'static str) -> impl FnMut(u64) {
    move |n| eprintln!("{what}: {n} events")
}

fn verifier(config: ReplicaConfig, listen: &str, limits: Limits) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let replica = Replica::start(config).await?;
        println!("keyreg verifier listening on http://{addr}");
        std::io::stdout().flush()?;
        crate::replica::http::serve(&replica, listener, limits, server::shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    eprintln!("keyreg verifier stopped");
    Ok(ExitCode::SUCCESS)
}
