//! Reading the rows a trigger sees: column values, the row filter, and
//! the rows as `to_jsonb` renders them. SQL runs through plans kept per
//! backend, with the settings that could change its meaning pinned.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_int, CStr, CString};

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::{JsonB, PgOid, PgTupleDesc};
use serde_json::{Map, Value};

unsafe extern "C-unwind" {
    /// Same stored value, looking through TOAST and compression.
    fn datum_image_eq(
        value1: pg_sys::Datum,
        value2: pg_sys::Datum,
        by_val: bool,
        len: c_int,
    ) -> bool;
}

thread_local! {
    static PLANS: RefCell<HashMap<String, OwnedPreparedStatement>> = RefCell::new(HashMap::new());
}

/// A row of a trigger's relation.
#[derive(Clone, Copy)]
pub struct Row {
    pub rel: pg_sys::Relation,
    pub tuple: *mut pg_sys::HeapTupleData,
}

impl Row {
    fn desc(&self) -> pg_sys::TupleDesc {
        unsafe { (*self.rel).rd_att }
    }

    /// 1-based attribute number of a live column.
    fn attnum(&self, column: &str) -> Option<c_int> {
        let name = CString::new(column).ok()?;
        let n = unsafe { pg_sys::SPI_fnumber(self.desc(), name.as_ptr()) };
        (n > 0).then_some(n)
    }

    /// The column's value in its text form, None for NULL or no such column.
    pub fn text(&self, column: &str) -> Option<String> {
        let n = self.attnum(column)?;
        unsafe {
            let p = pg_sys::SPI_getvalue(self.tuple, self.desc(), n);
            if p.is_null() {
                return None;
            }
            let s = CStr::from_ptr(p).to_string_lossy().into_owned();
            pg_sys::pfree(p.cast());
            Some(s)
        }
    }

    /// Every live column as (name, text output), the output taken under the
    /// caller's settings (see [`OUTPUT_SETTINGS`]).
    pub fn column_texts(&self) -> Vec<(String, Option<String>)> {
        let desc = unsafe { PgTupleDesc::from_pg_unchecked(self.desc()) };
        let mut out = Vec::with_capacity(desc.len());
        for (i, attr) in desc.iter().enumerate() {
            if attr.attisdropped {
                continue;
            }
            let name = attr.name().to_string();
            let Ok(attnum) = c_int::try_from(i + 1) else {
                continue;
            };
            let mut is_null = false;
            let value = unsafe {
                let datum = pg_sys::SPI_getbinval(self.tuple, self.desc(), attnum, &mut is_null);
                if is_null {
                    None
                } else {
                    let (mut func, mut varlena) = (pg_sys::InvalidOid, false);
                    pg_sys::getTypeOutputInfo(attr.atttypid, &mut func, &mut varlena);
                    let p = pg_sys::OidOutputFunctionCall(func, datum);
                    let s = CStr::from_ptr(p).to_string_lossy().into_owned();
                    pg_sys::pfree(p.cast());
                    Some(s)
                }
            };
            out.push((name, value));
        }
        out
    }

    /// The row as one composite datum of the table's row type.
    pub fn datum(&self) -> DatumWithOid<'static> {
        unsafe {
            let d = pg_sys::heap_copy_tuple_as_datum(self.tuple, self.desc());
            DatumWithOid::new(d, (*(*self.rel).rd_rel).reltype)
        }
    }
}

/// Does `new` differ from `old` in any of `columns`? Compared as stored
/// values (binary image), as Postgres itself decides whether an UPDATE
/// changed a column. A column that no longer exists counts as changed (fail
/// closed).
pub fn changes_any(old: Row, new: Row, columns: &[String]) -> bool {
    columns.iter().any(|c| {
        old.attnum(c)
            .and_then(|n| usize::try_from(n - 1).ok())
            .is_none_or(|i| differs(old, new, i))
    })
}

