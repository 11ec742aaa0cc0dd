//! The policy of a protected table, as `stepup.protect` recorded it in
//! `stepup.protected` (sql/protect.sql). Columns are held by attribute
//! number, so a rename never moves the policy onto other data.

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
    /// Has a row filter: the table's policy stepup_filter holds it as
    /// Postgres parsed it (protect/filter.rs).
    pub row_filter: bool,
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

/// One row of `stepup.protected`; None for a row protect() could not have
/// written (the table then fails closed: see guard.rs).
/// `target` is the raw first column (a regclass: an Oid). Columns are read
/// by name: an installation updated from an earlier version may hold
/// dropped columns between them.
pub fn read(
    row: &PgHeapTuple<'_, AllocatedByPostgres>,
    target: pg_sys::Datum,
) -> Option<(pg_sys::Oid, Policy)> {
    let relid = pg_sys::Oid::from(u32::try_from(target.value()).ok()?);
    let list = |name| -> Vec<String> {
        match row.get_by_name::<pgrx::Array<'_, String>>(name) {
            Ok(Some(a)) => a.iter().flatten().collect(),
            _ => Vec::new(),
        }
    };
    // 1-based attribute numbers as 0-based indexes; 0 (the whole row) as None.
    let index = |n: i16| usize::try_from(n).ok().and_then(|n| n.checked_sub(1));
    let watched: Vec<i16> = match row.get_by_name::<pgrx::Array<'_, i16>>("watched") {
        Ok(Some(a)) => a.iter().flatten().collect(),
        _ => Vec::new(),
    };
    let subject_attnum = row.get_by_name::<i16>("subject_attnum").ok()?;
    let operations = list("operations")
        .iter()
        .map(|s| Op::parse(s))
        .collect::<Option<Vec<Op>>>()?;
    let policy = Policy {
        level: row.get_by_name::<String>("level").ok()??,
        max_age_us: crate::pg::time::interval_us(row.get_by_name::<Interval>("max_age").ok()??),
        operations,
        // A whole-row reference in the filter: any change may move the row.
        only_columns: !list("columns").is_empty() && !watched.contains(&0),
        gating: watched.iter().filter_map(|&n| index(n)).collect(),
        row_filter: row.get_by_name::<String>("row_filter").ok()?.is_some(),
        subject_column: row.get_by_name::<String>("subject_column").ok()?,
        subject: subject_attnum.and_then(index),
        one_time: row.get_by_name::<bool>("one_time").ok()??,
        bind_change: row.get_by_name::<bool>("bind_change").ok()??,
        methods: list("methods"),
    };
    Some((relid, policy))
}
