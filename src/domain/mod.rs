//! The domain: keyreg's rules and facts, with no I/O.
//!
//! Nothing here touches sled, tokio, axum, NATS, a socket or the disk:
//! time, ids and secrets' hashes come in as arguments. The same code runs in
//! the registry, in every verifier replica and in a point-in-time replay,
//! so they cannot disagree.
//!
//! - `id`, `time`, `token`, `scope`, `cidr`: value types, their parsing and
//!   matching rules.
//! - `permission`: keyreg's own permissions and the grant rule's sets;
//!   `preset`: the built-in scope templates; `catalog`: an org's list of
//!   actions and the close matches for a typo.
//! - `event`: the facts, their exact byte encoding.
//! - `chain`: the hash chain over those bytes and its checker.
//! - `mac`: the pepper-derived MACs that authenticate what crosses NATS.
//! - `merkle`, `note`: the RFC 6962 tree over the log, its proofs, and
//!   the signed checkpoints and cosignatures (C2SP) that publish its roots.
//! - `command`, `decide`: commands and every business rule, as
//!   `decide(table, ctx, command)`; `validate` holds the field rules.
//! - `table`: the key table, folded from events by one total `apply`.
//! - `audit`: the index of the audit history.
//! - `history`: the one fold from stored or streamed records (checked
//!   against the chain) into a table.
//! - `verifier`: the verify rules, one pure function over a table.

pub mod audit;
pub mod catalog;
pub mod chain;
pub mod cidr;
pub mod command;
pub mod decide;
pub mod event;
pub mod history;
pub mod id;
pub mod leak;
pub mod legacy;
pub mod mac;
pub mod merkle;
pub mod meta;
pub mod note;
pub mod permission;
pub mod preset;
pub mod scope;
pub mod snapshot;
pub mod table;
pub mod time;
pub mod token;
pub mod validate;
pub mod verifier;
