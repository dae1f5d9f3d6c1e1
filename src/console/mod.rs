//! The console: keyreg's web pages under `/console`, served by the
//! registry itself (docs/console.md).
//!
//! Pages are HTML rendered here, in Rust (maud escapes every value it is
//! given), with one stylesheet and one small script embedded in the binary;
//! nothing is fetched from anywhere else. Every read and write a page makes
//! is a call to the HTTP API, in process, under the signed-in key's own
//! authority (`Page::api`, `client.rs`): the console has no rules of its own to drift
//! from the API's, and a refusal reads the same in both, the API's sentence
//! shown next to the field it concerns.
//!
//! Security: server-side sessions (`session`), a CSRF token in every form
//! that writes (`Posted`), and on every answer a CSP with no inline script
//! and no framing, `nosniff`, no referrer, and `no-store`.

mod actor;
mod audit;
mod client;
mod import;

use client::{Edited, Refusal};
mod key_form;
mod key_page;
mod keys;
mod org;
mod orgs;
mod page;
mod roles;
pub mod session;
mod throttle;
mod usage;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub use session::IDLE_SECONDS;

use crate::domain::id::KeyId;
use crate::domain::permission::Permission;
use crate::http::{ApiError, AppState, BODY_LIMIT, Caller, listen, track};
use session::{COOKIE, Missing, Session, Sessions, same_token};

/// What every console handler is given: the registry's API state, the API
/// router the pages call, and the sessions.
#[derive(Clone)]
pub struct Console {
    state: AppState,
    api: Router,
    sessions: Arc<Sessions>,
    /// Failed sign-ins per address and per form.
    throttle: Arc<throttle::Throttle>,
}

/// The console's routes, answered through `api` (the registry's router);
/// sessions end after `idle` unused (at most `IDLE_SECONDS`).
pub fn router(state: AppState, api: Router, idle: std::time::Duration) -> Router {
    let sessions = Arc::new(Sessions::new(idle.as_secs() as i64));
    let console = Console { state, api, sessions, throttle: Arc::default() };
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/keys") }))
        .route("/console/", get(|| async { Redirect::to("/console/keys") }))
        .route("/console/sign-in", get(sign_in_form).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/assets/{file}", get(asset))
        .route("/console/keys", get(keys::list))
        .route("/console/keys/bulk", post(keys::bulk))
        .route("/console/keys/new", get(key_form::new_form).post(key_form::create))
        .route("/console/keys/import", get(import::form).post(import::import))
        .route("/console/keys/{id}", get(key_page::details))
        .route("/console/keys/{id}/secret", get(key_page::secret))
        .route("/console/keys/{id}/edit", get(key_form::edit_form).post(key_form::edit))
        .route("/console/keys/{id}/{action}", post(key_page::act))
        .route("/console/roles", get(roles::list))
        .route("/console/roles/new", get(roles::new_form).post(roles::create))
        .route("/console/roles/{name}", get(roles::edit_form).post(roles::edit))
        .route("/console/roles/{name}/delete", post(roles::delete))
        .route("/console/catalog", get(roles::catalog).post(roles::put_catalog))
        .route("/console/org", get(org::page))
        .route("/console/orgs", get(orgs::list).post(orgs::create))
        .route("/console/orgs/{id}", get(orgs::edit_form).post(orgs::edit))
        .route("/console/audit", get(audit::page))
        .route("/console/{*rest}", get(not_found))
        .route_layer(middleware::from_fn_with_state(console.state.clone(), track::<AppState>))
        .method_not_allowed_fallback(|| async {
            crate::http::ApiError::MethodNotAllowed("this page does not take that method".into())
        })
        .layer(middleware::from_fn(secure))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(listen::guard))
        .with_state(console)
}

/// The content security policy: this origin's script and style only, no
/// inline script or style, no plugins, no framing, forms post here only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn secure(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

