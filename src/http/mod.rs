//! The HTTP API (docs/http-api.md): the registry's router, authentication,
//! request parsing, and the handlers by area (`keys`, `org`, `audit`,
//! `verify`, `ops`); `replica` is a verifier replica's router. Request and
//! response types live here, never in the domain; the domain's refusals
//! become HTTP through `error` alone.

mod audit;
pub mod authz;
mod bulk;
mod error;
pub(crate) mod forward;
pub mod heavy;
mod import;
mod keys;
mod leaks;
pub mod listen;
mod ops;
mod org;
mod roles;
pub mod route;
mod transparency;
mod usage;
pub mod verify;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, patch, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use audit::Digest;
pub use error::ApiError;
pub use verify::Node;

use crate::access::AccessCounter;
use crate::domain::cidr::Cidr;
use crate::domain::command::{Acting, Command};
use crate::domain::id::{Actor, KeyId, MAX_EMAIL, OrgId, Seq};
use crate::domain::permission::{Permission, Permissions};
use crate::domain::time::Timestamp;
use crate::domain::verifier::{self, Code, Presented, Question};
use crate::metrics::Metrics;
use crate::registry::{Outcome, Registry};
use crate::store::log::LogError;

/// Bodies over this many bytes are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;
/// The one exception: a catalogue of up to 10,000 actions with their
/// descriptions does not fit in 64 KiB (the catalogue itself is at most
/// `catalog::MAX_CATALOG_BYTES`; this leaves room for whitespace).
pub const CATALOG_BODY_LIMIT: usize = 1024 * 1024;

/// Every route the registry answers, as (method, path template). The router
/// below is built to match, `schemas/openapi.json` documents each, and a
/// test holds the three together.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", route::ORGS),
    ("GET", route::ORGS),
    ("PATCH", route::ORG_BY_ID),
    ("GET", route::ORG),
    ("PATCH", route::ORG),
    ("POST", route::KEYS),
    ("GET", route::KEYS),
    ("GET", route::KEY),
    ("PATCH", route::KEY),
    ("DELETE", route::KEY),
    ("POST", route::KEY_DISABLE),
    ("POST", route::KEY_ENABLE),
    ("POST", route::KEY_REVOKE),
    ("POST", route::KEY_ROTATE),
    ("POST", route::KEYS_BULK_REVOKE),
    ("POST", route::KEYS_OFFBOARD),
    ("POST", route::KEYS_IMPORT),
    ("GET", route::KEY_USAGE),
    ("POST", route::ROLES),
    ("GET", route::ROLES),
    ("GET", route::ROLE),
    ("PATCH", route::ROLE),
    ("DELETE", route::ROLE),
    ("GET", route::PRESETS),
    ("GET", route::CATALOG),
    ("PUT", route::CATALOG),
    ("GET", route::USAGE),
    ("POST", route::VERIFY),
    ("GET", route::AUTHZ),
    ("POST", route::AUTHZ),
    ("GET", route::AUTHZ_PREFIXED),
    ("POST", route::LEAKS),
    ("GET", route::AUDIT),
    ("GET", route::AUDIT_VERIFY),
    ("GET", route::EVENTS),
    ("GET", route::STATE_DIGEST),
    ("GET", route::CHECKPOINT),
    ("GET", route::PROOF_INCLUSION),
    ("GET", route::PROOF_CONSISTENCY),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
];

/// Settings of the API that tests and operators tune.
#[derive(Clone, Debug)]
pub struct ApiOptions {
    /// How long a verify with `min_seq` waits for that sequence.
    pub min_seq_wait: Duration,
    /// The proxies whose `X-Forwarded-For` forward auth believes
    /// (`--trusted-proxy`; loopback unless set).
    pub trusted_proxies: Arc<[Cidr]>,
    /// The secret-scanning partner's public keys (`--leak-keys`); leak
    /// reports are off without them.
    pub leak_keys: Option<std::path::PathBuf>,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions { min_seq_wait: Duration::from_secs(1), trusted_proxies: Cidr::loopback().into(), leak_keys: None }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    pub access: Arc<AccessCounter>,
    pub metrics: Arc<Metrics>,
    pub options: ApiOptions,
    /// The outbox's progress, when the registry publishes to NATS.
    pub outbox: Option<Arc<crate::nats::publisher::OutboxStatus>>,
    /// Limits on requests that read much of the log (`heavy`).
    pub heavy: Arc<heavy::Heavy>,
}

