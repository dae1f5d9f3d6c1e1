//! A key's own page: its details, usage and timeline, the lifecycle
//! actions (disable, enable, rotate, revoke, delete) and the page that
//! shows a new secret once.

use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::keys::{expires, legacy_badge, notice, shown_time, status_badge};
use super::page::{self, Area, as_of_time, csrf, frame, given, q, respond, strings, text, when_exactly};
use super::session::Shown;
use super::usage::{self, RangeParams};
use super::{Page, Posted, Refusal, audit};
use crate::domain::permission::Permission;
use crate::domain::validate::MAX_REASON;
use crate::http::route;

/// Answers a write that made a new secret: the secret is kept in the
/// session and the browser sent on (303) to the page that shows it, so
/// that reloading that page, or going Back, never sends the write again.
pub(super) fn show_once(page: &Page, answer: Value, title: &'static str) -> Response {
    let key_id = answer["key"]["id"].as_str().unwrap_or_default().to_owned();
    let to = format!("/console/keys/{}/secret", q(&key_id));
    page.console.sessions.keep_to_show(&page.session, Shown { key_id, answer, title });
    Redirect::to(&to).into_response()
}

/// `GET /console/keys/{id}/secret`: the secret kept by `show_once`, shown
/// this once; afterwards the key's page.
pub async fn secret(Path(id): Path<String>, page: Page) -> Response {
    match page.console.sessions.take_shown(&page.session, &id) {
        Some(shown) => secret_page(&page, &shown.answer, shown.title),
        None => Redirect::to(&format!("/console/keys/{}", q(&id))).into_response(),
    }
}

/// The page that shows a new secret, once, in a dialog that cannot be
/// closed before the person says they stored it. Answered `no-store`, like
/// every console page; the secret is in no URL and no browser storage.
pub(super) fn secret_page(page: &Page, answer: &Value, title: &str) -> Response {
    let key = &answer["key"];
    let id = text(&key["id"]);
    // A new organization's first key lives in that organization: the
    // operator goes back to the organizations, not to the key.
    let org = answer["org"]["id"].as_str();
    let whose = match org {
        Some(org) => format!("the {} key of {org}", text(&key["name"])),
        None => text(&key["name"]).to_owned(),
    };
    let body = html! {
        dialog.secret id="secret-dialog" open aria-labelledby="secret-title" aria-describedby="secret-help" data-modal {
            h2 id="secret-title" { "Copy the secret of " (whose) }
            p id="secret-help" { "This is the only time the secret is shown. Store it in your secret manager now: keyreg keeps only a hash and cannot show it again." }
            div.secret-box {
                code id="secret-value" { (text(&answer["secret"])) }
                button type="button" id="copy-secret" data-copy="secret-value" { "Copy" }
            }
            p.muted id="copy-status" role="status" {}
            @let warnings = strings(&answer["warnings"]);
            @if !warnings.is_empty() {
                ul.warnings { @for w in warnings { li.warning { (w) } } }
            }
            div.check {
                input type="checkbox" id="stored" data-unlocks="close-secret";
                label for="stored" { "I have stored the secret somewhere safe" }
            }
            form method="dialog" {
                button.primary type="submit" id="close-secret" disabled { "Close" }
            }
        }
        p { "The key " strong { (whose) } " (" code { (text(&key["display_prefix"])) } ") is ready." }
        @if org.is_some() {
            p { a.button href="/console/orgs" { "Back to organizations" } }
        } @else {
            p { a.button href=(format!("/console/keys/{}", q(id))) { "Go to the key" } " " a.button href="/console/keys" { "Back to keys" } }
        }
    };
    let area = if org.is_some() { Area::Orgs } else { Area::Keys };
    respond(StatusCode::CREATED, frame(Some(page), area, title, body))
}

#[derive(Deserialize, Default)]
pub struct DetailParams {
    as_of: Option<String>,
    notice: Option<String>,
    #[serde(flatten)]
    range: RangeParams,
}

pub async fn details(page: Page, Path(id): Path<String>, Query(p): Query<DetailParams>) -> Response {
    details_page(&page, &id, given(&p.as_of).map(as_of_time).as_deref(), given(&p.notice), &p.range, None).await
}

