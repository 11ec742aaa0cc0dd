//! The policy of a protected table, as `stepup.protect` recorded it in
//! `stepup.protected` (sql/protect.sql). Columns are held by attribute
//! number, so a rename never moves the policy onto other data.

use std::num::NonZeroUsize;

use pgrx::datum::Interval;
use pgrx::prelude::*;

use crate::pg::cache::NameMap;
use crate::rows::event::Op;
use stepup_core::requirement::Requirement;

#[derive(Debug, Clone)]
pub struct Policy {
    pub level: String,
    pub max_age_us: i64,
    pub operations: Vec<Op>,
    /// With `columns`, an UPDATE needs step-up only if it changes one of
    /// these (0-based column indexes): the columns, the subject column and
    /// every column the row filter reads. False: every UPDATE.
    pub only_columns: bool,
    pub gating: Vec<usize>,
    /// The row filter as parsed at protect time (filter.rs).
    pub filter_expr: Option<String>,
    /// The subject column's current name (for messages) and index.
    pub subject_column: Option<String>,
    pub subject: Option<usize>,
    pub one_time: bool,
    pub bind_change: bool,
    /// `amr` must hold one of these (empty: any).
    pub methods: Vec<String>,
}

impl Policy {
    /// TRUNCATE destroys every row without row triggers, so a policy that
    /// gates DELETE gates it too.
    pub fn gates(&self, op: Op) -> bool {
        self.operations.contains(&op)
            || (op == Op::Truncate && self.operations.contains(&Op::Delete))
    }

    /// The requirement to check against the held assertion. A level since
    /// removed from stepup.levels ranks above everything: fail closed.
    /// `levels` ranks each level ([`super::Snapshot::levels`]).
    pub fn requirement<'a>(&'a self, levels: &NameMap<i32>) -> Requirement<'a> {
        Requirement {
            level: &self.level,
            rank: levels.get(&self.level).copied().unwrap_or(i32::MAX),
            max_age_us: self.max_age_us,
            methods: &self.methods,
        }
    }
}

fn att(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

/// One row of `stepup.protected`; None for a row protect() could not have
/// written (the table then fails closed: see guard.rs).
/// `target` is the raw first column (a regclass: an Oid).
pub fn read(
    row: &PgHeapTuple<'_, AllocatedByPostgres>,
    target: pg_sys::Datum,
) -> Option<(pg_sys::Oid, Policy)> {
    let relid = pg_sys::Oid::from(u32::try_from(target.value()).ok()?);
    let list = |n| -> Vec<String> {
        match row.get_by_index::<pgrx::Array<'_, String>>(att(n)) {
            Ok(Some(a)) => a.iter().flatten().collect(),
            _ => Vec::new(),
        }
    };
    // 1-based attribute numbers as 0-based indexes; 0 (the whole row) as None.
    let index = |n: i16| usize::try_from(n).ok().and_then(|n| n.checked_sub(1));
    let watched: Vec<i16> = match row.get_by_index::<pgrx::Array<'_, i16>>(att(17)) {
        Ok(Some(a)) => a.iter().flatten().collect(),
        _ => Vec::new(),
    };
    let subject_attnum = row.get_by_index::<i16>(att(15)).ok()?;
    let operations = list(4)
        .iter()
        .map(|s| Op::parse(s))
        .collect::<Option<Vec<Op>>>()?;
    let policy = Policy {
        level: row.get_by_index::<String>(att(2)).ok()??,
        max_age_us: crate::pg::time::interval_us(row.get_by_index::<Interval>(att(3)).ok()??),
        operations,
        // A whole-row reference in the filter: any change may move the row.
        only_columns: !list(5).is_empty() && !watched.contains(&0),
        gating: watched.iter().filter_map(|&n| index(n)).collect(),
        // A filter whose parse is missing counts every row as inside.
        filter_expr: match row.get_by_index::<String>(att(6)).ok()? {
            None => None,
            Some(_) => Some(
                row.get_by_index::<String>(att(16))
                    .ok()?
                    .unwrap_or_default(),
            ),
        },
        subject_column: row.get_by_index::<String>(att(7)).ok()?,
        subject: subject_attnum.and_then(index),
        one_time: row.get_by_index::<bool>(att(8)).ok()??,
        bind_change: row.get_by_index::<bool>(att(9)).ok()??,
        methods: list(10),
    };
    Some((relid, policy))
}