/// Names of the live columns `new` changed from `old` (every live column
/// when either is missing), sorted bytewise.
pub fn changed_columns(old: Option<Row>, new: Option<Row>) -> Vec<String> {
    let Some(any) = old.or(new) else {
        return Vec::new();
    };
    let desc = unsafe { PgTupleDesc::from_pg_unchecked(any.desc()) };
    let mut names: Vec<String> = desc
        .iter()
        .enumerate()
        .filter(|(i, attr)| {
            !attr.attisdropped
                && match (old, new) {
                    (Some(o), Some(n)) => differs(o, n, *i),
                    _ => true,
                }
        })
        .map(|(_, attr)| attr.name().to_string())
        .collect();
    names.sort_unstable();
    names
}

/// Does column `i` (0-based) hold a different value in `new` than in `old`?
fn differs(old: Row, new: Row, i: usize) -> bool {
    let desc = unsafe { PgTupleDesc::from_pg_unchecked(old.desc()) };
    let (Some(attr), Ok(n)) = (desc.get(i), c_int::try_from(i + 1)) else {
        return true;
    };
    unsafe {
        let (mut old_null, mut new_null) = (false, false);
        let a = pg_sys::SPI_getbinval(old.tuple, old.desc(), n, &mut old_null);
        let b = pg_sys::SPI_getbinval(new.tuple, new.desc(), n, &mut new_null);
        match (old_null, new_null) {
            (true, true) => false,
            (false, false) => !datum_image_eq(a, b, attr.attbyval, attr.attlen.into()),
            _ => true,
        }
    }
}

/// Is the row inside the policy's row filter? Evaluated as the current
/// role, like the row-level security policy that carries the same filter,
/// with search_path pinned so a session cannot redefine what it calls.
pub fn in_filter(row: Row, filter: &str) -> bool {
    let relname = unsafe { CStr::from_ptr((*(*row.rel).rd_rel).relname.data.as_ptr()) };
    let sql = format!(
        "SELECT coalesce(({filter}), false) FROM (SELECT ($1).*) AS {}",
        spi::quote_identifier(relname.to_string_lossy())
    );
    pinned(&[(c"search_path", c"pg_catalog, pg_temp")], || {
        // No answer at all (not NULL, which the filter maps to false) fails closed.
        query_one::<bool>(&sql, row).unwrap_or(true)
    })
}

/// The row as `to_jsonb` renders it with TimeZone UTC and the default
/// output settings: what `stepup.change_digest` callers are told to send.
pub fn as_json(row: Row) -> Map<String, Value> {
    let json = rendered(row.rel, || unsafe {
        JsonB::from_datum(to_jsonb(row), false)
    });
    match json {
        Some(JsonB(Value::Object(m))) => m,
        _ => Map::new(),
    }
}

/// Runs `f`, which renders rows of `rel` (to_jsonb, output functions), so
/// that the text is the same whatever the session's settings: directly when
/// every column has a type whose rendering reads no setting, otherwise under
/// [`OUTPUT_SETTINGS`]. Switching settings costs more than rendering a small
/// row (two set_config_option calls were ~9% of a protected UPDATE's CPU).
pub fn rendered<R>(rel: pg_sys::Relation, f: impl FnOnce() -> R) -> R {
    let desc = unsafe { PgTupleDesc::from_pg_unchecked((*rel).rd_att) };
    if desc
        .iter()
        .all(|a| a.attisdropped || SETTINGS_FREE.contains(&a.atttypid))
    {
        f()
    } else {
        pinned(OUTPUT_SETTINGS, f)
    }
}

