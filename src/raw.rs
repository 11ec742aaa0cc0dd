//! Postgres functions declared without pgrx's guard, for the audit's hot
//! path: a block of them runs under one guard ([`guarded`]) instead of a
//! sigsetjmp per call (~60 guarded calls were ~10% of an audited change).
//!
//! An error raised inside such a block longjmps to the block's guard, over
//! the block's own frames; so a block holds nothing that needs dropping
//! (no String, Vec or Rc is created in it) and cannot panic (a panic cannot
//! cross the guard). Keep blocks to pointer reads and these calls.

use std::ffi::{c_char, c_int};

use pgrx::pg_sys::{
    self, BulkInsertState, CommandId, Datum, FmgrInfo, FullTransactionId, FunctionCallInfo,
    HeapTuple, IndexInfo, IndexUniqueCheck, ItemPointer, Jsonb, JsonbIteratorToken,
    JsonbParseState, JsonbValue, List, Numeric, Oid, Relation, TimestampTz, TupleDesc, LOCKMODE,
};

unsafe extern "C-unwind" {
    pub fn RelationGetIndexList(relation: Relation) -> *mut List;
    pub fn index_open(relation_id: Oid, lockmode: LOCKMODE) -> Relation;
    pub fn index_close(relation: Relation, lockmode: LOCKMODE);
    pub fn heap_attisnull(tup: HeapTuple, attnum: c_int, desc: TupleDesc) -> bool;
    pub fn heap_form_tuple(desc: TupleDesc, values: *mut Datum, isnull: *mut bool) -> HeapTuple;
    pub fn GetCurrentCommandId(used: bool) -> CommandId;
    pub fn heap_insert(
        relation: Relation,
        tup: HeapTuple,
        cid: CommandId,
        options: c_int,
        bistate: BulkInsertState,
    );
    pub fn BuildIndexInfo(index: Relation) -> *mut IndexInfo;
    pub fn index_insert(
        index: Relation,
        values: *mut Datum,
        isnull: *mut bool,
        heap_t_ctid: ItemPointer,
        heap: Relation,
        check_unique: IndexUniqueCheck::Type,
        index_unchanged: bool,
        index_info: *mut IndexInfo,
    ) -> bool;

    pub fn pushJsonbValue(
        pstate: *mut *mut JsonbParseState,
        seq: JsonbIteratorToken::Type,
        jbval: *mut JsonbValue,
    ) -> *mut JsonbValue;
    pub fn JsonbValueToJsonb(val: *mut JsonbValue) -> *mut Jsonb;
    pub fn int64_to_numeric(val: i64) -> Numeric;
    pub fn OutputFunctionCall(flinfo: *mut FmgrInfo, val: Datum) -> *mut c_char;

    /// Not in pgrx's bindings at all.
    pub fn nextval_internal(relid: Oid, check_permissions: bool) -> i64;
    pub fn GetCurrentTimestamp() -> TimestampTz;
    pub fn GetTopFullTransactionId() -> FullTransactionId;
    pub fn GetUserId() -> Oid;
    pub fn GetSessionUserId() -> Oid;
    pub fn inet_client_addr(fcinfo: FunctionCallInfo) -> Datum;
}

/// Runs `block` under one guard: an error raised in it becomes a Rust panic
/// here, as for any pgrx call.
///
/// # Safety
/// `block` follows the rules above: nothing to drop, no panic.
#[inline(always)]
pub unsafe fn guarded<T>(block: impl FnOnce() -> T) -> T {
    pg_sys::ffi::pg_guard_ffi_boundary(block)
}