/// The API's router (the console, a layer above, calls it in process; the
/// server serves both). Tests may drive it without a socket; then no
/// caller address is known and keys with `allowed_cidrs` refuse.
pub fn api(state: AppState) -> Router {
    Router::new()
        .route(route::ORGS, get(org::list_orgs).post(org::create_org))
        .route(route::ORG_BY_ID, patch(org::operate_org))
        .route(route::ORG, get(org::get_org).patch(org::update_org))
        .route(route::KEYS, post(keys::create).get(keys::list))
        .route(route::KEYS_BULK_REVOKE, post(bulk::bulk_revoke))
        .route(route::KEYS_OFFBOARD, post(bulk::offboard))
        .route(route::KEYS_IMPORT, post(import::import))
        .route(route::KEY, get(keys::get).patch(keys::update).delete(keys::delete))
        .route(route::KEY_DISABLE, post(keys::disable))
        .route(route::KEY_ENABLE, post(keys::enable))
        .route(route::KEY_REVOKE, post(keys::revoke))
        .route(route::KEY_ROTATE, post(keys::rotate))
        .route(route::KEY_USAGE, get(usage::key_usage))
        .route(route::ROLES, post(roles::create).get(roles::list))
        .route(route::ROLE, get(roles::get).patch(roles::update).delete(roles::delete))
        .route(route::PRESETS, get(roles::presets))
        .route(
            route::CATALOG,
            get(roles::get_catalog).put(roles::put_catalog).layer(DefaultBodyLimit::max(CATALOG_BODY_LIMIT)),
        )
        .route(route::USAGE, get(usage::org_usage))
        .route(route::VERIFY, post(verify::verify::<AppState>))
        .route(route::AUTHZ, any(authz::authz::<AppState>))
        .route(route::AUTHZ_PREFIXED, any(authz::authz::<AppState>))
        .route(route::LEAKS, post(leaks::report).layer(DefaultBodyLimit::max(leaks::BODY_LIMIT)))
        .route(route::AUDIT, get(audit::list))
        .route(route::AUDIT_VERIFY, get(audit::verify_chain))
        .route(route::EVENTS, get(audit::events))
        .route(route::STATE_DIGEST, get(audit::digest))
        .route(route::CHECKPOINT, get(transparency::checkpoint))
        .route(route::PROOF_INCLUSION, get(transparency::inclusion))
        .route(route::PROOF_CONSISTENCY, get(transparency::consistency))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), track::<AppState>))
        .fallback(|| async { ApiError::NotFound("no such route; docs/http-api.md lists them".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("this route does not take that method".into())
        })
        .layer(middleware::from_fn_with_state(state.clone(), forward::writes_to_leader))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(listen::guard))
        .with_state(state)
}

/// Counts and times every routed request under its path template.
pub async fn track<N: verify::Node>(State(node): State<N>, req: Request, next: Next) -> Response {
    let path = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let started = Instant::now();
    let response = next.run(req).await;
    let path = path.as_ref().map_or("unmatched", MatchedPath::as_str);
    node.metrics().observe(method.as_str(), path, response.status().as_u16(), started.elapsed());
    response
}

/// The token in `Authorization`, raw or after `Bearer `. Two
/// `Authorization` headers are refused: which one a proxy or a log would
/// take is anyone's guess.
fn presented_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let value = one_header(headers, "Authorization")?.and_then(|v| v.to_str().ok());
    Ok(value.and_then(crate::domain::token::from_authorization))
}

/// The one value of header `name`, if sent; sent more than once, refused:
/// which one a proxy or a log would take is anyone's guess.
fn one_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a HeaderValue>, ApiError> {
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (Some(_), Some(_)) => Err(ApiError::Validation(format!("send one {name} header, not several"))),
        (value, _) => Ok(value),
    }
}

