//! The guard trigger of a protected table: AFTER each row (so it sees the
//! row as finally written, after any BEFORE trigger) and BEFORE TRUNCATE,
//! both ENABLE ALWAYS. It is the one decision point for every policy
//! option; the row-level security policies of a row_filter are a second,
//! earlier line for roles subject to them. Each row it lets through, gated
//! or not, it then audits (audit/trigger.rs): one trigger event per row,
//! not two (a second AFTER ROW trigger fetched both row versions again).

use pgrx::prelude::*;

use crate::assertion::{held, replay, require};
use crate::catalog;
use crate::catalog::policy::Op;
use crate::pg::names::qualified_name;
use crate::pg::raise::{raise, Code, LogFields, Rejection};
use crate::protect::filter;
use crate::rows::render;
use crate::rows::{self, Row};
use stepup_core::digest;
use stepup_core::requirement::{Requirement, Unmet};

#[pg_trigger]
fn guard<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    // Everything that owns memory lives in verdict()'s frame.
    let td = trigger.trigger_data();
    if let Some(rejection) = verdict(td) {
        raise(rejection);
    }
    if td.tg_event & pg_sys::TRIGGER_EVENT_ROW != 0 {
        crate::audit::write_entry(td);
    } else {
        truncate_entry(td);
    }
    Ok(None)
}

/// Every TRUNCATE of a protected table is an audit entry (gated or not):
/// how many rows it removes, and the assertion held.
fn truncate_entry(td: &pg_sys::TriggerData) {
    let relid = unsafe { (*td.tg_relation).rd_id };
    let (nsp, name) = unsafe {
        let rel = td.tg_relation;
        let nsp = pg_sys::get_namespace_name((*(*rel).rd_rel).relnamespace);
        let name = std::ffi::CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr());
        if nsp.is_null() {
            return;
        }
        (
            std::ffi::CStr::from_ptr(nsp).to_string_lossy().into_owned(),
            name.to_string_lossy().into_owned(),
        )
    };
    let count = format!(
        "SELECT pg_catalog.count(*) FROM ONLY {}",
        spi::quote_qualified_identifier(nsp.as_str(), name.as_str())
    );
    let rows = crate::catalog::owner::as_owner(|| Spi::get_one::<i64>(&count))
        .ok()
        .flatten()
        .unwrap_or(0);
    let held = held::current();
    crate::audit::record_event(
        &qualified_name(relid).unwrap_or_default(),
        "TRUNCATE",
        Some(&serde_json::json!({ "rows": rows }).to_string()),
        None,
        held.as_ref().map(|h| &*h.claims),
    );
}

fn verdict(td: &pg_sys::TriggerData) -> Option<Rejection> {
    let rel = td.tg_relation;
    let relid = unsafe { (*rel).rd_id };
    // Looked up only for a rejection: the passing path stays allocation-light.
    let table = || qualified_name(relid);
    let op = match td.tg_event & pg_sys::TRIGGER_EVENT_OPMASK {
        pg_sys::TRIGGER_EVENT_INSERT => Op::Insert,
        pg_sys::TRIGGER_EVENT_UPDATE => Op::Update,
        pg_sys::TRIGGER_EVENT_DELETE => Op::Delete,
        _ => Op::Truncate,
    };
    let snapshot = catalog::snapshot();
    let Some(policy) = snapshot.policies.get(&relid) else {
        return Some(no_policy(table(), op));
    };
    if !policy.gates(op) {
        return None;
    }
    let row = |t: *mut pg_sys::HeapTupleData| (!t.is_null()).then_some(Row { rel, tuple: t });
    let (old, new) = match op {
        Op::Insert => (None, row(td.tg_trigtuple)),
        Op::Update => (row(td.tg_trigtuple), row(td.tg_newtuple)),
        Op::Delete => (row(td.tg_trigtuple), None),
        Op::Truncate => (None, None),
    };
    if let (Op::Update, Some(o), Some(n)) = (op, old, new) {
        // Changing a column that decides whether or for whom the row is
        // protected counts as much as changing a protected one.
        if policy.only_columns && !rows::changes_any(o, n, &policy.gating) {
            return None;
        }
    }
    if let Some(filter) = &policy.filter_expr {
        // UPDATE is gated if the row was protected or becomes protected.
        let inside = [old, new]
            .into_iter()
            .flatten()
            .any(|r| filter::contains(r, filter));
        if op != Op::Truncate && !inside {
            return None;
        }
    }
    let req = policy.requirement(&snapshot.levels);
    let refuse = |unmet: Unmet| Some(require::step_up_required(&req, &unmet, table(), op.name()));
    if let Err(unmet) = require::evaluate(&req, &snapshot) {
        return refuse(unmet);
    }
    // evaluate() found an unexpired assertion held.
    let held = held::current()?;
    let claims = &held.claims;
    if let Some(column) = &policy.subject_column {
        if op == Op::Truncate {
            return refuse(Unmet::WholeTable {
                column: column.clone(),
            });
        }
        // By attribute number: a renamed column is still the subject.
        if [old, new].into_iter().flatten().any(|r| {
            policy.subject.and_then(|i| r.text_at(i)).as_deref() != Some(claims.sub.as_str())
        }) {
            return refuse(Unmet::WrongSubject {
                column: column.clone(),
            });
        }
    }
    if policy.bind_change {
        if let Some(r) = unbound_change(&req, table(), op, old, new, &claims.chg) {
            return Some(r);
        }
    }
    if policy.one_time {
        return replay::refuse_spent(&req, claims, table(), op.name());
    }
    None
}

