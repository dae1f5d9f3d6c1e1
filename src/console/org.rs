//! The console's organization page: keys by status, the key limit, and
//! the org's verifications by outcome and day, and its busiest keys.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use maud::html;

use super::Page;
use super::keys::status_badge;
use super::page::{self, Area, frame, respond, text};
use super::usage::{self, RangeParams};
use crate::domain::permission::Permission;
use crate::http::route;
use axum::extract::Query;

pub async fn page(page: Page, Query(range): Query<RangeParams>) -> Response {
    let org = match page.api(Method::GET, route::ORG, None).await.ok() {
        Ok(v) => v,
        Err(r) => return page::refused(&page, &r),
    };
    let counts = &org["key_counts"];
    let count = |s: &str| counts[s].as_u64().unwrap_or(0);
    let in_use = count("active") + count("disabled") + count("expired");
    let max = org["org"]["max_keys"].as_u64().unwrap_or(0);
    let now = page.now();
    let usage = usage::section(&page, route::USAGE, "/console/org", &range).await;
    let body = html! {
        section aria-labelledby="org-title" {
            h2 id="org-title" { (text(&org["org"]["name"])) " " span.muted { "(" (text(&org["org"]["id"])) ")" } }
            p { "Created " (page::when(&org["org"]["created_at"], now, "")) "." }
            p.limit {
                strong { (in_use) } " of at most " strong { (max) } " keys in use (revoked and deleted keys do not count). "
                meter min="0" max=(max) value=(in_use) aria-label="Keys in use against the limit" {}
            }
            @if page.can(Permission::OrgsAdmin) {
                p.muted { "You set the limits on the " a href="/console/orgs" { "Organizations" } " page." }
            } @else {
                p.muted { "The limit is set by the operator of this registry." }
            }
        }
        section aria-labelledby="counts-title" {
            h2 id="counts-title" { "Keys by status" }
            table.counts {
                thead { tr { th scope="col" { "Status" } th scope="col" { "Keys" } } }
                tbody {
                    @for s in ["active", "disabled", "expired", "revoked", "deleted"] {
                        tr { td { a href=(format!("/console/keys?status={s}")) { (status_badge(s)) } } td { (count(s)) } }
                    }
                }
            }
        }
        (usage)
    };
    respond(StatusCode::OK, frame(Some(&page), Area::Org, "Organization", body))
}
