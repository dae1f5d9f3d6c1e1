//! The console's import of a key that existed before keyreg: the create
//! form with the old secret (or only its SHA-256) beside it. The secret
//! goes to `POST /v1/keys/import` and nowhere else: it is never put back
//! into a page, not even when the import is refused.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde_json::json;

use super::key_form::{FIELDS, Kind, choices, create_page, new_key_fields};
use super::page::{field_error, invalid, q, respond, text};
use super::{Form, Page, Posted};
use crate::http::route;

pub async fn form(page: Page) -> Response {
    let c = choices(&page).await;
    let defaults = Form(vec![("expiry".into(), "90".into())]);
    respond(StatusCode::OK, create_page(&page, &c, &defaults, None, &[], Kind::Import))
}

pub async fn import(Posted { page, form }: Posted) -> Response {
    let mut body = new_key_fields(&form);
    if !form.get("secret").is_empty() {
        body["secret"] = json!(form.get("secret"));
    }
    if !form.get("secret_sha256").trim().is_empty() {
        body["secret_sha256"] = json!(form.get("secret_sha256").trim());
    }
    match page.api(Method::POST, route::KEYS_IMPORT, Some(&body)).await.ok() {
        Ok(imported) => {
            let id = text(&imported["key"]["id"]);
            Redirect::to(&format!("/console/keys/{}?notice=imported", q(id))).into_response()
        }
        Err(r) => {
            let c = choices(&page).await;
            // The form again as typed, but for the secret.
            let typed = Form(form.0.into_iter().filter(|(k, _)| k != "secret").collect());
            respond(r.status, create_page(&page, &c, &typed, Some(&r), &[], Kind::Import))
        }
    }
}

/// The secret to import, or its SHA-256, above the key's other fields.
pub fn secret_fields(form: &Form, error: Option<&super::Refusal>) -> Markup {
    html! {
        fieldset {
            legend { "The existing secret" }
            p.help { "Its holders keep using it, unchanged, until you rotate the key. keyreg keeps only a keyed hash of it." }
            label for="secret" { "Secret" }
            input id="secret" name="secret" type="password" autocomplete="off" spellcheck="false"
                aria-invalid=[invalid(error, "secret", FIELDS)];
            (field_error(error, "secret", FIELDS))
            label for="secret_sha256" { "Or only its SHA-256 " span.optional { "(64 hex digits, when you do not hold the secret itself)" } }
            input id="secret_sha256" name="secret_sha256" type="text" autocomplete="off" spellcheck="false"
                aria-invalid=[invalid(error, "secret_sha256", FIELDS)] value=(form.get("secret_sha256"));
            (field_error(error, "secret_sha256", FIELDS))
        }
    }
}
