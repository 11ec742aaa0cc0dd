//! `stepup.change_digest`: the SQL face of [`crate::digest`], so an
//! application can show the user, and an IdP can sign, the exact change.

use pgrx::prelude::*;
use pgrx::JsonB;

use crate::digest;
use crate::raise::bad_argument;

/// `"<schema>.<name>"` of a relation, unquoted, as the digest names it.
pub fn qualified_name(relid: pg_sys::Oid) -> Option<String> {
    unsafe {
        let name = pg_sys::get_rel_name(relid);
        if name.is_null() {
            return None;
        }
        let nsp = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
        if nsp.is_null() {
            return None;
        }
        Some(format!(
            "{}.{}",
            std::ffi::CStr::from_ptr(nsp).to_string_lossy(),
            std::ffi::CStr::from_ptr(name).to_string_lossy()
        ))
    }
}

// pgrx has no regclass type; a regclass datum is its Oid, so the SQL
// declaration is written out to keep the contract's argument type.
#[pg_extern(sql = r#"
CREATE FUNCTION stepup.change_digest(target regclass, op text, key jsonb, changes jsonb)
RETURNS text STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'change_digest_wrapper';
"#)]
fn change_digest(target: pg_sys::Oid, op: &str, key: JsonB, changes: JsonB) -> String {
    let Some(table) = qualified_name(target) else {
        bad_argument(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("relation with OID {} does not exist", u32::from(target)),
            "Pass an existing table, e.g. 'public.payouts'.",
        );
    };
    match digest::change_digest(&table, op, &key.0, &changes.0) {
        Ok(d) => d,
        Err(e) => bad_argument(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            e.to_string(),
            "op is 'INSERT', 'UPDATE' or 'DELETE'; key and changes are JSON objects.",
        ),
    }
}
