//! Durations and rates as people write and read them: `90s`, `2h`, `1h30m` in (humantime); `1.234`
//! seconds and `95,762/s` out.

use std::time::Duration;

/// The longest policy duration accepted (`--lock-ttl`, `--reveal-window`).
const MAX_POLICY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses a duration flag: `10s`, `500ms`, `1m30s`, `2h` or a plain number of seconds.
pub fn duration(text: &str) -> Result<humantime::Duration, String> {
    let text = text.trim();
    match text.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs).into()),
        Err(_) => text
            .parse::<humantime::Duration>()
            .map_err(|e| format!("{e}: write a duration like 10s, 500ms or 1m30s")),
    }
}

/// Parses a duration flag that must be above zero (a wait that could never succeed is refused).
pub fn positive_duration(text: &str) -> Result<humantime::Duration, String> {
    let d = duration(text)?;
    if d.is_zero() {
        return Err(format!(
            "{text:?} is zero: give a duration above zero, e.g. 2s or 500ms"
        ));
    }
    Ok(d)
}

/// Parses a progress link's lifetime: one minute to seven days.
pub fn link_ttl(text: &str) -> Result<humantime::Duration, String> {
    let d = duration(text)?;
    if Duration::from(d) < Duration::from_secs(60)
        || Duration::from(d) > Duration::from_secs(7 * 24 * 3600)
    {
        return Err(format!("{text:?} is out of range: use 1m to 7d"));
    }
    Ok(d)
}

/// Parses the console's public URL: `http://` or `https://`, a host, an optional path; no
/// query or fragment. A trailing `/` is dropped.
pub fn public_url(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or_else(|| format!("{text:?} must start with http:// or https://"))?;
    let bad = rest.is_empty()
        || rest.starts_with('/')
        || rest
            .bytes()
            .any(|b| !b.is_ascii_graphic() || b == b'?' || b == b'#');
    if bad {
        return Err(format!(
            "{text:?} is not a URL of the console: give a scheme and host, e.g. https://ledger.example.com"
        ));
    }
    Ok(text.trim_end_matches('/').to_string())
}

/// Parses a policy duration: at least one second, at most a year.
pub fn parse_policy(text: &str) -> Result<Duration, String> {
    let d = Duration::from(duration(text)?);
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
    fn public_urls_need_a_scheme_and_host() {
        assert_eq!(
            public_url("https://l.example.com/").unwrap(),
            "https://l.example.com"
        );
        assert_eq!(
            public_url("http://127.0.0.1:8080/base").unwrap(),
            "http://127.0.0.1:8080/base"
        );
        for bad in [
            "l.example.com",
            "https://",
            "https:///x",
            "http://a b",
            "https://a?x=1",
            "ftp://a",
        ] {
            assert!(public_url(bad).is_err(), "{bad}");
        }
        assert!(link_ttl("2h").is_ok());
        assert!(link_ttl("59s").is_err());
        assert!(link_ttl("8d").is_err());
    }

    #[test]
    fn parses_human_durations() {
        let parse = |text| duration(text).map(Duration::from);
        assert_eq!(parse("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse(" 500ms "), Ok(Duration::from_millis(500)));
        assert_eq!(parse("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
        for bad in ["", "s", "5x", "-1s", "h1", "99999999999999999999h"] {
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
