//! The API's paths, named once. The router mounts these templates and the
//! console builds its in-process calls from the same constants with
//! [`fill`] and [`query`], so renaming a route cannot leave a caller behind
//! still compiling against the old string.

pub const ORGS: &str = "/v1/orgs";
pub const ORG_BY_ID: &str = "/v1/orgs/{id}";
pub const ORG: &str = "/v1/org";
pub const KEYS: &str = "/v1/keys";
pub const KEYS_BULK_REVOKE: &str = "/v1/keys/bulk-revoke";
pub const KEYS_OFFBOARD: &str = "/v1/keys/offboard";
pub const KEYS_IMPORT: &str = "/v1/keys/import";
pub const KEY: &str = "/v1/keys/{id}";
pub const KEY_DISABLE: &str = "/v1/keys/{id}/disable";
pub const KEY_ENABLE: &str = "/v1/keys/{id}/enable";
pub const KEY_REVOKE: &str = "/v1/keys/{id}/revoke";
pub const KEY_ROTATE: &str = "/v1/keys/{id}/rotate";
pub const KEY_USAGE: &str = "/v1/keys/{id}/usage";
pub const ROLES: &str = "/v1/roles";
pub const ROLE: &str = "/v1/roles/{name}";
pub const PRESETS: &str = "/v1/presets";
pub const CATALOG: &str = "/v1/catalog";
pub const USAGE: &str = "/v1/usage";
pub const VERIFY: &str = "/v1/verify";
pub const AUTHZ: &str = "/v1/authz";
/// Forward auth with the original request's method and path after the
/// prefix (Envoy's `ext_authz` with `path_prefix: /v1/authz`).
pub const AUTHZ_PREFIXED: &str = "/v1/authz/{*original}";
pub const LEAKS: &str = "/v1/leaks";
pub const AUDIT: &str = "/v1/audit";
pub const AUDIT_VERIFY: &str = "/v1/audit/verify";
pub const EVENTS: &str = "/v1/events";
pub const STATE_DIGEST: &str = "/v1/state/digest";
pub const CHECKPOINT: &str = "/v1/checkpoint";
pub const PROOF_INCLUSION: &str = "/v1/proofs/inclusion";
pub const PROOF_CONSISTENCY: &str = "/v1/proofs/consistency";

/// `template` with its one `{...}` placeholder replaced by `value`,
/// percent-encoded so an id or name can never add a segment.
pub fn fill(template: &str, value: &str) -> String {
    let (Some(open), Some(close)) = (template.find('{'), template.find('}')) else {
        return template.to_owned();
    };
    format!("{}{}{}", &template[..open], encode(value), &template[close + 1..])
}

/// `path` with a query string of the pairs that have a value, each value
/// percent-encoded.
pub fn query<'a>(path: &str, pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (name, value) in pairs {
        if let Some(v) = value {
            out.append_pair(name, v);
            any = true;
        }
    }
    match any {
        true => format!("{path}?{}", out.finish()),
        false => path.to_owned(),
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_value_stays_one_segment() {
        assert_eq!(fill(KEY_USAGE, "key_1"), "/v1/keys/key_1/usage");
        assert_eq!(fill(ROLE, "a/../b c"), "/v1/roles/a%2F..%2Fb%20c");
        assert_eq!(fill(KEYS, "x"), "/v1/keys");
    }

    #[test]
    fn a_query_keeps_only_the_pairs_that_have_a_value() {
        assert_eq!(
            query(AUDIT, [("limit", Some("50")), ("actor", None), ("type", Some("key.created"))]),
            "/v1/audit?limit=50&type=key.created"
        );
        assert_eq!(query(KEYS, [("q", Some("a&b=c"))]), "/v1/keys?q=a%26b%3Dc");
        assert_eq!(query(KEYS, [("q", None)]), "/v1/keys");
    }
}
