//! Writes that reach a standby go to the leader: the request is sent on as
//! it came (method, path, query, body, `Authorization`, `Keyreg-Actor`,
//! `Content-Type`), and the leader's answer comes back as it is. A caller,
//! the command line or the console, may so use any node.
//!
//! Reads, verify, forward auth and health are answered here, from this node's own log.
//! With no leader known, or one that does not answer, a write gets 503
//! `NO_LEADER` and nothing changes. A forwarded request carries
//! `Keyreg-Forwarded`, and is never forwarded again: two nodes that each
//! believe the other leads answer `NO_LEADER` rather than pass it round.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;

use super::{ACTOR_HEADER, ApiError, AppState, BODY_LIMIT, CATALOG_BODY_LIMIT, route};
use crate::registry::Leader;

/// Marks a request one node sent on to another.
const FORWARDED: &str = "keyreg-forwarded";
/// How long the leader may take to answer a forwarded write: its own
/// commit timeout, and then some.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);

/// The middleware: a write on a node that does not lead goes to the leader.
pub async fn writes_to_leader(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let path = req.uri().path();
    if reads || path == route::VERIFY || path == route::AUTHZ || path.starts_with("/v1/authz/") {
        return next.run(req).await;
    }
    s.registry.started().await;
    if s.registry.leads() {
        return next.run(req).await;
    }
    match s.registry.other_leader() {
        Some(leader) if !req.headers().contains_key(FORWARDED) => match forward(&leader, req).await {
            Ok(answer) => answer,
            Err(why) => {
                ApiError::NoLeader(format!("the leader {} at {} did not answer: {why}", leader.node, leader.url))
                    .into_response()
            }
        },
        _ => ApiError::NoLeader("no node of this registry leads now; nothing changed, try again shortly".into())
            .into_response(),
    }
}

async fn forward(leader: &Leader, req: Request) -> Result<Response, String> {
    let authority = leader
        .url
        .strip_prefix("http://")
        .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
        .ok_or_else(|| "its --advertise address is not http://".to_owned())?;
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, BODY_LIMIT.max(CATALOG_BODY_LIMIT)).await.map_err(|e| e.to_string())?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = axum::http::Request::builder().method(parts.method).uri(path).header(header::HOST, &authority);
    let passed: [HeaderName; 4] =
        [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT, HeaderName::from_static(ACTOR_HEADER)];
    for name in passed {
        for value in parts.headers.get_all(&name) {
            out = out.header(&name, value);
        }
    }
    let out = out.header(FORWARDED, "1").body(Body::from(body)).map_err(|e| e.to_string())?;
    exchange(&authority, out).await
}

/// Sends `request` to `authority` (host:port) on a connection of its own
/// and hands back the answer's head, if it comes within `ANSWER_WITHIN`.
/// (Also how a registry reaches its witnesses.)
pub(crate) async fn exchange(authority: &str, request: axum::http::Request<Body>) -> Result<Response, String> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(authority).await.map_err(|e| e.to_string())?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let answer = sender.send_request(request).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(answer.map(Body::new))
    };
    tokio::time::timeout(ANSWER_WITHIN, exchange).await.map_err(|_| "no answer in time".to_owned())?
}
