//! Usage routes: a key's and an organization's verifications, by outcome
//! and by day, over a range of days, and the org's busiest keys.
//!
//! Usage is kept per UTC day (`domain::table::Usage`), so a range is whole
//! days: `days=N` (the last N, today included, by the node's clock) or
//! `from`/`to` dates, both ends included. No range: all of it.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize, Serializer};

use super::{ApiError, AppState, Caller, Params, json, no_such_key, parse_key_id};
use crate::domain::id::KeyId;
use crate::domain::permission::Permission;
use crate::domain::table::{Key, Usage};
use crate::domain::time::{Timestamp, parse_day};
use crate::domain::verifier::Code;

/// The longest range `days` may ask for: ten years.
const MAX_DAYS: i64 = 3_660;
/// How many keys `top_keys` lists.
const TOP: usize = 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    days: Option<i64>,
    from: Option<String>,
    to: Option<String>,
}

/// Whole UTC days, as days since the epoch, both ends included.
#[derive(Clone, Copy)]
struct Range {
    from: Option<i64>,
    to: Option<i64>,
}

impl RangeQuery {
    fn range(&self, today: i64) -> Result<Range, ApiError> {
        let date = |field: &'static str, text: &str| {
            parse_day(text).ok_or_else(|| ApiError::InvalidField {
                field,
                detail: format!("{field} must be a date, e.g. 2026-11-22"),
            })
        };
        let range = match (self.days, &self.from, &self.to) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(ApiError::Validation("give either days or from/to, not both".into()));
            }
            (Some(n), None, None) if (1..=MAX_DAYS).contains(&n) => {
                Range { from: Some(today - n + 1), to: Some(today) }
            }
            (Some(_), None, None) => {
                return Err(ApiError::InvalidField { field: "days", detail: format!("days must be 1 to {MAX_DAYS}") });
            }
            (None, from, to) => Range {
                from: from.as_deref().map(|f| date("from", f)).transpose()?,
                to: to.as_deref().map(|t| date("to", t)).transpose()?,
            },
        };
        if let (Some(from), Some(to)) = (range.from, range.to)
            && from > to
        {
            return Err(ApiError::Validation("from must not be after to".into()));
        }
        Ok(range)
    }
}

/// Counts by outcome, in `Code`'s order; reports from before outcomes
/// were recorded come last, as `UNRECORDED`.
#[derive(Default)]
struct Outcomes(BTreeMap<Option<Code>, u64>);

impl Outcomes {
    fn add(&mut self, outcome: Option<Code>, n: u64) {
        let count = self.0.entry(outcome).or_default();
        *count = count.saturating_add(n);
    }

    fn total(&self) -> u64 {
        self.0.values().fold(0, |sum, n| sum.saturating_add(*n))
    }
}

impl Serialize for Outcomes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let known = self.0.iter().filter_map(|(c, n)| c.map(|c| (c.as_str(), n)));
        let unrecorded = self.0.get(&None).map(|n| ("UNRECORDED", n));
        s.collect_map(known.chain(unrecorded))
    }
}

#[derive(Serialize)]
struct Day {
    date: String,
    count: u64,
    outcomes: Outcomes,
}

#[derive(Serialize)]
struct TopKey<'a> {
    key_id: KeyId,
    name: &'a str,
    total: u64,
    outcomes: Outcomes,
}

#[derive(Serialize)]
pub(super) struct UsageView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<KeyId>,
    from: Option<String>,
    to: Option<String>,
    total: u64,
    outcomes: Outcomes,
    last_used_at: Option<Timestamp>,
    per_day: Vec<Day>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_keys: Option<Vec<TopKey<'a>>>,
}

fn days(usage: &Usage, range: Range) -> impl Iterator<Item = (i64, Option<Code>, u64)> + '_ {
    usage.days(range.from.unwrap_or(i64::MIN), range.to.unwrap_or(i64::MAX))
}

/// A usage's outcomes within the range.
fn outcomes(usage: &Usage, range: Range) -> Outcomes {
    let mut all = Outcomes::default();
    for (_, outcome, n) in days(usage, range) {
        all.add(outcome, n);
    }
    all
}

impl<'a> UsageView<'a> {
    /// All of a usage, as an org's own page shows it.
    pub(super) fn all_time(usage: &Usage) -> Self {
        Self::of(usage, Range { from: None, to: None }, None)
    }

    fn of(usage: &Usage, range: Range, key_id: Option<KeyId>) -> Self {
        let mut by_day: BTreeMap<i64, Outcomes> = BTreeMap::new();
        for (day, outcome, n) in days(usage, range) {
            by_day.entry(day).or_default().add(outcome, n);
        }
        let per_day = by_day
            .into_iter()
            .map(|(day, outcomes)| Day { date: Timestamp::from_day(day).date(), count: outcomes.total(), outcomes })
            .collect();
        let outcomes = outcomes(usage, range);
        UsageView {
            key_id,
            from: range.from.map(|d| Timestamp::from_day(d).date()),
            to: range.to.map(|d| Timestamp::from_day(d).date()),
            total: outcomes.total(),
            outcomes,
            last_used_at: usage.last_used_at,
            per_day,
            top_keys: None,
        }
    }
}

/// The org's keys with the most verifications in the range, most first.
fn top_keys<'a>(keys: impl Iterator<Item = &'a Key>, range: Range) -> Vec<TopKey<'a>> {
    let mut top: Vec<TopKey> = keys
        .filter_map(|k| {
            let outcomes = outcomes(k.usage(), range);
            let total = outcomes.total();
            (total > 0).then(|| TopKey { key_id: k.id, name: k.name(), total, outcomes })
        })
        .collect();
    top.sort_by(|a, b| b.total.cmp(&a.total).then(a.key_id.cmp(&b.key_id)));
    top.truncate(TOP);
    top
}

pub async fn key_usage(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(q): Params<RangeQuery>,
) -> Result<Response, ApiError> {
    caller.require(Permission::KeysRead)?;
    let id = parse_key_id(&id)?;
    let range = q.range(s.registry.now().day())?;
    let p = s.registry.read();
    let key = p.table.key_in(&caller.org, &id).ok_or_else(|| no_such_key(id.as_str()))?;
    Ok(json(StatusCode::OK, &UsageView::of(key.usage(), range, Some(id))))
}

pub async fn org_usage(
    State(s): State<AppState>,
    caller: Caller,
    Params(q): Params<RangeQuery>,
) -> Result<Response, ApiError> {
    caller.require(Permission::KeysRead)?;
    let range = q.range(s.registry.now().day())?;
    let p = s.registry.read();
    let org = p.table.org(&caller.org).ok_or_else(|| ApiError::NotFound("the organization is gone".into()))?;
    let mut view = UsageView::of(&org.usage, range, None);
    view.top_keys = Some(top_keys(p.table.keys_of(&caller.org, None), range));
    Ok(json(StatusCode::OK, &view))
}
