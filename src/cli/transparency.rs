//! The transparency log from the command line: `keyreg log-key` (the log's
//! public key, again), `keyreg witness` (run a witness), and `keyreg audit
//! verify --url` (a tenant checks its own org's history against a signed,
//! witnessed checkpoint, and that checkpoint against the one it saw last).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

use super::client::{Call, Client, Remote};
use crate::domain::merkle::{Hash, leaf_hash, verify_consistency, verify_inclusion};
use crate::domain::note::{COSIGNATURE, Checkpoint, LOG_KEY, Note, VerifierKey, hash_from_base64};
use crate::domain::time::SystemClock;
use crate::http::listen::Limits;
use crate::store::DataDir;
use crate::store::key;
use crate::witness::Witness;

#[derive(Args)]
pub struct LogKeyArgs {
    /// The registry's data dir.
    #[arg(long, env = "KEYREG_DATA")]
    data: PathBuf,
}

/// Prints the log's verifier key.
pub fn log_key(args: LogKeyArgs) -> anyhow::Result<ExitCode> {
    let dir = DataDir::new(&args.data);
    let path = dir.log_key_path();
    if !path.exists() {
        bail!(
            "{} has no log key yet: `keyreg init` makes one, and so does the first `keyreg serve`",
            args.data.display()
        );
    }
    println!("{}", key::load(&path, LOG_KEY)?.verifier());
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct WitnessArgs {
    /// The witness's own dir: its key (made on first start) and what it cosigned.
    #[arg(long, env = "KEYREG_WITNESS_DATA")]
    data: PathBuf,
    /// Address to listen on; port 0 picks a free one (the address is printed).
    #[arg(long, env = "KEYREG_LISTEN", default_value = "127.0.0.1:8090")]
    listen: String,
    /// The verifier key of a log to witness (`keyreg log-key`); repeat for several logs.
    #[arg(long = "log-key", required = true)]
    log_keys: Vec<String>,
    /// The name of this witness's key, made on first start (e.g. witness.example.com/w1).
    #[arg(long, default_value = "keyreg-witness")]
    name: String,
}

/// Runs a witness until SIGTERM or Ctrl-C.
pub fn witness(args: WitnessArgs) -> anyhow::Result<ExitCode> {
    let logs = args.log_keys.iter().map(|k| log_verifier(k, "--log-key")).collect::<anyhow::Result<Vec<_>>>()?;
    let witness = Arc::new(Witness::open(&args.data, &args.name, logs, Arc::new(SystemClock))?);
    eprintln!("witness key: {}", witness.key());
    super::runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        println!("keyreg witness listening on http://{}", listener.local_addr()?);
        std::io::stdout().flush()?;
        let router = witness.router();
        crate::http::listen::serve(listener, router, Limits::default(), crate::server::shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    eprintln!("keyreg witness stopped");
    Ok(ExitCode::SUCCESS)
}

fn log_verifier(text: &str, flag: &str) -> anyhow::Result<VerifierKey> {
    verifier(text, LOG_KEY, flag, "a log's key (`keyreg log-key`)")
}

fn verifier(text: &str, kind: u8, flag: &str, what: &str) -> anyhow::Result<VerifierKey> {
    let key = VerifierKey::parse(text).with_context(|| format!("{flag} {text}"))?;
    match key.kind == kind {
        true => Ok(key),
        false => bail!("{flag} {text}: this is not {what}"),
    }
}

/// `keyreg audit verify --url`: what a tenant checks.
#[derive(Args)]
pub struct TenantAudit {
    /// Check your organization's events through a registry's API (with an
    /// audit:read key in KEYREG_TOKEN) against its signed checkpoints.
    #[arg(long, requires_all = ["org", "log_key", "state"], conflicts_with_all = ["data", "nats"])]
    pub url: Option<String>,
    /// Your organization's id: every event checked must be its.
    #[arg(long)]
    org: Option<String>,
    /// The log's verifier key, as the registry's operator published it.
    #[arg(long)]
    log_key: Option<String>,
    /// A witness's verifier key; repeat for each witness you trust.
    #[arg(long = "witness-key")]
    witness_keys: Vec<String>,
    /// How many of those witnesses must have cosigned (default: all).
    #[arg(long)]
    quorum: Option<usize>,
    /// Where the last checkpoint checked is kept between runs (made on the first).
    #[arg(long)]
    state: Option<PathBuf>,
    #[arg(long, env = "KEYREG_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// How long to wait for a checkpoint that carries the quorum.
const QUORUM_WAIT: Duration = Duration::from_secs(5);

pub fn tenant_audit(args: TenantAudit) -> anyhow::Result<ExitCode> {
    let (Some(url), Some(org), Some(log_key), Some(state)) = (&args.url, &args.org, &args.log_key, &args.state) else {
        bail!("--url needs --org, --log-key and --state");
    };
    let log = log_verifier(log_key, "--log-key")?;
    let witnesses = args
        .witness_keys
        .iter()
        .map(|k| verifier(k, COSIGNATURE, "--witness-key", "a witness's key (`keyreg witness` prints it)"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let quorum = args.quorum.unwrap_or(witnesses.len());
    if quorum > witnesses.len() {
        bail!("--quorum {quorum} is more than the {} --witness-key given", witnesses.len());
    }
    let client = Client::new(&Remote::with(url, args.token.clone()))?;
    let (note, checkpoint) = witnessed_checkpoint(&client, &log, &witnesses, quorum)?;
    let mut failures = vec![];
    let previous = read_state(state, &log)?;
    if let Some(before) = &previous
        && let Err(why) = consistent(&client, before, &checkpoint)
    {
        failures.push(why);
    }
    let (checked, bad) = check_events(&client, org, &checkpoint)?;
    failures.extend(bad);
    let cosigned = witnesses.iter().filter(|w| note.signed_by(w)).count();
    println!(
        "checkpoint {} of {}: {} events, root {}, cosigned by {cosigned} of {} witnesses",
        checkpoint.origin,
        url,
        checkpoint.size,
        crate::domain::note::base64(&checkpoint.root),
        witnesses.len()
    );
    println!("{checked} events of {org} checked against it");
    if let Some(before) = &previous {
        println!("the checkpoint saved in {} had {} events", state.display(), before.size);
    }
    if !failures.is_empty() {
        failures.iter().for_each(|f| eprintln!("FAILED: {f}"));
        eprintln!("{} was left as it was", state.display());
        return Ok(ExitCode::FAILURE);
    }
    save_state(state, &note)?;
    println!("ok: saved the checkpoint in {}", state.display());
    Ok(ExitCode::SUCCESS)
}

/// The newest checkpoint, signed by the log and cosigned by `quorum` of
/// `witnesses`, waiting a little for the cosignatures to come in.
fn witnessed_checkpoint(
    client: &Client,
    log: &VerifierKey,
    witnesses: &[VerifierKey],
    quorum: usize,
) -> anyhow::Result<(Note, Checkpoint)> {
    let deadline = std::time::Instant::now() + QUORUM_WAIT;
    loop {
        let text = client.send_text(Call::new("GET", crate::http::route::CHECKPOINT))?;
        let note = Note::parse(&text).context("the registry's checkpoint is not a signed note")?;
        if !note.signed_by(log) {
            bail!("the registry's checkpoint is not signed by the log key {log}");
        }
        let checkpoint = Checkpoint::parse(&note.text)?;
        if checkpoint.origin != log.name {
            bail!("the checkpoint is of the log {}, not {}", checkpoint.origin, log.name);
        }
        let cosigned = witnesses.iter().filter(|w| note.signed_by(w)).count();
        if cosigned >= quorum {
            return Ok((note, checkpoint));
        }
        if std::time::Instant::now() > deadline {
            bail!("the newest checkpoint carries {cosigned} of the {quorum} witness cosignatures needed");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The checkpoint saved by the last run, which must still be the log's.
fn read_state(path: &Path, log: &VerifierKey) -> anyhow::Result<Option<Checkpoint>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let note = Note::parse(&text).with_context(|| format!("{} is not a saved checkpoint", path.display()))?;
    if !note.signed_by(log) {
        bail!("{} holds a checkpoint not signed by the log key {log}", path.display());
    }
    Ok(Some(Checkpoint::parse(&note.text)?))
}

/// Whether `now` extends `before`, by the registry's consistency proof.
fn consistent(client: &Client, before: &Checkpoint, now: &Checkpoint) -> Result<(), String> {
    let fork = || {
        format!(
            "the log's checkpoint of {} events is not consistent with the one of {} events saved last time: \
             the log was rewritten, or shows different histories to different readers",
            now.size, before.size
        )
    };
    if before.size > now.size {
        return Err(format!("the log shrank from {} events (saved last time) to {}", before.size, now.size));
    }
    if before.size == now.size {
        return if before.root == now.root { Ok(()) } else { Err(fork()) };
    }
    let call = Call::new("GET", crate::http::route::PROOF_CONSISTENCY)
        .query_opt("from", Some(before.size.to_string()))
        .query_opt("to", Some(now.size.to_string()));
    let answer = client.send(call).map_err(|e| format!("cannot get a consistency proof: {e:#}"))?;
    let proof = hashes(&answer).ok_or("the consistency proof is not a list of base64 hashes")?;
    match verify_consistency(before.size, now.size, &before.root, &now.root, &proof) {
        true => Ok(()),
        false => Err(fork()),
    }
}

/// Checks each of the org's events up to the checkpoint against it by its
/// inclusion proof; how many were checked, and what failed.
fn check_events(client: &Client, org: &str, checkpoint: &Checkpoint) -> anyhow::Result<(u64, Vec<String>)> {
    let (mut after, mut checked, mut failures) = (0u64, 0u64, vec![]);
    loop {
        let call = Call::new("GET", crate::http::route::EVENTS)
            .query_opt("after_seq", Some(after.to_string()))
            .query_opt("limit", Some("1000".into()));
        let page = client.send_text(call)?;
        let lines: Vec<&str> = page.lines().filter(|l| !l.is_empty()).collect();
        for line in &lines {
            let event: Value = serde_json::from_str(line).context("an event is not JSON")?;
            let seq = event["seq"].as_u64().context("an event has no seq")?;
            after = seq;
            if seq > checkpoint.size {
                return Ok((checked, failures));
            }
            if event["org"].as_str() != Some(org) {
                failures.push(format!("event {seq} is of the organization {}, not {org}", event["org"]));
                continue;
            }
            let call = Call::new("GET", crate::http::route::PROOF_INCLUSION)
                .query_opt("seq", Some(seq.to_string()))
                .query_opt("size", Some(checkpoint.size.to_string()));
            let answer = client.send(call)?;
            let proof = hashes(&answer).context("an inclusion proof is not a list of base64 hashes")?;
            if !verify_inclusion(seq - 1, checkpoint.size, &leaf_hash(line.as_bytes()), &proof, &checkpoint.root) {
                failures
                    .push(format!("event {seq} fails its inclusion proof: it is not the event the checkpoint covers"));
            }
            checked += 1;
        }
        if lines.len() < 1000 {
            return Ok((checked, failures));
        }
    }
}

fn hashes(answer: &Value) -> Option<Vec<Hash>> {
    answer["hashes"].as_array()?.iter().map(|h| hash_from_base64(h.as_str()?)).collect()
}

/// Replaces the state file: written aside, fsynced, renamed.
fn save_state(path: &Path, note: &Note) -> anyhow::Result<()> {
    let aside = path.with_extension("new");
    let mut file = std::fs::File::create(&aside).with_context(|| format!("cannot write {}", aside.display()))?;
    file.write_all(note.to_string().as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&aside, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}