/// The person named in `Keyreg-Actor`, when the key may name one: at most
/// one header, `user:<email>`, from a key holding `actors:assert`.
fn asserted_user(headers: &HeaderMap, permissions: Permissions) -> Result<Option<Actor>, ApiError> {
    let Some(value) = one_header(headers, "Keyreg-Actor")? else { return Ok(None) };
    if !permissions.has(Permission::ActorsAssert) {
        return Err(ApiError::Forbidden("naming a person in Keyreg-Actor needs a key with actors:assert".into()));
    }
    let user = value.to_str().ok().and_then(|v| Actor::parse(v.trim()).ok()).filter(|a| matches!(a, Actor::User(_)));
    user.map(Some).ok_or_else(|| {
        ApiError::Validation(format!(
            "Keyreg-Actor must be user:<email>, an email of at most {MAX_EMAIL} characters, e.g. user:ada@example.com"
        ))
    })
}

fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// An authenticated caller: an active key, used from an address it allows.
pub struct Caller {
    pub key_id: KeyId,
    pub org: OrgId,
    /// keyreg's own permissions the key holds, through its scopes or roles.
    permissions: Permissions,
    /// The person the key acts for (`Keyreg-Actor: user:<email>`).
    user: Option<Actor>,
}

/// The header naming the person a key acts for.
pub const ACTOR_HEADER: &str = "keyreg-actor";

impl Caller {
    /// Who the change is recorded as: the person, through this key, or the
    /// key itself.
    pub fn actor(&self) -> Acting {
        match &self.user {
            Some(user) => Acting { actor: user.clone(), via: Some(self.key_id) },
            None => Actor::Key(self.key_id).into(),
        }
    }

    /// The person the key acts for, if it named one.
    pub fn user(&self) -> Option<&Actor> {
        self.user.as_ref()
    }

    /// Refuses unless the caller holds the management permission.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.holds(permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("this call needs a key with the scope {permission}")))
        }
    }
}

impl Caller {
    /// The caller presenting `token` from `ip`: an active key the address
    /// may use, acting for no person yet. The console signs its sessions in
    /// through here, so a page and an API call accept the same keys.
    pub(crate) fn authenticate(state: &AppState, token: &str, ip: Option<IpAddr>) -> Result<Caller, ApiError> {
        let registry = &state.registry;
        let presented = Presented::of(registry.format(), registry.pepper(), token);
        let question = Question { ip, ..Question::default() };
        let now = registry.now();
        let p = registry.read();
        let verdict = verifier::check(&p.table, &presented, &question, now);
        let refuse = |why: &str| Err(ApiError::Unauthenticated(format!("the presented key {why}")));
        match verdict.code {
            Code::Valid | Code::ForbiddenScope => {}
            Code::Malformed => return refuse("is malformed"),
            Code::NotFound => return refuse("is not known"),
            Code::Revoked => return refuse("is revoked"),
            Code::Expired => return refuse("has expired"),
            Code::Disabled => return refuse("is disabled"),
            Code::ForbiddenIp => {
                return Err(ApiError::Forbidden("the key may not be used from this address".into()));
            }
        }
        let key = verdict.key.ok_or_else(|| ApiError::Internal("a found key has no record".into()))?;
        Ok(Caller { key_id: key.id, org: key.org.clone(), permissions: p.table.permissions(key), user: None })
    }

    /// Whether the caller holds the management permission.
    pub fn holds(&self, permission: Permission) -> bool {
        self.permissions.has(permission)
    }

    /// Whether the caller is the operator, who sees the whole log's
    /// activity: a key of `_system` holding `audit:read`.
    pub fn is_operator(&self) -> bool {
        !self.org.is_tenant() && self.holds(Permission::AuditRead)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = presented_token(&parts.headers)?.ok_or_else(|| {
            ApiError::Unauthenticated("send a key in the Authorization header (raw or as Bearer)".into())
        })?;
        let mut caller = Caller::authenticate(state, token, peer_ip(parts))?;
        caller.user = asserted_user(&parts.headers, caller.permissions)?;
        Ok(caller)
    }
}