/// SU004 unless the assertion's `chg` holds this row change's digest.
fn unbound_change(
    req: &Requirement,
    table: Option<String>,
    op: Op,
    old: Option<Row>,
    new: Option<Row>,
    chg: &[String],
) -> Option<Rejection> {
    const SIGN: &str = "Have the identity provider sign chg with stepup.change_digest(table, op, key, changes) of this exact change.";
    let name = table.clone().unwrap_or_default();
    // Err: why no digest of this change can be in chg (refused, never
    // allowed), and what to do.
    let expected: Result<String, (String, &str)> = match (op, old.or(new)) {
        (Op::Truncate, _) => Err((
            "TRUNCATE is not a row change an assertion can bind; DELETE the rows instead".into(),
            SIGN,
        )),
        (_, None) => Err(("the trigger reported no row to bind".into(), SIGN)),
        (_, Some(row)) => {
            let key_columns: Vec<String> = rows::key_columns(row.rel)
                .into_iter()
                .map(|c| c.name)
                .collect();
            let json = |r: Option<Row>| r.map(render::as_json).transpose();
            let unrepresentable = |e: String| {
                let why = format!("this change has no digest: {e}");
                (why, digest::UNREPRESENTABLE_HINT)
            };
            match (json(old), json(new)) {
                (Ok(old), Ok(new)) => {
                    let (key, changes) =
                        digest::row_change(&key_columns, old.as_ref(), new.as_ref());
                    digest::change_digest(&name, op.name(), &key, &changes)
                        .map_err(|e| unrepresentable(e.to_string()))
                }
                (Err(e), _) | (_, Err(e)) => Err(unrepresentable(format!(
                    "a value of the row cannot be canonicalized ({e})"
                ))),
            }
        }
    };
    if expected.as_ref().is_ok_and(|d| chg.contains(d)) {
        return None;
    }
    let mut r = require::step_up_required(req, &Unmet::NoAssertion, table, op.name());
    r.code = Code::ChangeNotAuthorised;
    r.message = "change not authorised by the step-up assertion".into();
    (r.detail, r.hint) = match expected {
        Ok(d) => (
            format!("expected change digest {d} in chg"),
            Some(SIGN.into()),
        ),
        Err((why, hint)) => (why, Some(hint.into())),
    };
    Some(r)
}

/// A guard trigger with no policy behind it (the catalog row was removed by
/// hand): refuse, rather than guess.
fn no_policy(table: Option<String>, op: Op) -> Rejection {
    Rejection {
        code: Code::StepUpRequired,
        message: "step-up authentication required".into(),
        detail: format!(
            "{} has a pg_stepup guard trigger but no policy in stepup.policies",
            table.as_deref().unwrap_or("this table")
        ),
        hint: Some("Run stepup.protect on the table again to restore its policy.".into()),
        log: LogFields {
            table,
            operation: op.name().into(),
            ..LogFields::default()
        },
    }
}