const ASSETS: &[(&str, &str, &str)] = &[
    ("console.css", "text/css; charset=utf-8", include_str!("assets/console.css")),
    ("console.js", "text/javascript; charset=utf-8", include_str!("assets/console.js")),
    ("favicon.svg", "image/svg+xml", include_str!("assets/favicon.svg")),
];

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => {
            ([(header::CONTENT_TYPE, *kind), (header::CACHE_CONTROL, "no-cache")], *body).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

async fn not_found(page: Option<Page>) -> Response {
    page::message(page.as_ref(), StatusCode::NOT_FOUND, "Not found", "There is no such page in the console.")
}

/// A signed-in request: the session, the key behind it (checked again
/// now), and who that key is.
pub struct Page {
    console: Console,
    session: Session,
    caller: Caller,
    /// The signed-in key's name and owner, for the header.
    pub name: String,
    pub owner: String,
    peer: Option<ConnectInfo<SocketAddr>>,
}

impl Page {
    pub fn key_id(&self) -> KeyId {
        self.caller.key_id
    }

    pub fn org(&self) -> &str {
        self.caller.org.as_str()
    }

    /// The person named at sign-in, if any.
    pub fn user(&self) -> Option<&str> {
        self.session.user.as_deref()
    }

    /// Whether the key holds one of keyreg's permissions: pages leave out
    /// what the key may not do; the API refuses it anyway.
    pub fn can(&self, permission: Permission) -> bool {
        self.caller.holds(permission)
    }

    /// The registry's clock, for "3 hours ago".
    pub fn now(&self) -> crate::domain::time::Timestamp {
        self.console.state.registry.now()
    }

    pub fn csrf(&self) -> &str {
        &self.session.csrf
    }
}

impl FromRequestParts<Console> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Page, Response> {
        let cookie = cookie(&parts.headers, COOKIE);
        let now = console.state.registry.now();
        let session = console.sessions.touch(cookie, now).map_err(|missing| match missing {
            Missing::None => Redirect::to("/console/sign-in").into_response(),
            Missing::Expired => Redirect::to("/console/sign-in?expired=1").into_response(),
        })?;
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().copied();
        let caller = match Caller::authenticate(&console.state, session.token.expose(), peer.map(|p| p.0.ip())) {
            Ok(caller) => caller,
            Err(e) => {
                if let Some(c) = cookie {
                    console.sessions.end(c);
                }
                let why = if matches!(e, ApiError::Forbidden(_)) { "address" } else { "key" };
                return Err(Redirect::to(&format!("/console/sign-in?ended={why}")).into_response());
            }
        };
        let (name, owner) = {
            let p = console.state.registry.read();
            let key = p.table.key(&caller.key_id);
            (
                key.map(|k| k.name().to_string()).unwrap_or_default(),
                key.map(|k| k.owner().to_string()).unwrap_or_default(),
            )
        };
        Ok(Page { console: console.clone(), session, caller, name, owner, peer })
    }
}

impl axum::extract::OptionalFromRequestParts<Console> for Page {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Option<Page>, Self::Rejection> {
        Ok(<Page as FromRequestParts<Console>>::from_request_parts(parts, console).await.ok())
    }
}

/// A form posted from a signed-in page, its CSRF token checked: every
/// console route that changes anything takes one.
pub struct Posted {
    pub page: Page,
    pub form: Form,
}

impl FromRequest<Console> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, console: &Console) -> Result<Posted, Response> {
        let (mut parts, body) = req.into_parts();
        let page = <Page as FromRequestParts<Console>>::from_request_parts(&mut parts, console).await?;
        let form = Form::from_request(Request::from_parts(parts, body), console).await?;
        if !same_token(form.get("csrf"), page.csrf()) {
            return Err(page::message(
                Some(&page),
                StatusCode::FORBIDDEN,
                "The form could not be accepted",
                "It carried no valid CSRF token: it did not come from this console page, or the page is older \
                 than your session. Nothing was changed. Go back, reload the page and try again.",
            ));
        }
        Ok(Posted { page, form })
    }
}

/// A form body (`application/x-www-form-urlencoded`), names in order and
/// repeatable (checkboxes).
#[derive(Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// The first value of `name`, or "".
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// Non-empty lines of a textarea, trimmed.
    pub fn lines(&self, name: &str) -> Vec<String> {
        self.get(name).lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Form, Response> {
        let bytes = Bytes::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        Ok(Form(form_urlencoded::parse(&bytes).into_owned().collect()))
    }
}

/// The value of cookie `name` in the request, if exactly one is sent.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v);
    match (found.next(), found.next()) {
        (Some(v), None) => Some(v),
        _ => None,
    }
}

