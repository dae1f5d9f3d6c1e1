//! Legacy secrets: keys that existed before keyreg, imported so their
//! holders keep working while they move to keyreg's own tokens.
//!
//! A legacy secret is stored as `blake3::keyed_hash(pepper, sha256(secret))`:
//! through SHA-256 so that a migration that only holds its old system's
//! SHA-256 digests can import them without ever seeing a secret. Legacy
//! hashes live in an index of their own, consulted only for a presented
//! token that is not in keyreg's format and only when the table holds a
//! legacy key, so a registry without them answers such a token `MALFORMED`
//! without a lookup.

use sha2::{Digest, Sha256};

use crate::domain::token::{Pepper, TokenHash};

/// A legacy secret's length, in characters.
pub const MIN_LEN: usize = 16;
pub const MAX_LEN: usize = 256;

/// The display prefix of a key imported from its digest alone.
pub const DIGEST_ONLY_PREFIX: &str = "legacy";

/// Whether `s` can be a legacy secret: 16 to 256 printable ASCII
/// characters, none of them a space (HTTP headers trim spaces, so a secret
/// with one at an end could never be presented as it was imported).
pub fn is_shaped(s: &str) -> bool {
    (MIN_LEN..=MAX_LEN).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_graphic())
}

/// The SHA-256 of a secret, as an importer that never sees the secret
/// sends it.
pub fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The stored form of a legacy secret, from its SHA-256.
pub fn hash(pepper: &Pepper, sha256: &[u8; 32]) -> TokenHash {
    pepper.keyed_hash(sha256)
}

/// The stored form of a presented legacy secret.
pub fn hash_secret(pepper: &Pepper, secret: &str) -> TokenHash {
    hash(pepper, &sha256(secret))
}

/// The first characters of a legacy secret, shown to tell keys apart: one
/// in eight of them, at most 6. A legacy secret may be as short as 16
/// characters, and every one shown is one an attacker need not guess.
pub fn display_prefix(secret: &str) -> String {
    let shown = (secret.chars().count() / 8).min(6);
    secret.chars().take(shown).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_and_its_digest_hash_alike() {
        let pepper = Pepper::generate();
        let secret = "sk_live_0123456789abcdef";
        // The SHA-256 test vector for "abc", to pin the digest itself.
        assert_eq!(
            blake3::Hash::from_bytes(sha256("abc")).to_hex().as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hash_secret(&pepper, secret), hash(&pepper, &sha256(secret)));
        assert_ne!(hash_secret(&pepper, secret), hash_secret(&Pepper::generate(), secret));
        assert_eq!(display_prefix(secret), "sk_", "one character in eight");
        assert_eq!(display_prefix("0123456789abcdef"), "01", "the shortest secret shows two");
        assert_eq!(display_prefix(&"x".repeat(200)), "xxxxxx", "never more than six");
    }

    #[test]
    fn shapes() {
        assert!(is_shaped("0123456789abcdef") && is_shaped(&"x".repeat(256)));
        for bad in ["short", &"x".repeat(257), "0123456789 abcdef", "0123456789abcdef\n", "0123456789abcdéf"] {
            assert!(!is_shaped(bad), "{bad:?}");
        }
    }
}
