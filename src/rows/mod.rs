//! Reading the rows a trigger sees: columns and values, what an UPDATE
//! changed, the row filter. SQL runs through plans kept per backend, with
//! the settings that could change its meaning pinned. How rows render as
//! text and jsonb is render.rs.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_int, CStr};
use std::rc::Rc;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::{PgOid, PgTupleDesc};

pub mod event;
pub mod render;

use crate::pg::cache::OidMap;
use smallvec::{smallvec, SmallVec};

// Not in pgrx's bindings: checked against each version's headers by
// scripts/declarations.sh.
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
    static SHAPES: RefCell<OidMap<Rc<Shape>>> = RefCell::new(OidMap::default());
    /// Bumped by every invalidation, so a shape computed across one is not kept.
    static SHAPES_GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// What the audit reads of a table's columns for every row, kept per
/// backend until the table's relcache entry is invalidated (any ALTER
/// TABLE, a new or dropped index or key).
pub struct Shape {
    /// The live columns, sorted bytewise by name (as row digests take them).
    pub by_name: Vec<Column>,
    /// The primary key's columns, in attribute order (empty: none).
    pub keys: Vec<Column>,
    /// Every column renders without reading a setting (render::rendered).
    pub settings_free: bool,
    /// The table's schema-qualified name, as entries record it.
    pub name: String,
}

/// The shape of `rel`.
pub fn shape(rel: pg_sys::Relation) -> Rc<Shape> {
    let relid = unsafe { (*rel).rd_id };
    if let Some(s) = SHAPES.with(|m| m.borrow().get(&relid).cloned()) {
        return s;
    }
    // No borrow held while Postgres runs: an invalidation may arrive.
    let generation = SHAPES_GENERATION.with(Cell::get);
    let mut by_name = live_columns(rel, |_, _| true);
    by_name.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let s = Rc::new(Shape {
        by_name,
        keys: key_columns(rel),
        settings_free: reads_no_setting(rel),
        name: crate::pg::names::relation_name(rel).unwrap_or_default(),
    });
    if SHAPES_GENERATION.with(Cell::get) == generation {
        SHAPES.with(|m| m.borrow_mut().insert(relid, s.clone()));
    }
    s
}

/// Does every live column of `rel` have a type in [`SETTINGS_FREE`]? (Kept
/// in the table's [`Shape`], not recomputed per row.)
fn reads_no_setting(rel: pg_sys::Relation) -> bool {
    let desc = unsafe { PgTupleDesc::from_pg_unchecked((*rel).rd_att) };
    desc.iter()
        .all(|a| a.attisdropped || SETTINGS_FREE.contains(&a.atttypid))
}

/// Built-in types whose output function and to_jsonb rendering read no
/// setting (not DateStyle, IntervalStyle, TimeZone, extra_float_digits,
/// bytea_output, lc_monetary or search_path), nor do their arrays'.
/// Anything else (floats, dates and times, bytea, money, reg* names, enums,
/// domains, composites, user types) is rendered under [`render::OUTPUT_SETTINGS`].
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

pub fn register_invalidation() {
    crate::pg::cache::on_relcache_change(on_relcache_inval);
    // A renamed schema changes its tables' names without touching them.
    crate::pg::cache::on_syscache_change(pg_sys::SysCacheIdentifier::NAMESPACEOID, on_schema_inval);
}

