//! The console's audit page: the org's history, filtered and paged newest
//! first, under a badge that says how far the hash chain was checked; and
//! the event table the key details page reuses for a key's timeline.

use axum::extract::Query;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::Page;
use super::actor::Actors;
use super::page::{self, Area, as_of_time, exact, frame, given, local_time, plural, q, respond, strings, text};
use crate::domain::event::TYPES;
use crate::domain::note::{Checkpoint, Note, base64};
use crate::domain::permission::Permission;
use crate::domain::time::Timestamp;
use crate::http::route;

#[derive(Deserialize, Default)]
pub struct AuditParams {
    key_id: Option<String>,
    actor: Option<String>,
    #[serde(rename = "type")]
    type_: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
}

pub async fn page(page: Page, Query(p): Query<AuditParams>) -> Response {
    if !page.can(Permission::AuditRead) {
        let why =
            "Your key may not read the history: that needs audit:read. Ask an administrator for a key that holds it.";
        return page::message(Some(&page), StatusCode::FORBIDDEN, "Audit", why);
    }
    let field = |v: &Option<String>| given(v).map(str::to_owned);
    let (since, until) = (given(&p.since).map(as_of_time), given(&p.until).map(as_of_time));
    let filtered = [
        ("key_id", field(&p.key_id)),
        ("actor", field(&p.actor)),
        ("type", field(&p.type_)),
        ("since", since.clone()),
        ("until", until.clone()),
    ];
    let mut filters = String::new();
    for (name, value) in &filtered {
        if let Some(v) = value {
            filters += &format!("&{name}={}", q(v));
        }
    }
    let cursor = field(&p.cursor);
    let asked = [("limit", Some("50")), ("cursor", cursor.as_deref())];
    let uri = route::query(route::AUDIT, asked.into_iter().chain(filtered.iter().map(|(n, v)| (*n, v.as_deref()))));
    let (events, next, error) = match page.api(Method::GET, &uri, None).await.ok() {
        Ok(v) => (v["events"].clone(), v["next_cursor"].as_str().map(str::to_owned), None),
        Err(r) => (Value::Null, None, Some(r)),
    };
    let chain = page.api(Method::GET, route::AUDIT_VERIFY, None).await.ok();
    let checkpoint = page.api(Method::GET, route::CHECKPOINT, None).await.ok();
    let actors = actors(&page, &events, &[]).await;
    let body = html! {
        div.badges {
            @match &chain {
                Ok(c) if c["ok"].as_bool() == Some(true) => p.badge-chain.ok role="status" {
                    "Chain verified: " (c["events"]) " events, up to seq " (c["head_seq"]) ", head hash "
                    code title=(text(&c["head_hash"])) { (text(&c["head_hash"]).chars().take(16).collect::<String>()) "…" }
                },
                Ok(c) => p.badge-chain.broken role="alert" {
                    "The hash chain is broken at seq " (c["first_bad_seq"]) ": " (text(&c["problem"]))
                },
                Err(r) => p.badge-chain.broken role="alert" { "The chain could not be checked: " (r.sentence()) },
            }
            (checkpoint_badge(checkpoint.ok().as_ref().and_then(Value::as_str)))
        }
        form.filters method="get" action="/console/audit" {
            div.field { label for="key_id" { "Key id" } input id="key_id" name="key_id" type="text" value=(field(&p.key_id).unwrap_or_default()); }
            div.field { label for="actor" { "Actor" } input id="actor" name="actor" type="text" placeholder="user:ada@example.com" value=(field(&p.actor).unwrap_or_default()); }
            div.field {
                label for="type" { "Type" }
                select id="type" name="type" {
                    option value="" { "any" }
                    @for t in TYPES { option value=(t) selected[field(&p.type_).as_deref() == Some(*t)] { (label(t)) } }
                }
            }
            div.field { label for="since" { "Since (UTC)" } input id="since" name="since" type="datetime-local" step="1" value=(since.as_deref().map(local_time).unwrap_or_default()); }
            div.field { label for="until" { "Until (UTC)" } input id="until" name="until" type="datetime-local" step="1" value=(until.as_deref().map(local_time).unwrap_or_default()); }
            button type="submit" { "Filter" }
        }
        @if let Some(r) = &error { p.notice.error role="alert" { (r.sentence()) } }
        (events_table(&events, &actors, page.now(), true))
        nav.pager aria-label="Pages" {
            @if field(&p.cursor).is_some() { a href=(format!("/console/audit?{}", filters.trim_start_matches('&'))) { "Newest" } }
            @if let Some(c) = &next { a href=(format!("/console/audit?cursor={}{filters}", q(c))) rel="next" { "Older" } }
        }
    };
    respond(StatusCode::OK, frame(Some(&page), Area::Audit, "Audit", body))
}

