//! Snapshot files: `DIR/snapshots/<seq>.snap`, the projections folded up to
//! `seq` and sealed (`domain::snapshot`), so that start-up replays only the
//! events after it. Written durably; the newest few are kept, in case the
//! newest is damaged.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::domain::id::Seq;
use crate::domain::snapshot::{Sealed, unseal};
use crate::domain::token::Pepper;

/// Snapshots kept: the newest, and a few before it in case it is damaged.
const KEEP: usize = 3;

fn file_name(seq: Seq) -> String {
    format!("{:020}.snap", seq.0)
}

/// Writes a sealed snapshot taken at `seq` durably (a temporary file,
/// fsynced, renamed, the dir fsynced) and removes all but the newest few.
pub fn write(dir: &Path, seq: Seq, sealed: &[u8]) -> std::io::Result<PathBuf> {
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700).create(dir)?;
    let path = dir.join(file_name(seq));
    let tmp = dir.join(format!("{}.tmp", file_name(seq)));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(sealed)?;
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
    unseal(bytes, pepper).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chain::ChainHash;
    use crate::domain::snapshot::{Binding, seal};

    #[test]
    fn a_sealed_snapshot_reads_back_and_any_change_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pepper = Pepper::generate();
        let binding = |seq| Binding { seq: Seq(seq), hash: ChainHash([7; 32]), digest: [9; 32] };
        let sealed = seal(&pepper, binding(42), b"the table, the rest", 9);
        let path = write(dir.path(), Seq(42), &sealed).unwrap();
        let back = read(&path, &pepper).unwrap();
        assert_eq!(
            (back.binding, back.payload(), back.table()),
            (binding(42), &b"the table, the rest"[..], &b"the table"[..])
        );
        let alone = crate::domain::snapshot::unseal(back.table_only(&pepper), &pepper).unwrap();
        assert_eq!(
            (alone.binding, alone.payload(), alone.table()),
            (binding(42), &b"the table"[..], &b"the table"[..])
        );
        assert!(read(&path, &Pepper::generate()).is_err(), "another pepper's seal");
        let bytes = std::fs::read(&path).unwrap();
        for at in [0, 17, 25, 40, 70, 95, 103, bytes.len() - 1] {
            let mut changed = bytes.clone();
            changed[at] ^= 1;
            std::fs::write(&path, &changed).unwrap();
            assert!(read(&path, &pepper).is_err(), "a flipped bit at {at}");
        }
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        assert!(read(&path, &pepper).is_err(), "cut short");
        for seq in 43..48 {
            write(dir.path(), Seq(seq), &seal(&pepper, binding(seq), b"x", 1)).unwrap();
        }
        let kept: Vec<String> =
            files(dir.path()).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(kept, [file_name(Seq(47)), file_name(Seq(46)), file_name(Seq(45))]);
    }
}
