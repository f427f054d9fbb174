//! Event times as stored: RFC 3339 text, read with a fast path for the UTC form the ledger
//! itself writes (`2026-01-20T09:00:00.123456Z`) and chrono's parser for every other form.
//!
//! Replays decode every event's times, and chrono's general parser costs several times more
//! than the event's other fields together; the fast path gives the same result for the forms
//! it accepts and declines everything else.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};
use serde::Deserializer;
use serde::de::{Error, Visitor};

/// Deserializes an RFC 3339 time, as chrono's `DateTime<Utc>` does.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    d.deserialize_str(TimeVisitor)
}

/// Parses an RFC 3339 time: the fast path, else chrono's parser.
pub(crate) fn parse_time(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match parse_utc(s) {
        Some(t) => Ok(t),
        None => s
            .parse::<DateTime<FixedOffset>>()
            .map(|t| t.with_timezone(&Utc)),
    }
}

struct TimeVisitor;

impl Visitor<'_> for TimeVisitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an RFC 3339 date and time")
    }

    fn visit_str<E: Error>(self, s: &str) -> Result<Self::Value, E> {
        parse_time(s).map_err(E::custom)
    }
}

/// `YYYY-MM-DDTHH:MM:SS`, then at most nine fraction digits, then `Z` or `+00:00`; `None` for
/// anything else (including leap seconds), which chrono then parses or rejects.
fn parse_utc(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let digit = |i: usize| -> Option<u32> {
        let d = b.get(i)?.wrapping_sub(b'0');
        (d < 10).then_some(u32::from(d))
    };
    let two = |i: usize| -> Option<u32> { Some(digit(i)? * 10 + digit(i + 1)?) };
    let year = i32::try_from(two(0)? * 100 + two(2)?).ok()?;
    let (month, day) = (two(5)?, two(8)?);
    let (hour, minute, second) = (two(11)?, two(14)?, two(17)?);
    let mut i = 19;
    let mut nanos = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while let Some(d) = digit(i) {
            if i - start == 9 {
                return None;
            }
            nanos = nanos * 10 + d;
            i += 1;
        }
        if i == start {
            return None;
        }
        nanos *= 10u32.pow(u32::try_from(9 - (i - start)).ok()?);
    }
    if !matches!(&b[i..], b"Z" | b"+00:00") || second > 59 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    Some(Utc.from_utc_datetime(&date.and_time(time)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrono(s: &str) -> Option<DateTime<Utc>> {
        s.parse::<DateTime<FixedOffset>>()
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    #[test]
    fn the_fast_path_agrees_with_chrono() {
        let cases = [
            "2026-01-20T09:00:00Z",
            "2026-01-20T09:00:00.1Z",
            "2026-01-20T09:00:00.123456Z",
            "2026-01-20T09:00:00.123456789Z",
            "2026-01-20T09:00:00.123456789+00:00",
            "2024-02-29T23:59:59.000000001Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
        ];
        for s in cases {
            assert_eq!(parse_utc(s), chrono(s), "{s}");
            assert!(parse_utc(s).is_some(), "{s} takes the fast path");
        }
    }

    #[test]
    fn other_forms_fall_back_to_chrono_or_fail_alike() {
        let cases = [
            "2026-01-20T09:00:00.1234567891Z",
            "2026-01-20T09:00:00+02:00",
            "2026-01-20t09:00:00z",
            "2026-01-20 09:00:00Z",
            "2016-12-31T23:59:60Z",
            "2026-02-30T09:00:00Z",
            "2026-13-01T09:00:00Z",
            "2026-01-20T24:00:00Z",
            "2026-01-20T09:00:00.Z",
            "2026-01-20T09:00:00",
            "2026-01-20T09:00:00Zjunk",
            "2026-01-2OT09:00:00Z",
            "+2026-01-20T09:00:00Z",
            "",
            "not a time",
        ];
        for s in cases {
            assert_eq!(parse_utc(s), None, "{s} is declined by the fast path");
            assert_eq!(parse_time(s).ok(), chrono(s), "{s}");
        }
    }

    #[test]
    fn every_second_of_a_span_and_its_fractions_agree() {
        let start = Utc.with_ymd_and_hms(2023, 12, 31, 22, 0, 0).unwrap();
        for n in 0..20_000i64 {
            let t = start
                + chrono::Duration::seconds(n * 3_617)
                + chrono::Duration::nanoseconds(n * 7_919 % 1_000_000_000);
            for form in [
                t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ] {
                assert_eq!(parse_utc(&form), chrono(&form), "{form}");
            }
        }
    }

    #[test]
    fn events_read_their_times_through_it() {
        let event: crate::TenantEvent = serde_json::from_str(
            r#"{"type":"OrganizationCreated","data":{"at":"2026-01-20T09:00:00.5+01:00"}}"#,
        )
        .unwrap();
        let want = Utc.with_ymd_and_hms(2026, 1, 20, 8, 0, 0).unwrap()
            + chrono::Duration::milliseconds(500);
        assert_eq!(event, crate::TenantEvent::OrganizationCreated { at: want });
        let bad = serde_json::from_str::<crate::TenantEvent>(
            r#"{"type":"OrganizationCreated","data":{"at":"yesterday"}}"#,
        );
        assert!(bad.is_err());
    }
}
