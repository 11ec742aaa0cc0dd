//! The audit (DESIGN section 7): entries written by a trigger on every
//! protected table, an append-only log, a hash chain linked by a single
//! sealer, and verification. Encodings: docs/audit-encoding.md.

mod append;
mod entry;
mod event;
mod sealer;
mod trigger;
mod verify;

use pgrx::prelude::*;
// The encodings and the chain walk live in the pure core (one
// implementation, shared with `stepup verify`).
pub use stepup_core::audit::{chain, encoding};

use crate::catalog;
use crate::pg::raise::raise;
use crate::pg::reject;
use crate::rows::render;
use crate::rows::{self, Row};

#[cfg(any(test, feature = "pg_test"))]
pub use entry::type_of as column_type;
pub use event::record_event;
pub use sealer::register as register_sealer;
pub use trigger::write_entry;

/// Per-backend caches of the audit (role names, the log's layout), dropped
/// when the catalog changes under them.
pub fn register_invalidation() {
    trigger::register_invalidation();
    append::register_invalidation();
}

/// The extension's stepup.audit_log and its id sequence, from the catalog
/// snapshot (looked up once per backend, forgotten when either is renamed
/// or dropped). Missing: looked for again at each change (so a log renamed
/// back is found), and the change is refused. Opening the log reads any
/// invalidation this lookup did not.
fn relations() -> (pg_sys::Oid, pg_sys::Oid) {
    let mut s = catalog::snapshot_as_read();
    if s.audit_log == pg_sys::InvalidOid || s.audit_seq == pg_sys::InvalidOid {
        catalog::forget();
        s = catalog::snapshot();
    }
    for (oid, name) in [
        (s.audit_log, "audit_log"),
        (s.audit_seq, "audit_log_id_seq"),
    ] {
        if oid == pg_sys::InvalidOid {
            reject::internal(
                format!("pg_stepup: stepup.{name} is missing; the change is refused"),
                "Restore it (it belongs to the extension) or reinstall pg_stepup.",
            );
        }
    }
    (s.audit_log, s.audit_seq)
}

/// The row digest (docs/audit-encoding.md) of a row's `values` over `columns`, sorted
/// by name ([`rows::Shape`]): each value's text straight into the hash,
/// rendered under the caller's settings (see [`render::rendered`]).
fn digest(values: &rows::Values, columns: &[rows::Column]) -> stepup_core::digest::Hex {
    let items: smallvec::SmallVec<[_; 16]> = columns
        .iter()
        .map(|c| (c.type_oid, values.get(c.index)))
        .collect();
    let mut h = encoding::RowHasher::new(columns.len());
    for (c, t) in columns.iter().zip(render::texts(&items)) {
        t.with(|text| h.column(&c.name, text));
    }
    h.finish()
}

/// BEFORE UPDATE/DELETE/TRUNCATE on the audit tables: always refuse.
#[pg_trigger]
fn append_only<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    let table = trigger.table_name().unwrap_or_default();
    let op = match trigger.trigger_data().tg_event & pg_sys::TRIGGER_EVENT_OPMASK {
        pg_sys::TRIGGER_EVENT_UPDATE => "UPDATE",
        pg_sys::TRIGGER_EVENT_DELETE => "DELETE",
        _ => "TRUNCATE",
    };
    raise(reject::append_only(&table, op))
}

/// Hash of an audit entry from its fields (stepup.entry_fields).
#[pg_extern(immutable, parallel_safe)]
fn entry_hash(fields: Vec<Option<String>>) -> String {
    if fields.len() != encoding::ENTRY_FIELDS.len() {
        reject::invalid_parameter(
            format!(
                "an audit entry has {} fields, not {}",
                encoding::ENTRY_FIELDS.len(),
                fields.len()
            ),
            "Pass the array stepup.entry_fields(...) returns.",
        );
    }
    encoding::entry_hash(fields.iter().map(Option::as_deref))
}

/// Hash of a chain link.
#[pg_extern(immutable, parallel_safe)]
fn link_hash(seq: i64, entry_id: i64, entry_hash: &str, prev_hash: &str) -> String {
    encoding::link_hash(seq, entry_id, entry_hash, prev_hash)
}

// The row digest of `row_data` (as to_jsonb renders a row of `target`),
// exactly as the audit computes old_digest and new_digest. The JSON travels
// as text: through serde, numerics would become doubles (150.50 -> 150.5).
#[pg_extern(sql = r#"
CREATE FUNCTION stepup.row_digest_text(target regclass, row_data text)
RETURNS text STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'row_digest_wrapper';
CREATE FUNCTION stepup.row_digest(target regclass, row_data jsonb)
RETURNS text STRICT STABLE PARALLEL SAFE
LANGUAGE sql AS 'SELECT stepup.row_digest_text($1, $2::text)';
COMMENT ON FUNCTION stepup.row_digest_text(regclass, text) IS 'stepup.row_digest, with the JSON as text.';
COMMENT ON FUNCTION stepup.row_digest(regclass, jsonb) IS
    'SHA-256 of a row''s canonical encoding (docs/audit-encoding.md), as stepup.audit_log records it. Independent of TimeZone, DateStyle, extra_float_digits and client_encoding.';
"#)]
fn row_digest(target: pg_sys::Oid, row_data: &str) -> String {
    let rel = unsafe { pg_sys::RelationIdGetRelation(target) };
    if rel.is_null() {
        reject::undefined_table(
            format!("relation with OID {} does not exist", u32::from(target)),
            "Pass a table, e.g. 'public.payouts'.",
        );
    }
    let digest = rows::with_json_row(rel, row_data, |row: Row| {
        let shape = rows::shape(row.rel);
        render::rendered(&shape, || digest(&row.values(), &shape.by_name).to_string())
    });
    unsafe { pg_sys::RelationClose(rel) };
    digest.unwrap_or_else(|| {
        reject::invalid_parameter(
            "row_data does not fit the table's row type",
            "Pass to_jsonb(row) of a row of the table.",
        )
    })
}
