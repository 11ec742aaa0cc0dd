//! The export format: `\copy stepup.audit_log TO ... CSV HEADER` and the
//! same of `stepup.audit_chain` (docs/audit-encoding.md, "Verifying an
//! export"). Each CSV field is the column's output function text under the
//! exporting session's settings; this module turns it into the text the
//! entry hash covers. Only timestamptz differs: the export prints it in the
//! session's DateStyle and TimeZone, the hash covers its microseconds since
//! 1970-01-01 UTC, so the export must use DateStyle ISO, whose text carries
//! the UTC offset and converts to the instant exactly.

use super::encoding::{ColumnType, HASHED, LOG_COLUMNS};

/// The columns of `stepup.audit_log`, as the export's header names them:
/// the hashed fields, then the stored hash.
pub const LOG_COLUMN_NAMES: [&str; LOG_COLUMNS.len()] = {
    let mut c = [""; LOG_COLUMNS.len()];
    let mut i = 0;
    while i < LOG_COLUMNS.len() {
        c[i] = LOG_COLUMNS[i].0;
        i += 1;
    }
    c
};

/// The columns of `stepup.audit_chain`.
pub const CHAIN_COLUMNS: [&str; 6] = [
    "seq",
    "entry_id",
    "entry_hash",
    "prev_hash",
    "link_hash",
    "sealed_at",
];

/// How the entry hash renders a field from its exported text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Render {
    /// bigint: its decimal text (`int8out`), from the parsed value.
    Int8,
    /// timestamptz: microseconds since 1970-01-01 UTC, decimal.
    Timestamptz,
    /// The exported text itself (text, jsonb, text[], inet).
    AsIs,
}

/// [`Render`] of each hashed field, in hashing order, by its type.
pub const ENTRY_RENDER: [Render; HASHED] = {
    let mut r = [Render::AsIs; HASHED];
    let mut i = 0;
    while i < HASHED {
        r[i] = match LOG_COLUMNS[i].1 {
            ColumnType::Int8 => Render::Int8,
            ColumnType::Timestamptz => Render::Timestamptz,
            _ => Render::AsIs,
        };
        i += 1;
    }
    r
};

/// Microseconds from 1970-01-01 to 2000-01-01, Postgres' epoch.
pub const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// A bigint as `int8out` prints it (an optional `-`, digits), or None.
pub fn int8(text: &[u8]) -> Option<i64> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // ASCII digits only: valid UTF-8, and i64's parser checks the range.
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Why a timestamptz text cannot be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeError {
    /// Not the shape DateStyle ISO prints (another DateStyle, or not a time).
    NotIso,
    /// ISO's shape, but no such instant (month 13, beyond Postgres' range).
    Invalid,
}

impl std::fmt::Display for TimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeError::NotIso => {
                "not a timestamptz as DateStyle ISO prints it (YYYY-MM-DD HH:MM:SS[.ffffff]+HH[:MM[:SS]])"
            }
            TimeError::Invalid => "not a valid timestamptz",
        })
    }
}

impl std::error::Error for TimeError {}

