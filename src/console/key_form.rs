//! The console's key forms: creating a key (expiry, presets, roles,
//! catalogue actions, ranges) and showing its secret once, and editing one,
//! with the API's dry-run warnings shown before saving.

use axum::extract::Path;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde_json::{Value, json};

use super::client::in_the_forms_words;
use super::key_page::show_once;
use super::page::{self, Area, csrf, field_error, form_error, frame, invalid, plural, q, respond, strings, text};
use super::{Edited, Form, Page, Posted, Refusal};
use crate::domain::validate::{MAX_DESCRIPTION, MAX_NAME, MAX_OWNER};
use crate::http::route;

/// The API's names of a key's fields, which refusals name.
pub(super) const FIELDS: &[&str] = &[
    "name",
    "description",
    "owner",
    "expires_at",
    "expires_in_days",
    "scopes",
    "preset",
    "roles",
    "allowed_cidrs",
    "meta",
    "secret",
    "secret_sha256",
];

/// Expiry choices, in days.
const EXPIRY_DAYS: [u32; 6] = [7, 30, 60, 90, 180, 365];

/// What the create form offers: presets, the org's roles, the catalogue.
pub(super) struct Choices {
    presets: Vec<Value>,
    roles: Vec<Value>,
    actions: Vec<Value>,
}

pub(super) async fn choices(page: &Page) -> Choices {
    let list = |v: Value, field: &str| v[field].as_array().cloned().unwrap_or_default();
    Choices {
        presets: list(page.api(Method::GET, route::PRESETS, None).await.body, "presets"),
        roles: list(page.api(Method::GET, route::ROLES, None).await.body, "roles"),
        actions: list(page.api(Method::GET, route::CATALOG, None).await.body, "actions"),
    }
}

pub async fn new_form(page: Page) -> Response {
    let c = choices(&page).await;
    let defaults = Form(vec![("expiry".into(), "90".into())]);
    respond(StatusCode::OK, create_page(&page, &c, &defaults, None, &[], Kind::Create))
}

/// What the create form makes: a new key, or one imported with the secret
/// it had before keyreg.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Create,
    Import,
}

pub(super) fn create_page(
    page: &Page,
    c: &Choices,
    form: &Form,
    error: Option<&Refusal>,
    warnings: &[&str],
    kind: Kind,
) -> Markup {
    let (action, title, button) = match kind {
        Kind::Create => ("/console/keys/new", "Create a key", "Create key"),
        Kind::Import => ("/console/keys/import", "Import a key", "Import key"),
    };
    let body = html! {
        form.card.wide method="post" action=(action) novalidate {
            (csrf(page))
            (form_error(error, FIELDS))
            (check_before(warnings, "creating"))
            @if kind == Kind::Import { (super::import::secret_fields(form, error)) }
            (identity_fields(form, error))
            fieldset {
                legend { "Expiry" }
                (field_error(error, "expires_at", FIELDS))
                (field_error(error, "expires_in_days", FIELDS))
                div.choices {
                    @for d in EXPIRY_DAYS {
                        @let v = d.to_string();
                        div.check {
                            input type="radio" name="expiry" id=(format!("expiry-{d}")) value=(v) checked[form.get("expiry") == v];
                            label for=(format!("expiry-{d}")) { (d) " days" }
                        }
                    }
                    div.check {
                        input type="radio" name="expiry" id="expiry-custom" value="custom" checked[form.get("expiry") == "custom"];
                        label for="expiry-custom" { "On a date" }
                    }
                    div.check {
                        input type="radio" name="expiry" id="expiry-never" value="never" checked[form.get("expiry") == "never"] aria-describedby="never-warning";
                        label for="expiry-never" { "Never" }
                    }
                }
                label for="expires_on" { "Expiry date (a date typed here is the expiry; the key stops at 00:00 UTC that day)" }
                input id="expires_on" name="expires_on" type="date" value=(form.get("expires_on")) aria-invalid=[invalid(error, "expires_at", FIELDS)];
                p.warning id="never-warning" { "A key that never expires works until someone revokes it. Prefer an expiry, and rotate the key before it." }
            }
            (permission_fields(c, form, error))
            (cidr_field(form, error))
            (meta_field(form, error))
            div.actions {
                button.primary type="submit" { @if warnings.is_empty() { (button) } @else { "Create anyway" } }
                a.button href="/console/keys" { "Cancel" }
            }
        }
    };
    frame(Some(page), Area::Keys, title, body)
}

