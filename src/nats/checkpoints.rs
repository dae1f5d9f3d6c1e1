//! Checkpoints on core NATS (`<prefix>.checkpoints`): each new signed
//! checkpoint the registry makes, with the cosignatures it has, so that
//! replicas can hold it against the events they applied. A registry that
//! showed replicas one history and its clients another would be caught
//! here: the replicas' tree would not have the root it signed.
//!
//! Anyone who may publish there could send a forged note; the message's
//! MAC (under the pepper, as every keyreg message on NATS) says it is the
//! registry's, so a forgery cannot make a replica declare a fork.

use crate::domain::mac::{Kind, MAC_HEADER, MessageKeys};
use crate::domain::note::{Checkpoint, Note};

/// The message for a checkpoint note: the note's text form and its MAC.
pub fn message(note: &Note, keys: &MessageKeys) -> (async_nats::HeaderMap, bytes::Bytes) {
    let body = note.to_string().into_bytes();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(MAC_HEADER, keys.tag(Kind::Checkpoint, &[&body]).as_str());
    (headers, body.into())
}

/// The checkpoint a message carries, if its MAC holds under `keys`.
pub fn authentic(message: &async_nats::Message, keys: &MessageKeys) -> Option<Checkpoint> {
    let body = std::str::from_utf8(super::authentic_body(message, keys, Kind::Checkpoint)?).ok()?;
    Checkpoint::parse(&Note::parse(body).ok()?.text).ok()
}
