//! The held assertion: backend memory that only this module writes.
//!
//! Changes follow the transaction. Each change records the value it
//! replaced, tagged with the subtransaction that made it; rolling back a
//! savepoint or the transaction restores what was held before, and the end
//! of every top-level transaction drops transaction-scoped assertions. So
//! behind a transaction pooler nothing outlives the client's transaction.

use std::cell::RefCell;
use std::rc::Rc;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::pg::raise::LogFields;
use stepup_core::token::Claims;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Transaction,
    Session,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "transaction" => Some(Scope::Transaction),
            "session" => Some(Scope::Session),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct Held {
    /// Shared with present()'s memory of the assertion: holding it again in
    /// the next transaction copies nothing, and commit frees nothing.
    pub claims: Rc<Claims>,
    pub scope: Scope,
}

#[derive(Default)]
struct State {
    current: Option<Rc<Held>>,
    /// (subtransaction that changed `current`, value before that change).
    undo: Vec<(pg_sys::SubTransactionId, Option<Rc<Held>>)>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// What is held now, if anything.
pub fn current() -> Option<Rc<Held>> {
    STATE.with(|s| s.borrow().current.clone())
}

/// Replaces what is held (None clears it), undoably.
pub fn set(value: Option<Held>) {
    let subxact = crate::pg::raw::subtransaction();
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let old = std::mem::replace(&mut s.current, value.map(Rc::new));
        // Only the first change within a subtransaction needs remembering.
        if s.undo.last().is_none_or(|(id, _)| *id != subxact) {
            s.undo.push((subxact, old));
        }
    });
}

/// The LOG fields of a rejection of `operation` on `table`: who holds
/// which assertion, if any.
pub fn log_fields(table: Option<String>, operation: &str) -> LogFields {
    let held = current();
    LogFields {
        table,
        operation: operation.into(),
        sub: held.as_ref().map(|h| h.claims.sub.clone()),
        jti: held.as_ref().and_then(|h| h.claims.jti.clone()),
    }
}

/// Forgets a session-scoped assertion outside any transaction semantics
/// (DISCARD ALL cannot run inside a transaction block).
pub fn discard_all() {
    STATE.with(|s| *s.borrow_mut() = State::default());
}

pub fn register_callbacks() {
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        match event {
            // A prepared transaction's outcome is decided elsewhere, so what
            // it changed here is discarded as on abort.
            XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_PREPARE => {
                // The oldest entry holds what was there when the transaction began.
                if !s.undo.is_empty() {
                    let (_, before) = s.undo.swap_remove(0);
                    s.current = before;
                }
            }
            XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT => {}
            _ => return,
        }
        s.undo.clear();
        if s.current
            .as_ref()
            .is_some_and(|h| h.scope == Scope::Transaction)
        {
            s.current = None;
        }
    });
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    my: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::SubXactEvent::*;
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if s.undo.last().is_none_or(|(id, _)| *id != my) {
            return;
        }
        match event {
            SUBXACT_EVENT_ABORT_SUB => {
                if let Some((_, before)) = s.undo.pop() {
                    s.current = before;
                }
            }
            SUBXACT_EVENT_COMMIT_SUB => {
                // The parent now owns this change; if the parent already
                // changed the value itself, its older entry is the one to keep.
                let n = s.undo.len();
                if n >= 2 && s.undo[n - 2].0 == parent {
                    s.undo.pop();
                } else if let Some(last) = s.undo.last_mut() {
                    last.0 = parent;
                }
            }
            _ => {}
        }
    });
}