fn identity_fields(form: &Form, error: Option<&Refusal>) -> Markup {
    html! {
        label for="name" { "Name" }
        input id="name" name="name" type="text" required maxlength=(MAX_NAME) value=(form.get("name"))
            aria-invalid=[invalid(error, "name", FIELDS)] aria-describedby="name-error";
        (field_error(error, "name", FIELDS))
        label for="description" { "Description " span.optional { "(optional)" } }
        textarea id="description" name="description" maxlength=(MAX_DESCRIPTION) rows="2"
            aria-invalid=[invalid(error, "description", FIELDS)] { (form.get("description")) }
        (field_error(error, "description", FIELDS))
        label for="owner" { "Owner " span.optional { "(optional: who answers for this key, e.g. an email)" } }
        input id="owner" name="owner" type="text" maxlength=(MAX_OWNER) value=(form.get("owner"))
            aria-invalid=[invalid(error, "owner", FIELDS)];
        (field_error(error, "owner", FIELDS))
    }
}

/// Presets, roles, the catalogue's actions by service with a resource
/// restriction, and free scopes.
fn permission_fields(c: &Choices, form: &Form, error: Option<&Refusal>) -> Markup {
    let ticked_role = |name: &str| form.all("roles").any(|r| r == name);
    let mut services: Vec<(&str, Vec<&Value>)> = Vec::new();
    for a in &c.actions {
        let service = text(&a["action"]).split_once(':').map_or("(plain actions)", |(s, _)| s);
        match services.iter_mut().find(|(s, _)| *s == service) {
            Some((_, list)) => list.push(a),
            None => services.push((service, vec![a])),
        }
    }
    html! {
        fieldset {
            legend { "Permissions" }
            (field_error(error, "scopes", FIELDS))
            (field_error(error, "preset", FIELDS))
            (field_error(error, "roles", FIELDS))
            @if !c.presets.is_empty() {
                fieldset.inner {
                    legend { "Start from a preset" }
                    @for p in &c.presets {
                        @let name = text(&p["name"]);
                        @let chosen = form.get("preset") == name || (form.get("preset").is_empty() && name == NO_PRESET);
                        div.check {
                            input type="radio" name="preset" id=(format!("preset-{name}")) value=(name) checked[chosen];
                            label for=(format!("preset-{name}")) {
                                strong { (preset_label(name)) } " — " (text(&p["description"]))
                                @let scopes = strings(&p["scopes"]);
                                @if !scopes.is_empty() { " (" code { (scopes.join(" ")) } ")" }
                            }
                        }
                    }
                }
            }
            fieldset.inner {
                legend { "Roles" }
                @if c.roles.is_empty() { p.muted { "The organization has no roles yet." } }
                @for r in &c.roles {
                    @let name = text(&r["name"]);
                    div.check {
                        input type="checkbox" name="roles" id=(format!("role-{name}")) value=(name) checked[ticked_role(name)];
                        label for=(format!("role-{name}")) {
                            strong { (name) } @if !text(&r["description"]).is_empty() { " — " (text(&r["description"])) }
                        }
                    }
                }
            }
            fieldset.inner {
                legend { "Actions from the catalogue" }
                @if services.is_empty() { p.muted { "The catalogue is empty: name scopes below." } }
                @if actions_count(&services) > 8 {
                    div.action-search hidden {
                        label for="action-search" { "Find an action" }
                        input id="action-search" type="search" data-filters="action" placeholder="e.g. export";
                    }
                }
                @for (service, actions) in &services {
                    @let ticked = actions.iter().filter(|a| form.all("action").any(|x| x == text(&a["action"]))).count();
                    // A large catalogue opens with its services folded,
                    // but for those with something ticked.
                    details.service open[actions_count(&services) <= 8 || ticked > 0] {
                        summary { strong { (service) } " " span.muted { (plural(actions.len(), "action")) } }
                        div.check.all hidden {
                            input type="checkbox" id=(format!("all-{service}")) data-select-group;
                            label for=(format!("all-{service}")) { "All of " (service) }
                        }
                        div.checks {
                            @for a in actions {
                                @let action = text(&a["action"]);
                                div.check {
                                    input type="checkbox" name="action" id=(format!("action-{action}")) value=(action) checked[form.all("action").any(|x| x == action)];
                                    label for=(format!("action-{action}")) {
                                        code { (action) } @if !text(&a["description"]).is_empty() { " — " (text(&a["description"])) }
                                    }
                                }
                            }
                        }
                    }
                }
                label for="resource" { "Only on these resources " span.optional { "(optional)" } }
                input id="resource" name="resource" type="text" value=(form.get("resource")) aria-describedby="resource-help";
                p.help id="resource-help" { "A path such as workspaces/ws-1/** limits the ticked actions to workspace ws-1 and below; empty: every resource." }
            }
            label for="scopes" { "Other scopes, one per line " span.optional { "(e.g. billing:read or read@workspaces/ws-1/**)" } }
            textarea id="scopes" name="scopes" rows="3" aria-invalid=[invalid(error, "scopes", FIELDS)] { (form.get("scopes")) }
        }
    }
}