#[pg_guard]
unsafe extern "C-unwind" fn on_schema_inval(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    on_relcache_inval(pg_sys::Datum::from(0), pg_sys::InvalidOid);
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_inval(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    SHAPES_GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
    SHAPES.with(|m| {
        let mut m = m.borrow_mut();
        if relid == pg_sys::InvalidOid {
            m.clear();
        } else {
            m.remove(&relid);
        }
    });
}

/// A row of a trigger's relation.
#[derive(Clone, Copy)]
pub struct Row {
    pub rel: pg_sys::Relation,
    pub tuple: *mut pg_sys::HeapTupleData,
}

/// A row's values, taken apart once (heap_deform_tuple): a column is then
/// an index, not a walk of the tuple to it for each column.
pub struct Values {
    datums: SmallVec<[pg_sys::Datum; 16]>,
    nulls: SmallVec<[bool; 16]>,
}

impl Values {
    /// Column `index`'s (0-based) value, None for NULL or no such column.
    pub fn get(&self, index: usize) -> Option<pg_sys::Datum> {
        match self.nulls.get(index) {
            Some(false) => self.datums.get(index).copied(),
            _ => None,
        }
    }
}

/// A live column of a relation.
#[derive(Clone, Debug)]
pub struct Column {
    /// 0-based attribute index.
    pub index: usize,
    pub name: String,
    pub type_oid: pg_sys::Oid,
}

impl Row {
    fn desc(&self) -> pg_sys::TupleDesc {
        unsafe { (*self.rel).rd_att }
    }

    /// The live columns, in attribute order.
    pub fn columns(&self) -> Vec<Column> {
        live_columns(self.rel, |_, _| true)
    }

    /// The row's values, taken apart once.
    pub fn values(&self) -> Values {
        let natts = usize::try_from(unsafe { (*self.desc()).natts }).unwrap_or(0);
        let mut datums = smallvec![pg_sys::Datum::from(0); natts];
        let mut nulls = smallvec![true; natts];
        // Columns added since the row was written read as their default.
        unsafe {
            pg_sys::heap_deform_tuple(
                self.tuple,
                self.desc(),
                datums.as_mut_ptr(),
                nulls.as_mut_ptr(),
            )
        };
        Values { datums, nulls }
    }

    /// Column `index`'s (0-based) value in its text form, None for NULL,
    /// a dropped column or no such column.
    pub fn text_at(&self, index: usize) -> Option<String> {
        let desc = unsafe { PgTupleDesc::from_pg_unchecked(self.desc()) };
        if desc.get(index).is_none_or(|a| a.attisdropped) {
            return None;
        }
        let n = c_int::try_from(index + 1).ok()?;
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
}

/// Does `new` differ from `old` in any of `columns` (0-based indexes)?
/// Compared as stored values (binary image), as Postgres itself decides
/// whether an UPDATE changed a column.
pub fn changes_any(old: Row, new: Row, columns: &[usize]) -> bool {
    let (before, after) = (old.values(), new.values());
    columns
        .iter()
        .any(|&i| differs(old.rel, &before, &after, i))
}

/// The columns of `shape` (sorted by name) whose values differ between
/// `old` and `new` of `rel` (all of them when either is missing).
pub fn changed_columns<'s>(
    rel: pg_sys::Relation,
    shape: &'s Shape,
    old: Option<&Values>,
    new: Option<&Values>,
) -> SmallVec<[&'s Column; 8]> {
    shape
        .by_name
        .iter()
        .filter(|c| match (old, new) {
            (Some(o), Some(n)) => differs(rel, o, n, c.index),
            _ => true,
        })
        .collect()
}

/// The live columns of `rel` that `keep` (given the 0-based index and the
/// attribute) accepts, in attribute order.
fn live_columns(
    rel: pg_sys::Relation,
    mut keep: impl FnMut(usize, &pg_sys::FormData_pg_attribute) -> bool,
) -> Vec<Column> {
    let desc = unsafe { PgTupleDesc::from_pg_unchecked((*rel).rd_att) };
    desc.iter()
        .enumerate()
        .filter(|(i, a)| !a.attisdropped && keep(*i, a))
        .map(|(index, a)| Column {
            index,
            name: a.name().to_string(),
            type_oid: a.atttypid,
        })
        .collect()
}

/// Does column `i` (0-based) of `rel` hold a different value in `new` than
/// in `old`?
fn differs(rel: pg_sys::Relation, old: &Values, new: &Values, i: usize) -> bool {
    let desc = unsafe { PgTupleDesc::from_pg_unchecked((*rel).rd_att) };
    let Some(attr) = desc.get(i) else {
        return true;
    };
    match (old.get(i), new.get(i)) {
        (None, None) => false,
        // By value: datum_image_eq compares the datums themselves.
        (Some(a), Some(b)) if attr.attbyval => a != b,
        // Not in pgrx's bindings: guarded here, so that an error (detoasting)
        // unwinds as every pg_sys call does.
        (Some(a), Some(b)) => !unsafe {
            pg_sys::ffi::pg_guard_ffi_boundary(|| {
                datum_image_eq(a, b, attr.attbyval, attr.attlen.into())
            })
        },
        _ => true,
    }
}

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

/// The primary key columns of `rel` (empty if it has none), from the
/// relation cache.
pub fn key_columns(rel: pg_sys::Relation) -> Vec<Column> {
    unsafe {
        let keys = pg_sys::RelationGetIndexAttrBitmap(
            rel,
            pg_sys::IndexAttrBitmapKind::INDEX_ATTR_BITMAP_PRIMARY_KEY,
        );
        let columns = live_columns(rel, |i, _| {
            let bit = c_int::try_from(i + 1)
                .map(|n| n - pg_sys::FirstLowInvalidHeapAttributeNumber)
                .unwrap_or(-1);
            bit >= 0 && pg_sys::bms_is_member(bit, keys)
        });
        pg_sys::bms_free(keys);
        columns
    }
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
