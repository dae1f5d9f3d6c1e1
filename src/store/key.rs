//! Signing-key files: the log's (`DIR/log-key`, made by `keyreg init`)
//! and a witness's (`DIR/witness-key` in the witness's own dir). Each is
//! written once, mode 0600, and refused when others may read it, as the
//! pepper is: whoever holds it can sign checkpoints in the log's name.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::domain::note::SigningKey;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the signing key {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the signing key {path} can be read by group or others (mode {mode:03o}): run `chmod 600 {path}`")]
    Exposed { path: String, mode: u32 },
    #[error("the signing key {path} is not one: {why}")]
    Malformed { path: String, why: String },
    #[error("cannot write the signing key {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// A new key named `name` of signature type `kind`, from fresh randomness.
pub fn generate(name: &str, kind: u8) -> Result<SigningKey, crate::domain::note::NoteError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the operating system's randomness");
    SigningKey::from_seed(name, kind, &seed)
}

/// Writes `key` to a new file with mode 0600; refuses to overwrite.
pub fn save_new(key: &SigningKey, path: &Path) -> Result<(), KeyFileError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| KeyFileError::Write { path: path.display().to_string(), source };
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(err)?;
    f.write_all(key.private_text().as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)
}

/// Reads a key file of signature type `kind`.
pub fn load(path: &Path, kind: u8) -> Result<SigningKey, KeyFileError> {
    let shown = || path.display().to_string();
    let read = |source| KeyFileError::Read { path: shown(), source };
    let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Exposed { path: shown(), mode });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    let key =
        SigningKey::parse_private(&text).map_err(|e| KeyFileError::Malformed { path: shown(), why: e.to_string() })?;
    match key.verifier().kind == kind {
        true => Ok(key),
        false => {
            Err(KeyFileError::Malformed { path: shown(), why: format!("it is not of signature type {kind:#04x}") })
        }
    }
}
