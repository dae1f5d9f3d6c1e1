//! The console's keys list: filters, paging, the past, a menu per row, bulk
//! revoke and delete. A key's own page is `key_page`; the create and edit
//! forms are `key_form`.

use axum::extract::Query;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::domain::permission::Permission;
use crate::domain::time::Timestamp;
use crate::domain::validate::MAX_REASON;
use crate::http::route;

use super::actor::Actors;
use super::page::{self, Area, as_of_time, csrf, frame, given, local_time, plural, q, respond, strings, text, when};
use super::{Page, Posted};

/// Keys per page of the list.
const PAGE: usize = 50;

#[derive(Deserialize, Default)]
pub struct ListParams {
    status: Option<String>,
    q: Option<String>,
    owner: Option<String>,
    /// "Only keys I created": by this session's person, or its key. (Not
    /// "mine": on the command line `--mine` is the keys a person owns.)
    by_me: Option<String>,
    cursor: Option<String>,
    as_of: Option<String>,
    notice: Option<String>,
    n: Option<String>,
}

/// What a finished action says on the page it lands on; fixed sentences,
/// so a link cannot make the console say anything else.
pub(super) fn notice(code: &str, n: usize) -> Option<String> {
    let keys = if n == 1 { "1 key".to_string() } else { format!("{n} keys") };
    Some(match code {
        "revoked" => format!("{keys} revoked."),
        "deleted" => format!("{keys} deleted."),
        "saved" => "Changes saved.".into(),
        "imported" => "The key is imported: its holders keep using their secret until you rotate the key.".into(),
        "disabled" => "The key is disabled: it is refused until enabled again.".into(),
        "enabled" => "The key is enabled again.".into(),
        "none-selected" => "Select at least one key first.".into(),
        _ => return None,
    })
}

