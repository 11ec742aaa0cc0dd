//! The DDL guard: event triggers (sql/protect.sql) that compare, after every
//! DDL command, what `stepup.protect` installed on each protected table
//! (`stepup.protection_state`: guard triggers, row security, policies, the
//! columns the policy names or reads) with what is there now, and decide
//! whether the role may weaken it. Their catalog reads run as the
//! extension's owner, so neither the caller's privileges nor its
//! `row_security` setting change what they see.
//!
//! Who may weaken a table's protection: a role holding the table's
//! step-up; a superuser without it (the documented exception for DDL),
//! except where the policy binds rows to subjects or to exact changes: no
//! single user's assertion can stand for every row there, so only a
//! superuser may, and with step-up. A one-time policy spends the
//! assertion; every DDL allowed by step-up is an audit entry.
//! Inheritance children of a protected table are refused for everyone.

use std::cell::RefCell;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use crate::assertion::{held, replay, require};
use crate::catalog::{self, owner};
use crate::pg::names::qualified_name;
use crate::pg::raise::{raise, LogFields, Rejection};
use crate::pg::reject::{self, Tamper};

#[pg_extern(sql = r#"
CREATE FUNCTION stepup.guard_ddl() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'guard_ddl_wrapper';
COMMENT ON FUNCTION stepup.guard_ddl() IS
    'Event trigger (ddl_command_end): refuses DDL that weakens a protected table without its step-up (SU006).';
"#)]
fn guard_ddl() {
    if let Some(refusal) = after_command() {
        raise(refusal);
    }
}

#[pg_extern(sql = r#"
CREATE FUNCTION stepup.guard_drop() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'guard_drop_wrapper';
COMMENT ON FUNCTION stepup.guard_drop() IS
    'Event trigger (sql_drop): dropping a protected table or one of its columns needs its step-up (SU006).';
"#)]
fn guard_drop() {
    if let Some(refusal) = after_drop() {
        raise(refusal);
    }
}

#[pg_extern(sql = r#"
CREATE FUNCTION stepup.guard_rewrite() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'guard_rewrite_wrapper';
COMMENT ON FUNCTION stepup.guard_rewrite() IS
    'Event trigger (table_rewrite): rewriting every row of a protected table needs its step-up (SU006).';
"#)]
fn guard_rewrite() {
    if let Some(refusal) = before_rewrite() {
        raise(refusal);
    }
}

/// The role that ran the command, read before any switch to the owner.
fn superuser() -> bool {
    unsafe { pg_sys::superuser() }
}

/// A protection gap: the table, what is missing or changed, and what is
/// there now.
type Gap = (pg_sys::Oid, String, Option<String>);

thread_local! {
    /// The gaps each running DDL command found when it started (innermost
    /// last): what it finds at its end and did not find then, it made.
    static BEFORE: RefCell<Vec<Vec<Gap>>> = const { RefCell::new(Vec::new()) };
}

/// A command that failed never reaches its end: forget its start.
pub fn register_callbacks() {
    unsafe { pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut()) };
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact(_event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    BEFORE.with(|b| b.borrow_mut().clear());
}

#[pg_extern(sql = r#"
CREATE FUNCTION stepup.guard_ddl_start() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'guard_ddl_start_wrapper';
COMMENT ON FUNCTION stepup.guard_ddl_start() IS
    'Event trigger (ddl_command_start): notes the protection gaps that exist before a DDL command, so that the command is judged only by what it changes.';
"#)]
fn guard_ddl_start() {
    let gaps = if catalog::snapshot().policies.is_empty() {
        Vec::new()
    } else {
        gaps(superuser())
    };
    BEFORE.with(|b| b.borrow_mut().push(gaps));
}