/// The timestamptz that `timestamptz_out` printed as `text` under DateStyle
/// ISO (any TimeZone), as microseconds since 1970-01-01 UTC: exactly what
/// the in-database verifier hashes. `infinity` and `-infinity` map as it
/// maps Postgres' own sentinels (the datum plus the epoch offset,
/// saturating).
pub fn timestamptz_us(text: &[u8]) -> Result<i64, TimeError> {
    match text {
        b"infinity" => return Ok(i64::MAX),
        b"-infinity" => return Ok(i64::MIN.saturating_add(PG_EPOCH_OFFSET_US)),
        _ => {}
    }
    let mut p = Cursor(text);
    let year = p.digits(4, 7).ok_or(TimeError::NotIso)?;
    p.expect(b'-')?;
    let month = p.digits(2, 2).ok_or(TimeError::NotIso)?;
    p.expect(b'-')?;
    let day = p.digits(2, 2).ok_or(TimeError::NotIso)?;
    p.expect(b' ')?;
    let hour = p.digits(2, 2).ok_or(TimeError::NotIso)?;
    p.expect(b':')?;
    let minute = p.digits(2, 2).ok_or(TimeError::NotIso)?;
    p.expect(b':')?;
    let second = p.digits(2, 2).ok_or(TimeError::NotIso)?;
    let mut micros = 0;
    if p.eat(b'.') {
        // timestamptz_out prints 1 to 6 digits, trailing zeros dropped.
        let start = p.0;
        let frac = p.digits(1, 6).ok_or(TimeError::NotIso)?;
        let scale = 10_i64.pow(u32::try_from(6 - (start.len() - p.0.len())).unwrap_or(0));
        micros = frac * scale;
    }
    let sign = match p.0.first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(TimeError::NotIso),
    };
    p.0 = &p.0[1..];
    let mut offset = p.digits(2, 2).ok_or(TimeError::NotIso)? * 3600;
    if p.eat(b':') {
        offset += p.digits(2, 2).ok_or(TimeError::NotIso)? * 60;
        if p.eat(b':') {
            offset += p.digits(2, 2).ok_or(TimeError::NotIso)?;
        }
    }
    let bc = p.0 == b" BC";
    if !bc && !p.0.is_empty() {
        return Err(TimeError::NotIso);
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month, bc)
        || hour > 23
        || minute > 59
        || second > 59
        || year == 0
    {
        return Err(TimeError::Invalid);
    }
    // Postgres prints 1 BC for the astronomical year 0.
    let year = if bc { 1 - year } else { year };
    let days = i128::from(days_from_civil(year, month, day));
    let seconds =
        days * 86_400 + i128::from(hour * 3600 + minute * 60 + second) - i128::from(sign * offset);
    let unix = seconds * 1_000_000 + i128::from(micros);
    // As the datum (microseconds since 2000) that Postgres stores, then as
    // the verifier renders it: near the end of Postgres' range the sum
    // saturates there, so it does here.
    let datum =
        i64::try_from(unix - i128::from(PG_EPOCH_OFFSET_US)).map_err(|_| TimeError::Invalid)?;
    Ok(datum.saturating_add(PG_EPOCH_OFFSET_US))
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (a saved digest's `at`) as microseconds
/// since 1970-01-01 UTC, or None.
pub fn utc_instant_us(text: &str) -> Option<i64> {
    if !super::chain::is_utc_instant(text) {
        return None;
    }
    // The same instant in timestamptz_out's ISO form.
    let iso = format!("{} {}+00", &text[..10], &text[11..26]);
    timestamptz_us(iso.as_bytes()).ok()
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    /// `min` to `max` ASCII digits, as a number.
    fn digits(&mut self, min: usize, max: usize) -> Option<i64> {
        let n = self
            .0
            .iter()
            .take(max)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if n < min {
            return None;
        }
        let (d, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(d.iter().fold(0, |v, b| v * 10 + i64::from(b - b'0')))
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.0.first() == Some(&c);
        if hit {
            self.0 = &self.0[1..];
        }
        hit
    }

    fn expect(&mut self, c: u8) -> Result<(), TimeError> {
        self.eat(c).then_some(()).ok_or(TimeError::NotIso)
    }
}

/// Days of `month` in `year` as Postgres prints it (`bc`: year counted
/// back from 1 BC, the proleptic Gregorian calendar throughout).
fn days_in_month(year: i64, month: i64, bc: bool) -> i64 {
    let y = if bc { 1 - year } else { year };
    let leap = y.rem_euclid(4) == 0 && (y.rem_euclid(100) != 0 || y.rem_euclid(400) == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the proleptic Gregorian date (astronomical
/// year: 0 is 1 BC). H. Hinnant's days_from_civil.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(t: &str) -> Result<i64, TimeError> {
        timestamptz_us(t.as_bytes())
    }

    use crate::audit::encoding::ENTRY_FIELDS;

    #[test]
    fn columns() {
        assert_eq!(LOG_COLUMN_NAMES[0], "id");
        assert_eq!(LOG_COLUMN_NAMES[20], "auth_time");
        assert_eq!(LOG_COLUMN_NAMES[21], "entry_hash");
        assert_eq!(ENTRY_FIELDS[1], "at");
        assert_eq!(ENTRY_FIELDS[2], "txid");
        assert_eq!(ENTRY_RENDER[0], Render::Int8);
        assert_eq!(ENTRY_RENDER[1], Render::Timestamptz);
        assert_eq!(ENTRY_RENDER[5], Render::AsIs);
        assert_eq!(ENTRY_RENDER[20], Render::Timestamptz);
        assert_eq!(crate::audit::encoding::column("entry_hash"), 21);
    }

    #[test]
    fn iso_timestamps_are_instants_in_any_zone() {
        // Values checked against Postgres: SELECT stepup.epoch_us('...').
        assert_eq!(us("1970-01-01 00:00:00+00"), Ok(0));
        assert_eq!(us("2000-01-01 00:00:00+00"), Ok(PG_EPOCH_OFFSET_US));
        assert_eq!(us("2026-03-04 03:06:07.891+00"), Ok(1_772_593_567_891_000));
        assert_eq!(
            us("2026-03-04 08:36:07.891+05:30"),
            Ok(1_772_593_567_891_000)
        );
        assert_eq!(
            us("2026-03-03 23:36:07.891-03:30"),
            Ok(1_772_593_567_891_000)
        );
        assert_eq!(
            us("2026-03-04 03:06:07.000001+00"),
            Ok(1_772_593_567_000_001)
        );
        assert_eq!(us("2026-03-04 03:06:07.5+00"), Ok(1_772_593_567_500_000));
        // Local mean time offsets carry seconds (Asia/Kolkata in 1900).
        assert_eq!(
            us("1900-01-01 05:53:28+05:53:28"),
            us("1900-01-01 00:00:00+00")
        );
        assert_eq!(us("1969-12-31 23:59:59.999999+00"), Ok(-1));
        assert_eq!(us("2024-02-29 00:00:00+00"), Ok(1_709_164_800_000_000));
        // Year 1 BC is the astronomical year 0, a leap year.
        assert_eq!(us("0001-12-31 23:59:59+00 BC"), Ok(-62_135_596_801_000_000));
        assert_eq!(us("0001-02-29 00:00:00+00 BC").map(|_| ()), Ok(()));
        assert_eq!(us("0001-01-01 00:00:00+00"), Ok(-62_135_596_800_000_000));
        assert_eq!(us("294276-12-31 23:59:59.999999+00"), Ok(i64::MAX));
        assert_eq!(
            us("4714-11-24 00:00:00+00 BC"),
            Ok(-210_866_803_200_000_000)
        );
        assert_eq!(us("infinity"), Ok(i64::MAX));
        assert_eq!(us("-infinity"), Ok(i64::MIN + PG_EPOCH_OFFSET_US));
    }

    #[test]
    fn other_date_styles_and_bad_values_are_refused() {
        for other in [
            "03/04/2026 03:06:07.891 UTC",      // SQL
            "Wed Mar 04 03:06:07.891 2026 UTC", // Postgres
            "04.03.2026 03:06:07.891 UTC",      // German
            "2026-03-04T03:06:07.891+00",       // not timestamptz_out
            "2026-03-04 03:06:07.891",          // no offset
            "2026-03-04 03:06:07.891+00 AD",
            "2026-03-04 03:06:07.1234567+00",
            "2026-03-04 03:06:07.+00",
            "26-03-04 03:06:07+00",
            "",
            " 2026-03-04 03:06:07+00",
        ] {
            assert_eq!(us(other), Err(TimeError::NotIso), "{other}");
        }
        for invalid in [
            "2026-13-04 03:06:07+00",
            "2026-02-29 03:06:07+00",
            "2026-04-31 03:06:07+00",
            "2026-03-04 24:00:00+00",
            "2026-03-04 03:60:07+00",
            "0000-03-04 03:06:07+00",
            "9999999-12-31 23:59:59+00",
        ] {
            assert_eq!(us(invalid), Err(TimeError::Invalid), "{invalid}");
        }
    }

    #[test]
    fn digest_instants() {
        assert_eq!(
            utc_instant_us("2026-03-04T03:06:07.891000Z"),
            Some(1_772_593_567_891_000)
        );
        assert_eq!(utc_instant_us("2026-03-04 03:06:07.891000Z"), None);
        assert_eq!(utc_instant_us("2026-13-04T03:06:07.891000Z"), None);
    }

    #[test]
    fn int8_as_int8out_prints_it() {
        assert_eq!(int8(b"0"), Some(0));
        assert_eq!(int8(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(int8(b"9223372036854775807"), Some(i64::MAX));
        for bad in [
            &b""[..],
            b"-",
            b"9223372036854775808",
            b"+1",
            b" 1",
            b"1.0",
            b"1e3",
            b"\xff",
        ] {
            assert_eq!(int8(bad), None, "{bad:?}");
        }
    }
}
