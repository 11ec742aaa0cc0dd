//! The audit trigger of a protected table (`stepup_audit`, AFTER each row,
//! ENABLE ALWAYS): one `stepup.audit_log` entry per INSERT, UPDATE and
//! DELETE, whether or not the operation needs step-up, in the same
//! transaction. Writers only insert: they never wait for each other or for
//! the sealer.
//!
//! The entry is built here, values and hash, and appended (append.rs): no
//! SQL per row.

use pgrx::prelude::*;

use super::append::{append, Entry};
use super::digest;
use super::entry::{self, Values};
use crate::catalog::PG_EPOCH_OFFSET_US;
use crate::changes::relation_name;
use crate::held;
use crate::render;
use crate::rows::{self, Row};

unsafe extern "C-unwind" {
    fn nextval_internal(relid: pg_sys::Oid, check_permissions: bool) -> i64;
}

#[pg_trigger]
fn audit<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    write_entry(trigger.trigger_data());
    Ok(None)
}

fn write_entry(td: &pg_sys::TriggerData) {
    let rel = td.tg_relation;
    let row = |t: *mut pg_sys::HeapTupleData| (!t.is_null()).then_some(Row { rel, tuple: t });
    let (op, old, new) = match td.tg_event & pg_sys::TRIGGER_EVENT_OPMASK {
        pg_sys::TRIGGER_EVENT_INSERT => ("INSERT", None, row(td.tg_trigtuple)),
        pg_sys::TRIGGER_EVENT_UPDATE => ("UPDATE", row(td.tg_trigtuple), row(td.tg_newtuple)),
        pg_sys::TRIGGER_EVENT_DELETE => ("DELETE", row(td.tg_trigtuple), None),
        _ => return,
    };
    let held = held::current();
    let claims = held.as_ref().map(|h| &h.claims);
    let micros = |us: Option<i64>| us.map(pg_sys::Datum::from);
    // Rendered under at most one settings switch per row.
    let (old_digest, new_digest, key, changed, old_values, new_values) =
        render::rendered(rel, || {
            let shape = rows::shape(rel);
            let (old, new) = (old.map(|r| r.values()), new.map(|r| r.values()));
            let digest = |v: &Option<rows::Values>| v.as_ref().map(|v| digest(v, &shape.by_name));
            let changed = rows::changed_columns(rel, &shape, old.as_ref(), new.as_ref());
            let keys = &shape.keys;
            let key = (!keys.is_empty())
                .then(|| {
                    old.as_ref()
                        .or(new.as_ref())
                        .map(|v| render::object(v, keys.iter()))
                })
                .flatten();
            let values = |v: &Option<rows::Values>| {
                v.as_ref()
                    .map(|v| render::object(v, changed.iter().copied()))
            };
            (
                digest(&old),
                digest(&new),
                key,
                entry::text_array(&changed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>()),
                values(&old),
                values(&new),
            )
        });
    let (log, seq) = super::relations();
    // Not in pgrx's bindings: guarded here, so that an error (a sequence
    // at its maximum) unwinds as every pg_sys call does.
    let id = unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| nextval_internal(seq, false)) };
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let txid = unsafe { pg_sys::GetTopFullTransactionId().value };
    let auth_time = claims.and_then(|c| {
        c.auth_time
            .checked_mul(1_000_000)?
            .checked_sub(PG_EPOCH_OFFSET_US)
    });
    let table = relation_name(rel).unwrap_or_default();
    let role = user_name(unsafe { pg_sys::GetUserId() });
    let session_role = user_name(unsafe { pg_sys::GetSessionUserId() });
    let application = application_name();
    let [table, op, old_digest, new_digest, role, session_role, application, kid, jti, sub, acr] =
        entry::text_datums([
            Some(&table),
            Some(op),
            old_digest.as_deref(),
            new_digest.as_deref(),
            Some(&role),
            Some(&session_role),
            application.as_deref(),
            claims.map(|c| c.kid.as_str()),
            claims.map(|c| c.jti.as_str()),
            claims.map(|c| c.sub.as_str()),
            claims.map(|c| c.acr.as_str()),
        ]);
    let values: Values = [
        Some(pg_sys::Datum::from(id)),
        micros(Some(now)),
        Some(pg_sys::Datum::from(i64::try_from(txid).unwrap_or(i64::MAX))),
        table,
        op,
        key,
        old_digest,
        new_digest,
        Some(changed),
        old_values,
        new_values,
        role,
        session_role,
        application,
        client_addr(),
        kid,
        jti,
        sub,
        acr,
        claims.map(|c| entry::text_array(&c.amr.iter().map(String::as_str).collect::<Vec<_>>())),
        micros(auth_time),
    ];
    let hash = entry::hash(&values);
    let mut row: Entry = [None; 22];
    row[..values.len()].copy_from_slice(&values);
    row[values.len()] = hash.into_datum();
    append(log, &row);
}

fn application_name() -> Option<String> {
    unsafe {
        let p = pg_sys::GetConfigOption(c"application_name".as_ptr(), true, false);
        (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
    }
}

/// inet_client_addr(): NULL over a Unix socket.
fn client_addr() -> Option<pg_sys::Datum> {
    unsafe { pgrx::direct_function_call_as_datum(pg_sys::inet_client_addr, &[]) }
}

fn user_name(oid: pg_sys::Oid) -> String {
    unsafe {
        let p = pg_sys::GetUserNameFromId(oid, true);
        if p.is_null() {
            format!("oid {}", u32::from(oid))
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}
