//! Identifiers: organization ids, key ids, event ids, log sequence numbers and
//! actors. Newtypes, so that a key id can never be passed where an org id is
//! expected, and so that each id is validated once, where it enters.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::time::Timestamp;

/// The id of the system organization made by `keyreg init`. It is the only
/// org id outside the user-visible grammar, so no tenant can claim it.
pub const SYSTEM_ORG: &str = "_system";

macro_rules! string_id {
    ($name:ident, $check:expr, $what:literal) => {
        /// Shared text: a clone is a reference count, so the many places an
        /// id is kept (maps, indexes, answers) share one allocation.
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, IdError> {
                let check: fn(&str) -> bool = $check;
                if check(s) {
                    Ok($name(s.into()))
                } else {
                    Err(IdError { what: $what, value: s.chars().take(80).collect() })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        text_id!($name);
    };
}

/// Display and serde for an id, as its text.
macro_rules! text_id {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A string that is not a valid id of the kind named in `what`.
#[derive(Debug, thiserror::Error)]
#[error("{value:?} is not a valid {what}")]
pub struct IdError {
    pub what: &'static str,
    pub value: String,
}

string_id!(OrgId, is_org_id, "organization id ([a-z0-9][a-z0-9-]{1,62})");
string_id!(RoleName, is_role_name, "role name ([a-z0-9][a-z0-9:._-]{0,63})");

fn is_role_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=64).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b[1..].iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b':' | b'.' | b'_' | b'-'))
}

/// The length of a key id: `key_` and a 26-character ULID.
const KEY_ID_LEN: usize = 30;

