//! A verifier replica's HTTP API: verify and forward auth (the same
//! handlers as the registry's), its health and readiness, metrics and the state digest.

use std::net::IpAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{any, get, post};

use super::{Replica, Unavailable};
use crate::domain::cidr::Cidr;
use crate::domain::id::Seq;
use crate::domain::time::Timestamp;
use crate::domain::token::{Pepper, TokenFormat};
use crate::domain::verifier::{Answer, Presented};
use crate::http::authz::authz;
use crate::http::listen::Limits;
use crate::http::route;
use crate::http::verify::{Checked, Node, verify};
use crate::http::{ApiError, BODY_LIMIT, Digest, json, prometheus, track};
use crate::metrics::Metrics;

impl Node for Replica {
    fn format(&self) -> &TokenFormat {
        &self.config().format
    }

    fn pepper(&self) -> &Pepper {
        &self.config().pepper
    }

    fn now(&self) -> Timestamp {
        self.config().clock.now()
    }

    fn min_seq_wait(&self) -> Duration {
        self.config().min_seq_wait
    }

    fn metrics(&self) -> &Metrics {
        Replica::metrics(self)
    }

    async fn wait_applied(&self, seq: Seq, timeout: Duration) -> bool {
        Replica::wait_applied(self, seq, timeout).await
    }

    fn answer(&self, checked: &Checked, hash: Presented, now: Timestamp) -> Result<Answer, ApiError> {
        let history = self.table().map_err(|u| match u {
            Unavailable::CatchingUp { .. } | Unavailable::Stale(_) => ApiError::Stale(u.to_string()),
            Unavailable::Halted(_) | Unavailable::WrongPepper | Unavailable::Fork(_) => {
                ApiError::Unavailable(u.to_string())
            }
        })?;
        Ok(checked.answer(&hash, history.state(), now))
    }

    fn trusted_proxies(&self) -> &[Cidr] {
        &self.config().trusted_proxies
    }

    fn counted(&self, answer: &Answer, now: Timestamp, ip: Option<IpAddr>) {
        Replica::counted(self, answer, now, ip);
    }
}

/// The replica's router.
pub fn router(replica: &Replica) -> Router {
    Router::new()
        .route(route::VERIFY, post(verify::<Replica>))
        .route(route::AUTHZ, any(authz::<Replica>))
        .route(route::AUTHZ_PREFIXED, any(authz::<Replica>))
        .route("/v1/state/digest", get(digest))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(replica.clone(), track::<Replica>))
        .fallback(|| async { ApiError::NotFound("no such route on a verifier replica".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("this route does not take that method".into())
        })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(crate::http::listen::guard))
        .with_state(replica.clone())
}

/// Serves the replica's router on `listener` until `shutdown`, then sends
/// the pending access reports.
pub async fn serve(
    replica: &Replica,
    listener: tokio::net::TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let result = crate::http::listen::serve(listener, router(replica), limits, shutdown).await;
    replica.flush_now().await;
    result
}

/// Alive, unless it can never answer again without an operator (halted on
/// a broken chain, or given the wrong pepper).
async fn healthz(State(r): State<Replica>) -> Response {
    let h = r.health();
    let dead =
        matches!(r.unavailable(), Some(Unavailable::Halted(_) | Unavailable::WrongPepper | Unavailable::Fork(_)));
    json(if dead { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }, &h)
}

/// Ready when it answers verifies: caught up, current, and vouching for
/// its table.
async fn readyz(State(r): State<Replica>) -> Response {
    let h = r.health();
    json(if h.unavailable.is_none() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &h)
}

async fn metrics(State(r): State<Replica>) -> Response {
    let h = r.health();
    prometheus(r.metrics().render(&[
        ("keyreg_replica_applied_seq", "The last sequence this replica applied.", h.applied_seq.0 as f64),
        ("keyreg_replica_stream_last_seq", "The stream's last sequence as last seen.", h.stream_last_seq as f64),
        ("keyreg_replica_apply_lag", "Stream last sequence minus applied sequence.", h.lag as f64),
        (
            "keyreg_replica_halted",
            "1 when the replica stopped applying on a broken chain.",
            h.halted.is_some() as u8 as f64,
        ),
        ("keyreg_replica_ready", "1 when the replica answers verifies.", h.unavailable.is_none() as u8 as f64),
    ]))
}

async fn digest(State(r): State<Replica>) -> Response {
    let (seq, digest) = r.digest();
    json(StatusCode::OK, &Digest { seq, digest: digest.to_hex().to_string() })
}
