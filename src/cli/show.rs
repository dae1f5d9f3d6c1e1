//! How answers look to people: tables, fields, relative times, a bar chart
//! of use per day, errors, and the escaping every printed value goes through.
//! `--json` bypasses all of it.

use std::fmt::Write as _;

use serde_json::Value;

use super::client::Remote;
use crate::domain::time::Timestamp;
use crate::domain::validate::is_unsafe_char;
use crate::domain::verifier::Code;

/// Prints an answer: its JSON with `--json`, else as `render` shows it to
/// people.
pub fn print(remote: &Remote, answer: &Value, render: impl Fn(&Value) -> String) -> anyhow::Result<()> {
    if remote.json {
        println!("{}", serde_json::to_string_pretty(answer)?);
    } else {
        print!("{}", render(answer));
    }
    Ok(())
}

/// Rows under a header, each column as wide as its widest cell.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let header = header.map(String::from);
    let widths: Vec<usize> =
        (0..N).map(|i| rows.iter().chain([&header]).map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// `fields` of `object`, one per line, arrays space-separated.
pub fn fields(object: &Value, fields: &[&str]) -> String {
    let mut out = String::new();
    for field in fields {
        let _ = writeln!(out, "{field:<17}{}", words(&object[*field]));
    }
    out
}

/// A value for a cell or a field: an array's items space-separated.
pub fn words(v: &Value) -> String {
    match v {
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
        v => text(v),
    }
}

/// Warnings and the dry-run note that may follow an answer.
pub fn notes(answer: &Value) -> String {
    let mut out = String::new();
    if answer["dry_run"] == true {
        let _ = writeln!(out, "(dry run: nothing was changed)");
    }
    for w in answer["warnings"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "warning: {}", text(w));
    }
    out
}