async fn details_page(
    page: &Page,
    id: &str,
    as_of: Option<&str>,
    notice_code: Option<&str>,
    range: &RangeParams,
    error: Option<Refusal>,
) -> Response {
    let key =
        match page.api(Method::GET, &route::query(&route::fill(route::KEY, id), [("as_of", as_of)]), None).await.ok() {
            Ok(v) => v["key"].clone(),
            Err(r) => return page::refused(page, &r),
        };
    let here = format!("/console/keys/{}", q(id));
    let usage = usage::section(page, &route::fill(route::KEY_USAGE, id), &here, range).await;
    let timeline = match page.can(Permission::AuditRead) {
        true => {
            page.api(Method::GET, &route::query(route::AUDIT, [("key_id", Some(id)), ("limit", Some("100"))]), None)
                .await
                .body
        }
        false => Value::Null,
    };
    let now = page.now();
    let status = text(&key["status"]);
    let live = as_of.is_none() && page.can(Permission::KeysAdmin);
    // What the domain says may be done to the key now (`Action::admitted`).
    let actions = strings(&key["actions"]);
    let admits = |action: &str| actions.contains(&action);
    let version = key["version"].to_string();
    let name = text(&key["name"]);
    let actors = audit::actors(page, &timeline["events"], &[text(&key["created_by"])]).await;
    // Why a revoked key was revoked, from its history (with audit:read).
    let revocation = matches!(status, "revoked" | "deleted")
        .then(|| timeline["events"].as_array()?.iter().find(|e| e["type"] == "key.revoked"))
        .flatten();
    let body = html! {
        @if let Some(t) = notice_code.and_then(|c| notice(c, 1)) { p.notice role="status" { (t) } }
        @if let Some(r) = &error { p.notice.error role="alert" { (r.sentence()) } }
        @if let Some(t) = as_of {
            p.notice.past role="status" { "The key as it stood at " strong { (shown_time(t)) } ". Read-only. " a href=(format!("/console/keys/{}", q(id))) { "Back to now" } }
        }
        @if let Some(e) = revocation {
            p.notice.revoked role="status" {
                "Revoked " (when_exactly(&e["time"], now, "")) " by " (actors.show(text(&e["actor"])))
                @if let Some(reason) = e["data"]["reason"].as_str() { ": " strong { (reason) } }
            }
        }
        div.headline {
            (status_badge(status))
            @if key["legacy"] == true { (legacy_badge()) }
            code { (text(&key["display_prefix"])) }
            @if live && !actions.is_empty() {
                div.actions {
                    @if admits("edit") { a.button href=(format!("/console/keys/{}/edit", q(id))) { "Edit" } }
                    @for (action, label) in [("disable", "Disable"), ("enable", "Enable")] {
                        @if admits(action) {
                            form method="post" action=(format!("/console/keys/{}/{action}", q(id))) {
                                (csrf(page))
                                input type="hidden" name="version" value=(version);
                                button type="submit" { (label) }
                            }
                        }
                    }
                    @if admits("rotate") { button type="button" data-open="rotate-dialog" { "Rotate" } }
                    @if admits("revoke") { button.danger type="button" data-open="revoke-dialog" { "Revoke" } }
                    @if admits("delete") { button.danger type="button" data-open="delete-dialog" { "Delete" } }
                }
            }
        }
        section aria-labelledby="fields-title" {
            h2 id="fields-title" { "Details" }
            dl.fields {
                dt { "Id" } dd { code { (text(&key["id"])) } }
                dt { "Name" } dd { (name) }
                dt { "Description" } dd { (text(&key["description"])) }
                dt { "Owner" } dd { (text(&key["owner"])) }
                dt { "Created by" } dd { (actors.show(text(&key["created_by"]))) }
                dt { "Created" } dd { (when_exactly(&key["created_at"], now, "")) }
                dt { "Last changed" } dd { (when_exactly(&key["updated_at"], now, "")) }
                dt { "Last used" } dd { (when_exactly(&key["last_used_at"], now, "never")) }
                dt { "Expires" } dd #expires { (expires(&key, now, when_exactly)) }
                dt { "Roles" } dd { (list_or(&key["roles"], "none")) }
                dt { "Own scopes" } dd { (list_or(&key["scopes"], "none")) }
                dt { "Effective permissions" } dd { (list_or(&key["effective_scopes"], "none")) }
                dt { "Allowed IP ranges" } dd { (list_or(&key["allowed_cidrs"], "any address")) }
                dt { "Metadata" } dd {
                    @if key["meta"].is_object() { pre.meta { code { (serde_json::to_string_pretty(&key["meta"]).unwrap_or_default()) } } }
                    @else { span.muted { "none" } }
                }
            }
        }
        (usage)
        section aria-labelledby="timeline-title" {
            h2 id="timeline-title" { "Timeline" }
            @if timeline.is_null() {
                p.muted { "Reading the key's history needs a key with audit:read." }
            } @else {
                (audit::events_table(&timeline["events"], &actors, now, false))
            }
        }
        @if live {
            dialog id="rotate-dialog" aria-labelledby="rotate-title" {
                form method="post" action=(format!("/console/keys/{}/rotate", q(id))) {
                    (csrf(page))
                    h2 id="rotate-title" { "Rotate " (name) }
                    p { "A new secret replaces the current one. Callers need the new secret before the grace period ends." }
                    label for="grace" { "The current secret keeps working for" }
                    select id="grace" name="grace" {
                        option value="0" { "no time: stop it now" }
                        option value="3600" { "1 hour" }
                        option value="86400" selected { "24 hours" }
                        option value="604800" { "7 days" }
                        option value="2592000" { "30 days" }
                    }
                    div.actions { button.primary type="submit" { "Rotate" } button type="button" data-close { "Cancel" } }
                }
            }
            dialog id="revoke-dialog" aria-labelledby="revoke-title" {
                form method="post" action=(format!("/console/keys/{}/revoke", q(id))) {
                    (csrf(page))
                    input type="hidden" name="version" value=(version);
                    h2 id="revoke-title" { "Revoke " (name) "?" }
                    p { "Every call made with this key will be refused, for good." }
                    label for="revoke-reason" { "Reason (recorded in the audit log)" }
                    input id="revoke-reason" name="reason" type="text" maxlength=(MAX_REASON);
                    div.actions { button.danger type="submit" { "Revoke key" } button type="button" data-close { "Cancel" } }
                }
            }
            dialog id="delete-dialog" aria-labelledby="delete-title" {
                form method="post" action=(format!("/console/keys/{}/delete", q(id))) {
                    (csrf(page))
                    h2 id="delete-title" { "Delete " (name) "?" }
                    p { "The key is revoked and hidden from the list; its history stays in the audit log." }
                    label for="confirm-name" { "Type the key's name, " strong { (name) } ", to confirm" }
                    input id="confirm-name" name="confirm" type="text" autocomplete="off" required data-must-equal=(name) data-unlocks="delete-button";
                    label for="delete-reason" { "Reason (optional)" }
                    input id="delete-reason" name="reason" type="text" maxlength=(MAX_REASON);
                    div.actions { button.danger type="submit" id="delete-button" { "Delete key" } button type="button" data-close { "Cancel" } }
                }
            }
        }
    };
    respond(StatusCode::OK, frame(Some(page), Area::Keys, name, body))
}

