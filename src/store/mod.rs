//! The data dir on disk: its layout, the pepper file, and (with the `server`
//! feature) the sled log inside it. The layout is known here and nowhere
//! else:
//!
//! ```text
//! DIR/          mode 0700: the owner alone reads any of it
//! DIR/pepper    32 random bytes, mode 0600: the key of every token hash
//! DIR/log/      sled: the hash-chained event log (`log.rs`)
//! DIR/snapshots/ the projections at a few past sequences (`snapshot.rs`)
//! DIR/log-key   the log's Ed25519 signing key, mode 0600 (`key.rs`): signs
//!               the checkpoints of its Merkle tree
//! DIR/commit    "stream" while the node commits to the event stream (the
//!               end of its log may hold events no stream confirmed),
//!               "stream settled" once it stopped with none
//! ```
//!
//! Pepper files are read here for replicas too (`--pepper-file`), which is
//! why this module, unlike `log`, is built without the server.

pub mod key;
#[cfg(feature = "server")]
pub mod log;
#[cfg(feature = "server")]
pub mod snapshot;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::domain::chain::ChainHash;
use crate::domain::id::Seq;
use crate::domain::token::Pepper;

#[derive(Debug, thiserror::Error)]
pub enum PepperError {
    #[error("cannot read the pepper file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error(
        "the pepper file {path} can be read by group or others (mode {mode:03o}); the pepper is the key of every \
         token hash: run `chmod 600 {path}`"
    )]
    Exposed { path: String, mode: u32 },
    #[error("the pepper file {path} must hold exactly 32 bytes, it holds {len}")]
    Length { path: String, len: usize },
    #[error("cannot write the pepper file {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// Reads a pepper file (a data dir's, or the copy a replica is given). A
/// file that group or others may read is refused, as ssh refuses a private
/// key: whoever reads it can test guesses against every stored hash.
pub fn load_pepper(path: &Path) -> Result<Pepper, PepperError> {
    let shown = || path.display().to_string();
    let read = |source| PepperError::Read { path: shown(), source };
    let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PepperError::Exposed { path: shown(), mode });
    }
    let bytes = std::fs::read(path).map_err(read)?;
    let bytes: [u8; 32] =
        bytes.as_slice().try_into().map_err(|_| PepperError::Length { path: shown(), len: bytes.len() })?;
    Ok(Pepper::from_bytes(bytes))
}

/// Writes a pepper to a new file with mode 0600; refuses to overwrite.
fn save_new_pepper(pepper: &Pepper, path: &Path) -> Result<(), PepperError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| PepperError::Write { path: path.display().to_string(), source };
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(err)?;
    f.write_all(pepper.bytes()).map_err(err)?;
    f.sync_all().map_err(err)
}

fn restrict(path: &Path) -> Result<(), DirError> {
    let err = |source| DirError::Permissions { path: path.display().to_string(), source };
    let meta = std::fs::symlink_metadata(path).map_err(err)?;
    let wanted = if meta.is_dir() { 0o700 } else { 0o600 };
    if (meta.is_dir() || meta.is_file()) && meta.permissions().mode() & 0o777 != wanted {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted)).map_err(err)?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(err)? {
            restrict(&entry.map_err(err)?.path())?;
        }
    }
    Ok(())
}

/// A keyreg data dir.
#[derive(Clone, Debug)]
pub struct DataDir {
    /// Shared: every handle on a registry (one per request) holds one.
    root: std::sync::Arc<Path>,
}

#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("{0} is already initialised (it has a pepper or a log); nothing was changed")]
    AlreadyInitialised(String),
    #[error("{0} is not an initialised keyreg data dir: run `keyreg init --data {0}` first")]
    NotInitialised(String),
    #[error("cannot create the data dir {dir}: {source}")]
    Create { dir: String, source: std::io::Error },
    #[error(transparent)]
    Pepper(#[from] PepperError),
    #[error("cannot restrict the permissions of {path}: {source}")]
    Permissions { path: String, source: std::io::Error },
}

