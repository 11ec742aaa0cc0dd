//! Appending one entry to `stepup.audit_log`.
//!
//! The table as the extension made it gets the entry straight into its heap
//! and indexes, as COPY does: no plan to check, no executor to start per
//! row (an INSERT through SPI cost about as much as the rest of the audit
//! trigger). Whenever the table is not
//! exactly that (an INSERT trigger or rule, forced row security, a CHECK
//! constraint, a deferrable index, a column added, changed or made NOT
//! NULL), the entry goes through a plain INSERT instead, so whatever the
//! DBA added applies as to any INSERT.

use std::cell::Cell;
use std::ffi::CStr;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use super::encoding::ENTRY_FIELDS;
use super::entry;
use crate::{owner, rows};
use smallvec::SmallVec;

/// The 22 columns of an entry, in [`COLUMNS`] order (None: SQL NULL).
pub type Entry = [Option<pg_sys::Datum>; 22];

/// Column names: the hashed fields, then the hash.
fn name(i: usize) -> &'static str {
    ENTRY_FIELDS.get(i).copied().unwrap_or("entry_hash")
}

fn type_of(i: usize) -> pg_sys::Oid {
    if i < ENTRY_FIELDS.len() {
        entry::type_of(i)
    } else {
        pg_sys::TEXTOID
    }
}

const INSERT_ENTRY: &str = "INSERT INTO stepup.audit_log (id, at, txid, table_name, op, key, \
    old_digest, new_digest, changed, old_values, new_values, role_name, session_role, \
    application_name, client_addr, kid, jti, sub, acr, amr, auth_time, entry_hash) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
    $19, $20, $21, $22)";

/// Appends `e` to stepup.audit_log (`relid`); errors (and so refuses the
/// change) if it cannot.
pub fn append(relid: pg_sys::Oid, e: &Entry) {
    if unsafe { direct(relid, e) } {
        return;
    }
    let args: Vec<DatumWithOid> = e
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Some(d) => unsafe { DatumWithOid::new(*d, type_of(i)) },
            None => DatumWithOid::null_oid(type_of(i)),
        })
        .collect();
    if owner::as_owner(|| rows::update_kept(INSERT_ENTRY, &args)) != Some(1) {
        error!("pg_stepup: could not write the audit entry; the change is refused");
    }
}

/// Heap and index insert of `e` if the table is as the extension made it;
/// false (nothing written) otherwise.
///
/// # Safety
/// `relid` is stepup.audit_log; `e` holds datums of [`type_of`] types.
unsafe fn direct(relid: pg_sys::Oid, e: &Entry) -> bool {
    let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
    let Some((slots, key)) = plain_columns(rel, e) else {
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        return false;
    };
    let mut values: SmallVec<[pg_sys::Datum; 24]> = slots
        .iter()
        .map(|v| v.unwrap_or(pg_sys::Datum::from(0)))
        .collect();
    let mut nulls: SmallVec<[bool; 24]> = slots.iter().map(Option::is_none).collect();
    let (v, n) = (values.as_mut_ptr(), nulls.as_mut_ptr());
    // One guard for the whole insert, not a sigsetjmp per call.
    if crate::raw::guarded(|| unguarded::insert_keyed(rel, v, n, key)) {
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        return true;
    }
    let estate = pg_sys::CreateExecutorState();
    let caller = pg_sys::MemoryContextSwitchTo((*estate).es_query_cxt);
    let rri = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>())
        .cast::<pg_sys::ResultRelInfo>();
    pg_sys::InitResultRelInfo(rri, rel, 1, std::ptr::null_mut(), 0);
    pg_sys::ExecOpenIndices(rri, false);
    let written = immediate_indexes(rri) && {
        let slot = pg_sys::table_slot_create(rel, std::ptr::null_mut());
        for (i, value) in slots.iter().enumerate() {
            *(*slot).tts_values.add(i) = value.unwrap_or(pg_sys::Datum::from(0));
            *(*slot).tts_isnull.add(i) = value.is_none();
        }
        pg_sys::ExecStoreVirtualTuple(slot);
        pg_sys::simple_table_tuple_insert(rel, slot);
        let recheck = pg_sys::ExecInsertIndexTuples(
            rri,
            slot,
            estate,
            false,
            false,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            // onlySummarizing (17 on): false, every index, as before 17.
            #[cfg(any(feature = "pg17", feature = "pg18"))]
            false,
        );
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        // Only deferred constraints ask for a recheck, and those were excluded.
        if !recheck.is_null() {
            error!(
                "pg_stepup: the audit entry needs a deferred index check; the change is refused"
            );
        }
        true
    };
    pg_sys::ExecCloseIndices(rri);
    pg_sys::MemoryContextSwitchTo(caller);
    pg_sys::FreeExecutorState(estate);
    pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
    written
}

