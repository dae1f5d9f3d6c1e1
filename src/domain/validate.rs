//! The rules a single field must meet, whatever the command: lengths,
//! blanks, repeats, ranges. `decide` applies them; each refusal names the
//! field.

use crate::domain::cidr::Cidr;
use crate::domain::command::Refusal;
use crate::domain::scope::Scope;
use crate::domain::time::Timestamp;

pub const DEFAULT_MAX_KEYS: u32 = 1000;
pub const MAX_MAX_KEYS: u32 = 10_000_000;
pub const MAX_NAME: usize = 100;
pub const MAX_DESCRIPTION: usize = 1000;
pub const MAX_OWNER: usize = 320;
pub const MAX_REASON: usize = 1000;
pub const MAX_SCOPES: usize = 100;
/// The most roles one org defines.
pub const MAX_ROLES: usize = 1000;
pub const MAX_CIDRS: usize = 100;
pub const MAX_BULK: usize = 100;
pub const MAX_GRACE_SECONDS: u64 = 30 * 86_400;
/// A relative expiry above this (100 years) is surely a mistake.
pub const MAX_EXPIRES_IN_DAYS: i64 = 36_500;
/// The most verifications one access report may count: far above what one
/// node verifies in a flush window, far below a counter's overflow.
pub const MAX_REPORT_COUNT: u64 = 100_000_000;
/// How far an access report's times may lie from the registry's clock:
/// ahead (clock skew), behind (a report held through a long outage).
const REPORT_AHEAD_SECONDS: i64 = 300;
const REPORT_BEHIND_SECONDS: i64 = 30 * 86_400;
const MAX_NODE: usize = 64;
const MAX_REPORT_ID: usize = 128;

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Refusal {
    Refusal::Validation { field, message: message.into() }
}

/// Unicode's format characters (category Cf, Unicode 15.1): invisible, but
/// they reorder (bidi overrides), hide (zero-width) or mark (BOM) the text
/// around them, so a name can read as something it is not.
const FORMAT_CHARS: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// A control (Cc: NUL, ESC, BEL, newlines …), format (Cf) or line and
/// paragraph separator (Zl, Zp: U+2028, U+2029) character: never accepted
/// in a text field, because it means something else later, in a terminal,
/// a log line, a JavaScript string or a page.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}')
        || FORMAT_CHARS.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// Letters that render as nothing: Hangul fillers and the blank Braille
/// pattern. Unicode counts them as letters, not spaces, so a name made of
/// them is not blank to `trim` but is to a reader.
const BLANK_LETTERS: &[char] = &['\u{115F}', '\u{1160}', '\u{3164}', '\u{FFA0}', '\u{2800}'];

/// Whether `text` shows nothing: only spaces and letters that render blank.
fn renders_blank(text: &str) -> bool {
    text.chars().all(|c| c.is_whitespace() || BLANK_LETTERS.contains(&c))
}

/// Free text: at most `max` characters, none of them unsafe.
pub(crate) fn check_text(field: &'static str, value: &str, max: usize) -> Result<String, Refusal> {
    if value.chars().count() > max {
        return Err(invalid(field, format!("must be at most {max} characters")));
    }
    if let Some(c) = value.chars().find(|&c| is_unsafe_char(c)) {
        return Err(invalid(
            field,
            format!("must not contain control or invisible formatting characters (found U+{:04X})", c as u32),
        ));
    }
    Ok(value.to_owned())
}

/// A name: text of 1 to `MAX_NAME` characters that shows something.
pub(crate) fn check_name(field: &'static str, name: &str) -> Result<String, Refusal> {
    if renders_blank(name) {
        return Err(invalid(field, format!("must be 1 to {MAX_NAME} characters, not blank")));
    }
    check_text(field, name, MAX_NAME)
}

pub(crate) fn check_reason(reason: &Option<String>) -> Result<Option<String>, Refusal> {
    reason.as_deref().map(|r| check_text("reason", r, MAX_REASON)).transpose()
}

pub(crate) fn check_max_keys(n: u32) -> Result<u32, Refusal> {
    if n == 0 || n > MAX_MAX_KEYS {
        return Err(invalid("max_keys", format!("must be 1 to {MAX_MAX_KEYS}")));
    }
    Ok(n)
}

