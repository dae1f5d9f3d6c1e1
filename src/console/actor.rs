//! Who did something, as a person reads it: a person by their email, a key
//! by its name (a link to it), keyreg's own work by what it was; the raw
//! actor (`key:key_01…`, `system:sweeper`) stays on hover. Key names come
//! from the API under the signed-in key, looked up once per page, so a key
//! the session may not read is never named.

use std::collections::HashMap;

use axum::http::Method;
use maud::{Markup, html};

use super::Page;
use super::page::{q, text};
use crate::http::route;

/// The names of the keys that acted on one page.
pub struct Actors {
    /// Key id → its name, or `None` when the session cannot read the key
    /// (another organization's: the operator's, for a tenant).
    names: HashMap<String, Option<String>>,
}

impl Actors {
    /// Looks up the keys among `actors`.
    pub async fn of(page: &Page, actors: Vec<&str>) -> Actors {
        let mut names = HashMap::new();
        for id in actors.iter().filter_map(|a| a.strip_prefix("key:")) {
            if names.contains_key(id) {
                continue;
            }
            let name = match page.api(Method::GET, &route::fill(route::KEY, id), None).await.ok() {
                Ok(answer) => Some(text(&answer["key"]["name"]).to_owned()),
                Err(_) => None,
            };
            names.insert(id.to_owned(), name);
        }
        Actors { names }
    }

    fn name(&self, id: &str) -> Option<&str> {
        self.names.get(id)?.as_deref()
    }

    /// Key `id` by its name, a link to it; its id where it cannot be read.
    pub fn key(&self, id: &str) -> Markup {
        match self.name(id) {
            Some(name) => html! { a href=(format!("/console/keys/{}", q(id))) title=(id) { (name) } },
            None => html! { code { (id) } },
        }
    }

    /// `actor` for a person, with the raw form on hover.
    pub fn show(&self, actor: &str) -> Markup {
        if let Some(id) = actor.strip_prefix("key:") {
            return match self.name(id) {
                Some(name) => html! { a href=(format!("/console/keys/{}", q(id))) title=(actor) { "key " (name) } },
                None => html! { span title=(actor) { "a key of the operator" } },
            };
        }
        let shown = match actor.split_once(':') {
            Some(("user", email)) => email.to_owned(),
            Some(("system", work)) => system(work).to_owned(),
            _ => actor.to_owned(),
        };
        html! { span title=(actor) { (shown) } }
    }
}

/// What keyreg itself was doing, for `system:<work>`.
fn system(work: &str) -> &str {
    match work {
        "sweeper" => "keyreg, when the key expired",
        "usage" => "keyreg, counting verifications",
        "init" => "keyreg, at setup",
        "recovery" => "keyreg, in a recovery",
        "operator" => "the operator",
        "upgrade" => "keyreg, upgrading the data",
        "leak-report" => "keyreg, on a leak report",
        _ => "keyreg",
    }
}