/// Built-in types whose output function and to_jsonb rendering read no
/// setting (not DateStyle, IntervalStyle, TimeZone, extra_float_digits,
/// bytea_output, lc_monetary or search_path), nor do their arrays'.
/// Anything else (floats, dates and times, bytea, money, reg* names, enums,
/// domains, composites, user types) is rendered under [`OUTPUT_SETTINGS`].
const SETTINGS_FREE: [pg_sys::Oid; 26] = [
    pg_sys::BOOLOID,
    pg_sys::INT2OID,
    pg_sys::INT4OID,
    pg_sys::INT8OID,
    pg_sys::NUMERICOID,
    pg_sys::OIDOID,
    pg_sys::TEXTOID,
    pg_sys::VARCHAROID,
    pg_sys::BPCHAROID,
    pg_sys::NAMEOID,
    pg_sys::CHAROID,
    pg_sys::UUIDOID,
    pg_sys::JSONOID,
    pg_sys::JSONBOID,
    pg_sys::INETOID,
    pg_sys::CIDROID,
    pg_sys::BOOLARRAYOID,
    pg_sys::INT2ARRAYOID,
    pg_sys::INT4ARRAYOID,
    pg_sys::INT8ARRAYOID,
    pg_sys::NUMERICARRAYOID,
    pg_sys::TEXTARRAYOID,
    pg_sys::VARCHARARRAYOID,
    pg_sys::UUIDARRAYOID,
    pg_sys::JSONBARRAYOID,
    pg_sys::INETARRAYOID,
];

/// Output settings under which rows are rendered (to_jsonb, digests, the
/// audit): the same text whatever the session's settings.
pub const OUTPUT_SETTINGS: &[(&CStr, &CStr)] = &[
    (c"search_path", c"pg_catalog, pg_temp"),
    (c"TimeZone", c"UTC"),
    (c"DateStyle", c"ISO, MDY"),
    (c"IntervalStyle", c"postgres"),
    (c"extra_float_digits", c"1"),
    (c"bytea_output", c"hex"),
];

/// Builds a row of `rel` from JSON (as `jsonb_populate_record` reads it)
/// and hands it to `f`.
pub fn with_json_row<R>(rel: pg_sys::Relation, json: &str, f: impl FnOnce(Row) -> R) -> Option<R> {
    let reltype = unsafe { (*(*rel).rd_rel).reltype };
    Spi::connect(|client| {
        let args = [json.into(), DatumWithOid::null_oid(reltype)];
        let table = client
            .select(
                "SELECT pg_catalog.jsonb_populate_record($2, $1::pg_catalog.jsonb)",
                Some(1),
                &args,
            )
            .ok()?;
        let datum = table.first().get_datum_by_ordinal(1).ok()??;
        unsafe {
            let header = pg_sys::pg_detoast_datum(datum.cast_mut_ptr())
                .cast::<pg_sys::HeapTupleHeaderData>();
            let mut tuple = pg_sys::HeapTupleData {
                t_len: u32::try_from(pgrx::varsize_any(header.cast())).ok()?,
                t_self: pg_sys::ItemPointerData::default(),
                t_tableOid: pg_sys::InvalidOid,
                t_data: header,
            };
            Some(f(Row {
                rel,
                tuple: &mut tuple,
            }))
        }
    })
}

/// Names of the primary key columns of `rel` (empty if it has none), from
/// the relation cache.
pub fn key_columns(rel: pg_sys::Relation) -> Vec<String> {
    unsafe {
        let keys = pg_sys::RelationGetIndexAttrBitmap(
            rel,
            pg_sys::IndexAttrBitmapKind::INDEX_ATTR_BITMAP_PRIMARY_KEY,
        );
        let desc = PgTupleDesc::from_pg_unchecked((*rel).rd_att);
        let names = desc
            .iter()
            .enumerate()
            .filter(|(i, attr)| {
                let bit = c_int::try_from(*i + 1)
                    .map(|n| n - pg_sys::FirstLowInvalidHeapAttributeNumber)
                    .unwrap_or(-1);
                !attr.attisdropped && bit >= 0 && pg_sys::bms_is_member(bit, keys)
            })
            .map(|(_, attr)| attr.name().to_string())
            .collect();
        pg_sys::bms_free(keys);
        names
    }
}