/// A JSON request body: at most `BODY_LIMIT` bytes, unknown fields refused
/// (the request types say `deny_unknown_fields`); an empty body reads as `{}`.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let timeout =
            req.extensions().get::<listen::ReadTimeout>().map_or(listen::Limits::default().read_timeout, |t| t.0);
        let read = tokio::time::timeout(timeout, Bytes::from_request(req, state)).await;
        let bytes = read.map_err(|_| ApiError::RequestTimeout)?.map_err(|r| {
            if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::Validation(format!("cannot read the request body: {}", r.body_text()))
            }
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        serde_json::from_slice(bytes)
            .map(Body)
            .map_err(|e| ApiError::Validation(format!("the body is not valid for this call: {e}")))
    }
}

/// Query parameters; unknown ones are refused like unknown body fields.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::Validation(format!("bad query parameters: {}", e.body_text())))
    }
}

/// `If-Match: 5`, `"5"` or `W/"5"`: the version a write expects; `*` or no
/// header: any version.
fn expected_version(headers: &HeaderMap) -> Result<Option<Seq>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    let bare = text.trim_start_matches("W/").trim_matches('"');
    bare.parse::<u64>()
        .map(|v| Some(Seq(v)))
        .map_err(|_| ApiError::Validation("If-Match must be a version (the ETag), e.g. If-Match: \"42\"".into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsOfQuery {
    as_of: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DryRunQuery {
    #[serde(default)]
    dry_run: bool,
}

/// Runs a command, or with `?dry_run=true` decides it against the live
/// table and records nothing.
async fn execute_or_preview(
    s: &AppState,
    caller: &Caller,
    command: Command,
    dry_run: bool,
) -> Result<Outcome, ApiError> {
    if dry_run {
        // Deciding is bounded, but it is work a tenant asks for: never on
        // the runtime's threads, which answer every verify.
        let (registry, who, org) = (s.registry.clone(), caller.actor(), caller.org.clone());
        blocking(move || Ok(registry.preview(who, org, &command)?)).await
    } else {
        Ok(s.registry.execute(caller.actor(), caller.org.clone(), command).await?)
    }
}

/// A view of the past (`Registry::key_as_of`, `page_as_of`, ...) for the
/// caller's org, rebuilt under the `heavy` limits.
async fn past<T: Send + 'static>(
    s: &AppState,
    caller: &Caller,
    rebuild: impl FnOnce(&Registry) -> Result<T, LogError> + Send + 'static,
) -> Result<T, ApiError> {
    let registry = s.registry.clone();
    s.heavy.run(&caller.org, move || Ok(rebuild(&registry)?)).await
}

/// Adds an `ETag` of a key's or role's version, for `If-Match`.
fn with_etag(mut response: Response, version: Seq) -> Response {
    if let Ok(v) = header::HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// A JSON response with a status.
pub(crate) fn json<T: serde::Serialize>(status: axum::http::StatusCode, body: &T) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Runs blocking work (sled reads, a walk of the log) off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::Internal(e.to_string()))?
}

/// An answer that carries a secret: no cache, shared or private, may keep it.
fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

/// Prometheus's text exposition.
pub(crate) fn prometheus(text: String) -> Response {
    ([(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; version=0.0.4"))], text).into_response()
}

fn parse_key_id(id: &str) -> Result<KeyId, ApiError> {
    KeyId::parse(id).map_err(|_| no_such_key(id))
}

/// Another org's key is answered exactly like a key that does not exist.
fn no_such_key(id: &str) -> ApiError {
    ApiError::NotFound(format!("no key {:?} in this organization", id.chars().take(80).collect::<String>()))
}

fn parse_time(field: &'static str, value: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse(value).map_err(|_| ApiError::InvalidField {
        field,
        detail: format!("{field} must be an RFC 3339 time, e.g. 2026-11-22T10:00:00Z"),
    })
}