fn list_or(v: &Value, empty: &str) -> Markup {
    let items = strings(v);
    html! {
        @if items.is_empty() { span.muted { (empty) } } @else { ul.inline { @for i in items { li { code { (i) } } } } }
    }
}

/// The lifecycle buttons of the details page.
pub async fn act(Path((id, action)): Path<(String, String)>, Posted { page, form }: Posted) -> Response {
    let version = Some(form.get("version")).filter(|v| !v.is_empty());
    let answer = match action.as_str() {
        "disable" => page.api_with(Method::POST, &route::fill(route::KEY_DISABLE, &id), None, version).await,
        "enable" => page.api_with(Method::POST, &route::fill(route::KEY_ENABLE, &id), None, version).await,
        "revoke" => {
            let body = json!({"reason": Some(form.get("reason")).filter(|r| !r.is_empty())});
            page.api_with(Method::POST, &route::fill(route::KEY_REVOKE, &id), Some(&body), version).await
        }
        "rotate" => {
            let body = json!({"grace_seconds": form.get("grace").parse::<u64>().unwrap_or(0)});
            match page.api(Method::POST, &route::fill(route::KEY_ROTATE, &id), Some(&body)).await.ok() {
                Ok(rotated) => return show_once(&page, rotated, "Key rotated"),
                Err(r) => return details_page(&page, &id, None, None, &RangeParams::default(), Some(r)).await,
            }
        }
        "delete" => {
            let reason = Some(form.get("reason")).filter(|r| !r.is_empty());
            let uri = route::query(
                &route::fill(route::KEY, &id),
                [("confirm", Some(form.get("confirm"))), ("reason", reason)],
            );
            match page.api(Method::DELETE, &uri, None).await.ok() {
                Ok(_) => return Redirect::to("/console/keys?notice=deleted&n=1").into_response(),
                Err(r) => return details_page(&page, &id, None, None, &RangeParams::default(), Some(r)).await,
            }
        }
        _ => return page::message(Some(&page), StatusCode::NOT_FOUND, "Not found", "There is no such action."),
    };
    let done = match action.as_str() {
        "disable" => "disabled",
        "enable" => "enabled",
        _ => "revoked",
    };
    match answer.ok() {
        Ok(_) => Redirect::to(&format!("/console/keys/{}?notice={done}", q(&id))).into_response(),
        Err(r) => details_page(&page, &id, None, None, &RangeParams::default(), Some(r)).await,
    }
}
