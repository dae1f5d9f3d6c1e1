//! Operational routes: liveness, readiness and Prometheus metrics.
//!
//! A load balancer needs only whether to route here, so that is all
//! anyone is told: `{"status"}`. The log's head, the outbox and the
//! metrics tell how busy every tenant is, which a tenant's own
//! `audit/verify` deliberately hides; they are for the operator, a key of
//! `_system` holding `audit:read` (Prometheus sends it as a bearer token).

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde::Serialize;

use super::{ApiError, AppState, Caller, json, prometheus};
use crate::domain::id::Seq;
use crate::registry::{Leader, NodeRole};

/// Whether the request comes from the operator: a key of `_system` holding
/// `audit:read`. Anything else (no key, a bad one, a tenant's) is not, and
/// is not an error: it gets the short answer.
pub struct Operator(bool);

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await;
        Ok(Operator(caller.is_ok_and(|c| c.is_operator())))
    }
}

/// What anyone is told: whether to route here and, with several nodes,
/// which one leads (where a load balancer sends writes).
#[derive(Serialize)]
struct Status {
    status: &'static str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    node: Option<Node>,
}

/// A node of several: its role, its name, and the leader it knows of.
#[derive(Clone, Serialize)]
struct Node {
    role: NodeRole,
    node: String,
    leader: Option<Leader>,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    node: Option<Node>,
    /// How far the whole stored chain is known to be checked, and whether
    /// the background check is still running.
    chain_checked_through: Seq,
    chain_check_running: bool,
    /// The stream's last sequence as this node last learned it.
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_last_seq: Option<u64>,
    head_seq: Seq,
    head_hash: String,
    applied_seq: Seq,
    /// When a write is acknowledged: `stream` (once JetStream stored it
    /// too) or `local`.
    commit: &'static str,
    /// Why the registry refuses writes, when it does (a broken chain, a
    /// failed commit).
    #[serde(skip_serializing_if = "Option::is_none")]
    refusing_writes: Option<String>,
    /// Present when the registry publishes to NATS.
    #[serde(skip_serializing_if = "Option::is_none")]
    outbox: Option<Outbox>,
}

#[derive(Serialize)]
struct Outbox {
    published_seq: u64,
    /// Log head minus the last sequence the stream acknowledged.
    lag: u64,
    connected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    diverged: Option<String>,
    /// Why an event cannot be published at all (too large for NATS).
    #[serde(skip_serializing_if = "Option::is_none")]
    stuck: Option<String>,
}

fn health(s: &AppState) -> (bool, Health) {
    let head = s.registry.head();
    let applied = s.registry.read().table.applied();
    let outbox = s.outbox.as_ref().map(|o| {
        let published = o.published().0.0;
        Outbox {
            published_seq: published,
            lag: head.seq.0.saturating_sub(published),
            connected: o.connected(),
            diverged: o.diverged(),
            stuck: o.stuck(),
        }
    });
    // A diverged or stuck outbox is a failure; a lagging one is not: writes
    // go on and the stream catches up.
    let refusing_writes = s.registry.refusing_writes();
    let failing =
        refusing_writes.is_some() || outbox.as_ref().is_some_and(|o| o.diverged.is_some() || o.stuck.is_some());
    let node =
        s.registry.node_name().map(|name| Node { role: s.registry.role(), node: name, leader: s.registry.leader() });
    let starting = node.as_ref().is_some_and(|n| n.role == NodeRole::Starting);
    // The check of the chain before a snapshot runs in the background and
    // does not hold readiness back: a break it finds is `failing`.
    let (ok, status) = match (failing, starting) {
        (true, _) => (false, "failing"),
        (false, true) => (false, "starting"),
        (false, false) => (true, "ok"),
    };
    let head_hash = head.hash.to_hex();
    let commit = if s.registry.commits_to_stream() { "stream" } else { "local" };
    let published = s.outbox.as_ref().map(|o| o.published().0.0);
    let stream_last_seq = s.registry.stream_last().map(|seen| seen.0.max(published.unwrap_or(0))).or(published);
    let health = Health {
        status,
        node,
        stream_last_seq,
        chain_checked_through: s.registry.checked_through(),
        chain_check_running: !s.registry.chain_checked(),
        head_seq: head.seq,
        head_hash,
        applied_seq: applied,
        commit,
        refusing_writes,
        outbox,
    };
    (ok, health)
}

/// The health as the caller may see it: whole for the operator.
fn answer(status: StatusCode, h: Health, operator: Operator) -> Response {
    if operator.0 { json(status, &h) } else { json(status, &Status { status: h.status, node: h.node }) }
}

/// Alive: the process answers, 200, reporting the log head to the
/// operator; 503 once the stream has diverged from the log, which nothing
/// but the operator can mend (`keyreg stream reset`, as the log line says),
/// as a replica's `/healthz` is 503 in a state it cannot leave alone.
pub async fn healthz(State(s): State<AppState>, operator: Operator) -> Response {
    let h = health(&s).1;
    let diverged = h.outbox.as_ref().is_some_and(|o| o.diverged.is_some());
    answer(if diverged { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }, h, operator)
}

/// Ready: the whole chain has been checked and holds, no commit failed,
/// and the outbox has neither found the stream diverging from the log nor
/// met an event NATS will not take.
pub async fn readyz(State(s): State<AppState>, operator: Operator) -> Response {
    let (ok, h) = health(&s);
    answer(if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, h, operator)
}

/// Prometheus text, for the operator only.
pub async fn metrics(State(s): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    if !caller.is_operator() {
        return Err(ApiError::Forbidden("metrics need a key of _system holding audit:read".into()));
    }
    let head = s.registry.head().seq.0;
    let mut gauges = vec![("keyreg_log_head_seq", "The sequence of the last event in the log.", head as f64)];
    if let Some(o) = &s.outbox {
        let published = o.published().0.0;
        gauges.push(("keyreg_outbox_published_seq", "The last sequence NATS acknowledged.", published as f64));
        gauges.push((
            "keyreg_outbox_lag",
            "Log head minus the last sequence NATS acknowledged.",
            head.saturating_sub(published) as f64,
        ));
    }
    Ok(prometheus(s.metrics.render(&gauges)))
}
