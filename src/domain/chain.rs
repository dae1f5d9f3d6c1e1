//! The hash chain over the stored events, and the one checker of it.
//!
//! `hash(n) = blake3(raw(prevhash(n)) ++ bytes(n))`, with `prevhash(1)` = 32
//! zero bytes; the next event's `prevhash` is that hash in lower-case hex.
//! The chain is defined over the exact stored bytes, never over a
//! re-serialization.
//!
//! `ChainChecker` is used wherever records come in: the registry's start-up
//! fold over its log, `keyreg audit verify` and `keyreg replay` (from the log
//! or the stream), and every replica on every event. Each record is checked
//! once and decoded once, and the decoded event is handed back for applying.

use std::fmt;

use serde::Serialize;

use crate::domain::event::{self, Decoded};
use crate::domain::id::Seq;

/// A link of the hash chain: the blake3 hash of one stored event. The
/// default is the all-zero hash that precedes the first event.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    pub const ZERO: ChainHash = ChainHash([0; 32]);

    /// The hash of `bytes` stored after the event whose hash is `self`.
    pub fn next(&self, bytes: &[u8]) -> ChainHash {
        let mut h = blake3::Hasher::new();
        h.update(&self.0);
        h.update(bytes);
        ChainHash(*h.finalize().as_bytes())
    }

    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    pub fn from_hex(s: &str) -> Option<ChainHash> {
        crate::domain::token::parse_hex32(s).map(ChainHash)
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for ChainHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for ChainHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ChainHash::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 lower-case hex digits"))
    }
}

/// Where and why a chain stopped holding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("the chain breaks at sequence {seq}: {why}")]
pub struct ChainBreak {
    pub seq: Seq,
    pub why: String,
}

/// The outcome of checking a run of records against the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub ok: bool,
    pub events: u64,
    pub head_seq: Seq,
    pub head_hash: ChainHash,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_seq: Option<Seq>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Checks records in order: each must be the next sequence, decode as a
/// keyreg event carrying that sequence, name the previous event's hash as
/// its prevhash, and hash to the value recorded with it (the hash stored
/// beside it in the log, or its stream message's `Keyreg-Hash`). The first
/// failure breaks the chain for good.
#[derive(Clone, Debug)]
pub struct ChainChecker {
    next: Seq,
    hash: ChainHash,
    events: u64,
    broken: Option<ChainBreak>,
}

impl Default for ChainChecker {
    fn default() -> Self {
        ChainChecker::after(Seq(0), ChainHash::ZERO)
    }
}

impl ChainChecker {
    /// A checker that expects the event after `seq`, whose hash is `hash`.
    pub fn after(seq: Seq, hash: ChainHash) -> Self {
        ChainChecker { next: seq.next(), hash, events: 0, broken: None }
    }

    /// The last sequence that checked out, and its hash.
    pub fn head(&self) -> (Seq, ChainHash) {
        (Seq(self.next.0 - 1), self.hash)
    }

    pub fn broken(&self) -> Option<&ChainBreak> {
        self.broken.as_ref()
    }

    /// Checks one record; its decoded event if it holds.
    pub fn check(&mut self, seq: Seq, bytes: &[u8], recorded: Option<ChainHash>) -> Result<Decoded, ChainBreak> {
        if let Some(b) = &self.broken {
            return Err(b.clone());
        }
        match self.examine(seq, bytes, recorded) {
            Ok((decoded, hash)) => {
                self.hash = hash;
                self.next = seq.next();
                self.events += 1;
                Ok(decoded)
            }
            // A record out of place breaks the chain where the expected one is missing.
            Err(why) => Err(self.fail(self.next, why)),
        }
    }

    fn examine(&self, seq: Seq, bytes: &[u8], recorded: Option<ChainHash>) -> Result<(Decoded, ChainHash), String> {
        if seq != self.next {
            return Err(if seq < self.next {
                format!("sequence {seq} comes again after {}", self.next.0 - 1)
            } else {
                format!("a gap: sequence {seq} follows {}", self.next.0 - 1)
            });
        }
        let decoded = event::decode(bytes).map_err(|e| format!("not a valid event: {e}"))?;
        if decoded.seq != seq {
            return Err(format!("the event says seq {}, it is stored at {seq}", decoded.seq));
        }
        if decoded.prevhash != self.hash {
            return Err(format!("prevhash {} is not the previous event's hash {}", decoded.prevhash, self.hash));
        }
        let hash = self.hash.next(bytes);
        match recorded {
            None => Err("the record carries no hash to check".to_owned()),
            Some(r) if r != hash => {
                Err("the event's bytes no longer match the hash recorded when it was appended".to_owned())
            }
            Some(_) => Ok((decoded, hash)),
        }
    }

    /// Breaks the chain at `seq` for a reason found outside `check` (a
    /// record that could not be read, say); returns the break.
    pub fn fail(&mut self, seq: Seq, why: String) -> ChainBreak {
        self.broken.get_or_insert(ChainBreak { seq, why }).clone()
    }

    pub fn report(&self) -> ChainReport {
        let (head_seq, head_hash) = self.head();
        ChainReport {
            ok: self.broken.is_none(),
            events: self.events,
            head_seq,
            head_hash,
            first_bad_seq: self.broken.as_ref().map(|b| b.seq),
            problem: self.broken.as_ref().map(|b| b.why.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_is_blake3_over_raw_prevhash_then_bytes() {
        let prev = ChainHash([7; 32]);
        let mut manual = Vec::from([7u8; 32]);
        manual.extend_from_slice(b"{}");
        assert_eq!(prev.next(b"{}").0, *blake3::hash(&manual).as_bytes());
        assert_eq!(ChainHash::from_hex(&prev.to_hex()), Some(prev));
    }
}