/// The preset that adds nothing: what the form starts from, so that only
/// what is ticked is granted.
const NO_PRESET: &str = "restricted";

fn actions_count(services: &[(&str, Vec<&Value>)]) -> usize {
    services.iter().map(|(_, a)| a.len()).sum()
}

fn preset_label(name: &str) -> &str {
    match name {
        "full-access" => "All",
        "read-only" => "Read only",
        "restricted" => "Only what is ticked below",
        other => other,
    }
}

fn cidr_field(form: &Form, error: Option<&Refusal>) -> Markup {
    html! {
        label for="allowed_cidrs" { "Allowed IP ranges, one per line " span.optional { "(optional)" } }
        textarea id="allowed_cidrs" name="allowed_cidrs" rows="2" aria-describedby="cidr-help"
            aria-invalid=[invalid(error, "allowed_cidrs", FIELDS)] { (form.get("allowed_cidrs")) }
        p.help id="cidr-help" {
            "IPv4 or IPv6 ranges such as 203.0.113.0/24 or 2001:db8::/32. Empty: any address. "
            strong { "0.0.0.0/0 and ::/0 allow every address of their family" } ", which is the same as no restriction."
        }
        (field_error(error, "allowed_cidrs", FIELDS))
    }
}

fn meta_field(form: &Form, error: Option<&Refusal>) -> Markup {
    html! {
        label for="meta" { "Metadata, returned with every verify " span.optional { "(optional)" } }
        textarea id="meta" name="meta" rows="3" spellcheck="false" aria-describedby="meta-help"
            aria-invalid=[invalid(error, "meta", FIELDS)] { (form.get("meta")) }
        p.help id="meta-help" {
            "A JSON object of at most 4 KiB, such as " code { "{\"plan\": \"pro\", \"customer\": \"c_42\"}" }
            ": your services get it back with each verify of this key. Empty: none."
        }
        (field_error(error, "meta", FIELDS))
    }
}

/// The metadata typed: JSON when it parses (the API checks it is an
/// object), else the text itself, which the API refuses by name; empty is
/// none (null).
fn meta_of(form: &Form) -> Value {
    match form.get("meta").trim() {
        "" => Value::Null,
        typed => serde_json::from_str(typed).unwrap_or_else(|_| json!(typed)),
    }
}

/// The scopes the permission fields ask for: ticked actions (on the
/// resource, if one is named) and the free lines.
fn scopes_of(form: &Form) -> Vec<String> {
    let resource = form.get("resource").trim();
    let mut scopes: Vec<String> = form
        .all("action")
        .map(|a| if resource.is_empty() { a.to_owned() } else { format!("{a}@{resource}") })
        .collect();
    scopes.extend(form.lines("scopes"));
    scopes
}

/// The body fields a create and an edit share, from the key form.
fn key_fields(form: &Form) -> Value {
    let mut body = json!({
        "name": form.get("name"),
        "description": form.get("description"),
        "owner": form.get("owner"),
        "scopes": scopes_of(form),
        "roles": form.all("roles").collect::<Vec<_>>(),
        "allowed_cidrs": form.lines("allowed_cidrs"),
        "meta": meta_of(form),
    });
    if !matches!(form.get("preset"), "" | NO_PRESET) {
        body["preset"] = json!(form.get("preset"));
    }
    body
}