/// A key id, kept inline rather than shared: thirty bytes that copy without
/// touching memory elsewhere, because the key table holds one per key and a
/// verify's answer names one (a million keys would otherwise mean a million
/// allocations, and every answer a reference-count update on a cold line).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    /// Every key id is this many bytes: `key_` and a 26-character ULID.
    pub const LEN: usize = KEY_ID_LEN;

    pub fn parse(s: &str) -> Result<Self, IdError> {
        match s.as_bytes().try_into() {
            Ok(bytes) if is_ulid_id(s, "key_") => Ok(KeyId(bytes)),
            _ => Err(IdError { what: "key id", value: s.chars().take(80).collect() }),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII ever gets in: `parse` checks it, `max` and the generator write it.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    fn from_ulid(ulid: [u8; 26]) -> KeyId {
        let mut id = [0u8; KEY_ID_LEN];
        id[..4].copy_from_slice(b"key_");
        id[4..].copy_from_slice(&ulid);
        KeyId(id)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({:?})", self.as_str())
    }
}

text_id!(KeyId);
string_id!(EventId, |s| is_ulid_id(s, "evt_"), "event id");

fn is_org_id(s: &str) -> bool {
    if s == SYSTEM_ORG {
        return true;
    }
    let b = s.as_bytes();
    (2..=63).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b[1..].iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn is_ulid_id(s: &str, prefix: &str) -> bool {
    // A lookup per character rather than a search of the alphabet: replay
    // checks three ids in every event.
    const IS_CROCKFORD: [bool; 256] = {
        let mut t = [false; 256];
        let mut i = 0;
        while i < CROCKFORD.len() {
            t[CROCKFORD[i] as usize] = true;
            i += 1;
        }
        t
    };
    s.strip_prefix(prefix).is_some_and(|rest| rest.len() == 26 && rest.bytes().all(|c| IS_CROCKFORD[c as usize]))
}

impl KeyId {
    /// Sorts after every real key id: an open upper bound for range scans.
    pub fn max() -> Self {
        KeyId::from_ulid([b'~'; 26])
    }
}

impl OrgId {
    pub fn system() -> Self {
        OrgId(SYSTEM_ORG.into())
    }

    /// True for ids a tenant may choose (everything but `_system`).
    pub fn is_tenant(&self) -> bool {
        &*self.0 != SYSTEM_ORG
    }
}

/// Fills `buf` from the operating system's CSPRNG. Ids, tokens and peppers
/// all come from here; a machine without one cannot run keyreg at all.
pub fn fill_random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random number generator failed");
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Makes ULID-style ids (48-bit millisecond time, 80 random bits, Crockford
/// base32) that sort by creation time. Within one generator the ids are
/// strictly increasing even inside one millisecond, which is what keeps
/// cursor pagination stable while keys are being created.
#[derive(Default)]
pub struct IdGenerator {
    last: u128,
}

impl IdGenerator {
    fn next_raw(&mut self, now: Timestamp) -> [u8; 26] {
        let ms = (now.micros().max(0) / 1000) as u128 & ((1 << 48) - 1);
        let mut random = [0u8; 16];
        fill_random(&mut random);
        let random = u128::from_be_bytes(random) & ((1 << 80) - 1);
        let mut value = (ms << 80) | random;
        if value <= self.last {
            value = self.last + 1;
        }
        self.last = value;
        let mut out = [0u8; 26];
        for (i, c) in out.iter_mut().rev().enumerate() {
            *c = CROCKFORD[((value >> (i * 5)) & 31) as usize];
        }
        out
    }

    pub fn key_id(&mut self, now: Timestamp) -> KeyId {
        KeyId::from_ulid(self.next_raw(now))
    }

    pub fn event_id(&mut self, now: Timestamp) -> EventId {
        let raw = self.next_raw(now);
        EventId(format!("evt_{}", std::str::from_utf8(&raw).unwrap_or_default()).into())
    }
}

/// A position in the log: 1, 2, 3, … without gaps. Zero means "nothing yet".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Who made a change: a key acting through the API, a person a key acts
/// for (`user:<email>`, the key recorded beside it as `via`), or a part of
/// the system.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Actor {
    Key(KeyId),
    User(String),
    System(String),
}

/// The longest email a `user:` actor may carry (RFC 5321's path limit).
pub const MAX_EMAIL: usize = 254;

/// An email as keyreg accepts one for a person: `local@domain`, printable
/// ASCII without spaces, one `@`, a dot in the domain, at most 254
/// characters. Deliberately plain: it names a person in the history, it is
/// never sent mail.
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    s.len() <= MAX_EMAIL
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.bytes().all(|c| c.is_ascii_graphic())
        && !domain.contains('@')
}

impl Actor {
    pub fn system(what: &str) -> Self {
        Actor::System(what.to_owned())
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        if let Some(id) = s.strip_prefix("key:") {
            return Ok(Actor::Key(KeyId::parse(id)?));
        }
        if let Some(email) = s.strip_prefix("user:") {
            return match is_email(email) {
                true => Ok(Actor::User(email.to_owned())),
                false => Err(IdError { what: "user (user:<email>)", value: s.chars().take(80).collect() }),
            };
        }
        match s.strip_prefix("system:") {
            Some(what) if !what.is_empty() && what.bytes().all(|c| c.is_ascii_graphic()) => {
                Ok(Actor::System(what.to_owned()))
            }
            _ => Err(IdError {
                what: "actor (key:<id>, user:<email> or system:<what>)",
                value: s.chars().take(80).collect(),
            }),
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Key(id) => write!(f, "key:{id}"),
            Actor::User(email) => write!(f, "user:{email}"),
            Actor::System(what) => write!(f, "system:{what}"),
        }
    }
}

impl Serialize for Actor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Actor::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_ids_follow_the_grammar() {
        for ok in ["acme", "a1", "acme-corp", "0rg", "_system"] {
            assert!(OrgId::parse(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in ["a", "-acme", "Acme", "acme_corp", "", long.as_str(), "_sys"] {
            assert!(OrgId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn role_names_follow_the_grammar() {
        for ok in ["ci", "a", "admin:write", "general.read", "schema-only_v2", &"r".repeat(64)] {
            assert!(RoleName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-ci", "CI", "ci role", "ci/role", &"r".repeat(65), ":x"] {
            assert!(RoleName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_ids_increase_within_one_millisecond() {
        let mut g = IdGenerator::default();
        let now = Timestamp::from_micros(1_700_000_000_000_000);
        let a = g.key_id(now);
        let b = g.key_id(now);
        assert!(a < b);
        assert!(KeyId::parse(a.as_str()).is_ok());
    }

    #[test]
    fn actors_round_trip() {
        for s in ["system:init", "key:key_01HZX3Q4M5N6P7R8S9T0V1W2X3", "user:ada@acme.test", "user:a.b+c@x.y.z"] {
            assert_eq!(Actor::parse(s).unwrap().to_string(), s);
        }
        let long = format!("user:{}@acme.test", "a".repeat(250));
        for bad in [
            "user:bob",
            "user:",
            "user:@acme.test",
            "user:bob@acme",
            "user:bo b@acme.test",
            "user:a@b@c.d",
            "root",
            &long,
        ] {
            assert!(Actor::parse(bad).is_err(), "{bad}");
        }
    }
}
