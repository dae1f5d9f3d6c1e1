//! Leak reports from secret scanning: the partner format GitHub uses to
//! send a provider every token of its format found in public, and the
//! check of its signature. Pure: the keys file's text, the body and the
//! headers come in; whether to believe them goes out.
//!
//! A report is a JSON array of `{token, type, url, source}`, signed with
//! ECDSA P-256 SHA-256 over the raw body (DER signature, base64, in
//! `Github-Public-Key-Signature`), by the key named in
//! `Github-Public-Key-Identifier`. The public keys are those GitHub
//! publishes, in its own shape: `{"public_keys": [{"key_identifier",
//! "key" (PEM, SubjectPublicKeyInfo), "is_current"}]}`.

use base64::Engine;
use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// The most tokens one report may carry.
pub const MAX_TOKENS: usize = 1000;

/// The DER header of a P-256 SubjectPublicKeyInfo; the uncompressed point
/// (65 bytes, `04 ‖ x ‖ y`) follows it.
const P256_SPKI_HEADER: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeakError {
    #[error("the leak report is not signed: it needs Github-Public-Key-Identifier and Github-Public-Key-Signature")]
    Unsigned,
    #[error("no public key {0:?} in the leak keys file")]
    UnknownKey(String),
    #[error("the leak report's signature does not check out against its key")]
    BadSignature,
    #[error("the leak keys file cannot be read: {0}")]
    KeysFile(String),
    #[error("the leak report must be a JSON array of at most {MAX_TOKENS} {{token, type, url, source}}: {0}")]
    Body(String),
}

#[derive(Deserialize)]
struct KeysFile {
    public_keys: Vec<PublicKey>,
}

#[derive(Deserialize)]
struct PublicKey {
    key_identifier: String,
    key: String,
}

/// One token found in public.
#[derive(Deserialize)]
pub struct Found {
    pub token: String,
    #[serde(rename = "type")]
    pub token_type: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub source: String,
}

/// GitHub's feedback on one token: its SHA-256, never the token.
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct Feedback {
    pub token_hash: String,
    pub token_type: String,
    pub label: Label,
}

#[derive(Serialize, Debug, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    TruePositive,
    FalsePositive,
}

impl Feedback {
    pub fn new(found: &Found, label: Label) -> Feedback {
        let hash = sha2::Sha256::digest(found.token.as_bytes());
        let token_hash = hash.iter().map(|b| format!("{b:02x}")).collect();
        Feedback { token_hash, token_type: found.token_type.clone(), label }
    }
}

/// The report's tokens, once its signature checks out against the key it
/// names in `keys_file` (the text of the file); nothing of the body is read
/// before that.
pub fn verified(
    keys_file: &str,
    key_id: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> Result<Vec<Found>, LeakError> {
    let (Some(key_id), Some(signature)) = (key_id, signature) else {
        return Err(LeakError::Unsigned);
    };
    let keys: KeysFile = serde_json::from_str(keys_file).map_err(|e| LeakError::KeysFile(e.to_string()))?;
    let key = keys
        .public_keys
        .iter()
        .find(|k| k.key_identifier == key_id)
        .ok_or_else(|| LeakError::UnknownKey(key_id.chars().take(100).collect()))?;
    let point = p256_point(&key.key)
        .ok_or_else(|| LeakError::KeysFile(format!("key {:?} is not a PEM P-256 public key", key.key_identifier)))?;
    let signature =
        base64::engine::general_purpose::STANDARD.decode(signature.trim()).map_err(|_| LeakError::BadSignature)?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
        .verify(body, &signature)
        .map_err(|_| LeakError::BadSignature)?;
    let found: Vec<Found> = serde_json::from_slice(body).map_err(|e| LeakError::Body(e.to_string()))?;
    if found.len() > MAX_TOKENS {
        return Err(LeakError::Body(format!("it carries {}", found.len())));
    }
    Ok(found)
}

/// The uncompressed point of a PEM P-256 SubjectPublicKeyInfo.
fn p256_point(pem: &str) -> Option<Vec<u8>> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let point = der.strip_prefix(&P256_SPKI_HEADER[..])?;
    (point.len() == 65 && point[0] == 4).then(|| point.to_vec())
}

/// The `key.revoked` reason for a token found at `url`: printable, short.
pub fn reason(url: &str) -> String {
    let url: String = url.chars().filter(|c| !crate::domain::validate::is_unsafe_char(*c)).take(900).collect();
    let url = if url.is_empty() { "an unnamed place".to_owned() } else { url };
    format!("found in public at {url}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

    fn signer() -> (EcdsaKeyPair, String) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let spki = [&P256_SPKI_HEADER[..], pair.public_key().as_ref()].concat();
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(spki)
        );
        let file = serde_json::json!({"public_keys": [{"key_identifier": "k1", "key": pem, "is_current": true}]});
        (pair, file.to_string())
    }

    #[test]
    fn a_signed_report_is_read_and_anything_else_refused() {
        let (pair, file) = signer();
        let body = br#"[{"token":"kr_x","type":"keyreg_api_key","url":"https://github.com/a/b/blob/main/x","source":"content"}]"#;
        let sig = pair.sign(&SystemRandom::new(), body).unwrap();
        let sig = base64::engine::general_purpose::STANDARD.encode(sig.as_ref());
        let found = verified(&file, Some("k1"), Some(&sig), body).unwrap();
        assert_eq!((found[0].token.as_str(), found[0].url.as_str()), ("kr_x", "https://github.com/a/b/blob/main/x"));
        assert_eq!(verified(&file, None, Some(&sig), body).err(), Some(LeakError::Unsigned));
        assert_eq!(verified(&file, Some("k2"), Some(&sig), body).err(), Some(LeakError::UnknownKey("k2".into())));
        let changed = br#"[{"token":"kr_y","type":"keyreg_api_key","url":"https://github.com/a/b/blob/main/x","source":"content"}]"#;
        assert_eq!(verified(&file, Some("k1"), Some(&sig), changed).err(), Some(LeakError::BadSignature));
        assert_eq!(verified(&file, Some("k1"), Some("not base64!"), body).err(), Some(LeakError::BadSignature));
    }

    #[test]
    fn feedback_carries_the_tokens_hash_never_the_token() {
        let found = Found { token: "abc".into(), token_type: "t".into(), url: String::new(), source: String::new() };
        let fb = Feedback::new(&found, Label::FalsePositive);
        assert_eq!(fb.token_hash, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(
            serde_json::to_string(&fb).unwrap(),
            format!(r#"{{"token_hash":"{}","token_type":"t","label":"false_positive"}}"#, fb.token_hash)
        );
        assert_eq!(reason("https://x.example/a\u{1b}[2J"), "found in public at https://x.example/a[2J");
    }
}
