//! Snapshot files: `DIR/snapshots/<seq>.snap`, the projections folded up to
//! `seq`, so that start-up replays only the events after it.
//!
//! A snapshot is bound to the chain and sealed. Its header names the
//! sequence it was taken at and that event's chain hash; start-up uses it
//! only if the log holds that very event there. The whole file is sealed
//! with a keyed blake3 hash under a key derived from the pepper, so a
//! truncated, damaged or edited file (by anyone without the pepper, who
//! could forge anything anyway) is found and ignored, never trusted. A
//! file of another format version is ignored too: the log rebuilds it.
//!
//! ```text
//! "keyreg-snapshot\n"  16 bytes
//! version              u32, little-endian (`domain::snapshot::VERSION`)
//! seq                  u64
//! chain hash at seq    32 bytes
//! payload              the projections (`Projections::encode`)
//! seal                 32 bytes: keyed blake3 of everything before it
//! ```

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::domain::chain::ChainHash;
use crate::domain::id::Seq;
use crate::domain::snapshot::VERSION;
use crate::domain::token::Pepper;

const MAGIC: &[u8; 16] = b"keyreg-snapshot\n";
const HEADER: usize = 16 + 4 + 8 + 32;
const SEAL: usize = 32;
/// Snapshots kept: the newest, and a few before it in case it is damaged.
const KEEP: usize = 3;

/// A snapshot read back and unsealed; its payload is still to be decoded.
pub struct Sealed {
    pub seq: Seq,
    pub hash: ChainHash,
    /// The whole file: the payload is read in place, not copied (it is the
    /// size of the projections).
    bytes: Vec<u8>,
}

impl Sealed {
    pub fn payload(&self) -> &[u8] {
        &self.bytes[HEADER..self.bytes.len() - SEAL]
    }
}

fn seal_key(pepper: &Pepper) -> [u8; 32] {
    blake3::derive_key("keyreg snapshot seal v1", pepper.bytes())
}

fn file_name(seq: Seq) -> String {
    format!("{:020}.snap", seq.0)
}

/// Writes a snapshot durably (a temporary file, fsynced, renamed, the dir
/// fsynced) and removes all but the newest few.
pub fn write(dir: &Path, pepper: &Pepper, seq: Seq, hash: ChainHash, payload: &[u8]) -> std::io::Result<PathBuf> {
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700).create(dir)?;
    let mut bytes = Vec::with_capacity(HEADER + payload.len() + SEAL);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&seq.0.to_le_bytes());
    bytes.extend_from_slice(&hash.0);
    bytes.extend_from_slice(payload);
    let seal = blake3::keyed_hash(&seal_key(pepper), &bytes);
    bytes.extend_from_slice(seal.as_bytes());
    let path = dir.join(file_name(seq));
    let tmp = dir.join(format!("{}.tmp", file_name(seq)));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    for old in files(dir).into_iter().skip(KEEP) {
        let _ = std::fs::remove_file(old);
    }
    Ok(path)
}

/// Snapshot files, newest first.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    found.sort_unstable_by(|a, b| b.cmp(a));
    found
}

/// Reads and unseals a snapshot file; why not, if it cannot be trusted.
pub fn read(path: &Path, pepper: &Pepper) -> Result<Sealed, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() < HEADER + SEAL || &bytes[..16] != MAGIC {
        return Err("it is not a keyreg snapshot, or it is cut short".into());
    }
    let version = u32::from_le_bytes(bytes[16..20].try_into().unwrap_or_default());
    if version != VERSION {
        return Err(format!("it is of format version {version}; this keyreg reads {VERSION}"));
    }
    let (sealed, seal) = bytes.split_at(bytes.len() - SEAL);
    if blake3::keyed_hash(&seal_key(pepper), sealed) != blake3::Hash::from_slice(seal).map_err(|e| e.to_string())? {
        return Err(
            "its seal does not match: it was cut short, damaged or changed, or sealed under another pepper".into()
        );
    }
    let seq = Seq(u64::from_le_bytes(bytes[20..28].try_into().unwrap_or_default()));
    let hash = ChainHash(bytes[28..60].try_into().unwrap_or_default());
    Ok(Sealed { seq, hash, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_snapshot_reads_back_and_any_change_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pepper = Pepper::generate();
        let path = write(dir.path(), &pepper, Seq(42), ChainHash([7; 32]), b"the projections").unwrap();
        let back = read(&path, &pepper).unwrap();
        assert_eq!((back.seq, back.hash, back.payload()), (Seq(42), ChainHash([7; 32]), &b"the projections"[..]));
        assert!(read(&path, &Pepper::generate()).is_err(), "another pepper's seal");
        let bytes = std::fs::read(&path).unwrap();
        for at in [0, 17, 25, 40, HEADER + 3, bytes.len() - 1] {
            let mut changed = bytes.clone();
            changed[at] ^= 1;
            std::fs::write(&path, &changed).unwrap();
            assert!(read(&path, &pepper).is_err(), "a flipped bit at {at}");
        }
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        assert!(read(&path, &pepper).is_err(), "cut short");
        for seq in 43..48 {
            write(dir.path(), &pepper, Seq(seq), ChainHash([7; 32]), b"x").unwrap();
        }
        let kept: Vec<String> =
            files(dir.path()).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(kept, [file_name(Seq(47)), file_name(Seq(46)), file_name(Seq(45))]);
    }
}
