//! `stepup.change_digest`: the SQL face of [`crate::digest`], so an
//! application can show the user, and an IdP can sign, the exact change.

use std::ffi::CStr;

use pgrx::prelude::*;

use crate::digest;
use crate::jsonb::JsonbArg;
use crate::raise::bad_argument;

/// `"<schema>.<name>"` of a relation, unquoted, as the digest names it.
pub fn qualified_name(relid: pg_sys::Oid) -> Option<String> {
    unsafe {
        let name = pg_sys::get_rel_name(relid);
        if name.is_null() {
            return None;
        }
        in_schema(pg_sys::get_rel_namespace(relid), CStr::from_ptr(name))
    }
}

/// [`qualified_name`] of an open relation (one catalog lookup, not three).
pub fn relation_name(rel: pg_sys::Relation) -> Option<String> {
    unsafe {
        let form = &*(*rel).rd_rel;
        in_schema(
            form.relnamespace,
            CStr::from_ptr(form.relname.data.as_ptr()),
        )
    }
}

fn in_schema(nsp: pg_sys::Oid, name: &CStr) -> Option<String> {
    let nsp = unsafe { pg_sys::get_namespace_name(nsp) };
    if nsp.is_null() {
        return None;
    }
    let nsp = unsafe { CStr::from_ptr(nsp) };
    Some(format!(
        "{}.{}",
        nsp.to_string_lossy(),
        name.to_string_lossy()
    ))
}

// pgrx has no regclass type; a regclass datum is its Oid, so the SQL
// declaration is written out to keep the contract's argument type.
#[pg_extern(sql = r#"
CREATE FUNCTION stepup.change_digest(target regclass, op text, key jsonb, changes jsonb)
RETURNS text STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'change_digest_wrapper';
"#)]
fn change_digest(target: pg_sys::Oid, op: &str, key: JsonbArg, changes: JsonbArg) -> String {
    let Some(table) = qualified_name(target) else {
        bad_argument(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("relation with OID {} does not exist", u32::from(target)),
            "Pass an existing table, e.g. 'public.payouts'.",
        );
    };
    let read = |what: &str, arg: &JsonbArg| {
        arg.exact_value().unwrap_or_else(|e| {
            bad_argument(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("{what} cannot be canonicalized: {e}"),
                digest::UNREPRESENTABLE_HINT,
            )
        })
    };
    let (key, changes) = (read("key", &key), read("changes", &changes));
    match digest::change_digest(&table, op, &key, &changes) {
        Ok(d) => d,
        Err(e) => bad_argument(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            e.to_string(),
            "op is 'INSERT', 'UPDATE' or 'DELETE'; key and changes are JSON objects.",
        ),
    }
}
