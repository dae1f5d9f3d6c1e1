//! API-key tokens: generation, offline format check, display prefix and the
//! keyed hash the registry stores instead of the secret.
//!
//! A token is `PREFIX` + 32 random base62 characters + a 6-character base62
//! checksum. The checksum is `u64::from_be_bytes(blake3(PREFIX + random)[..8])
//! mod 62^6`, written as six base62 digits (most significant first, `0-9A-Za-z`),
//! so a secret scanner can recognise a real token without asking anyone, and a
//! typo is rejected before any lookup. The secret itself is never stored:
//! only `blake3::keyed_hash(pepper, token)`.

use std::fmt;

use crate::domain::id::fill_random;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
/// Characters of the random part shown in `display_prefix`.
const DISPLAY_LEN: usize = 6;
pub const DEFAULT_PREFIX: &str = "kr_";

/// A secret token as presented by a caller. Its `Debug` never shows the
/// secret, so it cannot leak through a log line or a panic message.
#[derive(Clone)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.display_prefix_len(self.0.len().min(3)))
    }
}

/// Why a string is not a token. The variants say which check failed without
/// echoing the input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token does not start with the expected prefix")]
    Prefix,
    #[error("the token has the wrong length or characters outside base62")]
    Shape,
    #[error("the token's checksum does not match")]
    Checksum,
}

/// The token format of one deployment: its prefix (`kr_` unless configured).
#[derive(Clone, Debug)]
pub struct TokenFormat {
    prefix: String,
}

impl Default for TokenFormat {
    fn default() -> Self {
        TokenFormat { prefix: DEFAULT_PREFIX.to_owned() }
    }
}

impl TokenFormat {
    /// A prefix is 1 to 16 characters of `[a-z0-9_]`: it must not collide with
    /// base62 in a way that makes the split ambiguous, and the length is fixed
    /// by it, so any printable choice would do; this keeps scanners' regexes
    /// simple.
    pub fn new(prefix: &str) -> Result<Self, TokenError> {
        let ok = (1..=16).contains(&prefix.len())
            && prefix.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
        if ok { Ok(TokenFormat { prefix: prefix.to_owned() }) } else { Err(TokenError::Prefix) }
    }

    /// A new token from the operating system's CSPRNG.
    pub fn generate(&self) -> Token {
        let mut body = String::with_capacity(self.prefix.len() + RANDOM_LEN + CHECKSUM_LEN);
        body.push_str(&self.prefix);
        let mut buf = [0u8; 64];
        let mut produced = 0;
        while produced < RANDOM_LEN {
            fill_random(&mut buf);
            // Rejection sampling: 248 = 4 * 62, so every character is uniform.
            for &b in buf.iter().filter(|&&b| b < 248) {
                if produced == RANDOM_LEN {
                    break;
                }
                body.push(BASE62[(b % 62) as usize] as char);
                produced += 1;
            }
        }
        let sum = checksum(body.as_bytes());
        body.push_str(std::str::from_utf8(&sum).unwrap_or_default());
        Token(body)
    }

    /// Checks the format and checksum, then hashes: the verify path, with no
    /// allocation at all.
    pub fn hash_presented(&self, pepper: &Pepper, s: &str) -> Result<TokenHash, TokenError> {
        self.hash_presented_then(pepper, s, |_| {})
    }

    /// `hash_presented`, handing the hash to `meanwhile` before the checksum
    /// is computed: a verify starts fetching the index entry it will read,
    /// so that the memory access overlaps the checksum's hashing. A hint,
    /// not a lookup: a bad checksum is still refused before any lookup.
    pub fn hash_presented_then(
        &self,
        pepper: &Pepper,
        s: &str,
        meanwhile: impl FnOnce(&TokenHash),
    ) -> Result<TokenHash, TokenError> {
        self.check_shape(s)?;
        let hash = TokenHash(blake3::keyed_hash(&pepper.0, s.as_bytes()));
        meanwhile(&hash);
        self.check_checksum(s)?;
        Ok(hash)
    }

    /// Whether `s` has the shape of this format's tokens (prefix, length,
    /// alphabet), whatever its checksum: such a string is never a legacy
    /// secret.
    pub fn is_shaped(&self, s: &str) -> bool {
        self.check_shape(s).is_ok()
    }

    /// Checks the format and checksum; no lookup, no allocation.
    pub fn parse(&self, s: &str) -> Result<Token, TokenError> {
        self.check(s)?;
        Ok(Token(s.to_owned()))
    }

    fn check(&self, s: &str) -> Result<(), TokenError> {
        self.check_shape(s)?;
        self.check_checksum(s)
    }

