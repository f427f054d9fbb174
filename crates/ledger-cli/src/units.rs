//! Durations and rates as people write and read them: `90s`, `2h`, `1h30m` in; `1.234`
//! seconds and `95,762/s` out.

use std::time::Duration;

/// The longest policy duration accepted (`--lock-ttl`, `--reveal-window`).
const MAX_POLICY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses a duration: one or more `<number><unit>` parts (`ms`, `s`, `m`, `h`, `d`), e.g.
/// `60s`, `1h30m`, `500ms`; a bare number is seconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let invalid = || {
        format!(
            "{text:?} is not a duration: write a number and a unit, e.g. 60s, 5m, 2h, 1h30m, 500ms"
        )
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map(Duration::from_secs).map_err(|_| invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let letters = rest[digits..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        if digits == 0 || letters == 0 {
            return Err(invalid());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        let unit = match &rest[digits..digits + letters] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return Err(invalid()),
        };
        let part = u32::try_from(n)
            .ok()
            .and_then(|n| unit.checked_mul(n))
            .ok_or_else(invalid)?;
        total = total.checked_add(part).ok_or_else(invalid)?;
        rest = &rest[digits + letters..];
    }
    Ok(total)
}

/// Parses a policy duration: at least one second, at most a year.
pub fn parse_policy(text: &str) -> Result<Duration, String> {
    let d = parse(text)?;
    if d < Duration::from_secs(1) || d > MAX_POLICY {
        return Err(format!("{text:?} is out of range: use 1s to 365d"));
    }
    Ok(d)
}

/// `v` rounded to 3 decimals, so that it prints without float noise (`1.235`, not
/// `1.234567891`).
pub fn thousandths(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// A duration in seconds rounded to the millisecond, e.g. `1.235`.
pub fn seconds(d: Duration) -> f64 {
    thousandths(d.as_secs_f64())
}

/// A rate rounded to a whole number, for JSON output.
pub fn whole(rate: f64) -> u64 {
    if rate.is_finite() && rate > 0.0 {
        rate.round() as u64
    } else {
        0
    }
}

/// A whole number with thousands separators, e.g. `95,762`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate per second as a whole number with thousands separators, e.g. `95,762/s`.
pub fn rate(per_s: f64) -> String {
    format!("{}/s", thousands(whole(per_s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_human_durations() {
        assert_eq!(parse("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse(" 500ms "), Ok(Duration::from_millis(500)));
        assert_eq!(parse("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
        for bad in ["", "s", "5x", "1.5s", "-1s", "5 s", "h1", "99999999999h"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse_policy("0s").is_err());
        assert!(parse_policy("400d").is_err());
        assert_eq!(parse_policy("5s"), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn prints_without_float_noise() {
        assert_eq!(
            seconds(Duration::from_nanos(1_234_567_891)).to_string(),
            "1.235"
        );
        assert_eq!(seconds(Duration::from_nanos(63_900_007)), 0.064);
        assert_eq!(thousandths(0.7312345).to_string(), "0.731");
        assert_eq!(rate(95_762.345), "95,762/s");
        assert_eq!(rate(999.5), "1,000/s");
        assert_eq!(rate(f64::NAN), "0/s");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(100), "100");
        assert_eq!(whole(15.649), 16);
    }
}
