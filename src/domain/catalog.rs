//! An org's catalogue of actions: the list of what its services can do,
//! with a description each. With `enforce`, a key or role may name an exact
//! action only if the catalogue lists it, so a typo is refused with the
//! closest real actions instead of being stored as a scope that never
//! matches. Wildcards are not checked: they are how an action added later
//! reaches a key, and adding one grants it to no key otherwise.
//!
//! Everything here is bounded, because a tenant controls it and it runs
//! inside `decide`: an action is at most `MAX_ACTION_CHARS`, a catalogue at
//! most `MAX_CATALOG_BYTES` once encoded (so its event fits in a NATS
//! message), and the close-match search spends at most `SUGGESTION_BUDGET`
//! steps, looking only at actions whose length could be close enough.

use std::collections::HashSet;

use crate::domain::command::Refusal;
use crate::domain::event::{Catalog, CatalogAction};
use crate::domain::permission::is_reserved;
use crate::domain::scope::Scope;
use crate::domain::validate::{MAX_DESCRIPTION, check_text, invalid};

/// The most actions a catalogue lists.
pub const MAX_ACTIONS: usize = 10_000;
/// The longest action a catalogue lists.
pub const MAX_ACTION_CHARS: usize = 128;
/// The most a catalogue may weigh as JSON (its event, with the envelope,
/// stays well under NATS's default 1 MiB message).
pub const MAX_CATALOG_BYTES: usize = 512 * 1024;
/// Edit-distance cells the close-match search may fill for one refusal:
/// a few milliseconds, however large the catalogue.
const SUGGESTION_BUDGET: usize = 2_000_000;

/// A catalogue as given, checked: exact actions of the org's own services,
/// each once, each description plain text.
pub(crate) fn check(catalog: &Catalog) -> Result<Catalog, Refusal> {
    if catalog.actions.len() > MAX_ACTIONS {
        return Err(invalid("actions", format!("a catalogue lists at most {MAX_ACTIONS} actions")));
    }
    let mut seen = HashSet::with_capacity(catalog.actions.len());
    let mut actions = Vec::with_capacity(catalog.actions.len());
    for entry in &catalog.actions {
        let action = &entry.action;
        if action.chars().count() > MAX_ACTION_CHARS {
            return Err(invalid(
                "actions",
                format!(
                    "{}…: an action is at most {MAX_ACTION_CHARS} characters",
                    action.chars().take(40).collect::<String>()
                ),
            ));
        }
        if action.split_once(':').is_some_and(|(service, _)| is_reserved(service)) {
            return Err(invalid(
                "actions",
                format!("{action}: keys, audit, orgs, roles and actors are keyreg's own services, not the org's"),
            ));
        }
        let exact = Scope::parse(action).ok().and_then(|s| s.exact_action());
        if exact.as_deref() != Some(action) {
            return Err(invalid(
                "actions",
                format!(
                    "{:?} is not an exact action: name one verb or service:verb, without wildcards or @resource",
                    action.chars().take(120).collect::<String>()
                ),
            ));
        }
        if !seen.insert(action.as_str()) {
            return Err(invalid("actions", format!("{action} is listed twice")));
        }
        let description = check_text("actions.description", &entry.description, MAX_DESCRIPTION)?;
        actions.push(CatalogAction { action: action.clone(), description });
    }
    let checked = Catalog { actions, enforce: catalog.enforce };
    let bytes = serde_json::to_vec(&checked).map_or(usize::MAX, |b| b.len());
    if bytes > MAX_CATALOG_BYTES {
        return Err(invalid(
            "actions",
            format!(
                "the catalogue is {bytes} bytes as JSON; at most {MAX_CATALOG_BYTES} (shorten the descriptions, or list fewer actions)"
            ),
        ));
    }
    Ok(checked)
}

/// Refuses the first of `scopes` that names an exact action the enforced
/// catalogue does not list (a built-in preset's scopes excepted).
pub(crate) fn check_known<'a>(
    catalog: Option<&Catalog>,
    scopes: impl IntoIterator<Item = &'a Scope>,
) -> Result<(), Refusal> {
    let Some(catalog) = catalog.filter(|c| c.enforce) else { return Ok(()) };
    for scope in scopes {
        if let Some(action) = scope.exact_action()
            && !crate::domain::preset::grants_by_preset(scope)
            && !catalog.actions.iter().any(|a| a.action == action)
        {
            let suggestions = close_matches(&action, catalog);
            return Err(Refusal::UnknownAction { action, suggestions });
        }
    }
    Ok(())
}

/// Up to three listed actions nearest to `action`, nearest first: the ones
/// a typo (a letter swapped, missing, doubled or wrong) most likely meant.
/// An action whose length differs by more than the limit cannot be within
/// it, so only the others are measured, until the budget is spent.
fn close_matches(action: &str, catalog: &Catalog) -> Vec<String> {
    let action: Vec<char> = action.chars().take(MAX_ACTION_CHARS + 1).collect();
    let limit = (action.len() / 4).max(2);
    let mut budget = SUGGESTION_BUDGET;
    let mut near: Vec<(usize, &str)> = vec![];
    for listed in &catalog.actions {
        let candidate: Vec<char> = listed.action.chars().collect();
        if candidate.len().abs_diff(action.len()) > limit {
            continue;
        }
        let cells = (action.len() + 1) * (candidate.len() + 1);
        let Some(left) = budget.checked_sub(cells) else { break };
        budget = left;
        let d = distance(&action, &candidate);
        if d <= limit {
            near.push((d, listed.action.as_str()));
        }
    }
    near.sort();
    near.into_iter().take(3).map(|(_, a)| a.to_owned()).collect()
}

