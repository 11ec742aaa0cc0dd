//! `--every` durations: a positive integer with an `s`, `m` or `h` suffix.

use std::time::Duration;

/// The shortest `--every`: the issuer is not to be polled harder than this.
pub const MIN_INTERVAL: Duration = Duration::from_secs(30);

/// Parses `30s`, `10m`, `1h`. A bare number is refused: the unit is never guessed.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || format!("{text:?}: expected a number with s, m or h (e.g. 30s, 10m, 1h)");
    let unit = t.chars().last().ok_or_else(bad)?;
    let digits = &t[..t.len() - unit.len_utf8()];
    let scale: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        _ => return Err(bad()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: number too large"))?;
    let secs = n
        .checked_mul(scale)
        .filter(|s| *s <= 366 * 24 * 3600)
        .ok_or_else(|| format!("{text:?}: at most a year"))?;
    Ok(Duration::from_secs(secs))
}

/// `parse`, then the minimum (unless lowered for tests).
pub fn parse_with_minimum(text: &str, minimum: Duration) -> Result<Duration, String> {
    let d = parse(text)?;
    if d < minimum {
        return Err(format!(
            "{text:?}: the interval is at least {}s",
            minimum.as_secs()
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse(" 45s "), Ok(Duration::from_secs(45)));
    }

    #[test]
    fn refused() {
        for bad in [
            "",
            "s",
            "30",
            "10x",
            "-5s",
            "+5s",
            "1.5m",
            "5 m",
            "m5",
            "10ms",
            "é",
            "99999999999999999999s",
            "9999999h",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn minimum() {
        assert!(parse_with_minimum("29s", MIN_INTERVAL).is_err());
        assert_eq!(
            parse_with_minimum("30s", MIN_INTERVAL),
            Ok(Duration::from_secs(30))
        );
        assert_eq!(
            parse_with_minimum("1m", MIN_INTERVAL),
            Ok(Duration::from_secs(60))
        );
        assert_eq!(
            parse_with_minimum("2s", Duration::from_secs(1)),
            Ok(Duration::from_secs(2))
        );
    }
}
