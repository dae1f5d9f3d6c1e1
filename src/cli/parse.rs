//! What the command line's values mean: node names, durations, times.

use std::time::Duration;

use anyhow::Context as _;

use crate::domain::time::{Clock, SystemClock, Timestamp};

/// A node's name, checked as its access reports will be.
pub(super) fn parse_node(s: &str) -> Result<String, String> {
    crate::domain::validate::check_node(s).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

/// `500ms`, `2s`, `1m`, or `0`.
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration: write e.g. 500ms, 2s, 1m or 1h (0 for none)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(bad()),
    }
}

/// A time given on the command line: `now`, a date (00:00 UTC that day),
/// or an RFC 3339 time.
pub(super) fn parse_time(flag: &str, s: &str) -> anyhow::Result<Timestamp> {
    if s.trim() == "now" {
        return Ok(SystemClock.now());
    }
    Timestamp::parse(&whole_day(s)).with_context(|| {
        format!("{flag} {s:?} is not a time: give now, a date (2026-11-22) or an RFC 3339 time (2026-11-22T10:00:00Z)")
    })
}

/// A bare date (`2027-01-01`) as the RFC 3339 time its day starts (UTC);
/// anything else as given.
pub(crate) fn whole_day(s: &str) -> String {
    let s = s.trim();
    let is_date = s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok();
    if is_date { format!("{s}T00:00:00Z") } else { s.to_owned() }
}
