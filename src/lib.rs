//! keyreg: an event-sourced API-key registry.
//!
//! Layers, from the inside out (ARCHITECTURE.md has the full map):
//!
//! - `domain`: the rules and the facts, with no I/O: ids, tokens, scopes,
//!   events, the hash chain, `decide`, the key table and its `apply`, the
//!   history fold, verify.
//! - `store`: the data dir on disk: the pepper file and the sled log.
//! - `registry`: the single writer with group commit, the live projections.
//! - `access`, `metrics`: access counting and Prometheus metrics.
//! - `http`, `server`: the HTTP API (registry and replica routes) and the
//!   service around it (expiry sweeper, access flush, outbox).
//! - `console`: the web pages under `/console`, answered through the API.
//! - `transparency`, `witness`: signed checkpoints of the log's Merkle
//!   tree, sent to witnesses and replicas; the witness that cosigns them.
//! - `nats`: the JetStream layout, the outbox publisher, access reports.
//! - `replica`: a verifier replica following the stream (embeddable).
//! - `cli`: the `keyreg` command line and its HTTP client.
//!
//! Cargo features: `replica` is what a service embedding a verifier needs
//! (domain, NATS, tokio); `server` adds sled, the writer and the HTTP API;
//! `cli` adds the command line. The default is `server` and `cli`.

// One exception, `SlotIndex::prefetch`, says why where it is.
#![deny(unsafe_code)]

pub mod domain;
pub mod store;

#[cfg(feature = "replica")]
pub mod access;
#[cfg(feature = "replica")]
pub mod metrics;
#[cfg(feature = "replica")]
pub mod nats;
#[cfg(feature = "replica")]
pub mod replica;

#[cfg(feature = "server")]
pub mod console;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod registry;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod transparency;
#[cfg(feature = "server")]
pub mod witness;

#[cfg(feature = "cli")]
pub mod cli;
