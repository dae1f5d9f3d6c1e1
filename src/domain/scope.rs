//! Scopes: what a key may do. A scope is `ACTION` or `ACTION@RESOURCE`.
//!
//! - ACTION is `*`, a plain verb (`read`), `service:verb`, `service:*`,
//!   `*:verb` (that verb of every service), or a verb ending in `*` (a
//!   prefix: `billing:read_*`, `*:list*`). Names are `[A-Za-z0-9_.-]+`.
//! - RESOURCE is a `/`-separated filter. A segment `*` matches exactly one
//!   segment; a final `**` matches zero or more; the filter `*` alone (the
//!   default) matches every resource, and only it matches a request that
//!   names no resource.
//!
//! keyreg's own permissions are the actions of its reserved services
//! (`keys`, `audit`, `orgs`, `roles`, `actors`). No wildcard grants one:
//! `*`, `*:verb` and verb prefixes match the org's own services only, and a
//! management permission is granted by naming it (`keys:admin`) or its
//! service (`keys:*`). A scope naming a reserved service names one of its
//! permissions, or the whole service, on every resource.
//!
//! Nothing is granted implicitly: matching is purely syntactic, so an action
//! invented tomorrow is granted only by a wildcard that covers it.
//!
//! (Over 450 lines with its tests: the matcher and coverage tables below
//! are the grammar's specification, kept beside the code they pin down.)

use std::fmt;

