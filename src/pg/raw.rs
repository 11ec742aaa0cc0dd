//! Postgres functions declared without pgrx's guard, for the audit's hot
//! path: a block of them runs under one guard ([`guarded`]) instead of a
//! sigsetjmp per call (an entry made dozens of guarded calls).
//!
//! An error raised inside such a block longjmps to the block's guard, over
//! the block's own frames; so a block holds nothing that needs dropping
//! (no String, Vec or Rc is created in it) and cannot panic (a panic cannot
//! cross the guard). Keep blocks to pointer reads and these calls.

use std::ffi::{c_char, c_int, c_void};

use pgrx::pg_sys::{
    self, BulkInsertState, CommandId, Datum, FmgrInfo, FullTransactionId, FunctionCallInfo,
    HeapTuple, IndexInfo, IndexUniqueCheck, ItemPointer, Jsonb, JsonbIteratorToken,
    JsonbParseState, JsonbValue, List, MemoryContext, Numeric, Oid, Relation, Size,
    SubTransactionId, TimestampTz, TupleDesc, LOCKMODE,
};

super::unguarded! {
    pub fn RelationGetIndexList(relation: Relation) -> *mut List;
    pub fn index_open(relation_id: Oid, lockmode: LOCKMODE) -> Relation;
    pub fn index_close(relation: Relation, lockmode: LOCKMODE);
    pub fn heap_attisnull(tup: HeapTuple, attnum: c_int, desc: TupleDesc) -> bool;
    #[cfg(feature = "pg15")]
    pub fn heap_form_tuple(desc: TupleDesc, values: *mut Datum, isnull: *mut bool) -> HeapTuple;
    // The arrays are const from PostgreSQL 17.
    #[cfg(not(feature = "pg15"))]
    pub fn heap_form_tuple(desc: TupleDesc, values: *const Datum, isnull: *const bool)
        -> HeapTuple;
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
    pub fn GetCurrentTimestamp() -> TimestampTz;
    pub fn GetTopFullTransactionId() -> FullTransactionId;
    pub fn GetUserId() -> Oid;
    pub fn GetSessionUserId() -> Oid;
    pub fn inet_client_addr(fcinfo: FunctionCallInfo) -> Datum;
}

// Not in pgrx's bindings: checked against each version's headers by
// scripts/declarations.sh.
unsafe extern "C-unwind" {
    pub fn nextval_internal(relid: Oid, check_permissions: bool) -> i64;
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

// Functions that raise no error, read in their source (PG 15): no ereport
// or elog path for the arguments given here. Called without a guard, each
// costs a call, not a sigsetjmp and a thread check (~100 instructions).
super::unguarded! {
    fn MemoryContextAllocExtended(context: MemoryContext, size: Size, flags: c_int) -> *mut c_void;
    fn GetCurrentSubTransactionId() -> SubTransactionId;
}

/// palloc's MaxAllocSize.
const MAX_ALLOC: usize = 0x3FFF_FFFF;

/// `size` bytes in the current memory context, as palloc gives them. With
/// MCXT_ALLOC_NO_OOM and a size within MaxAllocSize, MemoryContextAllocExtended
/// reports failure by returning NULL (mcxt.c; AllocSet and Generation
/// contexts return NULL when malloc fails; a Slab context's size check can
/// raise, but slab contexts serve logical decoding only and are never the
/// current context of the callers here): out of memory is raised here,
/// from Rust.
pub fn alloc(size: usize) -> *mut u8 {
    if size > MAX_ALLOC {
        super::reject::program_limit(
            format!("pg_stepup: invalid memory alloc request size {size}"),
            None,
        );
    }
    let flags = pg_sys::MCXT_ALLOC_NO_OOM as c_int;
    let p = unsafe { MemoryContextAllocExtended(pg_sys::CurrentMemoryContext, size, flags) };
    if p.is_null() {
        super::reject::out_of_memory(format!("out of memory: failed on request of size {size}"));
    }
    p.cast()
}

/// GetCurrentTimestamp: gettimeofday and arithmetic.
pub fn now() -> TimestampTz {
    unsafe { GetCurrentTimestamp() }
}

/// GetCurrentSubTransactionId: a field of the current transaction state.
pub fn subtransaction() -> SubTransactionId {
    unsafe { GetCurrentSubTransactionId() }
}
