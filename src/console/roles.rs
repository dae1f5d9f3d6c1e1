//! The console's roles and catalogue pages: list, create, edit (with the
//! keys the edit reaches, from a dry run, before saving), delete (forced
//! only when confirmed), and the catalogue of actions.

use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::domain::permission::Permission;
use crate::http::route;

use super::page::{self, Area, csrf, field_error, form_error, frame, invalid, plural, q, respond, strings, text};
use super::{Edited, Form, Page, Posted, Refusal};

const FIELDS: &[&str] = &["name", "description", "scopes"];

#[derive(Deserialize, Default)]
pub struct Notice {
    notice: Option<String>,
}

pub async fn list(page: Page, Query(n): Query<Notice>) -> Response {
    let roles = match page.api(Method::GET, route::ROLES, None).await.ok() {
        Ok(v) => v["roles"].as_array().cloned().unwrap_or_default(),
        Err(r) => return page::refused(&page, &r),
    };
    let admin = page.can(Permission::RolesAdmin);
    let body = html! {
        @match n.notice.as_deref() {
            Some("created") => p.notice role="status" { "Role created." },
            Some("saved") => p.notice role="status" { "Role saved; every key holding it changed with it." },
            Some("deleted") => p.notice role="status" { "Role deleted." },
            _ => {},
        }
        @if admin { p { a.button.primary href="/console/roles/new" { "Create role" } } }
        @if roles.is_empty() { p.muted { "No roles yet. A role is a named bundle of scopes that keys hold; editing it changes every key holding it." } }
        @else {
            div.scroll {
                table {
                    thead { tr { th scope="col" { "Role" } th scope="col" { "Description" } th scope="col" { "Scopes" } } }
                    tbody {
                        @for r in &roles {
                            @let name = text(&r["name"]);
                            tr {
                                td { @if admin { a href=(format!("/console/roles/{}", q(name))) { (name) } } @else { (name) } }
                                td { (text(&r["description"])) }
                                td { code { (strings(&r["scopes"]).join(" ")) } }
                            }
                        }
                    }
                }
            }
        }
    };
    respond(StatusCode::OK, frame(Some(&page), Area::Roles, "Roles", body))
}

pub async fn new_form(page: Page) -> Response {
    respond(StatusCode::OK, role_page(&page, None, &Form(Vec::new()), None, &[], 0))
}

/// The role form; `existing` names the role being edited, which holds
/// `keys` keys.
fn role_page(
    page: &Page,
    existing: Option<&str>,
    form: &Form,
    error: Option<&Refusal>,
    warnings: &[String],
    keys: u64,
) -> Markup {
    let action = existing.map_or("/console/roles/new".into(), |n| format!("/console/roles/{}", q(n)));
    let body = html! {
        form.card.wide method="post" action=(action) novalidate {
            (csrf(page))
            input type="hidden" name="version" value=(form.get("version"));
            (form_error(error, FIELDS))
            @if let Some(_) = existing {
                p.notice role="status" { "Held by " strong { (plural(keys as usize, "key")) } ": they change with the role, in one event." }
            } @else {
                label for="name" { "Name" }
                input id="name" name="name" type="text" required value=(form.get("name")) aria-invalid=[invalid(error, "name", FIELDS)];
                (field_error(error, "name", FIELDS))
            }
            @if !warnings.is_empty() {
                div.notice.warning role="alert" {
                    p { strong { "Check before saving:" } }
                    ul { @for w in warnings { li { (w) } } }
                    input type="hidden" name="confirmed" value="1";
                }
            }
            label for="description" { "Description " span.optional { "(optional)" } }
            textarea id="description" name="description" rows="2" aria-invalid=[invalid(error, "description", FIELDS)] { (form.get("description")) }
            (field_error(error, "description", FIELDS))
            label for="scopes" { "Scopes, one per line" }
            textarea id="scopes" name="scopes" rows="5" required aria-invalid=[invalid(error, "scopes", FIELDS)] aria-describedby="scopes-help" { (form.get("scopes")) }
            p.help id="scopes-help" { "For example billing:read, or read@workspaces/ws-1/** for one workspace and below." }
            (field_error(error, "scopes", FIELDS))
            div.actions {
                button.primary type="submit" { @if warnings.is_empty() { "Save" } @else { "Save anyway" } }
                a.button href="/console/roles" { "Cancel" }
            }
        }
        @if let Some(name) = existing {
            form.card method="post" action=(format!("/console/roles/{}/delete", q(name))) {
                (csrf(page))
                h2 { "Delete this role" }
                p { "Keys lose the role's scopes at once." }
                div.check {
                    input type="checkbox" id="force" name="force" value="true";
                    label for="force" { "Also when keys hold it: take it from " (if keys == 1 { "the 1 key that holds it".to_owned() } else { format!("all {keys} keys that hold it") }) }
                }
                button.danger type="submit" { "Delete role" }
            }
        }
    };
    let title = existing.map_or("Create a role".to_owned(), |n| format!("Role {n}"));
    frame(Some(page), Area::Roles, &title, body)
}

pub async fn create(Posted { page, form }: Posted) -> Response {
    let body =
        json!({"name": form.get("name"), "description": form.get("description"), "scopes": form.lines("scopes")});
    match page.api(Method::POST, route::ROLES, Some(&body)).await.ok() {
        Ok(_) => Redirect::to("/console/roles?notice=created").into_response(),
        Err(r) => respond(r.status, role_page(&page, None, &form, Some(&r), &[], 0)),
    }
}