/// A value as a person reads it. Control and formatting characters are
/// shown escaped (`\u{1b}`), never sent to the terminal: text from the
/// registry must not be able to move the cursor or clear the screen, even
/// text stored before keyreg refused such characters.
pub fn text(v: &Value) -> String {
    let raw = match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    raw.chars().map(|c| if is_unsafe_char(c) { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

/// A time as a person reads it beside `now`: "3 days ago", "in 2 hours",
/// "never" for none.
pub fn relative(v: &Value, now: Timestamp) -> String {
    let Some(t) = v.as_str().and_then(|s| Timestamp::parse(s).ok()) else {
        return if v.is_null() { "never".into() } else { text(v) };
    };
    crate::domain::time::relative(t, now)
}

/// How many days of use the chart shows; `--json` has them all.
const CHART_DAYS: usize = 30;
/// The longest bar, in characters.
const CHART_WIDTH: u64 = 40;

/// Counts by outcome in words, most common first: `7 valid, 1 refused: action`.
pub fn outcomes(outcomes: &Value) -> String {
    let Some(map) = outcomes.as_object() else { return String::new() };
    let mut counts: Vec<(u64, &str)> = map.iter().map(|(name, n)| (n.as_u64().unwrap_or(0), name.as_str())).collect();
    counts.sort_by_key(|c| std::cmp::Reverse(c.0));
    counts.iter().map(|(n, name)| format!("{n} {}", Code::words_of(name))).collect::<Vec<_>>().join(", ")
}

/// A usage answer (`total`, `outcomes`, `last_used_at`, `per_day`, and an
/// org's `top_keys`) as a few lines and one bar per day, each in eighths
/// of a character.
pub fn usage(answer: &Value, now: Timestamp) -> String {
    let mut out = String::new();
    let range = match (answer["from"].as_str(), answer["to"].as_str()) {
        (Some(from), Some(to)) => format!(" from {from} to {to}"),
        (Some(from), None) => format!(" since {from}"),
        (None, Some(to)) => format!(" until {to}"),
        (None, None) => String::new(),
    };
    let total = answer["total"].as_u64().unwrap_or(0);
    let by_outcome = if total > 0 { format!(" ({})", outcomes(&answer["outcomes"])) } else { String::new() };
    let verifications = if total == 1 { "verification" } else { "verifications" };
    let _ = writeln!(out, "{total} {verifications}{range}{by_outcome}");
    let _ = writeln!(out, "last used {}", relative(&answer["last_used_at"], now));
    let days = answer["per_day"].as_array().map(Vec::as_slice).unwrap_or_default();
    let shown = &days[days.len().saturating_sub(CHART_DAYS)..];
    if shown.len() < days.len() {
        let _ = writeln!(out, "(the last {CHART_DAYS} of {} days with use; --json for all)", days.len());
    }
    let count = |d: &Value| d["count"].as_u64().unwrap_or(0);
    let max = shown.iter().map(count).max().unwrap_or(0).max(1);
    let digits = shown.iter().map(|d| count(d).to_string().len()).max().unwrap_or(1);
    for day in shown {
        let eighths = count(day).saturating_mul(CHART_WIDTH * 8).div_ceil(max);
        let mut bar = "█".repeat((eighths / 8) as usize);
        bar.extend(['▏', '▎', '▍', '▌', '▋', '▊', '▉'].get((eighths % 8) as usize).filter(|_| eighths % 8 > 0));
        let valid = day["outcomes"]["VALID"].as_u64().unwrap_or(0);
        let refused = match count(day) - valid.min(count(day)) {
            0 => String::new(),
            n => format!("  ({n} not valid)"),
        };
        let _ = writeln!(out, "{}  {:>digits$}  {bar}{refused}", text(&day["date"]), count(day));
    }
    let top = answer["top_keys"].as_array().map(Vec::as_slice).unwrap_or_default();
    if !top.is_empty() {
        let rows: Vec<[String; 4]> = top
            .iter()
            .map(|k| [text(&k["key_id"]), text(&k["name"]), text(&k["total"]), outcomes(&k["outcomes"])])
            .collect();
        let _ = write!(out, "\nbusiest keys\n{}", table(["ID", "NAME", "VERIFICATIONS", "OUTCOMES"], &rows));
    }
    out
}

/// `1 key`, `2 keys`: a count with its noun.
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// An error and its causes, each said once: a cause whose text its parent
/// already quotes is not repeated.
pub fn error(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_read_as_people_say_them() {
        let now = Timestamp::parse("2026-11-23T12:00:00Z").unwrap();
        let at = |s: &str| relative(&json!(s), now);
        assert_eq!(at("2026-11-23T11:59:30Z"), "just now");
        assert_eq!(at("2026-11-23T11:58:00Z"), "2 minutes ago");
        assert_eq!(at("2026-11-23T11:00:00Z"), "1 hour ago");
        assert_eq!(at("2026-11-20T11:00:00Z"), "3 days ago");
        assert_eq!(at("2026-12-23T12:00:00Z"), "in 30 days");
        assert_eq!(at("2024-11-01T12:00:00Z"), "2 years ago");
        assert_eq!(relative(&Value::Null, now), "never");
    }

    #[test]
    fn the_chart_scales_to_the_busiest_day() {
        let now = Timestamp::parse("2026-11-23T12:00:00Z").unwrap();
        let answer = json!({"total": 110, "from": "2026-11-17", "to": "2026-11-23",
            "outcomes": {"FORBIDDEN_SCOPE": 1, "UNRECORDED": 9, "VALID": 100}, "last_used_at": "2026-11-22T12:00:00Z",
            "per_day": [{"date": "2026-11-21", "count": 100, "outcomes": {"VALID": 100}},
                        {"date": "2026-11-22", "count": 10, "outcomes": {"UNRECORDED": 9, "FORBIDDEN_SCOPE": 1}}],
            "top_keys": [{"key_id": "key_1", "name": "ci", "total": 110, "outcomes": {"VALID": 100}}]});
        let shown = usage(&answer, now);
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(
            lines[0],
            "110 verifications from 2026-11-17 to 2026-11-23 (100 valid, 9 outcome not recorded, 1 refused: action)"
        );
        assert_eq!(lines[1], "last used 1 day ago");
        assert_eq!(lines[2], format!("2026-11-21  100  {}", "█".repeat(40)));
        assert_eq!(lines[3], "2026-11-22   10  ████  (10 not valid)");
        assert!(shown.contains("busiest keys") && shown.contains("key_1  ci "), "{shown}");
        let many: Vec<Value> = (0..40).map(|d| json!({"date": format!("d{d}"), "count": d + 1})).collect();
        let long = usage(&json!({"total": 1, "last_used_at": null, "per_day": many}), now);
        assert!(long.contains("the last 30 of 40 days") && !long.contains("d9 ") && long.contains("d39"), "{long}");
    }
}