/// The gaps of the tables this role may alter (every table for a
/// superuser): only a table's owner, or a member of its role, can alter it.
fn gaps(superuser: bool) -> Vec<Gap> {
    let user = unsafe { pg_sys::GetUserId() };
    let gaps = owner::as_owner(|| {
        Spi::connect(|client| {
            let rows = client.select(
                "SELECT target, object, now FROM stepup.ddl_gaps($1, $2)",
                None,
                &[user.into(), superuser.into()],
            )?;
            let mut out = Vec::new();
            for row in rows {
                if let (Some(t), Some(object)) = (row.get::<pg_sys::Oid>(1)?, row.get::<String>(2)?)
                {
                    out.push((t, object, row.get::<String>(3)?));
                }
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
    });
    gaps.unwrap_or_else(|e| {
        reject::internal(
            format!("pg_stepup: cannot read protection state: {e}"),
            "Report this with the server log.",
        )
    })
}

fn after_command() -> Option<Rejection> {
    // Started with no protected table (or before the library was loaded):
    // every gap found now is this command's.
    let before = BEFORE.with(|b| b.borrow_mut().pop()).unwrap_or_default();
    if catalog::snapshot().policies.is_empty() {
        return None;
    }
    let superuser = superuser();
    // Rows of a child are read and written through the parent by
    // statements that never fire the parent's guard.
    let child = owner::as_owner(|| {
        Spi::get_two::<String, String>(
            "SELECT i.inhrelid::pg_catalog.regclass::pg_catalog.text, \
                    i.inhparent::pg_catalog.regclass::pg_catalog.text \
               FROM pg_catalog.pg_inherits i \
               JOIN stepup.protected p ON p.target OPERATOR(pg_catalog.=) i.inhparent \
              LIMIT 1",
        )
    });
    if let Ok((Some(child), Some(parent))) = child {
        return Some(inheritance(&child, &parent));
    }
    owner::run("SELECT stepup.keep_guards_always()", &[]);
    gaps(superuser).iter().find_map(|gap| {
        // A gap that was there before (a restore that has not yet created
        // everything, a change allowed earlier) is not this command's doing.
        let change = if before.contains(gap) {
            Change::Incomplete
        } else {
            Change::Weakened
        };
        decide(gap.0, &gap.1, change, superuser)
    })
}

fn after_drop() -> Option<Rejection> {
    if catalog::snapshot().policies.is_empty() {
        return None;
    }
    let superuser = superuser();
    let dropped = owner::as_owner(|| {
        Spi::connect(|client| {
            let rows = client.select(
                "SELECT o.objid, o.objsubid OPERATOR(pg_catalog.=) 0, \
                        o.object_type OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) o.object_identity \
                   FROM pg_catalog.pg_event_trigger_dropped_objects() AS o \
                  WHERE o.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
                    AND o.objid IN (SELECT p.target::pg_catalog.oid FROM stepup.protected p) \
                 UNION ALL \
                 SELECT p.target::pg_catalog.oid, false, \
                        o.object_type OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) o.object_identity \
                   FROM pg_catalog.pg_event_trigger_dropped_objects() AS o \
                   JOIN stepup.protected p ON p.target::pg_catalog.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass( \
                        pg_catalog.quote_ident(o.address_names[1]) OPERATOR(pg_catalog.||) '.' \
                        OPERATOR(pg_catalog.||) pg_catalog.quote_ident(o.address_names[2]))::pg_catalog.oid \
                  WHERE o.classid IN ('pg_catalog.pg_trigger'::pg_catalog.regclass, \
                                      'pg_catalog.pg_policy'::pg_catalog.regclass) \
                    AND o.address_names[3] IN ('stepup_guard', 'stepup_guard_truncate', 'stepup_filter', \
                                               'stepup_insert', 'stepup_update', 'stepup_open', 'stepup_owner')",
                None,
                &[],
            )?;
            let mut out = Vec::new();
            for row in rows {
                if let (Some(t), Some(whole), Some(what)) = (
                    row.get::<pg_sys::Oid>(1)?,
                    row.get::<bool>(2)?,
                    row.get::<String>(3)?,
                ) {
                    out.push((t, whole, what));
                }
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
    });
    let dropped = dropped.unwrap_or_else(|e| {
        reject::internal(
            format!("pg_stepup: cannot read the dropped objects: {e}"),
            "Report this with the server log.",
        )
    });
    // A dropped column destroys that column of every row without firing a
    // row trigger: it needs the table's step-up like DROP TABLE does.
    dropped.iter().find_map(|(target, whole, what)| {
        let change = if *whole {
            Change::Dropped
        } else {
            Change::Weakened
        };
        decide(*target, what, change, superuser)
    })
}

fn before_rewrite() -> Option<Rejection> {
    let snapshot = catalog::snapshot();
    if snapshot.policies.is_empty() {
        return None;
    }
    let superuser = superuser();
    let target =
        Spi::get_one::<pg_sys::Oid>("SELECT pg_catalog.pg_event_trigger_table_rewrite_oid()")
            .ok()
            .flatten()?;
    snapshot.policies.get(&target)?;
    let what = format!(
        "rewrite of every row of {}",
        qualified_name(target).unwrap_or_default()
    );
    decide(target, &what, Change::Weakened, superuser)
}

/// What a DDL command did to a table's protection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Something protect() installed is changed, or was dropped.
    Weakened,
    /// Something protect() installed is missing or changed, exactly as
    /// before this command: a restore that has not yet created everything,
    /// or a change allowed earlier. Never a new baseline.
    Incomplete,
    /// The table itself was dropped.
    Dropped,
}

/// SU006 (or SU003) unless the role may weaken `target`'s protection
/// through `object`. Once allowed, what the table has now is the new
/// baseline, and a dropped table's policy is forgotten.
///
/// Superusers are the documented exception, except where the policy binds
/// rows to subjects or to exact changes: there they need step-up too.
fn decide(target: pg_sys::Oid, object: &str, change: Change, superuser: bool) -> Option<Rejection> {
    let snapshot = catalog::snapshot();
    let policy = snapshot.policies.get(&target)?;
    let table = qualified_name(target);
    // Not this command's doing: nothing to refuse, and no new baseline (a
    // restore that has created only part of a table so far must not record
    // that part as the norm).
    if change == Change::Incomplete {
        return None;
    }
    let binds = policy.subject_column.is_some() || policy.bind_change;
    if !superuser || binds {
        let req = policy.requirement(&snapshot.levels);
        let log = || held::log_fields(table.clone(), "DDL");
        if !superuser {
            if let Some(column) = policy
                .subject_column
                .as_deref()
                .filter(|_| !policy.bind_change)
            {
                return Some(reject::tamper(object, Tamper::SubjectBound(column), log()));
            }
            if policy.bind_change {
                return Some(reject::tamper(object, Tamper::ChangeBound, log()));
            }
        }
        if let Err(unmet) = require::evaluate(&req, &snapshot) {
            return Some(reject::tamper(object, Tamper::Unmet(&req, &unmet), log()));
        }
        let held = held::current()?;
        if policy.one_time {
            if let Some(r) = replay::refuse_spent(&held.claims, table.clone(), "DDL") {
                return Some(r);
            }
        }
        record(
            table.as_deref().unwrap_or(object),
            &serde_json::json!({ "object": object }).to_string(),
            &held.claims,
        );
    }
    // A live table is never forgotten this way, whatever the caller says.
    let dropped = change == Change::Dropped && table.is_none();
    let sql = if dropped {
        "DELETE FROM stepup.protected WHERE target OPERATOR(pg_catalog.=) $1"
    } else {
        "SELECT stepup.accept_ddl($1)"
    };
    let args = [unsafe { DatumWithOid::new(pg_sys::Datum::from(target), pg_sys::REGCLASSOID) }];
    owner::run(sql, &args);
    None
}

/// The audit entry of a DDL allowed by step-up.
fn record(table: &str, object_json: &str, claims: &stepup_core::token::Claims) {
    crate::audit::record_event(table, "DDL", None, Some(object_json), Some(claims));
}

fn inheritance(child: &str, parent: &str) -> Rejection {
    reject::tamper(
        child,
        Tamper::Inherits { parent },
        LogFields::new(Some(parent.into()), "DDL"),
    )
}
