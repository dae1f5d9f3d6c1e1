//! The operator's pages (a `_system` key holding `orgs:admin`): every
//! organization with its keys in use against its limit, creating one (its
//! first admin key's secret shown once), and renaming one or changing its
//! limit. Everything goes through `GET/POST /v1/orgs` and `PATCH
//! /v1/orgs/{id}`, as the command line's `keyreg orgs` does.

use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::key_page::show_once;
use super::page::{self, Area, csrf, field_error, form_error, frame, given, invalid, q, respond, text};
use super::{Form, Page, Posted, Refusal};
use crate::domain::permission::Permission;
use crate::http::route;

/// The API's names of an org's fields, which refusals name.
const FIELDS: &[&str] = &["id", "name", "max_keys"];

#[derive(Deserialize, Default)]
pub struct ListParams {
    notice: Option<String>,
}

/// What a finished change says on the list; fixed sentences.
fn notice(code: &str) -> Option<&'static str> {
    Some(match code {
        "saved" => "Changes saved.",
        "over" => {
            "Changes saved. The organization holds more keys than its new limit: its creates are refused until keys are revoked."
        }
        _ => return None,
    })
}

fn not_the_operator(page: &Page) -> Option<Response> {
    let why =
        "Only the operator of this registry manages organizations: that needs a key of _system holding orgs:admin.";
    (!page.can(Permission::OrgsAdmin)).then(|| page::message(Some(page), StatusCode::FORBIDDEN, "Organizations", why))
}

pub async fn list(page: Page, Query(p): Query<ListParams>) -> Response {
    if let Some(refused) = not_the_operator(&page) {
        return refused;
    }
    let notice = given(&p.notice).and_then(notice);
    list_page(&page, notice, &Form::default(), None).await
}

async fn list_page(page: &Page, notice: Option<&str>, form: &Form, error: Option<&Refusal>) -> Response {
    let orgs = match page.api(Method::GET, route::ORGS, None).await.ok() {
        Ok(v) => v["orgs"].as_array().cloned().unwrap_or_default(),
        Err(r) => return page::refused(page, &r),
    };
    let now = page.now();
    let body = html! {
        @if let Some(n) = notice { p.notice role="status" { (n) } }
        div.scroll {
            table.orgs.cards {
                caption.visually-hidden { "Organizations, by id" }
                thead { tr {
                    th scope="col" { "Organization" } th scope="col" { "Keys in use" } th scope="col" { "Created" }
                    th scope="col" { span.visually-hidden { "Actions" } }
                } }
                tbody {
                    @for o in &orgs {
                        @let (used, max) = (o["keys_in_use"].as_u64().unwrap_or(0), o["max_keys"].as_u64().unwrap_or(0));
                        tr {
                            td.name { strong { (text(&o["name"])) } span.desc { code { (text(&o["id"])) } } }
                            td data-label="Keys in use" {
                                @if used > max { strong.over { (used) " of " (max) } " " } @else { (used) " of " (max) " " }
                                meter min="0" max=(max) value=(used) aria-label=(format!("Keys in use in {}", text(&o["id"]))) {}
                            }
                            td data-label="Created" { (page::when(&o["created_at"], now, "")) }
                            td { a href=(format!("/console/orgs/{}", q(text(&o["id"])))) aria-label=(format!("Edit {}", text(&o["id"]))) { "Edit" } }
                        }
                    }
                }
            }
        }
        @if page.can(Permission::OrgsCreate) {
            section aria-labelledby="new-org-title" {
                h2 id="new-org-title" { "Create an organization" }
                form.card method="post" action="/console/orgs" novalidate {
                    (csrf(page))
                    (form_error(error, FIELDS))
                    label for="id" { "Id " span.optional { "(a-z, 0-9 and -, e.g. acme: it names the org in the API and cannot change)" } }
                    input id="id" name="id" type="text" required value=(form.get("id")) aria-invalid=[invalid(error, "id", FIELDS)];
                    (field_error(error, "id", FIELDS))
                    (settings_fields(form, error))
                    div.actions { button.primary type="submit" { "Create organization" } }
                }
            }
        }
    };
    let status = error.map_or(StatusCode::OK, |r| r.status);
    respond(status, frame(Some(page), Area::Orgs, "Organizations", body))
}