/// The API body of a new key from the create form: its fields and expiry.
pub(super) fn new_key_fields(form: &Form) -> Value {
    let mut body = key_fields(form);
    // A date typed is the expiry meant, whichever choice is ticked.
    let date = form.get("expires_on").trim();
    let expiry = if date.is_empty() { form.get("expiry") } else { "custom" };
    match expiry {
        "never" => {}
        "custom" => body["expires_at"] = json!(format!("{date}T00:00:00Z")),
        // Passed on as given: the API refuses what is not a number of days.
        days => body["expires_in_days"] = days.parse::<u32>().map_or_else(|_| json!(days), |d| json!(d)),
    }
    body
}

pub async fn create(Posted { page, form }: Posted) -> Response {
    // What to check (a wildcard range, no expiry) is shown on the form
    // before the key exists.
    let (error, warnings) = match page.edit(Method::POST, route::KEYS, &new_key_fields(&form), &form, None).await {
        Ok(Edited::Saved(created)) => return show_once(&page, created, "Key created"),
        Ok(Edited::Warned(preview)) => (None, preview["warnings"].clone()),
        Err(r) => (Some(r), Value::Null),
    };
    let c = choices(&page).await;
    let status = error.as_ref().map_or(StatusCode::OK, |r| r.status);
    respond(status, create_page(&page, &c, &form, error.as_ref(), &strings(&warnings), Kind::Create))
}

pub async fn edit_form(page: Page, Path(id): Path<String>) -> Response {
    let key = match page.api(Method::GET, &route::fill(route::KEY, &id), None).await.ok() {
        Ok(v) => v["key"].clone(),
        Err(r) => return page::refused(&page, &r),
    };
    let c = choices(&page).await;
    // Scopes that are catalogue actions as they stand are ticked there; the
    // rest stay as lines.
    let (ticked, lines): (Vec<&str>, Vec<&str>) =
        strings(&key["scopes"]).into_iter().partition(|s| c.actions.iter().any(|a| text(&a["action"]) == *s));
    let mut fields: Vec<(String, String)> = vec![
        ("name".into(), text(&key["name"]).into()),
        ("description".into(), text(&key["description"]).into()),
        ("owner".into(), text(&key["owner"]).into()),
        ("scopes".into(), lines.join("\n")),
        ("allowed_cidrs".into(), strings(&key["allowed_cidrs"]).join("\n")),
        (
            "meta".into(),
            if key["meta"].is_object() {
                serde_json::to_string_pretty(&key["meta"]).unwrap_or_default()
            } else {
                String::new()
            },
        ),
        ("version".into(), key["version"].to_string()),
        ("expiry".into(), "keep".into()),
        ("current_expiry".into(), text(&key["expires_at"]).into()),
    ];
    fields.extend(strings(&key["roles"]).into_iter().map(|r| ("roles".into(), r.into())));
    fields.extend(ticked.into_iter().map(|a| ("action".into(), a.into())));
    let form = Form(fields);
    respond(StatusCode::OK, edit_page(&page, &id, &c, &form, None, &[]))
}

fn edit_page(page: &Page, id: &str, c: &Choices, form: &Form, error: Option<&Refusal>, warnings: &[&str]) -> Markup {
    let body = html! {
        form.card.wide method="post" action=(format!("/console/keys/{}/edit", q(id))) novalidate {
            (csrf(page))
            input type="hidden" name="version" value=(form.get("version"));
            (form_error(error, FIELDS))
            (check_before(warnings, "saving"))
            (identity_fields(form, error))
            (edit_expiry_fields(form, error))
            (permission_fields(c, form, error))
            (cidr_field(form, error))
            (meta_field(form, error))
            div.actions {
                button.primary type="submit" { @if warnings.is_empty() { "Save" } @else { "Save anyway" } }
                a.button href=(format!("/console/keys/{}", q(id))) { "Cancel" }
            }
        }
    };
    frame(Some(page), Area::Keys, &format!("Edit {}", form.get("name")), body)
}

