//! `POST /v1/verify`: the request and its rules, and the one handler that
//! serves it on the registry and on every replica (each a `Node`). The
//! answer itself is the domain's (`domain::verifier::Answer`), so an
//! embedded replica answers exactly as this route does.

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde::Deserialize;

use super::{ApiError, AppState, Body, json, presented_token};
use crate::domain::cidr::Cidr;
use crate::domain::id::Seq;
use crate::domain::table::Table;
use crate::domain::time::Timestamp;
use crate::domain::token::{Pepper, TokenFormat};
use crate::domain::verifier::{self, Answer, Presented, Question};
use crate::metrics::Metrics;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    key: Option<String>,
    action: Option<String>,
    resource: Option<String>,
    ip: Option<String>,
    min_seq: Option<u64>,
}

/// A verify request whose fields have been checked.
pub struct Checked {
    token: String,
    action: Option<String>,
    resource: Option<String>,
    pub ip: Option<IpAddr>,
    pub min_seq: Option<Seq>,
}

/// The token in the `Authorization` header, if any: read from the request
/// as it arrives, without copying its headers.
pub struct HeaderToken(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for HeaderToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(HeaderToken(presented_token(&parts.headers)?.map(str::to_owned)))
    }
}

impl VerifyRequest {
    /// Applies the request rules: a key (body or `Authorization`), a concrete
    /// action, a concrete resource only with an action, a parseable address.
    pub fn check(self, header: HeaderToken) -> Result<Checked, ApiError> {
        let token = match (self.key, header.0) {
            (Some(k), _) => k,
            (None, Some(t)) => t,
            (None, None) => {
                return Err(ApiError::Validation(
                    "give the key as \"key\" in the body or in the Authorization header".into(),
                ));
            }
        };
        let ip = self
            .ip
            .as_deref()
            .map(|ip| {
                ip.parse::<IpAddr>().map_err(|_| ApiError::Validation("ip must be an IPv4 or IPv6 address".into()))
            })
            .transpose()?;
        let mut checked = Checked::new(token, self.action, self.resource, ip)?;
        checked.min_seq = self.min_seq.map(Seq);
        Ok(checked)
    }
}

impl Checked {
    /// A question with its rules applied: a concrete action, a concrete
    /// resource only with an action. However it was asked (a verify body,
    /// a proxy's headers), it is this.
    pub fn new(
        token: String,
        action: Option<String>,
        resource: Option<String>,
        ip: Option<IpAddr>,
    ) -> Result<Checked, ApiError> {
        let question = Question { action: action.as_deref(), resource: resource.as_deref(), ip: None };
        question.check().map_err(|bad| ApiError::Validation(bad.to_string()))?;
        Ok(Checked { token, action, resource, ip, min_seq: None })
    }

    /// What is asked: the action, the resource, the caller's address.
    #[cfg(test)]
    pub fn parts(&self) -> (Option<&str>, Option<&str>, Option<IpAddr>) {
        (self.action.as_deref(), self.resource.as_deref(), self.ip)
    }

    /// The presented token reduced to its hash, done before the caller
    /// takes its table lock.
    pub fn hash(&self, format: &TokenFormat, pepper: &Pepper) -> Presented {
        Presented::of(format, pepper, &self.token)
    }

    /// The answer against `table` at `now`, for the presented key already
    /// reduced to its keyed hash (or refused as `MALFORMED`).
    pub fn answer(&self, presented: &Presented, table: &Table, now: Timestamp) -> Answer {
        let question = Question { action: self.action.as_deref(), resource: self.resource.as_deref(), ip: self.ip };
        verifier::check(table, presented, &question, now).answer(table)
    }
}

/// A node that answers verify: the registry or a replica. Each holds its
/// table its own way; the handler, the rules and the answer are shared.
pub trait Node: Clone + Send + Sync + 'static {
    fn format(&self) -> &TokenFormat;
    fn pepper(&self) -> &Pepper;
    fn now(&self) -> Timestamp;
    fn min_seq_wait(&self) -> Duration;
    fn metrics(&self) -> &Metrics;
    /// Waits until the node has applied `seq`, at most `timeout`.
    fn wait_applied(&self, seq: Seq, timeout: Duration) -> impl Future<Output = bool> + Send;
    /// Answers against the node's table, under its read lock; refuses when
    /// the node cannot vouch for its state.
    fn answer(&self, checked: &Checked, hash: Presented, now: Timestamp) -> Result<Answer, ApiError>;
    /// Counts a verify that found a key as an access of it, and its code.
    fn counted(&self, answer: &Answer, now: Timestamp, ip: Option<IpAddr>);
    /// The peers whose `X-Forwarded-For` forward auth believes.
    fn trusted_proxies(&self) -> &[Cidr];
}

pub async fn verify<N: Node>(
    State(node): State<N>,
    header: HeaderToken,
    Body(req): Body<VerifyRequest>,
) -> Result<Response, ApiError> {
    let answer = answer(&node, &req.check(header)?).await?;
    Ok(json(StatusCode::OK, &answer))
}

/// The answer to a checked question on `node`, counted as a verify: what
/// `POST /v1/verify` and forward auth (`authz`) both answer with.
pub async fn answer<N: Node>(node: &N, checked: &Checked) -> Result<Answer, ApiError> {
    if let Some(min) = checked.min_seq
        && !node.wait_applied(min, node.min_seq_wait()).await
    {
        return Err(ApiError::Stale(format!("this node has not applied sequence {min} yet; try again")));
    }
    let now = node.now();
    let hash = checked.hash(node.format(), node.pepper());
    let answer = node.answer(checked, hash, now)?;
    node.counted(&answer, now, checked.ip);
    Ok(answer)
}

impl Node for AppState {
    fn format(&self) -> &TokenFormat {
        self.registry.format()
    }

    fn pepper(&self) -> &Pepper {
        self.registry.pepper()
    }

    fn now(&self) -> Timestamp {
        self.registry.now()
    }

    fn min_seq_wait(&self) -> Duration {
        self.options.min_seq_wait
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn wait_applied(&self, seq: Seq, timeout: Duration) -> impl Future<Output = bool> + Send {
        self.registry.wait_applied(seq, timeout)
    }

    fn answer(&self, checked: &Checked, hash: Presented, now: Timestamp) -> Result<Answer, ApiError> {
        Ok(checked.answer(&hash, &self.registry.read().table, now))
    }

    fn counted(&self, answer: &Answer, now: Timestamp, ip: Option<IpAddr>) {
        if let Some(found) = &answer.found {
            self.access.record(&found.org, &found.key_id, answer.code, now, ip);
        }
        self.metrics.verified(answer.code);
    }

    fn trusted_proxies(&self) -> &[Cidr] {
        &self.options.trusted_proxies
    }
}
