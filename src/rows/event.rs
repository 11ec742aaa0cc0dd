//! A trigger's event, decoded once: the operation and the row versions it
//! reports. The guard decides on it and hands the same value to the audit.

use pgrx::pg_sys;

use super::Row;

/// The operations a trigger reports (and a policy gates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Insert => "INSERT",
            Op::Update => "UPDATE",
            Op::Delete => "DELETE",
            Op::Truncate => "TRUNCATE",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        [Op::Insert, Op::Update, Op::Delete, Op::Truncate]
            .into_iter()
            .find(|op| op.name() == s)
    }
}

/// One trigger event on `rel`: a row change (old and new as the operation
/// has them) or a statement (TRUNCATE; neither row).
#[derive(Clone, Copy)]
pub struct Event {
    pub rel: pg_sys::Relation,
    pub op: Op,
    /// Fired for each row (false: for the statement).
    pub for_row: bool,
    pub old: Option<Row>,
    pub new: Option<Row>,
}

impl Event {
    /// The event `td` reports.
    pub fn of(td: &pg_sys::TriggerData) -> Event {
        let rel = td.tg_relation;
        let for_row = td.tg_event & pg_sys::TRIGGER_EVENT_ROW != 0;
        let row = |t: *mut pg_sys::HeapTupleData| {
            (for_row && !t.is_null()).then_some(Row { rel, tuple: t })
        };
        let (op, old, new) = match td.tg_event & pg_sys::TRIGGER_EVENT_OPMASK {
            pg_sys::TRIGGER_EVENT_INSERT => (Op::Insert, None, row(td.tg_trigtuple)),
            pg_sys::TRIGGER_EVENT_UPDATE => (Op::Update, row(td.tg_trigtuple), row(td.tg_newtuple)),
            pg_sys::TRIGGER_EVENT_DELETE => (Op::Delete, row(td.tg_trigtuple), None),
            _ => (Op::Truncate, None, None),
        };
        Event {
            rel,
            op,
            for_row,
            old,
            new,
        }
    }
}