    fn check_shape(&self, s: &str) -> Result<(), TokenError> {
        // Byte by byte, without a call to `memcmp` for a prefix of a few
        // bytes, and without branching per character: this is on every verify.
        let (s, prefix) = (s.as_bytes(), self.prefix.as_bytes());
        if s.len() < prefix.len() || !s.iter().zip(prefix).fold(true, |ok, (a, b)| ok & (a == b)) {
            return Err(TokenError::Prefix);
        }
        let rest = &s[prefix.len()..];
        if rest.len() != RANDOM_LEN + CHECKSUM_LEN || !rest.iter().fold(true, |ok, c| ok & c.is_ascii_alphanumeric()) {
            return Err(TokenError::Shape);
        }
        Ok(())
    }

    /// Whether the last six characters are the checksum of the rest; the
    /// shape was checked already.
    fn check_checksum(&self, s: &str) -> Result<(), TokenError> {
        let (signed, sum) = s.split_at(s.len() - CHECKSUM_LEN);
        if !constant_time_eq(&checksum(signed.as_bytes()), sum.as_bytes()) {
            return Err(TokenError::Checksum);
        }
        Ok(())
    }
}

fn checksum(signed: &[u8]) -> [u8; CHECKSUM_LEN] {
    let digest = blake3::hash(signed);
    let mut n = u64::from_be_bytes(digest.as_bytes()[..8].try_into().unwrap_or_default());
    n %= 62u64.pow(CHECKSUM_LEN as u32);
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Token {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The prefix plus the first six random characters, e.g. `kr_a1B2c3`.
    pub fn display_prefix(&self) -> String {
        let random_start = self.0.len() - RANDOM_LEN - CHECKSUM_LEN;
        self.display_prefix_len(random_start + DISPLAY_LEN)
    }

    fn display_prefix_len(&self, len: usize) -> String {
        self.0[..len].to_owned()
    }

    pub fn hash(&self, pepper: &Pepper) -> TokenHash {
        TokenHash(blake3::keyed_hash(&pepper.0, self.0.as_bytes()))
    }
}

/// The stored form of a secret: `blake3::keyed_hash(pepper, token)`.
///
/// Equality is blake3's constant-time comparison.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(blake3::Hash);

impl TokenHash {
    /// The first eight bytes, as the table's index hashes it: the value is
    /// already uniformly random (a keyed hash whose key the caller does not
    /// know), so that is as good as hashing all of it, and free.
    pub fn prefix(&self) -> u64 {
        u64::from_le_bytes(self.0.as_bytes()[..8].try_into().unwrap_or_default())
    }

    pub fn to_hex(&self) -> String {
        self.0.to_hex().to_string()
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        parse_hex32(s).map(|b| TokenHash(blake3::Hash::from_bytes(b)))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        TokenHash(blake3::Hash::from_bytes(bytes))
    }
}

/// The key an `Authorization` header's value presents: after `Bearer `
/// (any case), or the value itself; none when empty.
pub fn from_authorization(value: &str) -> Option<&str> {
    let value = value.trim();
    let token = match value.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => value[7..].trim_start(),
        _ => value,
    };
    (!token.is_empty()).then_some(token)
}

/// 64 lower-case hex digits (the only form keyreg writes) to 32 bytes.
/// Every stored event carries two such hashes, so replay parses millions:
/// a table lookup per digit, one check at the end.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    const INVALID: u8 = 0xff;
    const DIGITS: [u8; 256] = {
        let mut t = [INVALID; 256];
        let mut i = 0;
        while i < 10 {
            t[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            t[b'a' as usize + i] = 10 + i as u8;
            i += 1;
        }
        t
    };
    let s: &[u8; 64] = s.as_bytes().try_into().ok()?;
    let mut out = [0u8; 32];
    let mut seen = 0u8;
    for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let (hi, lo) = (DIGITS[pair[0] as usize], DIGITS[pair[1] as usize]);
        seen |= hi | lo;
        *byte = (hi << 4) | (lo & 0x0f);
    }
    // An invalid digit sets the high bits; no valid one does.
    (seen & 0xf0 == 0).then_some(out)
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({})", &self.to_hex()[..12])
    }
}

impl serde::Serialize for TokenHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for TokenHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        TokenHash::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 lower-case hex digits"))
    }
}

/// The 32-byte key of the token hash. Made once by `keyreg init`, kept in
/// the data dir (`store` reads and writes the file) and handed to replicas
/// by file.
#[derive(Clone)]
pub struct Pepper([u8; 32]);

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(..)")
    }
}

impl Pepper {
    pub fn generate() -> Self {
        let mut b = [0u8; 32];
        fill_random(&mut b);
        Pepper(b)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Pepper(bytes)
    }

