//! A row straight into a heap table and its indexes, as COPY does: no
//! plan to check, no executor to start per row (the audit's fast path: an
//! INSERT through SPI cost about as much as the rest of the audit
//! trigger). The caller decides whether the table is plain enough
//! (audit/append.rs); anything unusual here (a deferrable index) declines.

use pgrx::pg_sys;
use smallvec::SmallVec;

/// A row's values, one per attribute (None: NULL).
pub type Slots = SmallVec<[Option<pg_sys::Datum>; 24]>;

/// Inserts a row into table `relid` as COPY does (heap, then indexes), if
/// `layout` (called with the table open and locked) gives its values, one
/// per attribute, and the attribute number of its key; false (nothing
/// written) when `layout` declines or an index is deferrable.
///
/// # Safety
/// `relid` is a table; the values `layout` returns are datums of the
/// attributes' types.
pub unsafe fn insert(
    relid: pg_sys::Oid,
    layout: impl FnOnce(pg_sys::Relation) -> Option<(Slots, i16)>,
) -> bool {
    let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
    let Some((slots, key)) = layout(rel) else {
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
    if super::raw::guarded(|| unguarded::insert_keyed(rel, v, n, key)) {
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
            super::reject::internal(
                "pg_stepup: the audit entry needs a deferred index check; the change is refused",
                "Make the indexes of stepup.audit_log immediate (not DEFERRABLE).",
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
    use crate::pg::raw::*;
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

/// Every index checks its constraint at once (a deferrable one needs the
/// executor's after-trigger queue).
unsafe fn immediate_indexes(rri: *mut pg_sys::ResultRelInfo) -> bool {
    let n = usize::try_from((*rri).ri_NumIndices).unwrap_or(0);
    (0..n).all(|i| {
        let index = *(*rri).ri_IndexRelationDescs.add(i);
        (*(*index).rd_index).indimmediate
    })
}