/// The common case without the executor: a heap table whose one index is
/// its primary key on `id`. Runs under the single guard of [`direct`] (see
/// raw.rs: nothing to drop, nothing that panics).
mod unguarded {
    use crate::raw::*;
    use pgrx::pg_sys::{
        Anum_pg_index_indexprs, Anum_pg_index_indpred, Datum, IndexUniqueCheck, NoLock, Relation,
        RowExclusiveLock, BTREE_AM_OID, HEAP_TABLE_AM_OID, LOCKMODE,
    };
    use std::ffi::c_int;

    /// Inserts the row (`values`/`nulls`, one per attribute) into the heap
    /// and its key (attribute number `key`) into the table's only index, if
    /// the table is a heap table and that index a plain, valid, immediate
    /// unique btree on that one column; false (nothing written) otherwise.
    ///
    /// # Safety
    /// Call inside a guard; `rel` is open with RowExclusiveLock; `values` and
    /// `nulls` hold one entry per attribute of `rel`; `key` is in 1..=natts.
    pub unsafe fn insert_keyed(
        rel: Relation,
        values: *mut Datum,
        nulls: *mut bool,
        key: i16,
    ) -> bool {
        if (*(*rel).rd_rel).relam != HEAP_TABLE_AM_OID {
            return false;
        }
        let list = RelationGetIndexList(rel);
        if list.is_null() || (*list).length != 1 {
            return false;
        }
        let index = index_open((*(*list).elements).oid_value, RowExclusiveLock as LOCKMODE);
        let form = (*index).rd_index;
        let plain = (*(*index).rd_rel).relam == BTREE_AM_OID
            && (*form).indisunique
            && (*form).indimmediate
            && !(*form).indisexclusion
            && (*form).indisvalid
            && (*form).indisready
            && (*form).indislive
            && (*form).indnatts == 1
            && (*form).indnkeyatts == 1
            && *(*form).indkey.values.as_ptr() == key
            && heap_attisnull(
                (*index).rd_indextuple,
                Anum_pg_index_indexprs as c_int,
                std::ptr::null_mut(),
            )
            && heap_attisnull(
                (*index).rd_indextuple,
                Anum_pg_index_indpred as c_int,
                std::ptr::null_mut(),
            );
        if plain {
            let tuple = heap_form_tuple((*rel).rd_att, values, nulls);
            heap_insert(
                rel,
                tuple,
                GetCurrentCommandId(true),
                0,
                std::ptr::null_mut(),
            );
            let at = usize::try_from(key).map_or(0, |k| k.saturating_sub(1));
            index_insert(
                index,
                values.add(at),
                nulls.add(at),
                &raw mut (*tuple).t_self,
                rel,
                IndexUniqueCheck::UNIQUE_CHECK_YES,
                false,
                BuildIndexInfo(index),
            );
        }
        index_close(index, NoLock as LOCKMODE);
        plain
    }
}

/// The entry laid out on the table's attributes, if the table is a plain
/// table with exactly the entry's columns (dropped ones aside), no INSERT
/// trigger, rule, forced row security, CHECK constraint, identity or
/// generated column, and no NOT NULL the entry would break.
/// Also gives the attribute number of `id`.
unsafe fn plain_columns(
    rel: pg_sys::Relation,
    e: &Entry,
) -> Option<(SmallVec<[Option<pg_sys::Datum>; 24]>, i16)> {
    let layout = cached_layout(rel)?;
    if (0..e.len()).any(|i| layout.not_null & (1 << i) != 0 && e[i].is_none()) {
        return None;
    }
    let out = layout.field[..layout.natts]
        .iter()
        .map(|&f| e.get(usize::from(f)).copied().flatten())
        .collect();
    Some((out, layout.key))
}

/// Where a plain log's attributes take their values from.
#[derive(Clone, Copy)]
struct Layout {
    relid: pg_sys::Oid,
    natts: usize,
    /// Per attribute: the entry field it holds ([`DROPPED`]: none).
    field: [u8; MAX_ATTS],
    /// Bit i: field i's column is NOT NULL.
    not_null: u32,
    /// Attribute number of `id`.
    key: i16,
}

