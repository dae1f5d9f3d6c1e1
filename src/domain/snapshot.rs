//! The binary form of a snapshot of the projections: a state folded up to
//! some sequence, written so that start-up can load it and replay only the
//! events after it, instead of the whole log.
//!
//! Here: the sealed form (`seal`, `unseal`), the format's version and the
//! two halves of a little codec (`Encoder`, `Decoder`: little-endian
//! integers, length-prefixed bytes). What goes in is the business of each
//! state (`Table::encode`, `AuditIndex::encode`); where snapshots are kept
//! is the store's (`store::snapshot`, files) and the replicas' (`nats`,
//! an object store). A reader never trusts its input: every length is
//! checked, and any surprise is an error, never a panic.
//!
//! A sealed snapshot is bound to the chain: its header names the sequence
//! it was taken at, that event's chain hash and the table's digest, and
//! whoever loads it checks them against the log or the stream. The whole
//! is sealed with a keyed blake3 hash under a key derived from the pepper,
//! so a truncated, damaged or edited snapshot (by anyone without the
//! pepper, who could forge anything anyway) is found and refused. The
//! payload starts with the table, so the table alone (what a replica
//! needs) is a prefix that can be sealed on its own.
//!
//! ```text
//! "keyreg-snapshot\n"  16 bytes
//! version              u32, little-endian (`VERSION`)
//! seq                  u64
//! chain hash at seq    32 bytes
//! table digest         32 bytes (`Table::digest`)
//! table length         u64: the payload's first bytes are the table
//! payload              the table, then whatever else the state holds
//! seal                 32 bytes: keyed blake3 of everything before it
//! ```

use crate::domain::chain::ChainHash;
use crate::domain::id::Seq;
use crate::domain::time::Timestamp;
use crate::domain::token::Pepper;

/// Bumped whenever the encoding changes: a snapshot of another version is
/// not read, and the state is rebuilt from the log.
pub const VERSION: u32 = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("the snapshot ends early")]
    Truncated,
    #[error("the snapshot holds something it should not: {0}")]
    Damaged(String),
}

const MAGIC: &[u8; 16] = b"keyreg-snapshot\n";
const HEADER: usize = 16 + 4 + 8 + 32 + 32 + 8;
const SEAL: usize = 32;

/// What binds a snapshot to the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    pub seq: Seq,
    pub hash: ChainHash,
    pub digest: [u8; 32],
}

/// Why a sealed snapshot is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("it is not a keyreg snapshot, or it is cut short")]
    NotASnapshot,
    #[error("it is of format version {0}; this keyreg reads {VERSION}")]
    Version(u32),
    #[error("its seal does not match: it was cut short, damaged or changed, or sealed under another pepper")]
    Seal,
}

/// A snapshot whose seal checked out; its payload is still to be decoded.
pub struct Sealed {
    pub binding: Binding,
    table_len: usize,
    /// The whole sealed form: the payload is read in place, not copied (it
    /// is the size of the projections).
    bytes: Vec<u8>,
}

fn seal_key(pepper: &Pepper) -> [u8; 32] {
    blake3::derive_key("keyreg snapshot seal v1", pepper.bytes())
}

/// The sealed form of `payload`, whose first `table_len` bytes are the
/// table.
pub fn seal(pepper: &Pepper, binding: Binding, payload: &[u8], table_len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER + payload.len() + SEAL);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&binding.seq.0.to_le_bytes());
    bytes.extend_from_slice(&binding.hash.0);
    bytes.extend_from_slice(&binding.digest);
    bytes.extend_from_slice(&(table_len.min(payload.len()) as u64).to_le_bytes());
    bytes.extend_from_slice(payload);
    let seal = blake3::keyed_hash(&seal_key(pepper), &bytes);
    bytes.extend_from_slice(seal.as_bytes());
    bytes
}

/// Checks the seal of a snapshot's bytes under `pepper`.
pub fn unseal(bytes: Vec<u8>, pepper: &Pepper) -> Result<Sealed, SealError> {
    if bytes.len() < HEADER + SEAL || &bytes[..16] != MAGIC {
        return Err(SealError::NotASnapshot);
    }
    let (sealed, seal) = bytes.split_at(bytes.len() - SEAL);
    let mut header = Decoder::new(&sealed[16..HEADER]);
    let version = header.u32().map_err(|_| SealError::NotASnapshot)?;
    if version != VERSION {
        return Err(SealError::Version(version));
    }
    if blake3::keyed_hash(&seal_key(pepper), sealed) != blake3::Hash::from_slice(seal).map_err(|_| SealError::Seal)? {
        return Err(SealError::Seal);
    }
    let mut read = || -> Result<(Binding, u64), SnapshotError> {
        let binding = Binding { seq: Seq(header.u64()?), hash: ChainHash(header.array()?), digest: header.array()? };
        Ok((binding, header.u64()?))
    };
    let (binding, table_len) = read().map_err(|_| SealError::NotASnapshot)?;
    let table_len = usize::try_from(table_len).map_err(|_| SealError::NotASnapshot)?;
    if table_len > sealed.len() - HEADER {
        return Err(SealError::NotASnapshot);
    }
    Ok(Sealed { binding, table_len, bytes })
}