/// The row as `to_jsonb(row)` renders it under the caller's settings (see
/// [`OUTPUT_SETTINGS`]), without going through SQL: to_jsonb is called
/// directly, told the row type as a planner would tell it.
pub fn to_jsonb(row: Row) -> pg_sys::Datum {
    unsafe {
        let reltype = (*(*row.rel).rd_rel).reltype;
        let mut flinfo = std::mem::zeroed::<pg_sys::FmgrInfo>();
        pg_sys::fmgr_info(pg_sys::Oid::from(pg_sys::F_TO_JSONB), &mut flinfo);
        let arg = pg_sys::makeNullConst(reltype, -1, pg_sys::InvalidOid);
        flinfo.fn_expr = pg_sys::makeFuncExpr(
            pg_sys::Oid::from(pg_sys::F_TO_JSONB),
            pg_sys::JSONBOID,
            pg_sys::lappend(std::ptr::null_mut(), arg.cast()),
            pg_sys::InvalidOid,
            pg_sys::InvalidOid,
            pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
        )
        .cast();
        let value = pg_sys::heap_copy_tuple_as_datum(row.tuple, row.desc());
        pg_sys::FunctionCall1Coll(&mut flinfo, pg_sys::InvalidOid, value)
    }
}

/// Runs a kept one-parameter plan over `row`; the first column of its row.
fn query_one<T: FromDatum + IntoDatum>(sql: &str, row: Row) -> Option<T> {
    let args = [row.datum()];
    Spi::connect_mut(|client| {
        with_kept(client, sql, &args, |client, plan| {
            client
                .select(plan, Some(1), &args)
                .ok()?
                .first()
                .get_one::<T>()
                .ok()
                .flatten()
        })
    })
}

/// Runs a mutating statement through a kept plan; how many rows it processed.
pub fn update_kept(sql: &str, args: &[DatumWithOid]) -> Option<usize> {
    Spi::connect_mut(|client| {
        with_kept(client, sql, args, |client, plan| {
            client.update(plan, None, args).map(|t| t.len()).ok()
        })
    })
}

/// Hands `f` the plan of `sql` for these argument types, prepared once per
/// backend and kept (Postgres replans it when the tables it reads change).
fn with_kept<'conn, R>(
    client: &mut SpiClient<'conn>,
    sql: &str,
    args: &[DatumWithOid],
    f: impl FnOnce(&mut SpiClient<'conn>, &OwnedPreparedStatement) -> Option<R>,
) -> Option<R> {
    let types: Vec<pg_sys::Oid> = args.iter().map(|a| a.oid()).collect();
    let key = format!("{types:?}:{sql}");
    let cached = PLANS.with(|p| p.borrow_mut().remove(&key));
    let plan = match cached {
        Some(plan) => plan,
        None => {
            let types: Vec<PgOid> = types.iter().map(|t| PgOid::from(*t)).collect();
            client.prepare_mut(sql, &types).ok()?.keep()
        }
    };
    let result = f(client, &plan);
    PLANS.with(|p| p.borrow_mut().insert(key, plan));
    result
}

/// Runs `f` with settings changed for its duration only, as a function's
/// SET clause would (an error unwinds them with the (sub)transaction).
pub fn pinned<R>(settings: &[(&CStr, &CStr)], f: impl FnOnce() -> R) -> R {
    let nest = unsafe { pg_sys::NewGUCNestLevel() };
    for (name, value) in settings {
        // Already so (the common case): nothing to switch.
        let current = unsafe { pg_sys::GetConfigOption(name.as_ptr(), true, false) };
        if !current.is_null() && unsafe { CStr::from_ptr(current) } == *value {
            continue;
        }
        unsafe {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
    }
    let r = f();
    unsafe { pg_sys::AtEOXact_GUC(true, nest) };
    r
}