/// The newest signed checkpoint: how many events it covers, its root, and
/// the witnesses whose cosignatures came with it. The names are as the
/// registry shows them; an auditor checks the signatures with `keyreg
/// audit verify`, which the title says.
fn checkpoint_badge(note: Option<&str>) -> Markup {
    let parsed = note.and_then(|n| Note::parse(n).ok()).and_then(|n| Some((Checkpoint::parse(&n.text).ok()?, n)));
    let Some((checkpoint, note)) = parsed else {
        return html! { p.badge-chain.pending role="status" { "No signed checkpoint yet: one follows the first event within a second." } };
    };
    let witnesses: Vec<&str> =
        note.signatures.iter().map(|s| s.name.as_str()).filter(|n| *n != checkpoint.origin).collect();
    let root = base64(&checkpoint.root);
    html! {
        p.badge-chain.ok role="status" title="Check it with keyreg audit verify, which holds the log's and the witnesses' keys" {
            "Signed checkpoint of the whole log: " (plural(checkpoint.size as usize, "event")) ", root "
            code title=(root) { (root.chars().take(16).collect::<String>()) "…" } ", "
            @if witnesses.is_empty() { "no witness cosignature" } @else { "cosigned by " (witnesses.join(", ")) }
        }
    }
}

/// The keys that acted in `events`, and the `more` actors, named.
pub async fn actors(page: &Page, events: &Value, more: &[&str]) -> Actors {
    let events = events.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut acted: Vec<&str> = more.to_vec();
    for e in events {
        acted.extend([text(&e["actor"]), text(&e["via"])]);
    }
    let subjects: Vec<String> = events
        .iter()
        .filter(|e| text(&e["type"]).starts_with("key."))
        .map(|e| format!("key:{}", text(&e["subject"])))
        .collect();
    acted.extend(subjects.iter().map(String::as_str));
    Actors::of(page, acted).await
}

/// Events newest first: when, what, who, and which key.
pub fn events_table(events: &Value, actors: &Actors, now: Timestamp, with_key: bool) -> Markup {
    let events = events.as_array().map(Vec::as_slice).unwrap_or_default();
    html! {
        @if events.is_empty() { p.muted { "No events." } } @else {
            div.scroll {
                table.events.cards {
                    thead { tr {
                        th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "By" }
                        @if with_key { th scope="col" { "Key" } }
                        th scope="col" { "Details" }
                    } }
                    tbody {
                        @for e in events {
                            tr data-seq=(e["seq"]) {
                                td data-label="When" { (page::when_exactly(&e["time"], now, "")) }
                                td data-label="Event" { span title=(format!("{} (event {})", text(&e["type"]), e["seq"])) { (label(text(&e["type"]))) } }
                                td data-label="By" {
                                    (actors.show(text(&e["actor"])))
                                    @if let Some(via) = e["via"].as_str() { span.desc { "through " (actors.show(via)) } }
                                }
                                @if with_key {
                                    td.key data-label="Key" { @if text(&e["type"]).starts_with("key.") { (actors.key(text(&e["subject"]))) } }
                                }
                                td.details data-label="Details" { (summary(e)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// An event type as people say it.
fn label(kind: &str) -> &str {
    match kind {
        "org.created" => "Organization created",
        "org.updated" => "Organization changed",
        "key.created" => "Key created",
        "key.imported" => "Key imported",
        "key.updated" => "Key changed",
        "key.scopes_edited" => "Scopes changed",
        "key.roles_edited" => "Roles changed",
        "key.ips_edited" => "Address ranges changed",
        "key.disabled" => "Key disabled",
        "key.enabled" => "Key enabled",
        "key.revoked" => "Key revoked",
        "key.deleted" => "Key deleted",
        "key.expired" => "Key expired",
        "key.rotated" => "Key rotated",
        "key.accessed" => "Key used",
        "role.created" => "Role created",
        "role.updated" => "Role changed",
        "role.deleted" => "Role deleted",
        "catalog.updated" => "Catalogue changed",
        other => other,
    }
}

/// One line on what an event changed, for a person.
fn summary(e: &Value) -> String {
    let d = &e["data"];
    let list = |v: &Value| strings(v).join(", ");
    match text(&e["type"]) {
        "key.created" | "key.imported" => format!("“{}”, scopes: {}", text(&d["name"]), list(&d["scopes"])),
        "key.updated" => format!("changed {}", list(&d["changed"])),
        "key.scopes_edited" => format!("scopes now: {}", list(&d["scopes"])),
        "key.roles_edited" => format!("roles now: {}", list(&d["roles"])),
        "key.ips_edited" => format!("allowed ranges now: {}", list(&d["allowed_cidrs"])),
        "key.revoked" | "key.deleted" => d["reason"].as_str().map_or(String::new(), |r| format!("reason: {r}")),
        "key.rotated" => match d["previous_valid_until"].as_str().and_then(|t| Timestamp::parse(t).ok()) {
            Some(t) => format!("the old secret works until {}", exact(t)),
            None => "the old secret stopped at once".into(),
        },
        "key.accessed" => plural(d["count"].as_u64().unwrap_or(0) as usize, "verification"),
        "role.created" | "role.updated" => format!("{}: {}", text(&d["name"]), list(&d["scopes"])),
        "role.deleted" => {
            format!("{}, taken from {}", text(&d["name"]), plural(strings(&d["removed_from"]).len(), "key"))
        }
        "catalog.updated" => format!(
            "{} actions, {}",
            d["actions"].as_array().map_or(0, Vec::len),
            if d["enforce"].as_bool() == Some(true) { "enforced" } else { "not enforced" }
        ),
        "org.created" | "org.updated" => format!("name “{}”, at most {} keys", text(&d["name"]), d["max_keys"]),
        _ => String::new(),
    }
}
