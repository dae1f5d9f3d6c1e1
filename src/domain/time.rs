//! Time as the domain sees it: a UTC instant with microsecond precision, and
//! the `Clock` that the edges pass in.
//!
//! Events carry their time as RFC 3339 with exactly six fractional digits, so
//! every `Timestamp` is truncated to microseconds when it is made: a value
//! read back from an event equals the value that was written, which is what
//! lets a replay reproduce the live table bit for bit.

use std::fmt;
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant truncated to whole microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn from_datetime(t: DateTime<Utc>) -> Self {
        Timestamp(t.timestamp_micros())
    }

    pub fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Parses any RFC 3339 time (any offset, any precision) and truncates it.
    pub fn parse(s: &str) -> Result<Self, chrono::ParseError> {
        Ok(Self::from_datetime(DateTime::parse_from_rfc3339(s)?.with_timezone(&Utc)))
    }

    pub fn plus_seconds(self, seconds: i64) -> Self {
        Timestamp(self.0.saturating_add(seconds.saturating_mul(1_000_000)))
    }

    /// Days since 1970-01-01, for per-day usage buckets.
    pub fn day(self) -> i64 {
        self.0.div_euclid(DAY_MICROS)
    }

    /// 00:00 UTC of `day` (days since 1970-01-01).
    pub fn from_day(day: i64) -> Self {
        Timestamp(day.saturating_mul(DAY_MICROS))
    }

    /// The UTC date, `2026-11-22`.
    pub fn date(self) -> String {
        self.datetime().format("%Y-%m-%d").to_string()
    }
}

const DAY_MICROS: i64 = 86_400_000_000;

/// The day (since 1970-01-01) of a `YYYY-MM-DD` date.
pub fn parse_day(date: &str) -> Option<i64> {
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some(Timestamp::from_datetime(date.and_hms_opt(0, 0, 0)?.and_utc()).day())
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`: what chrono's RFC 3339 with micros
/// writes for years 0 to 9999, written directly. Every answer and every
/// digest line formats several times, and chrono's general formatter was
/// most of the state digest's cost.
/// `t` as a person reads it beside `now`: "just now", "3 hours ago", "in
/// 30 days", "2 years ago". Rounded to the nearest unit, so a key made to
/// expire in 30 days says so, not 29; days up to 60, months up to two
/// years. The console and the command line both speak this way.
pub fn relative(t: Timestamp, now: Timestamp) -> String {
    let seconds = (now.0 - t.0) / 1_000_000;
    let n = seconds.unsigned_abs();
    if n < 60 {
        return if seconds >= 0 { "just now".into() } else { "in under a minute".into() };
    }
    const DAY: u64 = 86_400;
    let (size, unit) = match n {
        n if n < 3_600 => (60, "minute"),
        n if n < DAY => (3_600, "hour"),
        n if n < DAY * 60 => (DAY, "day"),
        n if n < DAY * 730 => (DAY * 30, "month"),
        _ => (DAY * 365, "year"),
    };
    let count = (n + size / 2) / size;
    let plural = if count == 1 { "" } else { "s" };
    if seconds >= 0 { format!("{count} {unit}{plural} ago") } else { format!("in {count} {unit}{plural}") }
}

const RFC3339_LEN: usize = 27;

impl Timestamp {
    fn rfc3339(self) -> Option<[u8; RFC3339_LEN]> {
        let (secs, micros) = (self.0.div_euclid(1_000_000), self.0.rem_euclid(1_000_000));
        let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        if !(0..=9999).contains(&year) {
            return None;
        }
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut n: i64| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, of_day / 3600);
        put(14, 2, of_day / 60 % 60);
        put(17, 2, of_day % 60);
        put(20, 6, micros);
        Some(out)
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rfc3339() {
            Some(bytes) => f.write_str(std::str::from_utf8(&bytes).map_err(|_| fmt::Error)?),
            None => f.write_str(&self.datetime().to_rfc3339_opts(SecondsFormat::Micros, true)),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.rfc3339() {
            Some(bytes) => s.serialize_str(std::str::from_utf8(&bytes).map_err(serde::ser::Error::custom)?),
            None => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Where "now" comes from. The registry passes `SystemClock`; tests pass a
/// `ManualClock` so expiry and point-in-time replay are deterministic.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_datetime(Utc::now())
    }
}

/// A clock that moves only when told to.
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock(Mutex::new(start))
    }

    pub fn advance_seconds(&self, seconds: i64) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t = t.plus_seconds(seconds);
    }

    pub fn set(&self, to: Timestamp) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_direct_format_is_chronos_at_every_kind_of_date() {
        let chrono = |t: Timestamp| t.datetime().to_rfc3339_opts(SecondsFormat::Micros, true);
        let mut samples: Vec<i64> =
            vec![0, -1, 1, 951_782_400_000_000, 253_402_300_799_999_999, -62_167_219_200_000_000];
        // Leap days, month and year ends, before the epoch: a walk of odd
        // steps over 0000 to 9999.
        let mut t: i64 = -62_167_219_200_000_000;
        while t < 253_402_300_799_999_999 {
            samples.push(t);
            t += 3_123_456_789_123;
        }
        for micros in samples {
            let t = Timestamp::from_micros(micros);
            assert_eq!(t.to_string(), chrono(t), "{micros}");
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{}\"", chrono(t)));
        }
        let far = Timestamp::from_micros(253_402_300_800_000_000);
        assert_eq!(far.to_string(), chrono(far), "a year past 9999 goes through chrono");
    }

    #[test]
    fn formats_utc_with_micros_and_round_trips() {
        let t = Timestamp::parse("2026-11-22T12:00:00.1234567+01:00").unwrap();
        assert_eq!(t.to_string(), "2026-11-22T11:00:00.123456Z");
        assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t);
    }
}