pub async fn list(page: Page, Query(p): Query<ListParams>) -> Response {
    let status = given(&p.status).unwrap_or("active").to_owned();
    let as_of = given(&p.as_of).map(as_of_time);
    let shown = [
        ("status", Some(status.as_str())),
        ("q", given(&p.q)),
        ("owner", given(&p.owner)),
        ("as_of", as_of.as_deref()),
    ];
    let mut filters = format!("status={}", q(&status));
    for (name, value) in &shown[1..] {
        if let Some(v) = value {
            filters += &format!("&{name}={}", q(v));
        }
    }
    let by_me = given(&p.by_me).is_some();
    let me = by_me.then(|| page.user().map_or_else(|| format!("key:{}", page.key_id()), |u| format!("user:{u}")));
    if by_me {
        filters += "&by_me=1";
    }
    let limit = PAGE.to_string();
    let asked = [("limit", Some(limit.as_str())), ("created_by", me.as_deref()), ("cursor", given(&p.cursor))];
    let uri = route::query(route::KEYS, shown.into_iter().chain(asked));
    let (keys, next, error) = match page.api(Method::GET, &uri, None).await.ok() {
        Ok(v) => {
            (v["keys"].as_array().cloned().unwrap_or_default(), v["next_cursor"].as_str().map(str::to_owned), None)
        }
        Err(r) => (Vec::new(), None, Some(r)),
    };
    let now = page.now();
    let editable = as_of.is_none() && page.can(Permission::KeysAdmin);
    let actors = Actors::of(&page, keys.iter().map(|k| text(&k["created_by"])).collect()).await;
    let n = given(&p.n).and_then(|n| n.parse().ok()).unwrap_or(1);
    let body = html! {
        @if let Some(text) = given(&p.notice).and_then(|c| notice(c, n)) { p.notice role="status" { (text) } }
        @if let Some(t) = &as_of {
            p.notice.past role="status" {
                "Showing the keys as they stood at " strong { (shown_time(t)) } ". This view is read-only. "
                a href="/console/keys" { "Back to now" }
            }
        }
        @if let Some(r) = &error { p.notice.error role="alert" { (r.sentence()) } }
        div.toolbar {
            form.filters method="get" action="/console/keys" {
                div.field {
                    label for="status" { "Status" }
                    select id="status" name="status" {
                        @for (value, label) in [("active", "Active"), ("disabled", "Disabled"), ("expired", "Expired"), ("revoked", "Revoked"), ("deleted", "Deleted"), ("all", "All")] {
                            option value=(value) selected[status == value] { (label) }
                        }
                    }
                }
                div.field {
                    label for="q" { "Name contains" }
                    input id="q" name="q" type="search" value=(given(&p.q).unwrap_or(""));
                }
                div.field {
                    label for="owner" { "Owner" }
                    input id="owner" name="owner" type="text" value=(given(&p.owner).unwrap_or(""));
                }
                div.field.check {
                    input id="by_me" name="by_me" type="checkbox" value="1" checked[by_me];
                    label for="by_me" { "Only keys I created" }
                }
                div.field {
                    label for="as_of" { "As of (UTC)" }
                    input id="as_of" name="as_of" type="datetime-local" step="1"
                        value=(as_of.as_deref().map(local_time).unwrap_or_default());
                }
                button type="submit" { "Apply" }
            }
            @if editable {
                div.actions {
                    a.button.primary href="/console/keys/new" { "Create key" }
                    a.button href="/console/keys/import" { "Import a key" }
                }
            }
        }
        form id="bulk" method="post" action="/console/keys/bulk" {
            (csrf(&page))
            @if editable && !keys.is_empty() {
                div.bulk {
                    button type="submit" name="action" value="revoke" data-needs-selection="id" { "Revoke selected" }
                    button type="submit" name="action" value="delete" data-needs-selection="id" { "Delete selected" }
                }
            }
            div.scroll {
                table.keys.cards {
                    caption.visually-hidden { "Keys, newest first" }
                    thead { tr {
                        @if editable {
                            th scope="col" { input type="checkbox" id="select-all" aria-label="Select every key on this page" data-select-all="id"; }
                        }
                        th scope="col" { "Name" } th scope="col" { "Prefix" } th scope="col" { "Status" }
                        th scope="col" { "Permissions" } th scope="col" { "Created by" } th scope="col" { "Created" }
                        th scope="col" { "Last used" } th scope="col" { "Expires" }
                        @if editable { th scope="col" { span.visually-hidden { "Actions" } } }
                    } }
                    tbody {
                        @for k in &keys {
                            (row(k, &actors, editable, as_of.as_deref(), now))
                        }
                        @if keys.is_empty() && error.is_none() {
                            tr { td colspan="10" { "No keys match." } }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if given(&p.cursor).is_some() { a href=(format!("/console/keys?{filters}")) { "First page" } }
            @if let Some(c) = &next { a href=(format!("/console/keys?{filters}&cursor={}", q(c))) rel="next" { "Next page" } }
        }
    };
    respond(StatusCode::OK, frame(Some(&page), Area::Keys, "Keys", body))
}

fn row(k: &Value, actors: &Actors, editable: bool, as_of: Option<&str>, now: Timestamp) -> Markup {
    let id = text(&k["id"]);
    let href = match as_of {
        Some(t) => format!("/console/keys/{}?as_of={}", q(id), q(t)),
        None => format!("/console/keys/{}", q(id)),
    };
    html! {
        tr {
            @if editable {
                td.select { input type="checkbox" name="id" value=(id) aria-label=(format!("Select {}", text(&k["name"]))); }
            }
            td.name {
                a href=(href) { (text(&k["name"])) }
                @if k["legacy"] == true { " " (legacy_badge()) }
                @if !text(&k["description"]).is_empty() { span.desc { (text(&k["description"])) } }
                @if !text(&k["owner"]).is_empty() { span.desc { "Owner: " (text(&k["owner"])) } }
            }
            td data-label="Prefix" { code { (text(&k["display_prefix"])) } }
            td data-label="Status" { (status_badge(text(&k["status"]))) }
            td data-label="Permissions" { (permissions(k)) }
            td data-label="Created by" { (actors.show(text(&k["created_by"]))) }
            td data-label="Created" { (when(&k["created_at"], now, "")) }
            td data-label="Last used" { (when(&k["last_used_at"], now, "never")) }
            td data-label="Expires" { (expires(k, now, when)) }
            @if editable { td.menu { (row_menu(k)) } }
        }
    }
}

/// A row's actions, as the key's page offers them: a menu opened with a
/// click or the keyboard (a `details` element). Disable and enable post
/// through the list's form (forms do not nest); rotate, revoke and delete
/// open the key's page on the dialog that asks for confirmation.
fn row_menu(k: &Value) -> Markup {
    let id = text(&k["id"]);
    let name = text(&k["name"]);
    let actions = strings(&k["actions"]);
    let page = format!("/console/keys/{}", q(id));
    html! {
        details.menu {
            summary aria-label=(format!("Actions for {name}")) { "⋯" }
            ul {
                li { a href=(page) { "Open" } }
                @if actions.contains(&"edit") { li { a href=(format!("{page}/edit")) { "Edit" } } }
                @for (action, label) in [("disable", "Disable"), ("enable", "Enable")] {
                    @if actions.contains(&action) {
                        li { button type="submit" formaction=(format!("{page}/{action}")) name="version" value=(k["version"]) { (label) } }
                    }
                }
                @for (action, label) in [("rotate", "Rotate…"), ("revoke", "Revoke…"), ("delete", "Delete…")] {
                    @if actions.contains(&action) { li { a href=(format!("{page}#{action}-dialog")) { (label) } } }
                }
            }
        }
    }
}

/// A time from a URL, to the second, as people read it when it is one.
pub(super) fn shown_time(t: &str) -> String {
    Timestamp::parse(t).map_or_else(|_| t.to_owned(), |t| t.datetime().format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// An imported key, still on the secret it had before keyreg.
pub(super) fn legacy_badge() -> Markup {
    html! { span.badge.legacy title="Imported with the secret it had before keyreg; rotate it to give it a keyreg token" { "legacy" } }
}

pub fn status_badge(status: &str) -> Markup {
    html! { span class=(format!("badge {status}")) { (status) } }
}

pub async fn bulk(Posted { page, form }: Posted) -> Response {
    let ids: Vec<&str> = form.all("id").collect();
    let action = if form.get("action") == "delete" { "delete" } else { "revoke" };
    if ids.is_empty() {
        return Redirect::to("/console/keys?notice=none-selected").into_response();
    }
    if form.has("confirmed") {
        let body = json!({"ids": ids, "reason": Some(form.get("reason")).filter(|r| !r.is_empty()), "delete": action == "delete"});
        return match page.api(Method::POST, route::KEYS_BULK_REVOKE, Some(&body)).await.ok() {
            Ok(_) => Redirect::to(&format!("/console/keys?notice={action}d&n={}", ids.len())).into_response(),
            Err(r) => page::message(Some(&page), r.status, "Nothing was changed", &r.sentence()),
        };
    }
    let mut names = Vec::new();
    for id in &ids {
        let key = page.api(Method::GET, &route::fill(route::KEY, id), None).await.body;
        names.push(text(&key["key"]["name"]).to_owned());
    }
    let verb = if action == "delete" { "Delete" } else { "Revoke" };
    let title = format!("{verb} {}?", plural(ids.len(), "key"));
    let body = html! {
        form.card method="post" action="/console/keys/bulk" {
            (csrf(&page))
            input type="hidden" name="action" value=(action);
            input type="hidden" name="confirmed" value="1";
            @for id in &ids { input type="hidden" name="id" value=(id); }
            p { (verb) " these " (ids.len()) " keys? Every call made with them will be refused from now on; this cannot be undone." }
            ul { @for n in &names { li { (n) } } }
            label for="reason" { "Reason (recorded in the audit log)" }
            input id="reason" name="reason" type="text" maxlength=(MAX_REASON);
            div.actions {
                button.danger type="submit" { (verb) " " (plural(ids.len(), "key")) }
                a.button href="/console/keys" { "Cancel" }
            }
        }
    };
    respond(StatusCode::OK, frame(Some(&page), Area::Keys, &title, body))
}

/// When a key expires, while that still matters: a revoked or deleted key
/// will never be used again, whatever its expiry said. An active key that
/// expires within `SOON_SECONDS` is flagged. `shown` is `when` or
/// `when_exactly`.
pub(super) fn expires(key: &Value, now: Timestamp, shown: fn(&Value, Timestamp, &str) -> Markup) -> Markup {
    let at = key["expires_at"].as_str().and_then(|t| Timestamp::parse(t).ok());
    let soon = at.is_some_and(|t| t.micros() - now.micros() < SOON_SECONDS * 1_000_000);
    match key["status"].as_str() {
        Some(status @ ("revoked" | "deleted")) => html! { span.muted title=(format!("the key is {status}")) { "—" } },
        Some("active") if soon => {
            html! { (shown(&key["expires_at"], now, "never")) " " span.badge.soon { "expires soon" } }
        }
        _ => shown(&key["expires_at"], now, "never"),
    }
}

/// How close an expiry is flagged on the keys page: the week before.
const SOON_SECONDS: i64 = 7 * 86_400;

/// A key's roles and scopes themselves, the first few, and how many more.
fn permissions(key: &Value) -> Markup {
    let roles = strings(&key["roles"]);
    let scopes = strings(&key["scopes"]);
    let all = roles.len() + scopes.len();
    const SHOWN: usize = 3;
    html! {
        @if all == 0 { span.muted { "nothing" } }
        ul.perms {
            @for r in roles.iter().take(SHOWN) { li { "role " strong { (r) } } }
            @for s in scopes.iter().take(SHOWN.saturating_sub(roles.len())) { li { code { (s) } } }
            @if all > SHOWN { li.muted { "and " (all - SHOWN) " more" } }
        }
    }
}