impl DataDir {
    pub fn new(root: &Path) -> DataDir {
        DataDir { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn pepper_path(&self) -> PathBuf {
        self.root.join("pepper")
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join("log")
    }

    pub fn snapshots_path(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    pub fn log_key_path(&self) -> PathBuf {
        self.root.join("log-key")
    }

    fn shown(&self) -> String {
        self.root.display().to_string()
    }

    /// Makes a new data dir (mode 0700) holding a new pepper; refuses one
    /// that is already initialised, changing nothing.
    pub fn create(&self, pepper: &Pepper) -> Result<(), DirError> {
        if self.pepper_path().exists() || self.log_path().exists() {
            return Err(DirError::AlreadyInitialised(self.shown()));
        }
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|source| DirError::Create { dir: self.shown(), source })?;
        Ok(save_new_pepper(pepper, &self.pepper_path())?)
    }

    /// Makes the data dir of another node of an existing registry: its
    /// `pepper`, an empty log, and the mark that the log holds nothing
    /// acknowledged here (it fills from the stream).
    #[cfg(feature = "server")]
    pub fn create_joining(&self, pepper: &Pepper) -> Result<(), DirError> {
        self.create(pepper)?;
        log::Log::open(&self.log_path())
            .map_err(|e| DirError::Create { dir: self.shown(), source: std::io::Error::other(e.to_string()) })?;
        self.set_commit_mark(CommitMark::Stream).map_err(|source| DirError::Create { dir: self.shown(), source })
    }

    /// Restricts the data dir to its owner: the dirs 0700, the files 0600.
    /// The log holds every tenant's metadata and the keyed hashes; sled
    /// makes its files with the default umask, and older data dirs were
    /// made with it too. Returns whether the dir itself was open to others
    /// (sled's new files inside a closed dir were not exposed).
    pub fn restrict(&self) -> Result<bool, DirError> {
        let err = |source| DirError::Permissions { path: self.shown(), source };
        let exposed = std::fs::metadata(&self.root).map_err(err)?.permissions().mode() & 0o077 != 0;
        restrict(&self.root)?;
        Ok(exposed)
    }

    /// The pepper of an initialised data dir.
    pub fn pepper(&self) -> Result<Pepper, DirError> {
        if !self.pepper_path().exists() {
            return Err(DirError::NotInitialised(self.shown()));
        }
        Ok(load_pepper(&self.pepper_path())?)
    }

    /// Fails unless the dir holds a log, saying how to make one.
    pub fn require_log(&self) -> Result<PathBuf, DirError> {
        let log = self.log_path();
        if log.exists() { Ok(log) } else { Err(DirError::NotInitialised(self.shown())) }
    }

    /// What the data dir records of stream commit (`DIR/commit`).
    pub fn commit_mark(&self) -> CommitMark {
        match std::fs::read_to_string(self.root.join("commit")).as_deref().map(str::trim) {
            Ok("stream") => CommitMark::Stream,
            Ok("stream settled") => CommitMark::StreamSettled,
            _ => CommitMark::Local,
        }
    }

    /// Records `mark` durably (written aside, fsynced, renamed into place).
    pub fn set_commit_mark(&self, mark: CommitMark) -> std::io::Result<()> {
        let path = self.root.join("commit");
        let text = match mark {
            CommitMark::Local => {
                return match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => std::fs::File::open(&self.root)?.sync_all(),
                };
            }
            CommitMark::Stream => "stream\n",
            CommitMark::StreamSettled => "stream settled\n",
        };
        self.write_durably("commit", text)
    }
}

impl DataDir {
    /// `DIR/checked`: how far the stored chain was checked, as the registry
    /// sealed it: its sequence, its event's hash and the MAC over both
    /// (checked by the registry, not here). None when absent or unreadable.
    pub fn checked_mark(&self) -> Option<(Seq, ChainHash, String)> {
        let text = std::fs::read_to_string(self.root.join("checked")).ok()?;
        let mut parts = text.split_whitespace();
        let seq = Seq(parts.next()?.parse().ok()?);
        let hash = ChainHash::from_hex(parts.next()?)?;
        Some((seq, hash, parts.next()?.to_owned()))
    }

    /// Records the checked mark durably (written aside, fsynced, renamed).
    pub fn set_checked_mark(&self, seq: Seq, hash: &ChainHash, mac: &str) -> std::io::Result<()> {
        self.write_durably("checked", &format!("{} {} {mac}\n", seq.0, hash.to_hex()))
    }

    fn write_durably(&self, name: &str, text: &str) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let aside = self.root.join(format!("{name}.new"));
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&aside)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&aside, self.root.join(name))?;
        std::fs::File::open(&self.root)?.sync_all()
    }
}

/// How a data dir's node commits, as far as the dir knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitMark {
    /// Locally (or never to the stream): every event in the log was
    /// acknowledged.
    Local,
    /// To the stream, and the end of the log may hold events the stream
    /// never confirmed (a node running, or one that crashed).
    Stream,
    /// To the stream, and stopped cleanly with every event confirmed.
    StreamSettled,
}
