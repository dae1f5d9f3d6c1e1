//! Signed notes (C2SP `signed-note`), checkpoints (`tlog-checkpoint`) and
//! Ed25519 cosignatures (`tlog-cosignature`, `cosignature/v1`): the public
//! formats through which keyreg's tree heads are signed by the log and
//! cosigned by witnesses, so any off-the-shelf implementation can read
//! them.
//!
//! A note is text, a blank line, and signature lines `— <name>
//! base64(key id ‖ signature)`. A key is named; its id is the first four
//! bytes of SHA-256(name ‖ "\n" ‖ type ‖ public key), the type being 0x01
//! for a log's Ed25519 key and 0x04 for a witness's cosignature key. A
//! verifier key is written `<name>+<id hex>+base64(type ‖ public key)`. A
//! cosignature signs "cosignature/v1\ntime <t>\n" followed by the note's
//! text, and carries the 8-byte big-endian time before the signature.
//!
//! Signing keys come in as 32-byte seeds and times as arguments: the
//! caller owns randomness and the clock.

use ::base64::Engine;
use ::base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

use crate::domain::merkle::Hash;

/// A log's signature (RFC 8032 Ed25519 over the note's text).
pub const LOG_KEY: u8 = 0x01;
/// A witness's `cosignature/v1`.
pub const COSIGNATURE: u8 = 0x04;

const DASH: &str = "\u{2014} ";
/// Go's `note.Open` refuses more; so does keyreg.
const MAX_SIGNATURES: usize = 100;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("a key name must be non-empty, without spaces or '+'")]
    Name,
    #[error("a verifier key is <name>+<8 hex digits>+<base64 of the type byte and 32 bytes>: {0}")]
    VerifierKey(String),
    #[error("a signed note is text, a blank line and signature lines: {0}")]
    Malformed(String),
    #[error("a checkpoint is an origin, a tree size and a base64 root hash, one per line: {0}")]
    Checkpoint(String),
}

/// A private key, named, of one signature type. Written to a file as Go's
/// `note` package writes one: `PRIVATE+KEY+<name>+<id hex>+base64(type ‖
/// seed)`.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    seed: [u8; 32],
    verifier: VerifierKey,
}

impl SigningKey {
    pub fn from_seed(name: &str, kind: u8, seed: &[u8; 32]) -> Result<SigningKey, NoteError> {
        valid_name(name)?;
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| NoteError::VerifierKey("bad seed".into()))?;
        let key = pair.public_key().as_ref().try_into().expect("an Ed25519 public key is 32 bytes");
        Ok(SigningKey { pair, seed: *seed, verifier: VerifierKey { name: name.to_owned(), kind, key } })
    }

    /// The private key's text form (a secret: for its 0600 file alone).
    pub fn private_text(&self) -> String {
        let VerifierKey { name, kind, .. } = &self.verifier;
        let material = B64.encode([&[*kind][..], &self.seed].concat());
        format!("PRIVATE+KEY+{name}+{}+{material}\n", hex(&self.verifier.id()))
    }

    /// Reads `private_text`'s form back.
    pub fn parse_private(text: &str) -> Result<SigningKey, NoteError> {
        let bad = || NoteError::VerifierKey("not a private key of the form PRIVATE+KEY+<name>+<id>+<key>".into());
        let rest = text.trim().strip_prefix("PRIVATE+KEY+").ok_or_else(bad)?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let material = B64.decode(material).map_err(|_| bad())?;
        let (&kind, seed) = material.split_first().ok_or_else(bad)?;
        let key = SigningKey::from_seed(name, kind, seed.try_into().map_err(|_| bad())?)?;
        match hex(&key.verifier.id()) == id {
            true => Ok(key),
            false => Err(bad()),
        }
    }

    pub fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }

    /// A log's signature line over `text`.
    pub fn sign(&self, text: &str) -> Signature {
        self.line(self.pair.sign(text.as_bytes()).as_ref().to_vec())
    }

    /// A witness's `cosignature/v1` line over `text`, at `time` (seconds
    /// since the epoch).
    pub fn cosign(&self, text: &str, time: u64) -> Signature {
        let signed = self.pair.sign(cosigned_message(text, time).as_bytes());
        self.line([&time.to_be_bytes()[..], signed.as_ref()].concat())
    }

    fn line(&self, bytes: Vec<u8>) -> Signature {
        Signature { name: self.verifier.name.clone(), id: self.verifier.id(), bytes }
    }
}

fn cosigned_message(text: &str, time: u64) -> String {
    format!("cosignature/v1\ntime {time}\n{text}")
}

