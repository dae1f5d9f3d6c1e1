//! Authenticating what keyreg trusts from NATS: events, heartbeats, access
//! reports and snapshot objects each carry a MAC (`Keyreg-Mac`, or an
//! object's metadata) under a key derived from the pepper.
//!
//! Anyone allowed to publish on a NATS subject can put bytes there, and the
//! chain alone is no defence: it is an unkeyed blake3, so a publisher that
//! reads the stream's last hash can chain a forged event onto it. The
//! pepper is the one secret every registry node and every replica already
//! hold (a replica cannot verify a key without it), so a key derived from
//! it separates what keyreg wrote from what anyone else did, at the cost of
//! one keyed blake3 per message.
//!
//! Each kind of message has its own derivation context, so a tag made for
//! one kind (a heartbeat) is never accepted for another (an event), and the
//! parts of a message are length-prefixed, so no two different part lists
//! share a tag.

use crate::domain::token::Pepper;

/// The header (or object metadata key) that carries a message's MAC.
pub const MAC_HEADER: &str = "Keyreg-Mac";

/// What a MAC authenticates; each kind has its own key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An event on the events stream: its sequence, chain hash and bytes.
    Event,
    /// A registry heartbeat's body.
    Heartbeat,
    /// An access report's body.
    Report,
    /// A snapshot object's name, size and content hash.
    Snapshot,
    /// The commit mode a registry records in the events stream's metadata
    /// (whether replicas may take the stream's last sequence as proof of
    /// freshness).
    Commit,
    /// How far the registry checked its own stored chain (`DIR/checked`).
    Checked,
    /// A signed checkpoint sent to replicas.
    Checkpoint,
    /// An expiry notice's body.
    Notice,
}

impl Kind {
    const ALL: [Kind; 8] = [
        Kind::Event,
        Kind::Heartbeat,
        Kind::Report,
        Kind::Snapshot,
        Kind::Commit,
        Kind::Checked,
        Kind::Checkpoint,
        Kind::Notice,
    ];

    fn context(self) -> &'static str {
        match self {
            Kind::Event => "keyreg nats event mac v1",
            Kind::Heartbeat => "keyreg nats heartbeat mac v1",
            Kind::Report => "keyreg nats access report mac v1",
            Kind::Snapshot => "keyreg nats snapshot object mac v1",
            Kind::Commit => "keyreg nats commit mode mac v1",
            Kind::Checked => "keyreg data dir checked mark mac v1",
            Kind::Checkpoint => "keyreg nats checkpoint mac v1",
            Kind::Notice => "keyreg nats expiry notice mac v1",
        }
    }
}

/// The keys a node authenticates messages with, one per `Kind` (indexed
/// by it); derived once from the pepper.
#[derive(Clone)]
pub struct MessageKeys([[u8; 32]; Kind::ALL.len()]);

impl std::fmt::Debug for MessageKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageKeys(..)")
    }
}

impl MessageKeys {
    pub fn new(pepper: &Pepper) -> MessageKeys {
        MessageKeys(Kind::ALL.map(|kind| blake3::derive_key(kind.context(), pepper.bytes())))
    }

    /// The MAC of `parts`, as lower-case hex.
    pub fn tag(&self, kind: Kind, parts: &[&[u8]]) -> String {
        self.mac(kind, parts).to_hex().to_string()
    }

    /// Whether `tag` (hex, as sent) is the MAC of `parts`; compared in
    /// constant time. A missing or malformed tag is not.
    pub fn check(&self, kind: Kind, parts: &[&[u8]], tag: Option<&str>) -> bool {
        let Some(tag) = tag.and_then(|t| blake3::Hash::from_hex(t).ok()) else {
            return false;
        };
        // `blake3::Hash`'s equality is constant-time.
        self.mac(kind, parts) == tag
    }

    fn mac(&self, kind: Kind, parts: &[&[u8]]) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.0[kind as usize]);
        for part in parts {
            hasher.update(&(part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        hasher.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_holds_only_for_its_kind_its_parts_and_its_pepper() {
        let pepper = Pepper::generate();
        let keys = MessageKeys::new(&pepper);
        let tag = keys.tag(Kind::Event, &[b"7", b"bytes"]);
        assert!(keys.check(Kind::Event, &[b"7", b"bytes"], Some(&tag)));
        assert!(!keys.check(Kind::Heartbeat, &[b"7", b"bytes"], Some(&tag)), "another kind");
        assert!(!keys.check(Kind::Event, &[b"7b", b"ytes"], Some(&tag)), "parts split elsewhere");
        assert!(!keys.check(Kind::Event, &[b"8", b"bytes"], Some(&tag)), "another part");
        assert!(!MessageKeys::new(&Pepper::generate()).check(Kind::Event, &[b"7", b"bytes"], Some(&tag)));
        assert!(!keys.check(Kind::Event, &[b"7", b"bytes"], None), "no tag");
        assert!(!keys.check(Kind::Event, &[b"7", b"bytes"], Some("zz")), "not hex");
        assert!(!format!("{keys:?}").contains(&tag[..8]));
    }
}
