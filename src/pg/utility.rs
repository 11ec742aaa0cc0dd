//! ProcessUtility hook: calls back after every `DISCARD ALL` (a pooler's
//! reset query), so what a session holds can be cleaned up after a client.
//!
//! The hook is deliberately not `#[pg_guard]` and calls the next hook
//! through our own unguarded binding: errors raised by the utility command
//! (including another extension's custom SQLSTATEs) must pass through
//! untouched, and this frame owns no Rust values that need dropping.

use pgrx::pg_sys;

static mut PREV: pg_sys::ProcessUtility_hook_type = None;
static mut ON_DISCARD_ALL: Option<fn()> = None;

super::unguarded! {
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

/// Installs the hook (once, from `_PG_init`): `f` runs after each
/// successful `DISCARD ALL`.
pub fn on_discard_all(f: fn()) {
    unsafe {
        ON_DISCARD_ALL = Some(f);
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
        if let Some(f) = ON_DISCARD_ALL {
            f();
        }
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
