//! The binary form of a snapshot of the projections: a state folded up to
//! some sequence, written so that start-up can load it and replay only the
//! events after it, instead of the whole log.
//!
//! Here: the format's version and the two halves of a little codec
//! (`Writer`, `Reader`: little-endian integers, length-prefixed bytes).
//! What goes in is the business of each state (`Table::encode`,
//! `AuditIndex::encode`); binding a snapshot to the chain and checking that
//! nobody changed it is the store's (`store::snapshot`). A reader never
//! trusts its input: every length is checked, and any surprise is an error,
//! never a panic.

use crate::domain::time::Timestamp;

/// Bumped whenever the encoding changes: a snapshot of another version is
/// not read, and the state is rebuilt from the log.
pub const VERSION: u32 = 2;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("the snapshot ends early")]
    Truncated,
    #[error("the snapshot holds something it should not: {0}")]
    Damaged(String),
}

pub(crate) fn damaged(what: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Damaged(what.to_string())
}

#[derive(Default)]
pub struct Writer {
    pub bytes: Vec<u8>,
}

impl Writer {
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

pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
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
        let mut w = Writer::default();
        w.u8(7);
        w.u32(1 << 20);
        w.i64(-5);
        w.str("ünï");
        w.opt_time(Some(Timestamp::from_micros(42)));
        w.opt_time(None);
        let mut r = Reader::new(&w.bytes);
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.u32(), Ok(1 << 20));
        assert_eq!(r.i64(), Ok(-5));
        assert_eq!(r.str(), Ok("ünï"));
        assert_eq!(r.opt_time(), Ok(Some(Timestamp::from_micros(42))));
        assert_eq!(r.opt_time(), Ok(None));
        assert!(r.is_empty());
        for cut in 0..w.bytes.len() {
            let mut r = Reader::new(&w.bytes[..cut]);
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
        let mut huge = Writer::default();
        huge.u32(u32::MAX);
        assert_eq!(Reader::new(&huge.bytes).len(8), Err(SnapshotError::Truncated));
    }
}
