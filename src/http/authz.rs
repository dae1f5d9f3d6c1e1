//! `/v1/authz`: forward auth, for proxies that ask an outside service
//! whether a request may pass (nginx `auth_request`, Caddy `forward_auth`,
//! Traefik ForwardAuth, Envoy `ext_authz`). Any method; no body is read.
//!
//! The question is read from headers alone and becomes the same checked
//! question as a `POST /v1/verify` body (`verify::Checked`), answered and
//! counted by the same `verify::answer`, on the registry and on replicas.
//! The verdict is the status a proxy acts on (200 pass, 401 no usable key,
//! 403 not allowed) with the verify answer as the body, and on 200
//! `Keyreg-*` headers the proxy can hand to its backend.
//!
//! - The key: `Authorization` (Bearer or raw), else `X-API-Key`.
//! - The action: `Keyreg-Action`, else the original method (GET and HEAD
//!   read, anything else writes) from `X-Forwarded-Method` or
//!   `X-Original-Method`, or, under `/v1/authz/<path>` (Envoy), the
//!   request's own method. None of them: only the key is checked.
//! - The resource, only with an action: `Keyreg-Resource`, else the
//!   original path without its leading `/` and its query, from
//!   `X-Forwarded-Uri`, `X-Original-URI` or the `<path>` after the prefix;
//!   as sent (not percent-decoded).
//! - The caller's address: `X-Forwarded-For`'s first entry when the peer is
//!   a trusted proxy (`--trusted-proxy`, loopback by default), the peer
//!   otherwise. A trusted peer that names no one leaves the address
//!   unknown, so a key with `allowed_cidrs` is refused rather than judged
//!   by the proxy's own address.

use std::net::{IpAddr, SocketAddr};

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::verify::{self, Checked, Node};
use super::{ApiError, json, one_header, presented_token};
use crate::domain::cidr::Cidr;
use crate::domain::verifier::{Answer, Code};

const API_KEY: &str = "X-API-Key";
const ACTION: &str = "Keyreg-Action";
const RESOURCE: &str = "Keyreg-Resource";
const METHODS: [&str; 2] = ["X-Forwarded-Method", "X-Original-Method"];
const URIS: [&str; 2] = ["X-Forwarded-Uri", "X-Original-URI"];
const FORWARDED_FOR: &str = "X-Forwarded-For";

pub async fn authz<N: Node>(State(node): State<N>, req: Request) -> Result<Response, ApiError> {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let suffix = req.uri().path().strip_prefix(super::route::AUTHZ).and_then(|s| s.strip_prefix('/'));
    let asked = question(req.method(), suffix, req.headers(), peer, node.trusted_proxies())?;
    let answer = verify::answer(&node, &asked).await?;
    Ok(verdict(&answer))
}

/// The checked question a proxy's headers ask.
fn question(
    method: &Method,
    suffix: Option<&str>,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    trusted: &[Cidr],
) -> Result<Checked, ApiError> {
    let one = |name: &str| -> Result<Option<&str>, ApiError> {
        Ok(one_header(headers, name)?.and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()))
    };
    let first = |names: [&str; 2]| -> Result<Option<&str>, ApiError> {
        Ok(match one(names[0])? {
            Some(v) => Some(v),
            None => one(names[1])?,
        })
    };
    let token = match presented_token(headers)? {
        Some(t) => t,
        None => one(API_KEY)?.ok_or_else(|| {
            ApiError::Unauthenticated("give the key in the Authorization header (Bearer) or in X-API-Key".into())
        })?,
    };
    let original_method = match (first(METHODS)?, suffix) {
        (Some(m), _) => Some(m),
        (None, Some(_)) => Some(method.as_str()),
        (None, None) => None,
    };
    let action = match one(ACTION)? {
        Some(a) => Some(a.to_owned()),
        None => original_method.map(|m| {
            if m.eq_ignore_ascii_case("GET") || m.eq_ignore_ascii_case("HEAD") { "read" } else { "write" }.to_owned()
        }),
    };
    let resource = match one(RESOURCE)? {
        Some(r) => Some(r.to_owned()),
        None if action.is_some() => {
            let uri = first(URIS)?.or(suffix).unwrap_or_default();
            let path = uri.split(['?', '#']).next().unwrap_or_default().trim_start_matches('/');
            (!path.is_empty()).then(|| path.to_owned())
        }
        None => None,
    };
    let ip = match peer {
        Some(p) if trusted.iter().any(|c| c.contains(p)) => one(FORWARDED_FOR)?
            .and_then(|v| v.split(',').next())
            .map(|first| {
                first
                    .trim()
                    .parse::<IpAddr>()
                    .map_err(|_| ApiError::Validation("X-Forwarded-For must start with an IPv4 or IPv6 address".into()))
            })
            .transpose()?,
        other => other,
    };
    Checked::new(token.to_owned(), action, resource, ip)
}

