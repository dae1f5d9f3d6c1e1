//! History from the command line: `keyreg replay` (the table as it stood at
//! a time), `keyreg audit verify` (the chain) and `keyreg audit export` (the
//! stored bytes). Replay and verify read either a stopped registry's data
//! dir or the NATS stream, through the same fold.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::bail;

use super::progress;
use crate::domain::chain::ChainReport;
use crate::domain::history::{Apply, History, Step};
use crate::domain::id::{OrgId, Seq};
use crate::domain::mac::MessageKeys;
use crate::domain::table::{KeyView, Org, Table};
use crate::domain::time::Timestamp;
use crate::nats::{Layout, Nats};
use crate::registry::{PROGRESS_EVERY, fold_log};
use crate::store::DataDir;
use crate::store::log::{Log, Reader};

/// Where history is read from: a data dir or the NATS stream.
#[derive(clap::Args)]
pub struct Source {
    /// A data dir (of a registry that is not running: sled locks it).
    #[arg(long, env = "KEYREG_DATA", conflicts_with = "nats")]
    data: Option<PathBuf>,
    /// A NATS server holding the KEYREG_EVENTS stream (needs --pepper-file).
    #[arg(long)]
    nats: Option<String>,
    /// With --nats: the registry's pepper file, to check that each event
    /// on the stream was published by the registry (its MAC).
    #[arg(long, env = "KEYREG_PEPPER_FILE", requires = "nats")]
    pepper_file: Option<PathBuf>,
}

/// The log of an initialised data dir, opened for reading.
fn open_log(data: &Path) -> anyhow::Result<Reader> {
    let path = DataDir::new(data).require_log()?;
    Ok(Log::open(&path)?.reader())
}

/// Feeds the whole history of `source` into `history`, reporting progress.
fn fold<T: Apply>(
    source: &Source,
    layout: &Layout,
    history: &mut History<T>,
    what: &'static str,
) -> anyhow::Result<()> {
    let mut report = progress(what);
    match (&source.data, &source.nats) {
        (Some(data), _) => fold_log(&open_log(data)?, history, None, report)?,
        (None, Some(url)) => {
            let Some(pepper_file) = &source.pepper_file else {
                bail!(
                    "reading the stream needs --pepper-file (the registry's pepper): without it, an event \
                     published by anyone allowed on that NATS could not be told from the registry's"
                );
            };
            let keys = MessageKeys::new(&crate::store::load_pepper(pepper_file)?);
            let nats = Nats { url: url.clone(), layout: layout.clone(), replicas: 1 };
            super::runtime()?.block_on(nats.read_all(|ev| {
                if ev.seq.0.is_multiple_of(PROGRESS_EVERY) {
                    report(ev.seq.0);
                }
                if !ev.authentic(&keys) {
                    history.fail(ev.seq, "its MAC does not hold: the registry did not publish it".into());
                    return false;
                }
                matches!(history.push(ev.seq, &ev.bytes, ev.hash), Ok(Step::Applied | Step::Held))
            }))?
        }
        (None, None) => bail!("give --data DIR (a stopped registry's data dir) or --nats URL"),
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct ReplayOutput<'a> {
    at: Timestamp,
    seq: Seq,
    orgs: Vec<&'a Org>,
    keys: Vec<KeyView<'a>>,
}

/// Prints the table as it stood at `at`, after checking the chain up to
/// there: a history that does not check out is not replayed.
pub fn replay(source: &Source, layout: &Layout, at: Timestamp, org: Option<&OrgId>) -> anyhow::Result<()> {
    let mut history = History::new(Table::default()).until(at);
    fold(source, layout, &mut history, "replay")?;
    if let Some(b) = history.broken() {
        bail!("{b}; `keyreg audit verify` says more");
    }
    let table = history.state();
    let mut orgs: Vec<&Org> = table.orgs().filter(|o| org.is_none_or(|x| &o.id == x)).collect();
    orgs.sort_by(|a, b| a.id.cmp(&b.id));
    let keys =
        table.all_keys().into_iter().filter(|k| org.is_none_or(|x| &k.org == x)).map(|k| table.view(k, at)).collect();
    let out = ReplayOutput { at, seq: table.applied(), orgs, keys };
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &out)?;
    writeln!(stdout)?;
    Ok(())
}

/// Checks the whole chain of `source`.
pub fn verify(source: &Source, layout: &Layout) -> anyhow::Result<ChainReport> {
    let mut history = History::new(());
    fold(source, layout, &mut history, "verify")?;
    Ok(history.report())
}

pub fn print_report(report: &ChainReport, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else if report.ok {
        writeln!(out, "ok: {} events, head seq {}, head hash {}", report.events, report.head_seq, report.head_hash)?;
    } else {
        writeln!(
            out,
            "BROKEN at seq {}: {} ({} events verified before it)",
            report.first_bad_seq.unwrap_or_default(),
            report.problem.as_deref().unwrap_or("unknown"),
            report.events
        )?;
    }
    Ok(())
}

/// Writes the stored events stamped between `since` and `until`, one per
/// line, byte for byte.
pub fn export(data: &Path, since: Option<Timestamp>, until: Option<Timestamp>) -> anyhow::Result<()> {
    let log = open_log(data)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut report = progress("export");
    let mut n = 0u64;
    // Every record's link is checked, those skipped too: an export never
    // carries a record whose link fails, and says where the chain broke.
    let mut chain = crate::domain::chain::ChainChecker::default();
    for record in log.read(Seq(1), None) {
        let record = record?;
        let time = match chain.check(record.seq, record.bytes(), Some(record.hash)) {
            Ok(decoded) => decoded.event.time,
            Err(b) => {
                out.flush()?;
                anyhow::bail!("{b}; the export stops before it (run `keyreg audit verify`)");
            }
        };
        if since.is_some_and(|s| time < s) {
            continue;
        }
        if until.is_some_and(|u| time > u) {
            break;
        }
        out.write_all(record.bytes())?;
        out.write_all(b"\n")?;
        n += 1;
        if n.is_multiple_of(PROGRESS_EVERY) {
            report(n);
        }
    }
    out.flush()?;
    Ok(())
}
