//! Time as the extension counts it: Unix microseconds, converted from
//! Postgres' own (microseconds since 2000-01-01) and intervals.

use pgrx::datum::Interval;
use pgrx::prelude::*;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
pub const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// A timestamptz as Unix microseconds; infinities saturate.
pub fn timestamp_us(t: Option<TimestampWithTimeZone>) -> Option<i64> {
    let pg: i64 = t?.into_inner();
    Some(match pg {
        i64::MAX => i64::MAX,
        i64::MIN => i64::MIN,
        t => t.saturating_add(PG_EPOCH_OFFSET_US),
    })
}

/// The wall clock as Unix microseconds (not the transaction start).
pub fn now_us() -> i64 {
    super::raw::now().saturating_add(PG_EPOCH_OFFSET_US)
}

/// An interval as microseconds, months counted as 30 days like Postgres'
/// own interval comparison.
pub fn interval_us(i: Interval) -> i64 {
    let days = i64::from(i.months()) * 30 + i64::from(i.days());
    days.saturating_mul(86_400_000_000)
        .saturating_add(i.micros())
}