/// The status a proxy acts on, the verify answer as the body, and on a pass
/// the key's particulars as headers for the backend.
fn verdict(answer: &Answer) -> Response {
    let status = match answer.code {
        Code::Valid => StatusCode::OK,
        code if code.refuses_the_key() => StatusCode::UNAUTHORIZED,
        _ => StatusCode::FORBIDDEN,
    };
    let mut response = json(status, answer);
    let headers = response.headers_mut();
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"keyreg\""));
    }
    if let (StatusCode::OK, Some(found)) = (status, &answer.found) {
        let scopes: Vec<String> = found.scopes.iter().map(ToString::to_string).collect();
        let mut set = |name: &'static str, value: &str| {
            headers.insert(HeaderName::from_static(name), header_value(value));
        };
        set("keyreg-key-id", found.key_id.as_str());
        set("keyreg-org", found.org.as_str());
        set("keyreg-owner", found.owner.as_deref().unwrap_or_default());
        set("keyreg-scopes", &scopes.join(","));
        if let Some(meta) = &found.meta {
            set("keyreg-meta", &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(meta.json()));
        }
    }
    response.into_response()
}

/// A header value for any text: visible ASCII as it is, anything else
/// percent-encoded, so an owner's name in any script passes through.
fn header_value(text: &str) -> HeaderValue {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b' '..=b'~' if b != b'%' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(HeaderName::from_static(name), HeaderValue::from_str(value).unwrap());
        }
        h
    }

    fn ask(
        method: Method,
        suffix: Option<&str>,
        pairs: &[(&'static str, &str)],
        peer: &str,
    ) -> Result<Checked, ApiError> {
        question(&method, suffix, &headers(pairs), Some(peer.parse().unwrap()), &Cidr::loopback())
    }

    /// What each proxy sends, as its documentation describes it.
    #[test]
    fn each_proxys_headers_ask_the_same_question() {
        let key = ("authorization", "Bearer kr_x");
        let nginx = ask(
            Method::GET,
            None,
            &[
                key,
                ("x-original-method", "POST"),
                ("x-original-uri", "/files/a.txt?v=1"),
                ("x-forwarded-for", "203.0.113.9"),
            ],
            "127.0.0.1",
        )
        .unwrap();
        let caddy = ask(
            Method::GET,
            None,
            &[
                key,
                ("x-forwarded-method", "POST"),
                ("x-forwarded-uri", "/files/a.txt?v=1"),
                ("x-forwarded-for", "203.0.113.9, 10.0.0.1"),
            ],
            "::1",
        )
        .unwrap();
        let envoy =
            ask(Method::POST, Some("files/a.txt"), &[key, ("x-forwarded-for", "203.0.113.9")], "127.0.0.1").unwrap();
        for q in [&nginx, &caddy, &envoy] {
            assert_eq!(q.parts(), (Some("write"), Some("files/a.txt"), Some("203.0.113.9".parse().unwrap())));
        }
        let explicit = ask(
            Method::GET,
            None,
            &[
                ("x-api-key", "kr_x"),
                ("keyreg-action", "billing:read"),
                ("keyreg-resource", "invoices/7"),
                ("x-original-uri", "/other"),
            ],
            "127.0.0.1",
        )
        .unwrap();
        assert_eq!(explicit.parts(), (Some("billing:read"), Some("invoices/7"), None));
        let bare = ask(Method::DELETE, None, &[key], "127.0.0.1").unwrap();
        assert_eq!(bare.parts(), (None, None, None), "no original method: only the key is checked");
        let head =
            ask(Method::GET, None, &[key, ("x-forwarded-method", "HEAD"), ("x-forwarded-uri", "/")], "127.0.0.1")
                .unwrap();
        assert_eq!(head.parts(), (Some("read"), None, None));
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let key = ("authorization", "kr_x");
        let stranger = ask(Method::GET, None, &[key, ("x-forwarded-for", "10.9.9.9")], "192.0.2.4").unwrap();
        assert_eq!(stranger.parts().2, Some("192.0.2.4".parse().unwrap()), "a stranger is judged by its own address");
        assert!(ask(Method::GET, None, &[key, ("x-forwarded-for", "not-an-ip")], "127.0.0.1").is_err());
    }

    #[test]
    fn a_missing_key_is_unauthenticated_and_a_bad_question_is_refused() {
        assert!(matches!(ask(Method::GET, None, &[], "127.0.0.1"), Err(ApiError::Unauthenticated(_))));
        let wild = ask(Method::GET, None, &[("authorization", "kr_x"), ("keyreg-action", "billing:*")], "127.0.0.1");
        assert!(matches!(wild, Err(ApiError::Validation(_))));
        let twice = headers(&[("x-api-key", "a"), ("x-api-key", "b")]);
        assert!(question(&Method::GET, None, &twice, None, &[]).is_err());
    }

    #[test]
    fn header_values_carry_any_text() {
        assert_eq!(header_value("ada@example.com"), "ada@example.com");
        assert_eq!(header_value("Zoë 100%\n"), "Zo%C3%AB 100%25%0A");
    }
}