/// A `Set-Cookie` value for the console's cookies: never readable by
/// script, never sent by another site, only to `/console`.
fn set_cookie(name: &str, value: &str, max_age: i64) -> HeaderValue {
    let cookie = format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    HeaderValue::from_str(&cookie).expect("cookie values are hex")
}

/// The cookie that carries the sign-in form's CSRF token, before there is
/// a session to hold it.
const SIGN_IN_COOKIE: &str = "keyreg_sign_in";

#[derive(serde::Deserialize)]
struct SignInQuery {
    expired: Option<String>,
    ended: Option<String>,
}

async fn sign_in_form(axum::extract::Query(q): axum::extract::Query<SignInQuery>) -> Response {
    let notice = match (q.expired.is_some(), q.ended.as_deref()) {
        (true, _) => Some("Your session expired. Sign in again."),
        (_, Some("address")) => Some("Your session ended: the key may not be used from this address."),
        (_, Some(_)) => Some("Your session ended: the key was revoked, disabled or has expired."),
        _ => None,
    };
    sign_in_page(notice, None, "", StatusCode::OK)
}

fn sign_in_page(notice: Option<&str>, error: Option<&str>, user: &str, status: StatusCode) -> Response {
    let token = session::random_hex();
    let mut response = page::sign_in(notice, error, user, &token, status);
    response.headers_mut().append(header::SET_COOKIE, set_cookie(SIGN_IN_COOKIE, &token, 3600));
    response
}

async fn sign_in(State(console): State<Console>, req: Request) -> Response {
    let expected = cookie(req.headers(), SIGN_IN_COOKIE).map(str::to_owned);
    let ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let form = match Form::from_request(req, &console).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let user = form.get("user").trim().to_owned();
    let fail = |error: &str| sign_in_page(None, Some(error), &user, StatusCode::UNAUTHORIZED);
    if !expected.as_ref().is_some_and(|c| !c.is_empty() && same_token(c, form.get("csrf"))) {
        return fail("The sign-in form had expired. Enter your key again.");
    }
    let token = form.get("key").trim();
    if token.is_empty() {
        return fail("Enter an API key of your organization.");
    }
    let who = [
        format!("ip:{}", ip.map_or("-".into(), |ip| ip.to_string())),
        format!("form:{}", expected.unwrap_or_default()),
    ];
    let who = [who[0].as_str(), who[1].as_str()];
    if let Some(wait) = console.throttle.wait(&who) {
        let error = format!("Too many failed sign-ins from here. Try again in {} s.", wait.as_secs() + 1);
        return sign_in_page(None, Some(&error), &user, StatusCode::TOO_MANY_REQUESTS);
    }
    let caller = match Caller::authenticate(&console.state, token, ip) {
        Ok(c) => c,
        Err(e) => {
            console.throttle.failed(&who);
            return match e {
                ApiError::Forbidden(_) => fail("This key may not be used from your address."),
                _ => fail("That key is not valid: it is unknown, revoked, disabled or expired."),
            };
        }
    };
    if !caller.holds(Permission::KeysRead) {
        return fail("This key cannot read keys (it lacks keys:read), so it cannot use the console.");
    }
    let user = match user.as_str() {
        "" => None,
        _ if !caller.holds(Permission::ActorsAssert) => {
            return fail("This key cannot act for a person (it lacks actors:assert); leave \"Your email\" empty.");
        }
        email => match crate::domain::id::Actor::parse(&format!("user:{email}")) {
            Ok(_) => Some(email.to_owned()),
            Err(_) => return fail("\"Your email\" is not an email address such as ada@example.com."),
        },
    };
    let now = console.state.registry.now();
    let cookie = console.sessions.start(token.to_owned(), user, now);
    let mut response = Redirect::to("/console/keys").into_response();
    let h = response.headers_mut();
    h.append(header::SET_COOKIE, set_cookie(COOKIE, &cookie, session::MAX_AGE_SECONDS));
    h.append(header::SET_COOKIE, set_cookie(SIGN_IN_COOKIE, "", 0));
    response
}

async fn sign_out(State(console): State<Console>, headers: HeaderMap, _checked: Posted) -> Response {
    if let Some(c) = cookie(&headers, COOKIE) {
        console.sessions.end(c);
    }
    let mut response = Redirect::to("/console/sign-in").into_response();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(COOKIE, "", 0));
    response
}
