//! keyreg's integration tests: one binary (it builds once), one module per
//! area, helpers in `support`.

#[path = "../common/nats_server.rs"]
mod nats_server;
mod nats_support;
mod serve;
mod support;

mod api_contract;
mod api_errors;
mod api_keys;
mod api_verify;
mod chain;
mod chain_check;
mod cli_keys;
mod crash;
mod gateways;
mod hardening;
mod leaks;
mod lifecycle;
mod nats_cluster;
mod nats_forgery;
mod nats_notices;
mod nats_outbox;
mod nats_replicas;
mod nats_snapshots;
mod nats_staleness;
mod nats_stream_commit;
mod past;
mod people;
mod permissions;
mod property;
mod quickstart;
mod refusals;
mod registry_nodes;
mod schemas;
mod secrets;
mod snapshots;
mod tower_layer;
mod transparency;
mod verify_entry_points;
