//! Making a data dir: `keyreg init` (a new registry and its first system
//! key), `init --join` (another node of an existing registry), and
//! `keyreg recover` (a new system key for a stopped registry).

use std::path::Path;
use std::process::ExitCode;

use crate::domain::id::Seq;
use crate::domain::note::LOG_KEY;
use crate::domain::token::Token;
use crate::registry::{Config, OpenError, Registry};
use crate::store::log::LogError;
use crate::store::{DataDir, key};

pub(super) fn init(data: &Path, config: Config) -> anyhow::Result<ExitCode> {
    let (registry, token) = Registry::init(&DataDir::new(data), config)?;
    eprintln!(
        "the log's key (give it to witnesses and auditors; `keyreg log-key` prints it again):\n{}",
        registry.log_key()
    );
    hand_out(registry, &token, |head| format!("initialised {} (log head {head}).", data.display()))
}

pub(super) fn join(data: &Path, pepper: &Path, log_key: Option<&Path>) -> anyhow::Result<ExitCode> {
    let pepper = crate::store::load_pepper(pepper)?;
    let log_key = log_key.map(|path| key::load(path, LOG_KEY)).transpose()?;
    let dir = DataDir::new(data);
    dir.create_joining(&pepper)?;
    if let Some(log_key) = log_key {
        key::save_new(&log_key, &dir.log_key_path())?;
    }
    eprintln!(
        "made {} for another node of the registry: its pepper, an empty log. Start it with `keyreg serve --nats …` \
         and the same --stream-prefix: it follows the stream, and leads when the leader is gone.",
        data.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn recover(data: &Path, config: Config) -> anyhow::Result<ExitCode> {
    let (registry, token) = Registry::recover(&DataDir::new(data), config).map_err(|e| match e {
        OpenError::Log(LogError::Locked(_)) => anyhow::anyhow!(
            "the registry on {} is running (its log is locked); stop it, then run keyreg recover again",
            data.display()
        ),
        other => other.into(),
    })?;
    hand_out(registry, &token, |head| {
        format!("recovered {}: a new system key, recorded at seq {head} as system:recovery.", data.display())
    })
}

/// Closes the registry, then prints a new system key's token alone on
/// stdout, once, and everything else on stderr.
fn hand_out(registry: Registry, token: &Token, done: impl FnOnce(Seq) -> String) -> anyhow::Result<ExitCode> {
    let head = registry.head();
    registry.close()?;
    eprintln!("{}", done(head.seq));
    eprintln!("The new system key's token follows on stdout. It is shown once and never stored: keep it now.");
    println!("{}", token.expose());
    Ok(ExitCode::SUCCESS)
}
