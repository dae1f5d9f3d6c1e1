//! The usage section of the key and organization pages: verifications by
//! outcome over days the user picks (the last 7, 30 or 90, or any dates),
//! per day as a chart of valid and other verifications, with the same in
//! a table for screen readers; on the organization page, the busiest keys.
//!
//! The range goes to the API as it is (`days`, `from`, `to`), so the
//! console shows exactly what `GET …/usage` answers, refusals included.

use axum::http::Method;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::Page;
use super::page::{given, plural, text, when};
use crate::domain::time::{Timestamp, parse_day};
use crate::domain::verifier::Code;
use crate::http::route;

/// The ranges offered as links, in days; a page asked for no range shows
/// `DEFAULT_DAYS`.
const PRESETS: [u32; 3] = [7, 30, 90];
const DEFAULT_DAYS: &str = "30";
/// The most days the chart draws; a longer range is charted by its last
/// days and counted in full.
const CHART_DAYS: i64 = 366;

#[derive(Deserialize, Default)]
pub struct RangeParams {
    days: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

impl RangeParams {
    fn pairs(&self) -> [(&'static str, Option<&str>); 3] {
        let (from, to) = (given(&self.from), given(&self.to));
        let days = given(&self.days).or(if from.is_none() && to.is_none() { Some(DEFAULT_DAYS) } else { None });
        [("days", days), ("from", from), ("to", to)]
    }
}

/// The usage section for `path` (a key's or the org's usage route) over
/// the range in `params`, linking back to `here` to change it.
pub async fn section(page: &Page, path: &str, here: &str, params: &RangeParams) -> Markup {
    let pairs = params.pairs();
    let answer = page.api(Method::GET, &route::query(path, pairs), None).await.ok();
    let now = page.now();
    html! {
        section aria-labelledby="usage-title" {
            h2 id="usage-title" { "Usage" }
            (range_picker(here, params, &pairs))
            @match &answer {
                Err(refused) => div.notice.error role="alert" { (refused.sentence()) },
                Ok(usage) => {
                    (summary(usage, now))
                    (chart(usage, now))
                    @if let Some(top) = usage["top_keys"].as_array() {
                        (busiest(top))
                    }
                }
            }
        }
    }
}

fn range_picker(here: &str, params: &RangeParams, pairs: &[(&str, Option<&str>); 3]) -> Markup {
    let days = pairs[0].1;
    html! {
        nav.range aria-label="Days shown" {
            ul.inline {
                @for n in PRESETS {
                    @let n = n.to_string();
                    li {
                        @if days == Some(n.as_str()) {
                            a href=(format!("{here}?days={n}#usage-title")) aria-current="true" { "Last " (n) " days" }
                        } @else {
                            a href=(format!("{here}?days={n}#usage-title")) { "Last " (n) " days" }
                        }
                    }
                }
            }
            form.range method="get" action=(format!("{here}#usage-title")) {
                label { "From " input type="date" name="from" value=(given(&params.from).unwrap_or("")); }
                label { "to " input type="date" name="to" value=(given(&params.to).unwrap_or("")); }
                button type="submit" { "Show these days" }
            }
        }
    }
}

/// Outcome counts, most first, in words: `[("valid", 7), ("refused: action", 1)]`.
fn outcomes(v: &Value) -> Vec<(&'static str, u64)> {
    let mut counts: Vec<(&str, u64)> =
        v.as_object().into_iter().flatten().map(|(name, n)| (Code::words_of(name), n.as_u64().unwrap_or(0))).collect();
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
}

fn outcome_list(v: &Value) -> Markup {
    html! {
        ul.inline.outcomes {
            @for (words, n) in outcomes(v) {
                li { strong { (n) } " " (words) }
            }
        }
    }
}

fn summary(usage: &Value, now: Timestamp) -> Markup {
    let total = usage["total"].as_u64().unwrap_or(0);
    let range = match (usage["from"].as_str(), usage["to"].as_str()) {
        (Some(f), Some(t)) if f == t => format!("on {f}"),
        (Some(f), Some(t)) => format!("from {f} to {t}"),
        (Some(f), None) => format!("since {f}"),
        (None, Some(t)) => format!("until {t}"),
        (None, None) => "in all".to_owned(),
    };
    html! {
        p.usage-total { strong { (plural(total as usize, "verification")) } " " (range) " (UTC days). Last used: " (when(&usage["last_used_at"], now, "never")) "." }
        @if total > 0 { (outcome_list(&usage["outcomes"])) }
    }
}

/// The days of the answer's range, oldest first, at most `CHART_DAYS`.
fn dates(usage: &Value, now: Timestamp) -> Vec<String> {
    let day = |field: &str| usage[field].as_str().and_then(parse_day);
    let last = day("to").unwrap_or(now.day());
    let first = day("from").unwrap_or(last - 29).max(last - CHART_DAYS + 1);
    (first..=last).map(|d| Timestamp::from_day(d).date()).collect()
}

/// Valid verifications per day and, stacked on them, all others (refused,
/// expired, or from before outcomes were recorded), as bars: an SVG
/// drawn here, with a text equivalent for screen readers.
fn chart(usage: &Value, now: Timestamp) -> Markup {
    let by_date: std::collections::HashMap<&str, (u64, u64)> = usage["per_day"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| {
            let count = d["count"].as_u64()?;
            let valid = d["outcomes"]["VALID"].as_u64().unwrap_or(0).min(count);
            Some((d["date"].as_str()?, (valid, count - valid)))
        })
        .collect();
    let dates = dates(usage, now);
    let values: Vec<(u64, u64)> = dates.iter().map(|d| by_date.get(d.as_str()).copied().unwrap_or((0, 0))).collect();
    let busiest = values.iter().map(|(v, r)| v + r).max().unwrap_or(0);
    let max = busiest.max(1) as f64;
    let (step, height) = (12_i64, 80_i64);
    let width = dates.len() as i64 * step;
    let (first, last) = (dates.first().map_or("", String::as_str), dates.last().map_or("", String::as_str));
    let caption = match busiest {
        0 => "no verifications".to_owned(),
        b => format!("the busiest day {}", plural(b as usize, "verification")),
    };
    let label = format!("Verifications per day from {first} to {last}, valid and other: {caption}");
    let px = |n: u64| (n as f64 / max * height as f64).round() as i64;
    html! {
        figure.chart {
            div.plot {
                div.yaxis aria-hidden="true" { span { @if busiest > 0 { (busiest) } } span { "0" } }
                svg viewBox=(format!("0 0 {width} {}", height + 2)) role="img" aria-label=(label) preserveAspectRatio="none" {
                    line x1="0" y1=(height) x2=(width) y2=(height) class="axis" {}
                    @for (i, (date, (valid, refused))) in dates.iter().zip(&values).enumerate() {
                        @let (hv, hr) = (px(*valid).max((*valid > 0) as i64), px(*refused).max((*refused > 0) as i64));
                        @let x = i as i64 * step + 1;
                        @if *valid > 0 {
                            rect class="bar" x=(x) y=(height - hv) width="10" height=(hv) { title { (date) ": " (valid) " valid" } }
                        }
                        @if *refused > 0 {
                            rect class="bar refused" x=(x) y=(height - hv - hr) width="10" height=(hr) { title { (date) ": " (refused) " other" } }
                        }
                    }
                }
            }
            div.xaxis aria-hidden="true" { span { (first) } span { (last) } }
            figcaption {
                span.legend.valid { "valid" } " " span.legend.refused { "other outcomes (refused, expired, revoked…)" } " — " (caption)
            }
            @if busiest > 0 {
                details.as-table {
                    summary { "The days with use, as a table" }
                    table {
                        thead { tr { th scope="col" { "Day (UTC)" } th scope="col" { "Verifications" } th scope="col" { "By outcome" } } }
                        tbody {
                            @for day in usage["per_day"].as_array().into_iter().flatten() {
                                tr { td { (text(&day["date"])) } td { (day["count"].as_u64().unwrap_or(0)) } td { (outcome_list(&day["outcomes"])) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn busiest(top: &[Value]) -> Markup {
    html! {
        h3 { "Busiest keys" }
        @if top.is_empty() {
            p.muted { "No key was verified on these days." }
        } @else {
            table.busiest {
                thead { tr { th scope="col" { "Key" } th scope="col" { "Verifications" } th scope="col" { "By outcome" } } }
                tbody {
                    @for k in top {
                        tr {
                            td { a href=(format!("/console/keys/{}", text(&k["key_id"]))) { (text(&k["name"])) } }
                            td { (k["total"].as_u64().unwrap_or(0)) }
                            td { (outcome_list(&k["outcomes"])) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_chart_stacks_refused_on_valid_and_says_its_busiest_day() {
        let now = Timestamp::parse("2026-11-24T12:00:00Z").unwrap();
        let usage = json!({"from": "2026-11-18", "to": "2026-11-24", "per_day": [
            {"date": "2026-11-24", "count": 4, "outcomes": {"VALID": 3, "FORBIDDEN_SCOPE": 1}},
            {"date": "2026-11-20", "count": 2, "outcomes": {"UNRECORDED": 2}}]});
        let svg = chart(&usage, now).into_string();
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        assert!(svg.contains("2026-11-24: 1 other") && svg.contains("2026-11-20: 2 other"), "{svg}");
        assert!(svg.contains("the busiest day 4 verifications"), "{svg}");
        assert!(svg.contains("2026-11-18") && svg.contains("viewBox=\"0 0 84 82\""), "{svg}");
        let none = json!({"from": "2026-11-24", "to": "2026-11-24", "per_day": []});
        assert!(chart(&none, now).into_string().contains("no verifications"));
    }

    #[test]
    fn a_long_range_is_charted_by_its_last_days() {
        let now = Timestamp::parse("2026-11-24T12:00:00Z").unwrap();
        let dates = dates(&json!({"from": "2020-01-01", "to": "2026-11-24"}), now);
        assert_eq!((dates.len() as i64, dates.last().map(String::as_str)), (CHART_DAYS, Some("2026-11-24")));
    }
}