use crate::domain::permission::{MANAGEMENT, is_reserved};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    action: Action,
    resource: Filter,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    /// `*`: every plain verb, every action of every service but the reserved.
    Any,
    /// `read`: one plain verb.
    Verb(String),
    /// `service:…`; `service: None` is `*:…`, every service but the reserved.
    Service { service: Option<String>, verb: VerbMatch },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum VerbMatch {
    All,
    Exact(String),
    Prefix(String),
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
        let scope = Scope::parse_with(s, is_literal_segment)?;
        let err = |why| Err(ScopeError { scope: s.chars().take(120).collect(), why });
        if let Action::Service { service: Some(service), verb } = &scope.action
            && is_reserved(service)
        {
            let named = match verb {
                VerbMatch::All => true,
                VerbMatch::Exact(v) => MANAGEMENT.contains(&format!("{service}:{v}").as_str()),
                VerbMatch::Prefix(_) => false,
            };
            if !named {
                return err(
                    "keys, audit, orgs, roles and actors are keyreg's own services: name one of their permissions \
                     (keys:admin, keys:read, audit:read, orgs:create, orgs:admin, roles:admin, actors:assert) or a \
                     whole service (keys:*)",
                );
            }
            if scope.resource != Filter::Any {
                return err("keyreg's own permissions hold on every resource: they take no @resource");
            }
        }
        Ok(scope)
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
        let verb_match = |verb: &str| match verb {
            "*" => Some(VerbMatch::All),
            v if v.ends_with('*') && is_name(&v[..v.len() - 1]) => Some(VerbMatch::Prefix(v[..v.len() - 1].to_owned())),
            v if is_name(v) => Some(VerbMatch::Exact(v.to_owned())),
            _ => None,
        };
        let action = match action.split_once(':') {
            None if action == "*" => Action::Any,
            None if is_name(action) => Action::Verb(action.to_owned()),
            Some((service, verb)) if service == "*" || is_name(service) => match verb_match(verb) {
                Some(verb) => Action::Service { service: (service != "*").then(|| service.to_owned()), verb },
                None => return Err(err(ACTION_FORMS)),
            },
            _ => return Err(err(ACTION_FORMS)),
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

    /// The one action this scope names, when it names one exactly
    /// (`read`, `billing:read`) and it is the org's own: what a catalogue
    /// checks.
    pub fn exact_action(&self) -> Option<String> {
        match &self.action {
            Action::Verb(v) => Some(v.clone()),
            Action::Service { service: Some(s), verb: VerbMatch::Exact(v) } if !is_reserved(s) => {
                Some(format!("{s}:{v}"))
            }
            _ => None,
        }
    }

    /// Does this scope grant `action` on `resource` (`None`: no resource named)?
    pub fn grants(&self, action: &str, resource: Option<&str>) -> bool {
        let action_ok = match (&self.action, action.split_once(':')) {
            (Action::Any, None) => true,
            (Action::Any, Some((service, _))) => !is_reserved(service),
            (Action::Verb(v), None) => v == action,
            (Action::Verb(_), Some(_)) | (Action::Service { .. }, None) => false,
            (Action::Service { service, verb }, Some((s, v))) => {
                let service_ok = match service {
                    None => !is_reserved(s),
                    Some(named) => named == s,
                };
                let verb_ok = match verb {
                    VerbMatch::All => true,
                    VerbMatch::Exact(e) => e == v,
                    // Reserved permissions are granted by name or by service only.
                    VerbMatch::Prefix(p) => v.starts_with(p.as_str()) && !is_reserved(s),
                };
                service_ok && verb_ok
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
        let reserved = |service: &Option<String>| service.as_deref().is_some_and(is_reserved);
        let action_ok = match (&other.action, &self.action) {
            (Action::Any, Action::Service { service, .. }) => !reserved(service),
            (Action::Any, _) => true,
            (Action::Verb(o), Action::Verb(s)) => o == s,
            (Action::Service { service: os, verb: ov }, Action::Service { service: ss, verb: sv }) => {
                let service_ok = match (os, ss) {
                    (None, _) => !reserved(ss),
                    (Some(o), Some(s)) => o == s,
                    (Some(_), None) => false,
                };
                let verb_ok = match (ov, sv) {
                    (VerbMatch::All, _) => true,
                    (VerbMatch::Prefix(o), VerbMatch::Exact(s) | VerbMatch::Prefix(s)) => s.starts_with(o.as_str()),
                    (VerbMatch::Exact(o), VerbMatch::Exact(s)) => o == s,
                    _ => false,
                };
                service_ok && verb_ok
            }
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

const ACTION_FORMS: &str =
    "the action must be *, verb, service:verb, service:*, *:verb, or a verb ending in * (service:read_*)";

/// Whether the filter matches the resource. A resource the verify rules
/// refuse (`.`, `..`, an empty segment, `%`, a wildcard) matches nothing,
/// whoever asks: `ws-1/../ws-2` is not under `ws-1/**`.
fn path_matches(filter: &[Segment], resource: &str) -> bool {
    if !is_concrete_resource(resource) {
        return false;
    }
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
            Action::Verb(v) => f.write_str(v)?,
            Action::Service { service, verb } => {
                f.write_str(service.as_deref().unwrap_or("*"))?;
                match verb {
                    VerbMatch::All => f.write_str(":*")?,
                    VerbMatch::Exact(v) => write!(f, ":{v}")?,
                    VerbMatch::Prefix(p) => write!(f, ":{p}*")?,
                }
            }
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
        ("*:read", "billing:read", None, true),
        ("*:read", "compute:read", Some("vms/1"), true),
        ("*:read", "billing:read_costs", None, false),
        ("*:read", "read", None, false),
        ("billing:read_*", "billing:read_costs", None, true),
        ("billing:read_*", "billing:read_", None, true),
        ("billing:read_*", "billing:read", None, false),
        ("billing:read_*", "compute:read_costs", None, false),
        ("*:list*", "compute:list_vms", None, true),
        ("*:list*", "billing:list", None, true),
        ("*:list*", "list", None, false),
        ("*:*", "billing:anything", None, true),
        ("*:*", "read", None, false),
        // keyreg's own permissions: never through a wildcard.
        ("*", "keys:admin", None, false),
        ("*", "audit:read", None, false),
        ("*", "orgs:create", None, false),
        ("*:admin", "keys:admin", None, false),
        ("*:read", "audit:read", None, false),
        ("*:read*", "keys:read", None, false),
        ("*:*", "roles:admin", None, false),
        ("keys:*", "keys:admin", None, true),
        ("keys:*", "keys:read", None, true),
        ("keys:*", "audit:read", None, false),
        ("keys:admin", "keys:admin", None, true),
        ("keys:admin", "keys:read", None, false),
        ("audit:read", "audit:read", None, true),
        ("actors:assert", "actors:assert", None, true),
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
            "billing:read:more",
            "read*",
            "billing:*_read",
            "bill*:read",
            "billing:**",
            "keys:frobnicate",
            "keys:ad*",
            "audit:*@workspaces/**",
            "keys:admin@ws/1",
            "orgs:delete",
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
        // Whoever asks, through whatever entry point: no match.
        let ws1 = Scope::parse("read@ws-1/**").unwrap();
        assert!(ws1.grants("read", Some("ws-1/doc")));
        for bad in ["ws-1/../ws-2/doc", "ws-1/./doc", "ws-1//doc", "ws-1/%2e%2e/ws-2", "ws-1/*"] {
            assert!(!ws1.grants("read", Some(bad)), "{bad:?}");
        }
    }

    #[test]
    fn scopes_print_as_they_were_written() {
        for s in [
            "*",
            "read",
            "billing:*",
            "billing:read_costs",
            "read@workspaces/ws-1/**",
            "x@*/a/**",
            "*:read",
            "*:list*",
            "billing:read_*",
            "*:*",
            "keys:*",
            "audit:read",
        ] {
            assert_eq!(Scope::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Scope::parse("read@*").unwrap().to_string(), "read");
    }

    #[test]
    fn coverage_detects_narrowing() {
        let p = |s| Scope::parse(s).unwrap();
        // (inner, outer, covered)
        let cases = [
            ("billing:read", "billing:*", true),
            ("read@ws/1/**", "read@ws/**", true),
            ("read@ws/1", "read@ws/*", true),
            ("read", "read@ws/**", false),
            ("billing:*", "billing:read", false),
            ("anything@x", "*", true),
            ("billing:read", "*:read", true),
            ("*:read", "*:read*", true),
            ("*:read*", "*:read", false),
            ("billing:read_costs", "billing:read_*", true),
            ("billing:read_*", "billing:read*", true),
            ("billing:read*", "billing:read_*", false),
            ("billing:read_*", "*:read*", true),
            ("*:read*", "billing:*", false),
            ("billing:*", "*:*", true),
            ("*:*", "*", true),
            ("*", "*:*", false),
            ("read", "*:*", false),
            ("keys:admin", "*", false),
            ("keys:admin", "*:*", false),
            ("keys:admin", "keys:*", true),
            ("keys:*", "keys:*", true),
            ("keys:read", "keys:admin", false),
        ];
        for (inner, outer, want) in cases {
            assert_eq!(p(inner).covered_by(&p(outer)), want, "{inner} within {outer}");
        }
        // Exact against the matcher: whatever the inner grants, the outer grants.
        let actions = ["read", "billing:read", "billing:read_costs", "compute:list_vms", "keys:admin", "audit:read"];
        for (inner, outer, want) in cases {
            if want {
                for a in actions {
                    assert!(!p(inner).grants(a, None) || p(outer).grants(a, None), "{inner} within {outer} on {a}");
                }
            }
        }
    }
}
