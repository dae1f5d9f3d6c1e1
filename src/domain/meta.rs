//! A key's metadata: a JSON object of at most 4 KiB that the org attaches
//! to a key (a plan, a customer id) and gets back on every verify, so a
//! service learns who is calling without a second lookup.
//!
//! Kept as its compact JSON text (keys sorted), shared (`Arc`): a verify
//! hands it on without copying or re-encoding it.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// The most bytes a key's metadata takes, as compact JSON.
pub const MAX_META_BYTES: usize = 4096;

#[derive(Clone, Debug)]
pub struct Meta(Arc<RawValue>);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("meta must be a JSON object, e.g. {{\"plan\": \"pro\"}}")]
    NotAnObject,
    #[error("meta is {0} bytes as JSON; at most {MAX_META_BYTES}")]
    TooLarge(usize),
}

impl Meta {
    /// A metadata object as given: an object, at most `MAX_META_BYTES`
    /// once compacted.
    pub fn new(value: &serde_json::Value) -> Result<Meta, MetaError> {
        if !value.is_object() {
            return Err(MetaError::NotAnObject);
        }
        let text = serde_json::to_string(value).map_err(|_| MetaError::NotAnObject)?;
        if text.len() > MAX_META_BYTES {
            return Err(MetaError::TooLarge(text.len()));
        }
        let raw = RawValue::from_string(text).map_err(|_| MetaError::NotAnObject)?;
        Ok(Meta(Arc::from(raw)))
    }

    /// The compact JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for Meta {
    fn eq(&self, other: &Meta) -> bool {
        self.json() == other.json()
    }
}

impl Serialize for Meta {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Meta {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Meta, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Ok(Meta(Arc::from(raw)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_object_up_to_4_kib_is_kept_as_compact_json() {
        let meta = Meta::new(&json!({"plan": "pro", "customer": {"id": 42}})).unwrap();
        assert_eq!(meta.json(), r#"{"customer":{"id":42},"plan":"pro"}"#);
        assert_eq!(serde_json::to_string(&json!({"meta": meta})).unwrap(), format!(r#"{{"meta":{}}}"#, meta.json()));
        let back: Meta = serde_json::from_str(meta.json()).unwrap();
        assert_eq!(back, meta);
        assert_eq!(Meta::new(&json!(["plan"])).err(), Some(MetaError::NotAnObject));
        assert_eq!(Meta::new(&json!("pro")).err(), Some(MetaError::NotAnObject));
        let big = json!({"notes": "x".repeat(MAX_META_BYTES)});
        assert!(matches!(Meta::new(&big), Err(MetaError::TooLarge(_))));
        assert!(Meta::new(&json!({"notes": "x".repeat(MAX_META_BYTES - 20)})).is_ok());
    }
}