pub async fn edit_form(page: Page, Path(name): Path<String>) -> Response {
    let answer = match page.api(Method::GET, &route::fill(route::ROLE, &name), None).await.ok() {
        Ok(v) => v,
        Err(r) => return page::refused(&page, &r),
    };
    let role = &answer["role"];
    let form = Form(vec![
        ("description".into(), text(&role["description"]).into()),
        ("scopes".into(), strings(&role["scopes"]).join("\n")),
        ("version".into(), role["version"].to_string()),
    ]);
    respond(StatusCode::OK, role_page(&page, Some(&name), &form, None, &[], keys_of(&answer)))
}

fn keys_of(answer: &Value) -> u64 {
    answer["keys"].as_u64().unwrap_or(0)
}

/// Saves a role; a dry run first, so the keys the edit narrows are named
/// before anything changes.
pub async fn edit(Path(name): Path<String>, Posted { page, form }: Posted) -> Response {
    let body = json!({"description": form.get("description"), "scopes": form.lines("scopes")});
    match page.edit(Method::PATCH, &route::fill(route::ROLE, &name), &body, &form, None).await {
        Ok(Edited::Saved(_)) => Redirect::to("/console/roles?notice=saved").into_response(),
        Ok(Edited::Warned(v)) => {
            let warnings: Vec<String> = strings(&v["warnings"]).into_iter().map(str::to_owned).collect();
            respond(StatusCode::OK, role_page(&page, Some(&name), &form, None, &warnings, keys_of(&v)))
        }
        Err(r) => respond(r.status, role_page(&page, Some(&name), &form, Some(&r), &[], 0)),
    }
}

pub async fn delete(Path(name): Path<String>, Posted { page, form }: Posted) -> Response {
    let force = Some("true").filter(|_| form.get("force") == "true");
    match page.api(Method::DELETE, &route::query(&route::fill(route::ROLE, &name), [("force", force)]), None).await.ok()
    {
        Ok(_) => Redirect::to("/console/roles?notice=deleted").into_response(),
        Err(r) => page::message(Some(&page), StatusCode::CONFLICT, "The role was not deleted", &r.sentence()),
    }
}

pub async fn catalog(page: Page) -> Response {
    match page.api(Method::GET, route::CATALOG, None).await.ok() {
        Ok(c) => respond(StatusCode::OK, catalog_page(&page, &c, None, None)),
        Err(r) => page::refused(&page, &r),
    }
}

/// The catalogue and, for `roles:admin`, its edit form: filled from the
/// catalogue, or from what the person typed when the save was refused.
fn catalog_page(page: &Page, catalog: &Value, refused: Option<(&Refusal, &Form)>, saved: Option<&str>) -> Markup {
    let actions = catalog["actions"].as_array().cloned().unwrap_or_default();
    let lines: Vec<String> = actions
        .iter()
        .map(|a| match text(&a["description"]) {
            "" => text(&a["action"]).to_owned(),
            d => format!("{} {d}", text(&a["action"])),
        })
        .collect();
    let body = html! {
        @if let Some(s) = saved { p.notice role="status" { (s) } }
        p {
            "The actions your services check, which the create form offers by service. "
            @if catalog["enforce"].as_bool() == Some(true) { "Enforced: scopes may only name these actions." }
            @else { "Not enforced: scopes may name any action." }
        }
        @if actions.is_empty() { p.muted { "The catalogue is empty." } } @else {
            table {
                thead { tr { th scope="col" { "Action" } th scope="col" { "Description" } } }
                tbody { @for a in &actions { tr { td { code { (text(&a["action"])) } } td { (text(&a["description"])) } } } }
            }
        }
        @if page.can(Permission::RolesAdmin) {
            form.card.wide method="post" action="/console/catalog" {
                (csrf(page))
                h2 { "Edit the catalogue" }
                (form_error(refused.map(|(r, _)| r), &[]))
                label for="actions" { "Actions, one per line: the action, a space, then its description" }
                textarea id="actions" name="actions" rows="8" aria-describedby="actions-help" aria-invalid=[refused.map(|_| "true")] {
                    @match refused { Some((_, typed)) => (typed.get("actions")), None => (lines.join("\n")) }
                }
                p.help id="actions-help" { "For example: billing:read_costs Read cost reports" }
                div.check {
                    input type="checkbox" id="enforce" name="enforce" value="true" checked[refused.map_or(catalog["enforce"].as_bool() == Some(true), |(_, typed)| typed.get("enforce") == "true")];
                    label for="enforce" { "Enforce: refuse scopes naming actions that are not listed" }
                }
                button.primary type="submit" { "Save catalogue" }
            }
        }
    };
    frame(Some(page), Area::Catalog, "Catalogue", body)
}

pub async fn put_catalog(Posted { page, form }: Posted) -> Response {
    let actions: Vec<Value> = form
        .lines("actions")
        .iter()
        .map(|l| match l.split_once(' ') {
            Some((a, d)) => json!({"action": a, "description": d.trim()}),
            None => json!({"action": l, "description": ""}),
        })
        .collect();
    let body = json!({"actions": actions, "enforce": form.get("enforce") == "true"});
    match page.api(Method::PUT, route::CATALOG, Some(&body)).await.ok() {
        Ok(c) => respond(StatusCode::OK, catalog_page(&page, &c, None, Some("Catalogue saved."))),
        Err(r) => {
            let current = page.api(Method::GET, route::CATALOG, None).await.body;
            respond(r.status, catalog_page(&page, &current, Some((&r, &form)), None))
        }
    }
}
