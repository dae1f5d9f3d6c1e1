//! Presets: built-in templates of scopes, the "All / Read only /
//! Restricted" choice of a key form. A preset is expanded when a key is
//! created or edited, and the event records the scopes it expanded to, so
//! a later change to a preset never changes a key.

use serde::Serialize;

use crate::domain::command::Refusal;
use crate::domain::scope::Scope;
use crate::domain::validate::invalid;

#[derive(Debug, Serialize)]
pub struct Preset {
    pub name: &'static str,
    pub description: &'static str,
    pub scopes: &'static [&'static str],
}

/// Every preset, in the order a form offers them.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "full-access",
        description: "every action of the organization's own services (never keyreg's own permissions)",
        scopes: &["*"],
    },
    Preset {
        name: "read-only",
        description: "the reading verbs of every service (read, list, get, query and their variants)",
        scopes: &["*:read*", "*:list*", "*:get*", "*:query*", "read"],
    },
    Preset { name: "restricted", description: "nothing until chosen: add scopes or roles beside it", scopes: &[] },
];

/// Whether `scope` is one a built-in preset grants. A preset works with
/// any catalogue: its scopes are the conventional verbs, never actions an
/// organization must list, so an enforced catalogue does not refuse them.
pub fn grants_by_preset(scope: &Scope) -> bool {
    let scope = scope.to_string();
    PRESETS.iter().any(|p| p.scopes.contains(&scope.as_str()))
}

/// The preset named `name`.
pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

impl Preset {
    pub fn scopes(&self) -> Vec<Scope> {
        self.scopes.iter().filter_map(|s| Scope::parse(s).ok()).collect()
    }
}

/// The scopes a create or an edit asks for: the preset's, expanded, then
/// `scopes` after them (each once). Without a preset, `scopes` as given
/// (`None`: an edit that keeps the key's scopes).
pub fn expand(preset: Option<&str>, scopes: Option<Vec<Scope>>) -> Result<Option<Vec<Scope>>, Refusal> {
    let Some(name) = preset else { return Ok(scopes) };
    let preset = find(name).ok_or_else(|| {
        let known: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        invalid("preset", format!("there is no preset {name:?}; the presets are {}", known.join(", ")))
    })?;
    let mut asked = preset.scopes();
    for scope in scopes.unwrap_or_default() {
        if !asked.contains(&scope) {
            asked.push(scope);
        }
    }
    Ok(Some(asked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_and_grants_what_its_name_says() {
        for p in PRESETS {
            assert_eq!(p.scopes().len(), p.scopes.len(), "{}", p.name);
        }
        let grants = |name: &str, action: &str| find(name).unwrap().scopes().iter().any(|s| s.grants(action, None));
        assert!(grants("full-access", "billing:delete") && !grants("full-access", "keys:admin"));
        assert!(grants("read-only", "billing:read_costs") && grants("read-only", "compute:list_vms"));
        assert!(grants("read-only", "read") && !grants("read-only", "billing:write"));
        assert!(!grants("read-only", "audit:read"));
        assert!(find("restricted").unwrap().scopes().is_empty() && find("admin").is_none());
    }

    #[test]
    fn a_preset_expands_before_the_scopes_given_beside_it() {
        let read = Scope::parse("read").unwrap();
        let billing = Scope::parse("billing:read").unwrap();
        let both = expand(Some("read-only"), Some(vec![billing.clone(), read.clone()])).unwrap().unwrap();
        assert_eq!(both.len(), 6, "{both:?}");
        assert_eq!(both.last(), Some(&billing));
        assert_eq!(expand(Some("restricted"), Some(vec![read.clone()])).unwrap(), Some(vec![read.clone()]));
        assert_eq!(expand(None, None).unwrap(), None, "an edit keeping its scopes");
        let refused = expand(Some("admin"), None).unwrap_err().to_string();
        assert!(refused.starts_with("preset:") && refused.contains("full-access, read-only, restricted"), "{refused}");
    }
}
