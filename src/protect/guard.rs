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
use crate::pg::names::qualified_name;
use crate::pg::raise::{raise, LogFields, Rejection};
use crate::pg::reject::{self, StepUp, Unbound};
use crate::protect::filter;
use crate::rows::event::{Event, Op};
use crate::rows::render;
use crate::rows::{self, Row};
use stepup_core::digest;
use stepup_core::requirement::Unmet;

#[pg_trigger]
fn guard<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    // Everything that owns memory lives in verdict()'s frame.
    let event = Event::of(trigger.trigger_data());
    if let Some(rejection) = verdict(&event) {
        raise(rejection);
    }
    if event.for_row {
        crate::audit::write_entry(&event);
    } else {
        truncate_entry(event.rel);
    }
    Ok(None)
}

/// Every TRUNCATE of a protected table is an audit entry (gated or not):
/// how many rows it removes, and the assertion held.
fn truncate_entry(rel: pg_sys::Relation) {
    let relid = unsafe { (*rel).rd_id };
    let (nsp, name) = unsafe {
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

fn verdict(event: &Event) -> Option<Rejection> {
    let Event {
        rel, op, old, new, ..
    } = *event;
    let relid = unsafe { (*rel).rd_id };
    // Looked up only for a rejection: the passing path stays allocation-light.
    let table = || qualified_name(relid);
    let snapshot = catalog::snapshot();
    let Some(policy) = snapshot.policies.get(&relid) else {
        let log = LogFields::new(table(), op.name());
        return Some(reject::step_up_required(StepUp::NoPolicy, log));
    };
    if !policy.gates(op) {
        return None;
    }
    if let (Op::Update, Some(o), Some(n)) = (op, old, new) {
        // Changing a column that decides whether or for whom the row is
        // protected counts as much as changing a protected one.
        if policy.only_columns && !rows::changes_any(o, n, &policy.gating) {
            return None;
        }
    }
    if policy.row_filter {
        // UPDATE is gated if the row was protected or becomes protected.
        let inside = [old, new].into_iter().flatten().any(filter::contains);
        if op != Op::Truncate && !inside {
            return None;
        }
    }
    let req = policy.requirement(&snapshot.levels);
    let refuse = |unmet: Unmet| {
        let log = held::log_fields(table(), op.name());
        Some(reject::step_up_required(StepUp::Unmet(&req, &unmet), log))
    };
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
        if let Some(r) = unbound_change(table(), op, old, new, &claims.chg) {
            return Some(r);
        }
    }
    if policy.one_time {
        return replay::refuse_spent(claims, table(), op.name());
    }
    None
}

/// SU004 unless the assertion's `chg` holds this row change's digest.
fn unbound_change(
    table: Option<String>,
    op: Op,
    old: Option<Row>,
    new: Option<Row>,
    chg: &[String],
) -> Option<Rejection> {
    let name = table.clone().unwrap_or_default();
    // Err: why no digest of this change can be in chg (refused, never
    // allowed).
    let expected: Result<String, Unbound> = match (op, old.or(new)) {
        (Op::Truncate, _) => Err(Unbound::Truncate),
        (_, None) => Err(Unbound::NoRow),
        (_, Some(row)) => {
            let key_columns: Vec<String> = rows::key_columns(row.rel)
                .into_iter()
                .map(|c| c.name)
                .collect();
            let json = |r: Option<Row>| r.map(render::as_json).transpose();
            match (json(old), json(new)) {
                (Ok(old), Ok(new)) => {
                    let (key, changes) =
                        digest::row_change(&key_columns, old.as_ref(), new.as_ref());
                    digest::change_digest(&name, op.name(), &key, &changes)
                        .map_err(|e| Unbound::NoDigest(e.to_string()))
                }
                (Err(e), _) | (_, Err(e)) => Err(Unbound::NoDigest(format!(
                    "a value of the row cannot be canonicalized ({e})"
                ))),
            }
        }
    };
    if expected.as_ref().is_ok_and(|d| chg.contains(d)) {
        return None;
    }
    let why = expected.map_or_else(|why| why, Unbound::Expected);
    Some(reject::change_not_authorised(
        why,
        held::log_fields(table, op.name()),
    ))
}
