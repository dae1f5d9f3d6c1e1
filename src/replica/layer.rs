//! A `tower` layer for Rust services that embed a replica: each request's
//! key is verified in process, before the handler runs, by the same rules
//! as `POST /v1/verify` and forward auth (`Replica::verify`), and counted
//! as a verify. A request that may pass reaches the inner service with the
//! verify `Answer` in its extensions (axum: `Extension<Answer>`); any other
//! is answered here, as problem+json, without reaching it.
//!
//! What is asked, by default, is what forward auth asks of a proxy's
//! request: the key from `Authorization` (Bearer or raw) or `X-API-Key`;
//! the action from the method (GET and HEAD read, anything else writes);
//! the resource from the path, without its leading `/`. `with_question`
//! replaces the action, resource and caller's address with a service's
//! own (a key limited by address needs the address, which only the service
//! knows: its connection, or a proxy it trusts).
//!
//! | the answer | status | `code` |
//! |---|---|---|
//! | no key | 401 | `UNAUTHENTICATED` |
//! | a malformed, unknown, revoked, expired or disabled key | 401 | the verify code |
//! | not allowed this action, resource or address | 403 | the verify code |
//! | a question the rules refuse | 400 | `VALIDATION` |
//! | the replica cannot vouch for its table | 503 | `UNAVAILABLE` |

use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready, ready};
use http::{HeaderValue, Method, Request, Response, StatusCode, header, request::Parts};
use serde_json::json;
use tower_layer::Layer;
use tower_service::Service;

use super::{Refused, Replica};
use crate::domain::token::from_authorization;
use crate::domain::verifier::{Answer, Code, Question};

/// What a request asks: an action, a resource, the caller's address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Asked {
    pub action: Option<String>,
    pub resource: Option<String>,
    pub ip: Option<IpAddr>,
}

impl Asked {
    /// The default question: the method as `read` or `write`, the path as
    /// the resource.
    pub fn from_request(parts: &Parts) -> Asked {
        let action = if matches!(parts.method, Method::GET | Method::HEAD) { "read" } else { "write" };
        let path = parts.uri.path().trim_start_matches('/');
        Asked { action: Some(action.into()), resource: (!path.is_empty()).then(|| path.to_owned()), ip: None }
    }
}

type Ask = Arc<dyn Fn(&Parts) -> Asked + Send + Sync>;

/// Verifies every request's key against an embedded replica.
#[derive(Clone)]
pub struct VerifyLayer {
    replica: Replica,
    ask: Ask,
}

impl VerifyLayer {
    pub fn new(replica: Replica) -> VerifyLayer {
        VerifyLayer { replica, ask: Arc::new(Asked::from_request) }
    }

    /// Asks `ask(request)` instead of the default question.
    pub fn with_question(mut self, ask: impl Fn(&Parts) -> Asked + Send + Sync + 'static) -> VerifyLayer {
        self.ask = Arc::new(ask);
        self
    }
}

impl<S> Layer<S> for VerifyLayer {
    type Service = Verify<S>;

    fn layer(&self, inner: S) -> Verify<S> {
        Verify { inner, replica: self.replica.clone(), ask: self.ask.clone() }
    }
}

/// The service `VerifyLayer` wraps around another.
#[derive(Clone)]
pub struct Verify<S> {
    inner: S,
    replica: Replica,
    ask: Ask,
}

impl<S, B, R> Service<Request<B>> for Verify<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    R: From<String>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response<R>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let refused = |status, code: &str, detail: String| Either::Left(ready(Ok(problem(status, code, &detail))));
        let Some(token) = presented(&parts) else {
            let detail = "give the key in the Authorization header (Bearer) or in X-API-Key".to_owned();
            return refused(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", detail);
        };
        let asked = (self.ask)(&parts);
        let question = Question { action: asked.action.as_deref(), resource: asked.resource.as_deref(), ip: asked.ip };
        match self.replica.verify(&token, question) {
            Ok(answer) if answer.valid => {
                parts.extensions.insert(answer);
                Either::Right(self.inner.call(Request::from_parts(parts, body)))
            }
            Ok(answer) => {
                let status = status_of(&answer);
                refused(status, answer.code.as_str(), format!("the key is refused: {}", answer.code.as_str()))
            }
            Err(Refused::BadQuestion(why)) => refused(StatusCode::BAD_REQUEST, "VALIDATION", why.to_string()),
            Err(Refused::Unavailable(why)) => refused(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", why.to_string()),
        }
    }
}

/// The key, from `Authorization` (Bearer or raw), else `X-API-Key`.
fn presented(parts: &Parts) -> Option<String> {
    let value = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let api_key = || value("x-api-key").map(str::trim).filter(|k| !k.is_empty());
    value(header::AUTHORIZATION.as_str()).and_then(from_authorization).or_else(api_key).map(str::to_owned)
}

fn status_of(answer: &Answer) -> StatusCode {
    match answer.code {
        Code::Valid => StatusCode::OK,
        code if code.refuses_the_key() => StatusCode::UNAUTHORIZED,
        _ => StatusCode::FORBIDDEN,
    }
}

fn problem<R: From<String>>(status: StatusCode, code: &str, detail: &str) -> Response<R> {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or_default(),
        "status": status.as_u16(),
        "code": code,
        "detail": detail,
    });
    let mut response = Response::new(R::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"keyreg\""));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_question_is_forward_auths() {
        let (parts, _) = Request::post("/files/q3.csv?x=1").body(()).unwrap().into_parts();
        assert_eq!(
            Asked::from_request(&parts),
            Asked { action: Some("write".into()), resource: Some("files/q3.csv".into()), ip: None }
        );
        let (root, _) = Request::head("/").body(()).unwrap().into_parts();
        assert_eq!(Asked::from_request(&root), Asked { action: Some("read".into()), resource: None, ip: None });
    }

    #[test]
    fn the_key_comes_from_either_header() {
        let with = |name: &str, value: &str| Request::get("/").header(name, value).body(()).unwrap().into_parts().0;
        assert_eq!(presented(&with("authorization", "Bearer kr_a")).as_deref(), Some("kr_a"));
        assert_eq!(presented(&with("authorization", "kr_b")).as_deref(), Some("kr_b"));
        assert_eq!(presented(&with("x-api-key", " kr_c ")).as_deref(), Some("kr_c"));
        assert_eq!(presented(&with("x-api-key", "")), None);
    }

    #[test]
    fn a_refusal_is_problem_json() {
        let r: Response<String> = problem(StatusCode::UNAUTHORIZED, "REVOKED", "the key is refused: REVOKED");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/problem+json");
        let body: serde_json::Value = serde_json::from_str(r.body()).unwrap();
        assert_eq!((body["status"].as_u64(), body["code"].as_str()), (Some(401), Some("REVOKED")));
    }
}
