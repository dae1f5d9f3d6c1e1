//! The console's in-process client of the API: every page reads and writes
//! through the API's router as the signed-in key (and person), so the
//! console keeps no rule of its own; an answer, and a refusal as a person
//! reads it, with the field it concerns.

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use serde_json::Value;

use super::{Form, Page};
use crate::http::ACTOR_HEADER;

impl Page {
    /// Calls the API as the signed-in key (and person).
    pub async fn api(&self, method: Method, uri: &str, body: Option<&Value>) -> Answer {
        self.api_with(method, uri, body, None).await
    }

    /// A write the way the console makes every create and edit: first as a
    /// dry run, whose warnings (and `ask`, a question of the console's own,
    /// put first) a person confirms (the form comes back with `confirmed`);
    /// then for real, with the form's `version`, if any, as `If-Match`.
    pub async fn edit(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        form: &Form,
        ask: Option<&str>,
    ) -> Result<Edited, Refusal> {
        let version = Some(form.get("version")).filter(|v| !v.is_empty());
        if !form.has("confirmed") {
            let dry_run = crate::http::route::query(path, [("dry_run", Some("true"))]);
            let mut preview = self.api_with(method.clone(), &dry_run, Some(body), version).await.ok()?;
            if let (Some(ask), Some(warnings)) = (ask, preview.as_object_mut()) {
                let mut all = vec![Value::from(ask)];
                all.extend(warnings.remove("warnings").and_then(|w| w.as_array().cloned()).unwrap_or_default());
                warnings.insert("warnings".into(), Value::Array(all));
            }
            if preview["warnings"].as_array().is_some_and(|w| !w.is_empty()) {
                return Ok(Edited::Warned(preview));
            }
        }
        self.api_with(method, path, Some(body), version).await.ok().map(Edited::Saved)
    }

    /// `api`, with `If-Match: <version>`.
    pub async fn api_with(&self, method: Method, uri: &str, body: Option<&Value>, version: Option<&str>) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        let h = req.headers_mut().expect("a request being built has headers");
        let bearer = format!("Bearer {}", self.session.token.expose());
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&bearer).unwrap_or(HeaderValue::from_static("")));
        if let Some(user) = self.user().and_then(|u| HeaderValue::from_str(&format!("user:{u}")).ok()) {
            h.insert(ACTOR_HEADER, user);
        }
        if let Some(v) = version.and_then(|v| HeaderValue::from_str(&format!("\"{v}\"")).ok()) {
            h.insert(header::IF_MATCH, v);
        }
        let body = match body {
            Some(b) => {
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let mut req = req.body(body).expect("a request of valid parts");
        if let Some(peer) = self.peer {
            req.extensions_mut().insert(peer);
        }
        let mut api = self.console.api.clone();
        let response = match tower_service::Service::call(&mut api, req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap_or_default();
        // A text answer (a checkpoint note) comes as a JSON string.
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| std::str::from_utf8(&bytes).map_or(Value::Null, |t| Value::String(t.to_owned())));
        Answer { status, body }
    }
}

/// The API's answer to one of the console's calls.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    /// The body, or the API's refusal as a sentence a person can act on.
    pub fn ok(self) -> Result<Value, Refusal> {
        if self.status.is_success() {
            Ok(self.body)
        } else {
            Err(Refusal {
                status: self.status,
                code: self.body["code"].as_str().unwrap_or("INTERNAL").to_owned(),
                detail: self.body["detail"].as_str().unwrap_or("the registry could not answer").to_owned(),
                field: self.body["field"].as_str().map(str::to_owned),
            })
        }
    }
}

/// What `Page::edit` did.
pub enum Edited {
    /// Nothing yet: the dry run's answer, whose warnings need confirming.
    Warned(Value),
    /// Saved: the API's answer.
    Saved(Value),
}

/// A refusal of the API, as the console shows it.
#[derive(Debug)]
pub struct Refusal {
    /// The API's status, which the page answers with too (a key limit is
    /// 409 on both).
    pub status: StatusCode,
    pub code: String,
    pub detail: String,
    /// The request field the API named as wrong, if one was.
    pub field: Option<String>,
}

impl Refusal {
    /// The form field the refusal concerns: the one the API named, or the
    /// scopes for a refusal that is about what the scopes grant.
    pub fn field(&self, fields: &[&'static str]) -> Option<&'static str> {
        let named = match self.code.as_str() {
            "UNKNOWN_ACTION" | "ESCALATION" => "scopes",
            _ => self.field.as_deref()?,
        };
        fields.iter().copied().find(|f| *f == named)
    }

    /// The sentence for a person: the API's detail in the form's words,
    /// with a word on what to do.
    pub fn sentence(&self) -> String {
        let mut s = in_the_forms_words(&self.detail);
        if let Some(first) = s.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        match self.code.as_str() {
            "FORBIDDEN" | "ESCALATION" => s + ". Your key does not allow this; ask an administrator.",
            "VERSION_MISMATCH" => s + ". Someone changed it since you opened the page; reload and try again.",
            _ if s.ends_with('.') => s,
            _ => s + ".",
        }
    }
}

/// The API names request fields (`expires_at`, `scopes[2]`); a person
/// filled in a form whose labels say "Expires" and "Scopes".
pub(super) fn in_the_forms_words(detail: &str) -> String {
    const WORDS: [(&str, &str); 8] = [
        ("max_keys; ", ""),
        ("allowed_cidrs contains", "the allowed address ranges contain"),
        ("must be an RFC 3339 time, e.g. 2026-11-22T10:00:00Z", "must be a date, or a date and time"),
        ("expires_at", "the expiry"),
        ("allowed_cidrs", "the allowed address ranges"),
        ("max_keys", "the key limit"),
        ("grace_seconds", "the grace period"),
        ("meta ", "the metadata "),
    ];
    // `scopes[i]` and `allowed_cidrs[i]` count from one, as people do.
    let out = numbered(detail, "scopes[", "scope");
    let out = numbered(&out, "allowed_cidrs[", "address range");
    WORDS.iter().fold(out, |s, (api, form)| s.replace(api, form))
}

/// `text` with each `<field>N]` as `<word> N+1`.
fn numbered(text: &str, field: &str, word: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(field) {
        let after = &rest[at + field.len()..];
        let index = after.split_once(']').and_then(|(n, tail)| Some((n.parse::<usize>().ok()?, tail)));
        match index {
            Some((n, tail)) => {
                out += &format!("{}{word} {}", &rest[..at], n + 1);
                rest = tail;
            }
            None => {
                out.push_str(&rest[..at + field.len()]);
                rest = after;
            }
        }
    }
    out + rest
}

#[cfg(test)]
mod tests {
    use super::in_the_forms_words;

    #[test]
    fn api_field_names_become_the_forms_words() {
        assert_eq!(in_the_forms_words("scopes[0]: invalid scope \"a b\""), "scope 1: invalid scope \"a b\"");
        assert_eq!(in_the_forms_words("allowed_cidrs[2]: not a range"), "address range 3: not a range");
        assert_eq!(
            in_the_forms_words("expires_at must be an RFC 3339 time, e.g. 2026-11-22T10:00:00Z"),
            "the expiry must be a date, or a date and time"
        );
        assert_eq!(
            in_the_forms_words("at its limit of 1 key (max_keys; revoked and deleted keys do not count)"),
            "at its limit of 1 key (revoked and deleted keys do not count)"
        );
        assert_eq!(in_the_forms_words("names a scope: sa[x]"), "names a scope: sa[x]");
    }
}