impl Sealed {
    pub fn payload(&self) -> &[u8] {
        &self.bytes[HEADER..self.bytes.len() - SEAL]
    }

    /// The table's part of the payload.
    pub fn table(&self) -> &[u8] {
        &self.payload()[..self.table_len]
    }

    /// The same snapshot with the table alone, sealed again: what a
    /// replica loads.
    pub fn table_only(&self, pepper: &Pepper) -> Vec<u8> {
        seal(pepper, self.binding, self.table(), self.table_len)
    }
}

pub(crate) fn damaged(what: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Damaged(what.to_string())
}

#[derive(Default)]
pub struct Encoder {
    pub bytes: Vec<u8>,
}

impl Encoder {
    pub fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }

    pub fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub fn len(&mut self, n: usize) {
        self.u32(n as u32);
    }

    pub fn raw(&mut self, v: &[u8]) {
        self.bytes.extend_from_slice(v);
    }

    /// Bytes after their length.
    pub fn bytes(&mut self, v: &[u8]) {
        self.len(v.len());
        self.raw(v);
    }

    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    pub fn time(&mut self, t: Timestamp) {
        self.i64(t.micros());
    }

    pub fn opt_time(&mut self, t: Option<Timestamp>) {
        match t {
            Some(t) => {
                self.u8(1);
                self.time(t);
            }
            None => self.u8(0),
        }
    }
}

pub struct Decoder<'a> {
    rest: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Decoder { rest: bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub fn raw(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if self.rest.len() < n {
            return Err(SnapshotError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.raw(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn bool(&mut self) -> Result<bool, SnapshotError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(damaged(format!("{other} where a flag was expected"))),
        }
    }

    pub fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A count of items that follow, each at least `min_size` bytes: a
    /// damaged count cannot make the reader reserve more than the input.
    pub fn len(&mut self, min_size: usize) -> Result<usize, SnapshotError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size.max(1)) > self.rest.len() {
            return Err(SnapshotError::Truncated);
        }
        Ok(n)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], SnapshotError> {
        let n = self.len(1)?;
        self.raw(n)
    }

    pub fn str(&mut self) -> Result<&'a str, SnapshotError> {
        std::str::from_utf8(self.bytes()?).map_err(damaged)
    }

    pub fn time(&mut self) -> Result<Timestamp, SnapshotError> {
        Ok(Timestamp::from_micros(self.i64()?))
    }

    pub fn opt_time(&mut self) -> Result<Option<Timestamp>, SnapshotError> {
        Ok(if self.bool()? { Some(self.time()?) } else { None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_and_short_input_is_an_error() {
        let mut w = Encoder::default();
        w.u8(7);
        w.u32(1 << 20);
        w.i64(-5);
        w.str("ünï");
        w.opt_time(Some(Timestamp::from_micros(42)));
        w.opt_time(None);
        let mut r = Decoder::new(&w.bytes);
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.u32(), Ok(1 << 20));
        assert_eq!(r.i64(), Ok(-5));
        assert_eq!(r.str(), Ok("ünï"));
        assert_eq!(r.opt_time(), Ok(Some(Timestamp::from_micros(42))));
        assert_eq!(r.opt_time(), Ok(None));
        assert!(r.is_empty());
        for cut in 0..w.bytes.len() {
            let mut r = Decoder::new(&w.bytes[..cut]);
            let all = (|| -> Result<(), SnapshotError> {
                r.u8()?;
                r.u32()?;
                r.i64()?;
                r.str()?;
                r.opt_time()?;
                r.opt_time()?;
                Ok(())
            })();
            assert!(all.is_err(), "cut at {cut}");
        }
        let mut huge = Encoder::default();
        huge.u32(u32::MAX);
        assert_eq!(Decoder::new(&huge.bytes).len(8), Err(SnapshotError::Truncated));
    }
}