    /// A keyed hash under this pepper: what keyreg stores of any secret.
    pub(crate) fn keyed_hash(&self, data: &[u8]) -> TokenHash {
        TokenHash(blake3::keyed_hash(&self.0, data))
    }

    /// The secret bytes, for writing the pepper file and deriving the key
    /// that seals snapshots.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// What the log records of the pepper, so that a registry or a replica
    /// given another pepper knows it: a keyed hash of a fixed label, which
    /// says nothing about the pepper itself.
    pub fn fingerprint(&self) -> PepperFingerprint {
        PepperFingerprint(*blake3::keyed_hash(&self.0, b"keyreg pepper fingerprint v1").as_bytes())
    }
}

/// The pepper's fingerprint, recorded in the `_system` org's settings.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PepperFingerprint([u8; 32]);

impl fmt::Debug for PepperFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PepperFingerprint({})", &self.to_hex()[..12])
    }
}

impl PepperFingerprint {
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PepperFingerprint(bytes)
    }
}

impl serde::Serialize for PepperFingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for PepperFingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_hex32(&s)
            .map(PepperFingerprint)
            .ok_or_else(|| serde::de::Error::custom("expected 64 lower-case hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authorization_header_presents_its_key_with_or_without_bearer() {
        assert_eq!(from_authorization(" Bearer kr_a "), Some("kr_a"));
        assert_eq!(from_authorization("bearer   kr_b"), Some("kr_b"));
        assert_eq!(from_authorization("kr_c"), Some("kr_c"));
        assert_eq!(from_authorization(""), None);
    }

    #[test]
    fn generated_tokens_parse_and_have_the_spec_shape() {
        let format = TokenFormat::default();
        let t = format.generate();
        let s = t.expose();
        assert_eq!(s.len(), 3 + 32 + 6);
        assert!(s.starts_with("kr_"));
        assert!(s[3..].bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(format.parse(s).unwrap().expose(), s);
        assert_eq!(t.display_prefix(), &s[..9]);
    }

    #[test]
    fn only_64_lower_case_hex_digits_parse_as_a_hash() {
        let hex = blake3::hash(b"x").to_hex().to_string();
        assert_eq!(parse_hex32(&hex), Some(*blake3::hash(b"x").as_bytes()));
        assert_eq!(parse_hex32(&"0f".repeat(32)), Some([0x0f; 32]));
        for bad in [hex.to_uppercase(), hex[1..].to_owned(), format!("{hex}0"), hex.replacen(&hex[..1], "g", 1)] {
            assert_eq!(parse_hex32(&bad), None, "{bad}");
        }
    }

    #[test]
    fn two_tokens_differ() {
        let f = TokenFormat::default();
        assert_ne!(f.generate().expose(), f.generate().expose());
    }

    #[test]
    fn any_single_character_change_is_caught() {
        let f = TokenFormat::default();
        let s = f.generate().expose().to_owned();
        for i in 3..s.len() {
            let mut b = s.clone().into_bytes();
            b[i] = if b[i] == b'a' { b'b' } else { b'a' };
            let changed = String::from_utf8(b).unwrap();
            assert_eq!(f.parse(&changed).unwrap_err(), TokenError::Checksum, "position {i}");
        }
    }

    #[test]
    fn malformed_tokens_are_rejected_by_shape() {
        let f = TokenFormat::default();
        let good = f.generate().expose().to_owned();
        assert_eq!(f.parse(&good.replacen("kr_", "xx_", 1)).unwrap_err(), TokenError::Prefix);
        assert_eq!(f.parse(&good[..good.len() - 1]).unwrap_err(), TokenError::Shape);
        assert_eq!(f.parse(&format!("{}!", &good[..good.len() - 1])).unwrap_err(), TokenError::Shape);
        assert_eq!(f.parse("").unwrap_err(), TokenError::Prefix);
    }

    #[test]
    fn a_custom_prefix_is_part_of_the_format() {
        let f = TokenFormat::new("acme_").unwrap();
        let t = f.generate();
        assert!(t.expose().starts_with("acme_"));
        assert!(TokenFormat::default().parse(t.expose()).is_err());
        assert!(TokenFormat::new("Bad-Prefix").is_err());
    }

    #[test]
    fn the_hash_depends_on_the_pepper_and_debug_hides_the_secret() {
        let f = TokenFormat::default();
        let t = f.generate();
        let (p1, p2) = (Pepper::generate(), Pepper::generate());
        assert!(t.hash(&p1) == t.hash(&p1));
        assert!(t.hash(&p1) != t.hash(&p2));
        assert!(!format!("{t:?}").contains(&t.expose()[3..]));
        assert_eq!(TokenHash::from_hex(&t.hash(&p1).to_hex()), Some(t.hash(&p1)));
    }
}
