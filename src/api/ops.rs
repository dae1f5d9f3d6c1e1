//! Operational routes: liveness, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{AppState, json};
use crate::id::Seq;

#[derive(Serialize)]
struct Health {
    status: &'static str,
    head_seq: Seq,
    head_hash: String,
    applied_seq: Seq,
}

fn health(s: &AppState) -> (bool, Health) {
    let head = s.registry.head();
    let applied = s.registry.read().table.applied();
    let ok = s.registry.healthy();
    (
        ok,
        Health {
            status: if ok { "ok" } else { "failing" },
            head_seq: head.seq,
            head_hash: head.hash.to_hex(),
            applied_seq: applied,
        },
    )
}

/// Alive: the process answers. Reports the log head.
pub async fn healthz(State(s): State<AppState>) -> Response {
    json(StatusCode::OK, &health(&s).1)
}

/// Ready: the log takes writes (no failed commit).
pub async fn readyz(State(s): State<AppState>) -> Response {
    let (ok, h) = health(&s);
    json(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &h,
    )
}

pub async fn metrics(State(s): State<AppState>) -> Response {
    let head = s.registry.head().seq.0 as f64;
    let text = s.metrics.render(&[(
        "keyreg_log_head_seq",
        "The sequence of the last event in the log.",
        head,
    )]);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response()
}
