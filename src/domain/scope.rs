//! Scopes: what a key may do. A scope is `ACTION` or `ACTION@RESOURCE`.
//!
//! - ACTION is `*`, a plain verb (`read`), `service:verb`, or `service:*`.
//!   Names are `[A-Za-z0-9_.-]+`.
//! - RESOURCE is a `/`-separated filter. A segment `*` matches exactly one
//!   segment; a final `**` matches zero or more; the filter `*` alone (the
//!   default) matches every resource, and only it matches a request that
//!   names no resource.
//!
//! Nothing is granted implicitly: matching is purely syntactic, so an action
//! invented tomorrow is granted only by `*` or by its own `service:*`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    action: Action,
    resource: Filter,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    Any,
    Service(String),
    Exact(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Filter {
    Any,
    Path(Vec<Segment>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Segment {
    Literal(String),
    One,
    Rest,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid scope {scope:?}: {why}")]
pub struct ScopeError {
    scope: String,
    why: &'static str,
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A literal resource segment: printable ASCII without `/`, `@`, `*` or
/// `%`, and not `.` or `..`. A service that normalises or percent-decodes a
/// path after keyreg matched it (`ws-1/../ws-2`, `%2e%2e`) would otherwise
/// act on a resource the scope never granted.
fn is_literal_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes().all(|c| c.is_ascii_graphic() && !matches!(c, b'/' | b'@' | b'*' | b'%'))
}

/// A concrete action as named in a verify request (no wildcards).
pub fn is_concrete_action(s: &str) -> bool {
    match s.split_once(':') {
        Some((service, verb)) => is_name(service) && is_name(verb),
        None => is_name(s),
    }
}

/// A concrete resource path as named in a verify request.
pub fn is_concrete_resource(s: &str) -> bool {
    s.split('/').all(is_literal_segment)
}

impl Scope {
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        Scope::parse_with(s, is_literal_segment)
    }

    /// Parses a scope read back from the log. Events were decided valid when
    /// they were written, under the rules of their day, so stored scopes are
    /// read with the literal segments of the first release (which allowed
    /// `%`, `.` and `..`): such a segment can still never match, because
    /// verify refuses those in requests.
    fn parse_stored(s: &str) -> Result<Scope, ScopeError> {
        Scope::parse_with(s, |seg| {
            !seg.is_empty() && seg.bytes().all(|c| c.is_ascii_graphic() && !matches!(c, b'/' | b'@' | b'*'))
        })
    }

    fn parse_with(s: &str, literal: fn(&str) -> bool) -> Result<Scope, ScopeError> {
        let err = |why| ScopeError { scope: s.chars().take(120).collect(), why };
        if s.len() > 512 {
            return Err(err("longer than 512 characters"));
        }
        let (action, resource) = match s.split_once('@') {
            Some((a, r)) => (a, Some(r)),
            None => (s, None),
        };
        let action = if action == "*" {
            Action::Any
        } else {
            match action.split_once(':') {
                Some((service, "*")) if is_name(service) => Action::Service(service.to_owned()),
                Some((service, verb)) if is_name(service) && is_name(verb) => Action::Exact(action.to_owned()),
                None if is_name(action) => Action::Exact(action.to_owned()),
                _ => return Err(err("the action must be *, verb, service:verb or service:*")),
            }
        };
        let resource = match resource {
            None | Some("*") => Filter::Any,
            Some(r) => {
                let parts: Vec<&str> = r.split('/').collect();
                let mut segments = Vec::with_capacity(parts.len());
                for (i, part) in parts.iter().enumerate() {
                    segments.push(match *part {
                        "*" => Segment::One,
                        "**" if i + 1 == parts.len() => Segment::Rest,
                        "**" => return Err(err("** may only be the last segment")),
                        p if literal(p) => Segment::Literal(p.to_owned()),
                        _ => {
                            return Err(err(
                                "resource segments are non-empty, without spaces, %, . or .., and * or ** stand alone",
                            ));
                        }
                    });
                }
                Filter::Path(segments)
            }
        };
        Ok(Scope { action, resource })
    }

    /// Does this scope grant `action` on `resource` (`None`: no resource named)?
    pub fn grants(&self, action: &str, resource: Option<&str>) -> bool {
        let action_ok = match &self.action {
            Action::Any => true,
            Action::Exact(a) => a == action,
            Action::Service(service) => {
                action.split_once(':').is_some_and(|(s, verb)| s == service && !verb.is_empty())
            }
        };
        action_ok
            && match (&self.resource, resource) {
                (Filter::Any, _) => true,
                (Filter::Path(_), None) => false,
                (Filter::Path(filter), Some(r)) => path_matches(filter, r),
            }
    }

    /// True when every request this scope grants is also granted by `other`.
    /// Used to warn when an edit narrows a key's scopes; conservative: it may
    /// say "not covered" for exotic filter pairs that do in fact nest.
    pub fn covered_by(&self, other: &Scope) -> bool {
        let action_ok = match (&other.action, &self.action) {
            (Action::Any, _) => true,
            (Action::Service(s), Action::Service(t)) => s == t,
            (Action::Service(s), Action::Exact(a)) => a.split_once(':').is_some_and(|(svc, _)| svc == s),
            (Action::Exact(a), Action::Exact(b)) => a == b,
            _ => false,
        };
        action_ok
            && match (&other.resource, &self.resource) {
                (Filter::Any, _) => true,
                (Filter::Path(_), Filter::Any) => false,
                (Filter::Path(o), Filter::Path(s)) => filter_covered(s, o),
            }
    }
}

fn path_matches(filter: &[Segment], resource: &str) -> bool {
    let mut parts = resource.split('/');
    for seg in filter {
        match seg {
            Segment::Rest => return true,
            Segment::One => {
                if parts.next().is_none() {
                    return false;
                }
            }
            Segment::Literal(l) => {
                if parts.next() != Some(l.as_str()) {
                    return false;
                }
            }
        }
    }
    parts.next().is_none()
}

/// Is every path matched by `inner` also matched by `outer`?
fn filter_covered(inner: &[Segment], outer: &[Segment]) -> bool {
    match (inner.first(), outer.first()) {
        (_, Some(Segment::Rest)) => true,
        (None, None) => true,
        (Some(Segment::Rest), _) | (None, _) | (_, None) => false,
        (Some(i), Some(o)) => {
            let seg_ok = match (i, o) {
                (_, Segment::One) => true,
                (Segment::Literal(a), Segment::Literal(b)) => a == b,
                _ => false,
            };
            seg_ok && filter_covered(&inner[1..], &outer[1..])
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.action {
            Action::Any => f.write_str("*")?,
            Action::Service(s) => write!(f, "{s}:*")?,
            Action::Exact(a) => f.write_str(a)?,
        }
        if let Filter::Path(segments) = &self.resource {
            f.write_str("@")?;
            for (i, seg) in segments.iter().enumerate() {
                if i > 0 {
                    f.write_str("/")?;
                }
                match seg {
                    Segment::Literal(l) => f.write_str(l)?,
                    Segment::One => f.write_str("*")?,
                    Segment::Rest => f.write_str("**")?,
                }
            }
        }
        Ok(())
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Scope::parse_stored(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (scope, action, resource, granted)
    const CASES: &[(&str, &str, Option<&str>, bool)] = &[
        ("*", "read", None, true),
        ("*", "billing:read_costs", Some("workspaces/ws-1"), true),
        ("*@*", "anything", None, true),
        ("read", "read", None, true),
        ("read", "write", None, false),
        ("read", "billing:read", None, false),
        ("read", "read", Some("workspaces/ws-1"), true),
        ("billing:read_costs", "billing:read_costs", None, true),
        ("billing:read_costs", "billing:write_costs", None, false),
        ("billing:read_costs", "billing:read_costs_extra", None, false),
        ("billing:*", "billing:read_costs", None, true),
        ("billing:*", "billing:anything_new", Some("a/b"), true),
        ("billing:*", "billingx:read", None, false),
        ("billing:*", "read", None, false),
        ("billing:*", "compute:read", None, false),
        ("read@workspaces/ws-1/**", "read", Some("workspaces/ws-1"), true),
        ("read@workspaces/ws-1/**", "read", Some("workspaces/ws-1/reports/q3"), true),
        ("read@workspaces/ws-1/**", "read", Some("workspaces/ws-2/reports"), false),
        ("read@workspaces/ws-1/**", "read", None, false),
        ("read@workspaces/ws-1/**", "write", Some("workspaces/ws-1/x"), false),
        ("read@workspaces/*", "read", Some("workspaces/ws-9"), true),
        ("read@workspaces/*", "read", Some("workspaces"), false),
        ("read@workspaces/*", "read", Some("workspaces/ws-9/reports"), false),
        ("read@workspaces/*/reports", "read", Some("workspaces/ws-3/reports"), true),
        ("read@workspaces/*/reports", "read", Some("workspaces/ws-3/costs"), false),
        ("read@workspaces/ws-1", "read", Some("workspaces/ws-1"), true),
        ("read@workspaces/ws-1", "read", Some("workspaces/ws-1/x"), false),
        ("read@workspaces/ws-1", "read", Some("workspaces/ws-10"), false),
        ("read@**", "read", Some("anything/at/all"), true),
        ("read@**", "read", None, false),
        ("*@projects/p1/**", "deploy", Some("projects/p1/envs/prod"), true),
        ("*@projects/p1/**", "deploy", Some("projects/p2"), false),
        ("billing:*@orgs/*/invoices/**", "billing:export", Some("orgs/o1/invoices/2026/11"), true),
        ("billing:*@orgs/*/invoices/**", "billing:export", Some("orgs/o1/costs"), false),
        ("read@a/b", "read", Some("a/b/"), false),
        ("read@a/b", "read", Some("a"), false),
    ];

    #[test]
    fn the_matcher_table() {
        assert!(CASES.len() >= 30);
        for &(scope, action, resource, want) in CASES {
            let s = Scope::parse(scope).unwrap_or_else(|e| panic!("{scope}: {e}"));
            assert_eq!(s.grants(action, resource), want, "{scope} vs {action} on {resource:?}");
        }
    }

    #[test]
    fn bad_scopes_are_refused() {
        for bad in [
            "",
            "@",
            "read@",
            "read@/a",
            "read@a//b",
            "read@a/**/b",
            "read@ws-*",
            "bill ing:read",
            "billing:",
            ":read",
            "*:read",
            "billing:read:more",
            "read@a b",
            "a@b@c",
            "**",
            "read@ws/../admin",
            "read@ws/./x",
            "read@ws/%2e%2e/x",
            "read@ws/a%20b",
            "read@./**",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    /// Paths that mean something else once a service normalises them are not
    /// resources: a verify naming one is a malformed question.
    #[test]
    fn resources_refuse_what_a_service_would_rewrite() {
        for bad in
            ["ws-1/../ws-2/doc", "ws-1/./doc", "./ws-1", "ws-1/..", "%2e%2e/ws-2", "ws-1/..%2fws-2", "a//b", "a/", "/a"]
        {
            assert!(!is_concrete_resource(bad), "{bad:?}");
        }
        for good in ["workspaces/ws-1/doc", "a.b/c..d/.e", "x"] {
            assert!(is_concrete_resource(good), "{good:?}");
        }
    }

    #[test]
    fn scopes_print_as_they_were_written() {
        for s in ["*", "read", "billing:*", "billing:read_costs", "read@workspaces/ws-1/**", "x@*/a/**"] {
            assert_eq!(Scope::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Scope::parse("read@*").unwrap().to_string(), "read");
    }

    #[test]
    fn coverage_detects_narrowing() {
        let p = |s| Scope::parse(s).unwrap();
        assert!(p("billing:read").covered_by(&p("billing:*")));
        assert!(p("read@ws/1/**").covered_by(&p("read@ws/**")));
        assert!(p("read@ws/1").covered_by(&p("read@ws/*")));
        assert!(!p("read").covered_by(&p("read@ws/**")));
        assert!(!p("billing:*").covered_by(&p("billing:read")));
        assert!(p("anything@x").covered_by(&p("*")));
    }
}