/// Name and key limit, on the create and the edit form.
fn settings_fields(form: &Form, error: Option<&Refusal>) -> Markup {
    html! {
        label for="name" { "Name" }
        input id="name" name="name" type="text" required value=(form.get("name")) aria-invalid=[invalid(error, "name", FIELDS)];
        (field_error(error, "name", FIELDS))
        label for="max_keys" { "Key limit " span.optional { "(keys that are not revoked or deleted; empty: the registry's default)" } }
        input id="max_keys" name="max_keys" type="number" min="1" value=(form.get("max_keys")) aria-invalid=[invalid(error, "max_keys", FIELDS)];
        (field_error(error, "max_keys", FIELDS))
    }
}

/// The form's key limit for the API: absent when blank, else passed on
/// for the API to judge.
fn max_keys(form: &Form) -> Option<Value> {
    let typed = form.get("max_keys").trim();
    (!typed.is_empty()).then(|| typed.parse::<u64>().map_or_else(|_| json!(typed), |n| json!(n)))
}

pub async fn create(Posted { page, form }: Posted) -> Response {
    if let Some(refused) = not_the_operator(&page) {
        return refused;
    }
    let mut body = json!({"id": form.get("id").trim(), "name": form.get("name").trim()});
    if let Some(n) = max_keys(&form) {
        body["max_keys"] = n;
    }
    match page.api(Method::POST, route::ORGS, Some(&body)).await.ok() {
        Ok(created) => show_once(&page, created, "Organization created"),
        Err(r) => list_page(&page, None, &form, Some(&r)).await,
    }
}

pub async fn edit_form(page: Page, Path(id): Path<String>) -> Response {
    if let Some(refused) = not_the_operator(&page) {
        return refused;
    }
    let orgs = page.api(Method::GET, route::ORGS, None).await.body;
    let found = orgs["orgs"].as_array().into_iter().flatten().find(|o| text(&o["id"]) == id);
    let Some(org) = found else {
        return page::message(Some(&page), StatusCode::NOT_FOUND, "Not found", "There is no such organization.");
    };
    let form = Form(vec![("name".into(), text(&org["name"]).into()), ("max_keys".into(), org["max_keys"].to_string())]);
    respond(StatusCode::OK, edit_page(&page, &id, &form, None))
}

fn edit_page(page: &Page, id: &str, form: &Form, error: Option<&Refusal>) -> Markup {
    let body = html! {
        form.card method="post" action=(format!("/console/orgs/{}", q(id))) novalidate {
            (csrf(page))
            (form_error(error, FIELDS))
            (settings_fields(form, error))
            div.actions {
                button.primary type="submit" { "Save" }
                a.button href="/console/orgs" { "Cancel" }
            }
        }
    };
    frame(Some(page), Area::Orgs, &format!("Edit {id}"), body)
}

pub async fn edit(Path(id): Path<String>, Posted { page, form }: Posted) -> Response {
    if let Some(refused) = not_the_operator(&page) {
        return refused;
    }
    let mut body = json!({"name": form.get("name").trim()});
    if let Some(n) = max_keys(&form) {
        body["max_keys"] = n;
    }
    match page.api(Method::PATCH, &route::fill(route::ORG_BY_ID, &id), Some(&body)).await.ok() {
        Ok(saved) => {
            let code = if saved["warnings"].as_array().is_some_and(|w| !w.is_empty()) { "over" } else { "saved" };
            Redirect::to(&format!("/console/orgs?notice={code}")).into_response()
        }
        Err(r) => respond(r.status, edit_page(&page, &id, &form, Some(&r))),
    }
}