const MAX_ATTS: usize = 32;
const DROPPED: u8 = u8::MAX;

thread_local! {
    /// The log's layout, kept until its relcache entry is invalidated (any
    /// ALTER TABLE, trigger, rule, policy or constraint change on it): the
    /// checks read every attribute's name, too much to do for every entry.
    static LAYOUT: Cell<Option<Layout>> = const { Cell::new(None) };
}

pub fn register_invalidation() {
    crate::catalog::on_relcache_change(on_relcache_inval);
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_inval(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    LAYOUT.with(|l| {
        if l.get()
            .is_some_and(|l| relid == pg_sys::InvalidOid || l.relid == relid)
        {
            l.set(None);
        }
    });
}

/// # Safety
/// `rel` is open and locked (its invalidations are read).
unsafe fn cached_layout(rel: pg_sys::Relation) -> Option<Layout> {
    let relid = (*rel).rd_id;
    if let Some(l) = LAYOUT.with(Cell::get).filter(|l| l.relid == relid) {
        return Some(l);
    }
    let l = layout(rel)?;
    LAYOUT.with(|c| c.set(Some(l)));
    Some(l)
}

/// The layout of `rel` if it is plain (see [`plain_columns`]).
unsafe fn layout(rel: pg_sys::Relation) -> Option<Layout> {
    let form = &*(*rel).rd_rel;
    let desc = &*(*rel).rd_att;
    let triggers = (*rel).trigdesc.as_ref().is_some_and(|t| {
        t.trig_insert_before_row
            || t.trig_insert_after_row
            || t.trig_insert_instead_row
            || t.trig_insert_before_statement
            || t.trig_insert_after_statement
            || t.trig_insert_new_table
    });
    let constraints = desc
        .constr
        .as_ref()
        .is_some_and(|c| c.num_check > 0 || c.has_generated_stored);
    if form.relkind != pg_sys::RELKIND_RELATION as std::ffi::c_char
        || triggers
        || !(*rel).rd_rules.is_null()
        || (form.relrowsecurity && form.relforcerowsecurity)
        || constraints
    {
        return None;
    }
    let natts = usize::try_from(desc.natts)
        .ok()
        .filter(|n| *n <= MAX_ATTS)?;
    #[cfg(not(feature = "pg18"))]
    let attrs = desc.attrs.as_slice(natts);
    // PostgreSQL 18 has no attrs array: the pg_attribute rows follow the
    // compact attributes, reached through TupleDescAttr.
    #[cfg(feature = "pg18")]
    let attrs = (0..natts).map(|i| &*pg_sys::TupleDescAttr((*rel).rd_att, i as std::ffi::c_int));
    let mut l = Layout {
        relid: (*rel).rd_id,
        natts,
        field: [DROPPED; MAX_ATTS],
        not_null: 0,
        key: 0,
    };
    let mut seen = [false; 22];
    for (live, (slot, a)) in l
        .field
        .iter_mut()
        .zip(attrs)
        .filter(|(_, a)| !a.attisdropped)
        .enumerate()
    {
        let column = CStr::from_ptr(a.attname.data.as_ptr()).to_bytes();
        // Columns are in entry order unless someone dropped and re-added one.
        let i = std::iter::once(live)
            .chain(0..seen.len())
            .find(|&i| i < seen.len() && name(i).as_bytes() == column)?;
        if seen[i] || a.atttypid != type_of(i) || a.attidentity != 0 || a.attgenerated != 0 {
            return None;
        }
        seen[i] = true;
        *slot = u8::try_from(i).ok()?;
        if a.attnotnull {
            l.not_null |= 1 << i;
        }
        if i == 0 {
            l.key = a.attnum;
        }
    }
    seen.iter().all(|s| *s).then_some(l)
}

/// Every index checks its constraint at once (a deferrable one needs the
/// executor's after-trigger queue).
unsafe fn immediate_indexes(rri: *mut pg_sys::ResultRelInfo) -> bool {
    let n = usize::try_from((*rri).ri_NumIndices).unwrap_or(0);
    (0..n).all(|i| {
        let index = *(*rri).ri_IndexRelationDescs.add(i);
        (*(*index).rd_index).indimmediate
    })
}
