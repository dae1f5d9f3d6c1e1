//! keyreg: an event-sourced API-key registry.
//!
//! Layout, from the inside out (ARCHITECTURE.md has the full map):
//!
//! - `id`, `time`, `token`, `scope`, `cidr`: value types with their parsing
//!   and matching rules.
//! - `event`: the facts, their exact byte encoding and the hash chain.
//! - `command`: every business rule, as `decide(table, ctx, command)`.
//! - `projection`: the key table, folded from events by one total `apply`.
//! - `audit`: the index of the audit history.
//! - `log`: the sled-backed, hash-chained log; the only module touching sled.
//! - `registry`: a data dir, the single writer with group commit, replay.
//! - `verifier`: the verify rules, one pure function over a table.
//! - `access`, `metrics`: access counting and Prometheus metrics.
//! - `api`, `server`: the registry's HTTP API and the service around it.
//! - `nats`: the JetStream layout, the outbox publisher, access reports.
//! - `replica`: a verifier replica following the stream (also embeddable).
//! - `client`, `cli`, `bench`: the command line, its API client, benchmarks.

// One exception, `SlotIndex::prefetch`, says why where it is.
#![deny(unsafe_code)]

pub mod access;
pub mod api;
pub mod audit;
pub mod bench;
pub mod cidr;
pub mod cli;
pub mod client;
pub mod command;
pub mod event;
pub mod id;
pub mod index;
pub mod log;
pub mod metrics;
pub mod nats;
pub mod projection;
pub mod registry;
pub mod replica;
pub mod scope;
pub mod server;
pub mod time;
pub mod token;
pub mod verifier;
