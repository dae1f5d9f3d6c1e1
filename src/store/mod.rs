//! The data dir on disk: its layout, the pepper file, and (with the `server`
//! feature) the sled log inside it. The layout is known here and nowhere
//! else:
//!
//! ```text
//! DIR/pepper    32 random bytes, mode 0600: the key of every token hash
//! DIR/log/      sled: the hash-chained event log (`log.rs`)
//! ```
//!
//! Pepper files are read here for replicas too (`--pepper-file`), which is
//! why this module, unlike `log`, is built without the server.

#[cfg(feature = "server")]
pub mod log;

use std::path::{Path, PathBuf};

use crate::domain::token::Pepper;

#[derive(Debug, thiserror::Error)]
pub enum PepperError {
    #[error("cannot read the pepper file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the pepper file {path} must hold exactly 32 bytes, it holds {len}")]
    Length { path: String, len: usize },
    #[error("cannot write the pepper file {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// Reads a pepper file (a data dir's, or the copy a replica is given).
pub fn load_pepper(path: &Path) -> Result<Pepper, PepperError> {
    let shown = || path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| PepperError::Read { path: shown(), source })?;
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

/// A keyreg data dir.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
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
}

impl DataDir {
    pub fn new(root: &Path) -> DataDir {
        DataDir { root: root.to_owned() }
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

    fn shown(&self) -> String {
        self.root.display().to_string()
    }

    /// Makes a new data dir holding a new pepper; refuses one that is
    /// already initialised, changing nothing.
    pub fn create(&self, pepper: &Pepper) -> Result<(), DirError> {
        if self.pepper_path().exists() || self.log_path().exists() {
            return Err(DirError::AlreadyInitialised(self.shown()));
        }
        std::fs::create_dir_all(&self.root).map_err(|source| DirError::Create { dir: self.shown(), source })?;
        Ok(save_new_pepper(pepper, &self.pepper_path())?)
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
}
