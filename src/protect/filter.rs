//! A policy's row filter, as Postgres parsed it once when the table was
//! protected: the expression of the table's own policy `stepup_filter`
//! (`true OR (filter)`, which never limits a read), so that Postgres keeps
//! the tree. Columns are held by attribute number, types, operators and
//! functions by OID, literals already read: a rename of a column, a type or
//! an enum label cannot move it onto other data, and a writer's `DateStyle`
//! cannot change what a literal means. pg_dump writes the policy as SQL and
//! pg_restore parses it again, in the database and the PostgreSQL version
//! it restores into, as for any policy. The one evaluation below, with the
//! settings that change what a value means at run time pinned, serves both
//! the guard trigger and the row-level security policies
//! (`stepup.in_row_filter`), so every path judges a row the same way in
//! every session.

use std::ffi::{CStr, CString};

use pgrx::prelude::*;

use crate::pg::reject;
use crate::rows::{self, Row};

/// The policy protect() parses the filter into.
const POLICY: &CStr = c"stepup_filter";

/// Settings a filter's casts and functions may read while it runs.
const PINNED: [(&CStr, &CStr); 5] = [
    (c"TimeZone", c"UTC"),
    (c"DateStyle", c"ISO, MDY"),
    (c"IntervalStyle", c"postgres"),
    (c"extra_float_digits", c"1"),
    (c"search_path", c"pg_catalog, pg_temp"),
];

/// The filter inside a stepup_filter policy's expression: the second arm
/// of `true OR (filter)`; None for any other shape (a policy altered by
/// hand, or not protect()'s).
unsafe fn filter_of(qual: *mut pg_sys::Node) -> Option<*mut pg_sys::Expr> {
    if qual.is_null() || (*qual).type_ != pg_sys::NodeTag::T_BoolExpr {
        return None;
    }
    let or = qual.cast::<pg_sys::BoolExpr>();
    let args = (*or).args;
    if (*or).boolop != pg_sys::BoolExprType::OR_EXPR || args.is_null() || (*args).length != 2 {
        return None;
    }
    let first = (*(*args).elements).ptr_value.cast::<pg_sys::Node>();
    let second = (*(*args).elements.add(1)).ptr_value.cast::<pg_sys::Expr>();
    let is_true = !first.is_null()
        && (*first).type_ == pg_sys::NodeTag::T_Const
        && (*first.cast::<pg_sys::Const>()).consttype == pg_sys::BOOLOID
        && !(*first.cast::<pg_sys::Const>()).constisnull
        && (*first.cast::<pg_sys::Const>()).constvalue.value() != 0;
    (is_true && !second.is_null()).then_some(second)
}

/// The filter of `rel`, from its stepup_filter policy in the relcache
/// (Postgres builds the policies of a table with row security enabled,
/// which protect() enables with a filter). None if there is none.
unsafe fn filter_in(rel: pg_sys::Relation) -> Option<*mut pg_sys::Expr> {
    let desc = (*rel).rd_rsdesc;
    if desc.is_null() || (*desc).policies.is_null() {
        return None;
    }
    let policies = (*desc).policies;
    for i in 0..usize::try_from((*policies).length).unwrap_or(0) {
        let p = (*(*policies).elements.add(i))
            .ptr_value
            .cast::<pg_sys::RowSecurityPolicy>();
        if p.is_null() || (*p).policy_name.is_null() || (*p).permissive {
            continue;
        }
        if CStr::from_ptr((*p).policy_name) == POLICY && (*p).polcmd as u8 == b'r' {
            return filter_of((*p).qual.cast());
        }
    }
    None
}

/// Is `row` inside its table's row filter? NULL counts as outside, as in
/// `coalesce(filter, false)`; a filter that cannot be found (its policy
/// dropped or altered, row security switched off) counts every row as
/// inside (fail closed).
pub fn contains(row: Row) -> bool {
    rows::pinned(&PINNED, || unsafe {
        let Some(node) = filter_in(row.rel) else {
            return true;
        };
        // A copy, planned: the relcache's tree is never written to, and an
        // invalidation while the filter runs cannot free what runs.
        let planned = pg_sys::expression_planner(node);
        let state = pg_sys::ExecInitExpr(planned, std::ptr::null_mut());
        let econtext = pg_sys::CreateStandaloneExprContext();
        let slot = pg_sys::MakeSingleTupleTableSlot((*row.rel).rd_att, &pg_sys::TTSOpsHeapTuple);
        pg_sys::ExecStoreHeapTuple(row.tuple, slot, false);
        (*econtext).ecxt_scantuple = slot;
        let mut isnull = false;
        let inside = match (*state).evalfunc {
            Some(eval) => {
                let old = pg_sys::MemoryContextSwitchTo((*econtext).ecxt_per_tuple_memory);
                // Not a pgrx binding: guarded so that an error in the
                // filter unwinds like any pg_sys call.
                let d = pg_sys::ffi::pg_guard_ffi_boundary(|| eval(state, econtext, &mut isnull));
                pg_sys::MemoryContextSwitchTo(old);
                !isnull && d.value() != 0
            }
            None => true,
        };
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::FreeExprContext(econtext, true);
        inside
    })
}

