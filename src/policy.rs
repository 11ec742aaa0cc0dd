//! The policy of a protected table, as `stepup.protect` recorded it in
//! `stepup.protected` (sql/protect.sql), and the DDL decision the event
//! triggers ask for: may this role weaken this table's protection?

use std::num::NonZeroUsize;

use pgrx::datum::{DatumWithOid, Interval};
use pgrx::prelude::*;

use crate::changes::qualified_name;
use crate::gate;
use crate::raise::{raise, Code, Rejection};
use crate::requirement::Requirement;
use crate::{catalog, owner};

/// The operations a policy gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Insert => "INSERT",
            Op::Update => "UPDATE",
            Op::Delete => "DELETE",
            Op::Truncate => "TRUNCATE",
        }
    }

    fn parse(s: &str) -> Option<Op> {
        [Op::Insert, Op::Update, Op::Delete, Op::Truncate]
            .into_iter()
            .find(|op| op.name() == s)
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub level: String,
    pub max_age_us: i64,
    pub operations: Vec<Op>,
    /// An UPDATE needs step-up only if it changes one of these (empty: any).
    pub columns: Vec<String>,
    pub row_filter: Option<String>,
    pub subject_column: Option<String>,
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
    pub fn requirement<'a>(&'a self, levels: &catalog::Snapshot) -> Requirement<'a> {
        Requirement {
            level: &self.level,
            rank: levels.levels.get(&self.level).copied().unwrap_or(i32::MAX),
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
    let operations = list(4)
        .iter()
        .map(|s| Op::parse(s))
        .collect::<Option<Vec<Op>>>()?;
    let policy = Policy {
        level: row.get_by_index::<String>(att(2)).ok()??,
        max_age_us: gate::interval_us(row.get_by_index::<Interval>(att(3)).ok()??),
        operations,
        columns: list(5),
        row_filter: row.get_by_index::<String>(att(6)).ok()?,
        subject_column: row.get_by_index::<String>(att(7)).ok()?,
        one_time: row.get_by_index::<bool>(att(8)).ok()??,
        bind_change: row.get_by_index::<bool>(att(9)).ok()??,
        methods: list(10),
    };
    Some((relid, policy))
}

// Called by the event triggers in sql/protect.sql with the table and the
// object whose change would weaken it.
#[pg_extern(sql = r#"
CREATE FUNCTION stepup.allow_ddl(target regclass, object text, dropped boolean)
RETURNS void STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'allow_ddl_wrapper';
COMMENT ON FUNCTION stepup.allow_ddl(regclass, text, boolean) IS
    'Used by pg_stepup''s event triggers: raises SU006 unless the current role is a superuser or holds the table''s step-up.';
"#)]
fn allow_ddl(target: pg_sys::Oid, object: &str, dropped: bool) {
    if let Some(refusal) = ddl_refusal(target, object, dropped) {
        raise(refusal);
    }
}

/// SU006 unless the role is a superuser (the documented exception for DDL)
/// or holds the table's step-up. Once allowed, what the table has now is the
/// new baseline, and a dropped table's policy is forgotten.
fn ddl_refusal(target: pg_sys::Oid, object: &str, dropped: bool) -> Option<Rejection> {
    let snapshot = catalog::snapshot();
    let policy = snapshot.policies.get(&target)?;
    let req = policy.requirement(&snapshot);
    let superuser = unsafe { pg_sys::superuser() };
    if !superuser {
        if let Err(unmet) = gate::evaluate(&req, &snapshot) {
            let mut r = gate::step_up_required(&req, &unmet, qualified_name(target), "DDL");
            r.code = Code::Tamper;
            r.message = "protection of a table cannot be weakened without step-up".into();
            r.detail = format!("object: {object}; {}", r.detail);
            r.hint = Some(
                "Present an assertion that meets the table's policy (stepup.policies) in this transaction, or remove the protection with stepup.unprotect."
                    .into(),
            );
            return Some(r);
        }
    }
    // A live table is never forgotten this way, whatever the caller says.
    let dropped = dropped && qualified_name(target).is_none();
    let sql = if dropped {
        "DELETE FROM stepup.protected WHERE target OPERATOR(pg_catalog.=) $1"
    } else {
        "UPDATE stepup.protected SET state = stepup.protection_state($1) \
         WHERE target OPERATOR(pg_catalog.=) $1"
    };
    let args = [unsafe { DatumWithOid::new(pg_sys::Datum::from(target), pg_sys::REGCLASSOID) }];
    owner::run(sql, &args);
    None
}