fn valid_name(name: &str) -> Result<(), NoteError> {
    match !name.is_empty() && !name.contains(|c: char| c == '+' || c.is_whitespace()) {
        true => Ok(()),
        false => Err(NoteError::Name),
    }
}

/// A public key, as a verifier key names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    pub name: String,
    pub kind: u8,
    pub key: [u8; 32],
}

impl VerifierKey {
    pub fn id(&self) -> [u8; 4] {
        let digest = Sha256::new()
            .chain_update(self.name.as_bytes())
            .chain_update([b'\n', self.kind])
            .chain_update(self.key)
            .finalize();
        digest[..4].try_into().expect("four bytes")
    }

    pub fn parse(s: &str) -> Result<VerifierKey, NoteError> {
        let bad = |why: &str| NoteError::VerifierKey(why.to_owned());
        // A name holds no '+'; base64 may.
        let mut parts = s.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("it has fewer than three parts"));
        };
        valid_name(name)?;
        let material = B64.decode(material).map_err(|_| bad("its key is not base64"))?;
        let (&kind, key) = material.split_first().ok_or_else(|| bad("its key is empty"))?;
        if kind != LOG_KEY && kind != COSIGNATURE {
            return Err(bad("its type is neither 0x01 (a log's key) nor 0x04 (a witness's)"));
        }
        let key = key.try_into().map_err(|_| bad("an Ed25519 key is 32 bytes"))?;
        let parsed = VerifierKey { name: name.to_owned(), kind, key };
        match u32::from_str_radix(id, 16).ok().map(u32::to_be_bytes) == Some(parsed.id()) && id.len() == 8 {
            true => Ok(parsed),
            false => Err(bad("its key id does not match its name and key")),
        }
    }

    /// Whether `sig` is this key's over `text`.
    pub fn verifies(&self, text: &str, sig: &Signature) -> bool {
        if sig.name != self.name || sig.id != self.id() {
            return false;
        }
        let key = UnparsedPublicKey::new(&ED25519, &self.key);
        match self.kind {
            COSIGNATURE if sig.bytes.len() == 72 => {
                let time = u64::from_be_bytes(sig.bytes[..8].try_into().expect("eight bytes"));
                key.verify(cosigned_message(text, time).as_bytes(), &sig.bytes[8..]).is_ok()
            }
            LOG_KEY => key.verify(text.as_bytes(), &sig.bytes).is_ok(),
            _ => false,
        }
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let material = B64.encode([&[self.kind][..], &self.key].concat());
        write!(f, "{}+{}+{material}", self.name, hex(&self.id()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One signature line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub id: [u8; 4],
    pub bytes: Vec<u8>,
}

impl Signature {
    /// Parses `— <name> <base64>` (without the newline).
    pub fn parse(line: &str) -> Result<Signature, NoteError> {
        let bad = || NoteError::Malformed(format!("not a signature line: {line:?}"));
        let rest = line.strip_prefix(DASH).ok_or_else(bad)?;
        let (name, b64) = rest.split_once(' ').ok_or_else(bad)?;
        valid_name(name).map_err(|_| bad())?;
        let raw = B64.decode(b64).map_err(|_| bad())?;
        if raw.len() < 5 {
            return Err(bad());
        }
        Ok(Signature { name: name.to_owned(), id: raw[..4].try_into().expect("four bytes"), bytes: raw[4..].to_vec() })
    }

    /// The cosignature's time, for a `cosignature/v1` line.
    pub fn time(&self) -> Option<u64> {
        (self.bytes.len() == 72).then(|| u64::from_be_bytes(self.bytes[..8].try_into().expect("eight bytes")))
    }
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{DASH}{} {}", self.name, B64.encode([&self.id[..], &self.bytes].concat()))
    }
}

/// A text and its signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub signatures: Vec<Signature>,
}

impl Note {
    /// Splits at the last blank line, as C2SP and Go's `note.Open` do.
    pub fn parse(s: &str) -> Result<Note, NoteError> {
        if s.contains(|c: char| c.is_ascii_control() && c != '\n') {
            return Err(NoteError::Malformed("it holds a control character".into()));
        }
        let split = s.rfind("\n\n").ok_or_else(|| NoteError::Malformed("no blank line".into()))?;
        let (text, sigs) = (&s[..split + 1], &s[split + 2..]);
        let sigs = sigs.strip_suffix('\n').ok_or_else(|| NoteError::Malformed("it must end with a newline".into()))?;
        let signatures = sigs.split('\n').map(Signature::parse).collect::<Result<Vec<_>, _>>()?;
        if signatures.len() > MAX_SIGNATURES {
            return Err(NoteError::Malformed(format!("more than {MAX_SIGNATURES} signatures")));
        }
        Ok(Note { text: text.to_owned(), signatures })
    }