/// The edit form's expiry: kept as it is unless another is chosen.
fn edit_expiry_fields(form: &Form, error: Option<&Refusal>) -> Markup {
    let current = form.get("current_expiry");
    let shown = crate::domain::time::Timestamp::parse(current).map_or_else(|_| "never".to_owned(), page::exact);
    let choice = |v: &str| form.get("expiry") == v;
    html! {
        input type="hidden" name="current_expiry" value=(current);
        fieldset {
            legend { "Expiry" }
            (field_error(error, "expires_at", FIELDS))
            div.choices {
                div.check {
                    input type="radio" name="expiry" id="expiry-keep" value="keep" checked[choice("keep")];
                    label for="expiry-keep" { "Keep: " (shown) }
                }
                div.check {
                    input type="radio" name="expiry" id="expiry-custom" value="custom" checked[choice("custom")];
                    label for="expiry-custom" { "On a date" }
                }
                div.check {
                    input type="radio" name="expiry" id="expiry-never" value="never" checked[choice("never")];
                    label for="expiry-never" { "Never" }
                }
            }
            label for="expires_on" { "Expiry date (a date typed here is the expiry; the key stops at 00:00 UTC that day)" }
            input id="expires_on" name="expires_on" type="date" value=(form.get("expires_on")) aria-invalid=[invalid(error, "expires_at", FIELDS)];
        }
    }
}

/// The edit's expiry, from its form: absent to keep it, `null` for never.
fn edited_expiry(form: &Form, body: &mut Value) {
    let date = form.get("expires_on").trim();
    match (date.is_empty(), form.get("expiry")) {
        (false, _) => body["expires_at"] = json!(format!("{date}T00:00:00Z")),
        (true, "never") => body["expires_at"] = Value::Null,
        // Refused by the API, and the form says the date is missing.
        (true, "custom") => body["expires_at"] = json!(""),
        _ => {}
    }
}

/// The API's dry-run warnings, to confirm: the form comes back with
/// `confirmed`, and the next submit writes.
fn check_before(warnings: &[&str], doing: &str) -> Markup {
    html! {
        @if !warnings.is_empty() {
            div.notice.warning role="alert" {
                p { strong { "Check before " (doing) ":" } }
                ul { @for w in warnings { li { (capitalized(&in_the_forms_words(w))) } } }
                input type="hidden" name="confirmed" value="1";
            }
        }
    }
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}

/// Saves an edit; first as a dry run, so that the API's warnings ("this key
/// was used in the last 24 hours…") are shown and confirmed before saving.
pub async fn edit(Path(id): Path<String>, Posted { page, form }: Posted) -> Response {
    let path = route::fill(route::KEY, &id);
    let mut body = key_fields(&form);
    edited_expiry(&form, &mut body);
    // What a key may do, or where from, is asked about before every change
    // of it, used or not: the API warns only of recent use.
    let ask = match form.has("confirmed") {
        false if changes_access(&page, &path, &body).await => Some(ACCESS_CHANGES),
        _ => None,
    };
    match page.edit(Method::PATCH, &path, &body, &form, ask).await {
        Ok(Edited::Saved(_)) => Redirect::to(&format!("/console/keys/{}?notice=saved", q(&id))).into_response(),
        Ok(Edited::Warned(v)) => edit_again(&page, &id, &form, None, &strings(&v["warnings"])).await,
        Err(r) => edit_again(&page, &id, &form, Some(r), &[]).await,
    }
}

const ACCESS_CHANGES: &str =
    "this changes what the key may do or where it may be used from: calls made with it may start to be refused";

/// Whether `body` changes the key's scopes, roles or address ranges (a
/// preset always does).
async fn changes_access(page: &Page, path: &str, body: &Value) -> bool {
    let Ok(now) = page.api(Method::GET, path, None).await.ok() else { return false };
    let set = |v: &Value| {
        let mut items: Vec<String> = strings(v).into_iter().map(str::to_owned).collect();
        items.sort();
        items
    };
    let key = &now["key"];
    body.get("preset").is_some()
        || ["scopes", "roles", "allowed_cidrs"].iter().any(|field| set(&body[*field]) != set(&key[*field]))
}

/// The edit form again, as the person filled it, with a refusal or the
/// warnings to confirm.
async fn edit_again(page: &Page, id: &str, form: &Form, error: Option<Refusal>, warnings: &[&str]) -> Response {
    let c = choices(page).await;
    let status = error.as_ref().map_or(StatusCode::OK, |r| r.status);
    respond(status, edit_page(page, id, &c, form, error.as_ref(), warnings))
}