/// At most `MAX_SCOPES`; repeats are dropped, order kept. (A key may have
/// none when it has roles; a role needs one.)
pub(crate) fn check_scopes(scopes: &[Scope]) -> Result<Vec<Scope>, Refusal> {
    if scopes.len() > MAX_SCOPES {
        return Err(invalid("scopes", format!("at most {MAX_SCOPES} scopes")));
    }
    let mut out: Vec<Scope> = Vec::with_capacity(scopes.len());
    for s in scopes {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

pub(crate) fn check_cidrs(cidrs: &[Cidr]) -> Result<Vec<Cidr>, Refusal> {
    if cidrs.len() > MAX_CIDRS {
        return Err(invalid("allowed_cidrs", format!("at most {MAX_CIDRS} ranges")));
    }
    let mut out: Vec<Cidr> = Vec::with_capacity(cidrs.len());
    for c in cidrs {
        if !out.contains(c) {
            out.push(*c);
        }
    }
    Ok(out)
}

pub(crate) fn check_expiry(at: Option<Timestamp>, now: Timestamp) -> Result<Option<Timestamp>, Refusal> {
    match at {
        Some(t) if t <= now => Err(invalid("expires_at", "must be in the future")),
        other => Ok(other),
    }
}

/// A node's name, as it signs its access reports: 1 to 64 characters of
/// `[A-Za-z0-9._-]` (it becomes part of a NATS subject).
pub fn check_node(node: &str) -> Result<(), Refusal> {
    let ok = (1..=MAX_NODE).contains(&node.len())
        && node.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok { Ok(()) } else { Err(invalid("node", format!("a node's name is 1 to {MAX_NODE} of [A-Za-z0-9._-]"))) }
}

/// An access report, checked like any input before it enters the log: a
/// count that could be real, outcomes that add up to it, times near `now`, an address that parses, and
/// short names.
pub(crate) fn check_report(report: &crate::domain::event::KeyAccessed, now: Timestamp) -> Result<(), Refusal> {
    if report.count == 0 || report.count > MAX_REPORT_COUNT {
        return Err(invalid("report", format!("an access report counts 1 to {MAX_REPORT_COUNT} verifications")));
    }
    let by_outcome = report.outcomes.values().try_fold(0u64, |sum, n| sum.checked_add(*n));
    let no_key = [crate::domain::verifier::Code::Malformed, crate::domain::verifier::Code::NotFound];
    if !report.outcomes.is_empty()
        && (by_outcome != Some(report.count)
            || report.outcomes.values().any(|n| *n == 0)
            || no_key.iter().any(|c| report.outcomes.contains_key(c)))
    {
        return Err(invalid(
            "report",
            "an access report's outcomes are those of a key that was found, each counted at least once, summing to its count",
        ));
    }
    if report.first_at > report.last_at
        || report.last_at > now.plus_seconds(REPORT_AHEAD_SECONDS)
        || report.first_at < now.plus_seconds(-REPORT_BEHIND_SECONDS)
    {
        return Err(invalid("report", "an access report's times must be in order and near the registry's clock"));
    }
    if report.last_ip.as_deref().is_some_and(|ip| ip.parse::<std::net::IpAddr>().is_err()) {
        return Err(invalid("report", "an access report's last_ip must be an IP address"));
    }
    check_node(&report.node)?;
    if report.report_id.is_empty() || report.report_id.len() > MAX_REPORT_ID || report.origin_and_number().is_none() {
        return Err(invalid("report", "an access report's id must be <origin>-<number>, at most 128 characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_format_characters_are_refused_in_text() {
        for bad in [
            "nul\0",
            "esc \u{1b}[2J",
            "bell\u{7}",
            "tab\there",
            "line\nbreak",
            "\u{202e}gnp.exe",
            "zero\u{200b}width",
            "\u{feff}bom",
            "soft\u{ad}hyphen",
            "tag\u{e0041}",
        ] {
            assert!(check_text("description", bad, 100).is_err(), "{bad:?}");
            assert!(check_name("name", bad).is_err(), "{bad:?}");
        }
        for good in ["Deploy key", "clé de déploiement", "デプロイ", "emoji 🔑", "ops@acme.test", "a-b_c.d"] {
            assert_eq!(check_text("description", good, 100).unwrap(), good);
        }
        assert!(check_name("name", "   ").is_err());
        assert!(check_name("name", &"n".repeat(101)).is_err());
    }
}