/// Why protect() refuses a filter.
pub enum Unusable {
    Unreadable,
    Subquery,
}

/// The attribute numbers a parsed filter reads (0: the whole row): the
/// expression of a stepup_filter policy (pg_policy.polqual as text), whose
/// `true OR` reads none, or (from 0.1.0's protect(), until the extension
/// is updated) the bare filter.
pub fn columns_read(qual: &str) -> Result<Vec<i16>, Unusable> {
    let text = CString::new(qual).map_err(|_| Unusable::Unreadable)?;
    unsafe {
        let node = pg_sys::stringToNode(text.as_ptr()).cast::<pg_sys::Node>();
        if node.is_null() {
            return Err(Unusable::Unreadable);
        }
        // The guard evaluates the expression itself, without a planner
        // for subqueries.
        if pg_sys::checkExprHasSubLink(node) {
            return Err(Unusable::Subquery);
        }
        let mut set: *mut pg_sys::Bitmapset = std::ptr::null_mut();
        pg_sys::pull_varattnos(node, 1, &mut set);
        let mut out = Vec::new();
        let mut member = -1;
        loop {
            member = pg_sys::bms_next_member(set, member);
            if member < 0 {
                break;
            }
            let attno = member + pg_sys::FirstLowInvalidHeapAttributeNumber;
            // System columns (ctid, xmin) are not the row's data.
            if let Ok(n) = i16::try_from(attno) {
                if n >= 0 {
                    out.push(n);
                }
            }
        }
        Ok(out)
    }
}

/// `stepup.in_row_filter(target, row)`: the row-level security policies of
/// a protected table call this with the row written, so that they judge it
/// exactly as the guard trigger does.
#[pg_extern(sql = r#"
CREATE FUNCTION stepup.in_row_filter(target regclass, r record)
RETURNS boolean STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'in_row_filter_wrapper';
COMMENT ON FUNCTION stepup.in_row_filter(regclass, record) IS
    'Whether a row of a protected table is inside its policy''s row filter, evaluated as it was parsed at protect time (used by pg_stepup''s row-level security policies).';
"#)]
fn in_row_filter(target: pg_sys::Oid, r: pgrx::datum::AnyElement) -> bool {
    let snapshot = crate::catalog::snapshot();
    if !snapshot.policies.get(&target).is_some_and(|p| p.row_filter) {
        // A row-level security policy of pg_stepup's without a filter
        // behind it: the row counts as protected.
        return true;
    }
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(target);
        if rel.is_null() {
            return true;
        }
        let header = pg_sys::pg_detoast_datum(r.datum().cast_mut_ptr())
            .cast::<pg_sys::HeapTupleHeaderData>();
        // Only a row of the table itself is read with the table's columns:
        // another row type (ROW(...), another table's) would be read as
        // bytes of the wrong types.
        let row_type = (*header).t_choice.t_datum.datum_typeid;
        if row_type != (*(*rel).rd_rel).reltype {
            pg_sys::RelationClose(rel);
            reject::invalid_parameter(
                "stepup.in_row_filter takes a row of the table itself",
                "Pass the table's row (the row-level security policies pass table.*).",
            );
        }
        let mut tuple = pg_sys::HeapTupleData {
            t_len: u32::try_from(pgrx::varsize_any(header.cast())).unwrap_or(0),
            t_self: pg_sys::ItemPointerData::default(),
            t_tableOid: target,
            t_data: header,
        };
        let inside = contains(Row {
            rel,
            tuple: &mut tuple,
        });
        pg_sys::RelationClose(rel);
        inside
    }
}

/// `stepup.filter_columns(filter_expr)`: for protect(), the columns the
/// filter in a stepup_filter policy's expression reads (`filter_expr`:
/// pg_policy.polqual as text); refuses what the guard cannot evaluate.
#[pg_extern(sql = r#"
CREATE FUNCTION stepup.filter_columns(filter_expr text)
RETURNS int2[] STRICT IMMUTABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'filter_columns_wrapper';
COMMENT ON FUNCTION stepup.filter_columns(text) IS
    'Used by stepup.protect: the attribute numbers a parsed row filter reads (0: the whole row).';
"#)]
fn filter_columns(filter_expr: &str) -> Vec<i16> {
    match columns_read(filter_expr) {
        Ok(columns) => columns,
        Err(Unusable::Subquery) => reject::not_supported(
            "row_filter must not contain a subquery",
            "Move the subquery into a function and call it from the filter (the function sees the row's columns as arguments).",
        ),
        Err(Unusable::Unreadable) => reject::invalid_parameter(
            "row_filter cannot be read back",
            "Pass a boolean SQL expression over the table's columns.",
        ),
    }
}
