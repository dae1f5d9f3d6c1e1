//! The console's shared HTML: the frame around every page, the sign-in
//! page, messages, and the small pieces pages share (times, field errors). maud escapes every value interpolated here; nothing is
//! ever marked pre-escaped but the doctype.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::{Page, Refusal};
use crate::domain::permission::Permission;
use crate::domain::time::{Timestamp, relative};

/// The areas of the console, for the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Keys,
    Roles,
    Catalog,
    Org,
    Orgs,
    Audit,
    None,
}

/// A whole page: the frame, the navigation for what the key may do, and
/// `body`.
pub fn frame(page: Option<&Page>, area: Area, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · keyreg console" }
                link rel="icon" href="/console/assets/favicon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/console/keys" { "keyreg" }
                    @if let Some(p) = page {
                        nav aria-label="Console" {
                            ul {
                                (nav_item(area, Area::Keys, "/console/keys", "Keys"))
                                (nav_item(area, Area::Roles, "/console/roles", "Roles"))
                                (nav_item(area, Area::Catalog, "/console/catalog", "Catalogue"))
                                (nav_item(area, Area::Org, "/console/org", if p.can(Permission::OrgsAdmin) { "This organization" } else { "Organization" }))
                                @if p.can(Permission::AuditRead) {
                                    (nav_item(area, Area::Audit, "/console/audit", "Audit"))
                                }
                                @if p.can(Permission::OrgsAdmin) {
                                    (nav_item(area, Area::Orgs, "/console/orgs", "Organizations"))
                                }
                            }
                        }
                        div.who {
                            span.whoami {
                                "Signed in to " strong { (p.org()) } " with key " strong { (p.name) }
                                @if !p.owner.is_empty() { " (" (p.owner) ")" }
                                @if let Some(u) = p.user() { " as " strong { (u) } }
                            }
                            form method="post" action="/console/sign-out" {
                                (csrf(p))
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

fn nav_item(current: Area, area: Area, href: &str, label: &str) -> Markup {
    html! {
        li { a href=(href) aria-current=[(current == area).then_some("page")] { (label) } }
    }
}

/// The hidden field that carries the session's CSRF token.
pub fn csrf(page: &Page) -> Markup {
    html! { input type="hidden" name="csrf" value=(page.csrf()); }
}

/// An HTML answer with `status`.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

/// A page that only says something: a refusal, a missing page.
pub fn message(page: Option<&Page>, status: StatusCode, title: &str, text: &str) -> Response {
    respond(status, frame(page, Area::None, title, html! { p.notice.error role="alert" { (text) } }))
}

/// The API's refusal of a read, as a page.
pub fn refused(page: &Page, r: &Refusal) -> Response {
    message(Some(page), r.status, "This cannot be shown", &r.sentence())
}

pub fn sign_in(notice: Option<&str>, error: Option<&str>, user: &str, token: &str, status: StatusCode) -> Response {
    let body = html! {
        @if let Some(n) = notice { p.notice role="status" { (n) } }
        form.card method="post" action="/console/sign-in" {
            input type="hidden" name="csrf" value=(token);
            @if let Some(e) = error { p.error id="sign-in-error" role="alert" { (e) } }
            label for="key" { "API key" }
            input id="key" name="key" type="password" autocomplete="off" required
                aria-describedby="key-help" aria-invalid=[error.map(|_| "true")];
            p.help id="key-help" { "A key of your organization that may read keys. It is kept on the server for this session only." }
            label for="user" { "Your email " span.optional { "(optional)" } }
            input id="user" name="user" type="email" value=(user) autocomplete="email" aria-describedby="user-help";
            p.help id="user-help" { "With a key that may act for people (actors:assert), every change you make is recorded as you." }
            button.primary type="submit" { "Sign in" }
        }
    };
    respond(status, frame(None, Area::None, "Sign in", body))
}

/// A time as people read it: relative ("3 hours ago", "in 29 days"), the
/// exact UTC time on hover and for screen readers' `datetime`.
pub fn when(value: &Value, now: Timestamp, never: &str) -> Markup {
    let Some(t) = value.as_str().and_then(|s| Timestamp::parse(s).ok()) else {
        return html! { span.muted { (never) } };
    };
    html! { time datetime=(t.to_string()) title=(exact(t)) { (relative(t, now)) } }
}

/// `when`, with the exact time beside it for whoever needs it without
/// hovering (an auditor, a key's page).
pub fn when_exactly(value: &Value, now: Timestamp, never: &str) -> Markup {
    match value.as_str().and_then(|s| Timestamp::parse(s).ok()) {
        Some(t) => html! { (when(value, now, never)) " " span.exact { "(" (exact(t)) ")" } },
        None => when(value, now, never),
    }
}

/// "2026-11-24 10:31 UTC".
pub fn exact(t: Timestamp) -> String {
    t.datetime().format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The error under a form field, when the refusal concerns it.
pub fn field_error(error: Option<&Refusal>, field: &str, fields: &[&'static str]) -> Markup {
    match error {
        Some(r) if r.field(fields) == Some(field) => html! { p.error id=(format!("{field}-error")) { (r.sentence()) } },
        _ => html! {},
    }
}

/// The refusal at the top of a form, when it concerns no one field.
pub fn form_error(error: Option<&Refusal>, fields: &[&'static str]) -> Markup {
    match error {
        Some(r) => html! {
            div.notice.error role="alert" {
                @if r.field(fields).is_some() { "The form has a problem; see the field marked below." } @else { (r.sentence()) }
            }
        },
        None => html! {},
    }
}

/// `aria-invalid` for a field the refusal concerns.
pub fn invalid(error: Option<&Refusal>, field: &str, fields: &[&'static str]) -> Option<&'static str> {
    error.and_then(|r| r.field(fields)).filter(|f| *f == field).map(|_| "true")
}

/// A value of the API's JSON as text ("" when absent).
pub fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// A list of strings in the API's JSON.
pub fn strings(v: &Value) -> Vec<&str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

/// "1 key", "2 keys".
pub fn plural(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

/// A query parameter that was given, trimmed, and not blank.
pub fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A `datetime-local` value (`2026-11-24T10:00`, taken as UTC) or an RFC
/// 3339 time, as RFC 3339.
pub fn as_of_time(value: &str) -> String {
    let v = value.trim();
    match v.len() {
        16 => format!("{v}:00Z"),
        19 => format!("{v}Z"),
        _ => v.to_owned(),
    }
}

/// An RFC 3339 time as a `datetime-local` value (to the second): what
/// `as_of_time` takes back.
pub fn local_time(t: &str) -> String {
    t.trim_end_matches('Z').chars().take(19).collect()
}

/// Percent-encodes a query value or a path segment (`/` included, so an id
/// taken from a URL can never reach another API route).
pub fn q(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_as_people_say_them() {
        let now = Timestamp::parse("2026-11-24T12:00:00Z").unwrap();
        let at = |s| Timestamp::parse(s).unwrap();
        assert_eq!(relative(at("2026-11-24T11:59:30Z"), now), "just now");
        assert_eq!(relative(at("2026-11-24T11:00:00Z"), now), "1 hour ago");
        assert_eq!(relative(at("2026-11-21T12:00:00Z"), now), "3 days ago");
        assert_eq!(relative(at("2026-12-24T12:00:00Z"), now), "in 30 days");
        assert_eq!(relative(at("2027-11-24T12:00:00Z"), now), "in 12 months");
        assert_eq!(exact(now), "2026-11-24 12:00 UTC");
    }

    #[test]
    fn times_typed_in_a_form_are_utc_and_come_back_as_typed() {
        assert_eq!(as_of_time("2026-11-24T10:00"), "2026-11-24T10:00:00Z");
        assert_eq!(as_of_time(" 2026-11-24T10:00:05 "), "2026-11-24T10:00:05Z");
        assert_eq!(as_of_time("2026-11-24T10:00:05.5+01:00"), "2026-11-24T10:00:05.5+01:00");
        assert_eq!(local_time(&as_of_time("2026-11-24T10:00:05")), "2026-11-24T10:00:05");
    }
}