    /// Whether one of its signatures is `key`'s and checks out.
    pub fn signed_by(&self, key: &VerifierKey) -> bool {
        self.signatures.iter().any(|s| key.verifies(&self.text, s))
    }

    /// Adds `sig` unless the note has it already.
    pub fn add(&mut self, sig: Signature) {
        if !self.signatures.contains(&sig) {
            self.signatures.push(sig);
        }
    }
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.text)?;
        self.signatures.iter().try_for_each(|s| writeln!(f, "{s}"))
    }
}

/// A tree head: the body of a checkpoint note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note's text: origin, size and root, each on its line.
    pub fn text(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root))
    }

    /// Reads the first three lines of a checkpoint's text (extension
    /// lines after them are allowed and ignored).
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let bad = |why: &str| NoteError::Checkpoint(why.to_owned());
        let mut lines = text.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or_else(|| bad("no origin"))?;
        let size = lines.next().ok_or_else(|| bad("no size"))?;
        if size.is_empty() || (size.starts_with('0') && size != "0") {
            return Err(bad("the size is not a decimal without leading zeroes"));
        }
        let size = size.parse().map_err(|_| bad("the size is not a number"))?;
        let root = lines.next().ok_or_else(|| bad("no root hash"))?;
        let root = B64
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| bad("the root is not 32 bytes in base64"))?;
        Ok(Checkpoint { origin: origin.to_owned(), size, root })
    }

    /// The checkpoint signed by the log's key.
    pub fn sign(&self, key: &SigningKey) -> Note {
        let text = self.text();
        let signature = key.sign(&text);
        Note { text, signatures: vec![signature] }
    }
}

/// Standard base64, as every C2SP format writes hashes and proofs.
pub fn base64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// A 32-byte hash from standard base64.
pub fn hash_from_base64(s: &str) -> Option<Hash> {
    B64.decode(s).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signed-note specification's own example: a note signed by
    /// `example.com/foo`, with the verifier key it publishes.
    #[test]
    fn the_specifications_example_note_verifies() {
        let key = VerifierKey::parse("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k").unwrap();
        let note = Note::parse(
            "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n",
        )
        .unwrap();
        assert!(note.signed_by(&key));
        assert_eq!(key.to_string(), "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k");
        let mut changed = note.clone();
        changed.text = "This is another message.\n".into();
        assert!(!changed.signed_by(&key));
    }

    #[test]
    fn a_checkpoint_signs_cosigns_and_reads_back() {
        let log = SigningKey::from_seed("keyreg/test", LOG_KEY, &[7; 32]).unwrap();
        let witness = SigningKey::from_seed("witness.example/w1", COSIGNATURE, &[9; 32]).unwrap();
        // A key whose base64 holds '+' (a name never does).
        let plus = "w.example/w1+a5fcdabe+BFksERGMd1zovEfs6eylX+NfHsiGjrwVk7zp3+NaUmY6";
        assert_eq!(VerifierKey::parse(plus).unwrap().to_string(), plus);
        let checkpoint = Checkpoint { origin: "keyreg/test".into(), size: 42, root: [3; 32] };
        let mut note = checkpoint.sign(&log);
        note.add(witness.cosign(&note.text, 1_700_000_000));
        let read = Note::parse(&note.to_string()).unwrap();
        assert_eq!(Checkpoint::parse(&read.text).unwrap(), checkpoint);
        assert!(read.signed_by(log.verifier()) && read.signed_by(witness.verifier()));
        assert_eq!(read.signatures[1].time(), Some(1_700_000_000));
        let again = SigningKey::parse_private(&witness.private_text()).unwrap();
        assert_eq!(again.verifier(), witness.verifier());
        let parsed = VerifierKey::parse(&witness.verifier().to_string()).unwrap();
        assert_eq!(&parsed, witness.verifier());
        // A log key does not pass for a witness's, nor the other way.
        let as_log = VerifierKey { kind: LOG_KEY, ..parsed };
        assert!(!read.signed_by(&as_log));
    }

    #[test]
    fn malformed_keys_and_checkpoints_are_refused() {
        assert!(VerifierKey::parse("name+00000000+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k").is_err());
        assert!(VerifierKey::parse("no-plus").is_err());
        assert!(Checkpoint::parse("origin\n012\nAAAA\n").is_err());
        assert!(Checkpoint::parse("origin\n12\n").is_err());
        assert!(Note::parse("text\n\nnot a signature\n").is_err());
    }
}