/// The edit distance between two strings where swapping two neighbouring
/// characters counts as one edit (optimal string alignment).
fn distance(a: &[char], b: &[char]) -> usize {
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            d[i * width + j] = match (i, j) {
                (0, j) => j,
                (i, 0) => i,
                _ => {
                    let cost = usize::from(a[i - 1] != b[j - 1]);
                    let mut best = (d[(i - 1) * width + j] + 1)
                        .min(d[i * width + j - 1] + 1)
                        .min(d[(i - 1) * width + j - 1] + cost);
                    if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                        best = best.min(d[(i - 2) * width + j - 2] + 1);
                    }
                    best
                }
            };
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(actions: &[&str], enforce: bool) -> Catalog {
        Catalog {
            actions: actions
                .iter()
                .map(|a| CatalogAction { action: (*a).to_owned(), description: String::new() })
                .collect(),
            enforce,
        }
    }

    fn distance(a: &str, b: &str) -> usize {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        super::distance(&a, &b)
    }

    #[test]
    fn distances_count_swaps_as_one_edit() {
        assert_eq!(distance("read", "read"), 0);
        assert_eq!(distance("raed", "read"), 1);
        assert_eq!(distance("insihgts:raed_insights", "insights:read_insights"), 2);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn a_catalogue_is_bounded_in_action_length_and_in_bytes() {
        assert!(check(&catalog(&[&format!("svc:{}", "a".repeat(MAX_ACTION_CHARS - 4))], true)).is_ok());
        assert!(check(&catalog(&[&format!("svc:{}", "a".repeat(MAX_ACTION_CHARS))], true)).is_err());
        let described = Catalog {
            actions: (0..1000)
                .map(|i| CatalogAction { action: format!("svc:a{i}"), description: "d".repeat(MAX_DESCRIPTION) })
                .collect(),
            enforce: true,
        };
        let refused = check(&described).unwrap_err().to_string();
        assert!(refused.contains(&MAX_CATALOG_BYTES.to_string()), "{refused}");
    }

    #[test]
    fn close_matches_cost_a_bounded_amount_of_work() {
        // The worst a tenant can ask: the longest actions, as many as
        // allowed, all of the same length as the typo. The budget stops the
        // search (the count of cells filled is what bounds the time).
        let long: Vec<String> = (0..MAX_ACTIONS).map(|i| format!("svc:{i:0>124}")).collect();
        let c = catalog(&long.iter().map(String::as_str).collect::<Vec<_>>(), true);
        let typo = Scope::parse(&format!("svc:{:x>124}", 1)).unwrap();
        assert!(matches!(check_known(Some(&c), [&typo]), Err(Refusal::UnknownAction { .. })));
        let cells_per_candidate = (MAX_ACTION_CHARS + 1) * (MAX_ACTION_CHARS + 1);
        assert!(
            SUGGESTION_BUDGET / cells_per_candidate < MAX_ACTIONS,
            "the budget must bind before the catalogue ends"
        );
    }

    #[test]
    fn a_typo_is_refused_with_the_nearest_actions() {
        let c = catalog(
            &["insights:read_insights", "insights:write_insights", "insights:read_reports", "billing:read", "read"],
            true,
        );
        let typo = Scope::parse("insihgts:raed_insights").unwrap();
        let Err(Refusal::UnknownAction { action, suggestions }) = check_known(Some(&c), [&typo]) else {
            panic!("a typo passed the catalogue")
        };
        assert_eq!(action, "insihgts:raed_insights");
        assert_eq!(suggestions[0], "insights:read_insights");
        assert!(suggestions.len() <= 3);
        for ok in ["insights:read_insights", "read", "insights:*", "*", "*:read*", "keys:admin", "billing:read@a/b"] {
            check_known(Some(&c), [&Scope::parse(ok).unwrap()]).unwrap();
        }
        let far = Scope::parse("compute:start").unwrap();
        assert!(
            matches!(check_known(Some(&c), [&far]), Err(Refusal::UnknownAction { suggestions, .. }) if suggestions.is_empty())
        );
        assert!(check_known(Some(&catalog(&[], false)), [&typo]).is_ok(), "a catalogue not enforced refuses nothing");
        let presets = crate::domain::preset::find("read-only").unwrap().scopes();
        assert!(
            check_known(Some(&catalog(&["billing:read"], true)), &presets).is_ok(),
            "a built-in preset works with any catalogue"
        );
        assert!(check_known(None, [&typo]).is_ok());
    }

    #[test]
    fn catalogues_hold_exact_actions_of_the_orgs_own_services() {
        assert!(check(&catalog(&["billing:read", "read", "a.b-c:d_e"], true)).is_ok());
        for bad in ["keys:admin", "audit:read", "roles:x", "billing:*", "*", "billing:read@ws/1", "bill ing:x", "a:b:c"]
        {
            assert!(check(&catalog(&[bad], true)).is_err(), "{bad}");
        }
        assert!(check(&catalog(&["read", "read"], false)).is_err());
        let many: Vec<String> = (0..=MAX_ACTIONS).map(|i| format!("svc:a{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(check(&catalog(&many, true)).is_err());
        assert!(check(&catalog(&many[..MAX_ACTIONS], true)).is_ok());
    }
}
