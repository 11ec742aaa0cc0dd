//! ProcessUtility hook: `DISCARD ALL` drops a session-scoped assertion, as
//! the contract promises, so a pooler's reset query cleans up after a client.
//!
//! The hook is deliberately not `#[pg_guard]` and calls the next hook
//! through our own unguarded binding: errors raised by the utility command
//! (including another extension's custom SQLSTATEs) must pass through
//! untouched, and this frame owns no Rust values that need dropping.

use pgrx::pg_sys;

static mut PREV: pg_sys::ProcessUtility_hook_type = None;

unsafe extern "C-unwind" {
    fn standard_ProcessUtility(
        pstmt: *mut pg_sys::PlannedStmt,
        query: *const std::ffi::c_char,
        read_only_tree: bool,
        context: pg_sys::ProcessUtilityContext::Type,
        params: pg_sys::ParamListInfo,
        query_env: *mut pg_sys::QueryEnvironment,
        dest: *mut pg_sys::DestReceiver,
        qc: *mut pg_sys::QueryCompletion,
    );
}

pub fn install() {
    unsafe {
        PREV = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
    }
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let discard_all = is_discard_all(pstmt);
    match PREV {
        Some(prev) => prev(
            pstmt,
            query,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        ),
        None => standard_ProcessUtility(
            pstmt,
            query,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        ),
    }
    if discard_all {
        crate::held::discard_all();
    }
}

unsafe fn is_discard_all(pstmt: *mut pg_sys::PlannedStmt) -> bool {
    if pstmt.is_null() {
        return false;
    }
    let node = (*pstmt).utilityStmt;
    if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_DiscardStmt {
        return false;
    }
    let stmt = node as *mut pg_sys::DiscardStmt;
    (*stmt).target == pg_sys::DiscardMode::DISCARD_ALL
}
