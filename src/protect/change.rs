//! `stepup.change_digest`: the SQL face of [`stepup_core::digest`], so an
//! application can show the user, and an IdP can sign, the exact change.

use pgrx::prelude::*;

use crate::pg::names::qualified_name;

use crate::pg::jsonb::JsonbArg;
use crate::pg::reject;
use stepup_core::digest;

// pgrx has no regclass type; a regclass datum is its Oid, so the SQL
// declaration is written out to keep the contract's argument type.
#[pg_extern(sql = r#"
CREATE FUNCTION stepup.change_digest(target regclass, op text, key jsonb, changes jsonb)
RETURNS text STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'change_digest_wrapper';
"#)]
fn change_digest(target: pg_sys::Oid, op: &str, key: JsonbArg, changes: JsonbArg) -> String {
    let Some(table) = qualified_name(target) else {
        reject::undefined_table(
            format!("relation with OID {} does not exist", u32::from(target)),
            "Pass an existing table, e.g. 'public.payouts'.",
        );
    };
    let read = |what: &str, arg: &JsonbArg| {
        arg.exact_value().unwrap_or_else(|e| {
            reject::invalid_parameter(
                format!("{what} cannot be canonicalized: {e}"),
                digest::UNREPRESENTABLE_HINT,
            )
        })
    };
    let (key, changes) = (read("key", &key), read("changes", &changes));
    match digest::change_digest(&table, op, &key, &changes) {
        Ok(d) => d,
        Err(e) => reject::invalid_parameter(
            e.to_string(),
            "op is 'INSERT', 'UPDATE' or 'DELETE'; key and changes are JSON objects.",
        ),
    }
}
