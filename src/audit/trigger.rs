//! The audit trigger of a protected table (`stepup_audit`, AFTER each row,
//! ENABLE ALWAYS): one `stepup.audit_log` entry per INSERT, UPDATE and
//! DELETE, whether or not the operation needs step-up, in the same
//! transaction. Writers only insert: they never wait for each other or for
//! the sealer.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use super::encoding::row_digest;
use crate::catalog::PG_EPOCH_OFFSET_US;
use crate::changes::qualified_name;
use crate::rows::{self, Row};
use crate::{held, owner};

/// Everything of the entry but what SQL renders (id, primary key, changed
/// columns and their values, application_name, client address) and the hash
/// over all of it: one statement per row change.
const INSERT_ENTRY: &str = r#"
INSERT INTO stepup.audit_log (id, at, txid, table_name, op, key, old_digest, new_digest, changed,
    old_values, new_values, role_name, session_role, application_name, client_addr,
    kid, jti, sub, acr, amr, auth_time, entry_hash)
SELECT e.*, stepup.entry_hash(stepup.entry_fields(e.id, e.at, e.txid, e.table_name, e.op, e.key,
        e.old_digest, e.new_digest, e.changed, e.old_values, e.new_values, e.role_name,
        e.session_role, e.application_name, e.client_addr, e.kid, e.jti, e.sub, e.acr, e.amr,
        e.auth_time))
  FROM (SELECT nextval('stepup.audit_log_id_seq'::regclass) AS id,
               $3::timestamptz AS at, $4::bigint AS txid, $5::text AS table_name, $6::text AS op,
               (SELECT jsonb_object_agg(a.attname, coalesce(j.o, j.n) -> a.attname::text)
                  FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                 WHERE i.indrelid = $7::oid AND i.indisprimary) AS key,
               $8::text AS old_digest, $9::text AS new_digest, c.changed,
               CASE WHEN j.o IS NOT NULL THEN
                   (SELECT coalesce(jsonb_object_agg(k, j.o -> k), '{}') FROM unnest(c.changed) AS k)
               END AS old_values,
               CASE WHEN j.n IS NOT NULL THEN
                   (SELECT coalesce(jsonb_object_agg(k, j.n -> k), '{}') FROM unnest(c.changed) AS k)
               END AS new_values,
               $10::text AS role_name, $11::text AS session_role,
               current_setting('application_name') AS application_name,
               inet_client_addr() AS client_addr,
               $12::text AS kid, $13::text AS jti, $14::text AS sub, $15::text AS acr,
               $16::text[] AS amr, $17::timestamptz AS auth_time
          FROM (SELECT to_jsonb($1) AS o, to_jsonb($2) AS n) AS j,
               LATERAL (SELECT ARRAY(SELECT k FROM jsonb_object_keys(coalesce(j.n, j.o)) AS k
                                      WHERE j.o IS NULL OR j.n IS NULL OR (j.o -> k) IS DISTINCT FROM (j.n -> k)
                                      ORDER BY k COLLATE "C") AS changed) AS c) AS e
"#;

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
    let (reltype, relid) = unsafe { ((*(*rel).rd_rel).reltype, (*rel).rd_id) };
    let held = held::current();
    let claims = held.as_ref().map(|h| &h.claims);
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let txid = unsafe { pg_sys::GetTopFullTransactionId().value };
    let auth_time = claims.and_then(|c| {
        let pg_us = c
            .auth_time
            .checked_mul(1_000_000)?
            .checked_sub(PG_EPOCH_OFFSET_US)?;
        TimestampWithTimeZone::try_from(pg_us).ok()
    });
    let as_row = |r: Option<Row>| r.map_or(DatumWithOid::null_oid(reltype), |r| r.datum());
    // One settings switch per row, for the row digests and the entry's values.
    let written = rows::pinned(rows::OUTPUT_SETTINGS, || {
        let digest = |r: Option<Row>| r.map(|r| row_digest(&r.column_texts()));
        let args: [DatumWithOid; 17] = [
            as_row(old),
            as_row(new),
            TimestampWithTimeZone::try_from(now).ok().into(),
            i64::try_from(txid).unwrap_or(i64::MAX).into(),
            qualified_name(relid).unwrap_or_default().into(),
            op.into(),
            unsafe { DatumWithOid::new(relid, pg_sys::OIDOID) },
            digest(old).into(),
            digest(new).into(),
            user_name(unsafe { pg_sys::GetUserId() }).into(),
            user_name(unsafe { pg_sys::GetSessionUserId() }).into(),
            claims.map(|c| c.kid.clone()).into(),
            claims.map(|c| c.jti.clone()).into(),
            claims.map(|c| c.sub.clone()).into(),
            claims.map(|c| c.acr.clone()).into(),
            claims.map(|c| c.amr.clone()).into(),
            auth_time.into(),
        ];
        owner::as_owner(|| rows::update_kept(INSERT_ENTRY, &args))
    });
    if written != Some(1) {
        error!("pg_stepup: could not write the audit entry; the change is refused");
    }
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
