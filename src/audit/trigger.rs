//! The audit of a protected table's rows, written by its guard trigger
//! (`stepup_guard`, AFTER each row, ENABLE ALWAYS) once the change is
//! allowed: one `stepup.audit_log` entry per INSERT, UPDATE and DELETE,
//! whether or not the operation needs step-up, in the same transaction. Writers only insert: they never wait for each other or for
//! the sealer.
//!
//! The entry is built here, values and hash, and appended (append.rs): no
//! SQL per row.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::rc::Rc;

use pgrx::prelude::*;
use smallvec::SmallVec;

use super::append::{append, Entry};
use super::digest;
use super::encoding::{column, HASHED, LOG_COLUMNS};
use super::entry::{self, Values};
use crate::assertion::held;
use crate::pg::raw;
use crate::pg::time::PG_EPOCH_OFFSET_US;
use crate::pg::{pgtext, varlena};
use crate::rows;
use crate::rows::event::{Event, Op};
use crate::rows::render;

/// The position of an entry column in [`LOG_COLUMNS`], at compile time.
macro_rules! at {
    ($name:literal) => {
        const { column($name) }
    };
}

/// Writes the entry of a row change (the guard trigger calls this for
/// every row it lets through, with the event it decided on).
pub fn write_entry(event: &Event) {
    let Event {
        rel, op, old, new, ..
    } = *event;
    if op == Op::Truncate {
        return;
    }
    let held = held::current();
    let claims = held.as_ref().map(|h| &h.claims);
    let micros = |us: Option<i64>| us.map(pg_sys::Datum::from);
    let shape = rows::shape(rel);
    // Rendered under at most one settings switch per row. Each jsonb and
    // text[] comes with its text where it is plain (pgtext.rs), for the hash.
    let (old_digest, new_digest, key, changed, old_values, new_values) =
        render::rendered(&shape, || {
            let (old, new) = (old.map(|r| r.values()), new.map(|r| r.values()));
            let digest = |v: &Option<rows::Values>| v.as_ref().map(|v| digest(v, &shape.by_name));
            let changed = rows::changed_columns(rel, &shape, old.as_ref(), new.as_ref());
            let keys = &shape.keys;
            let key = (!keys.is_empty())
                .then(|| {
                    old.as_ref()
                        .or(new.as_ref())
                        .map(|v| render::object_and_text(v, keys.iter()))
                })
                .flatten();
            let values = |v: &Option<rows::Values>| {
                v.as_ref()
                    .map(|v| render::object_and_text(v, changed.iter().copied()))
            };
            let names: SmallVec<[&str; 8]> = changed.iter().map(|c| c.name.as_str()).collect();
            (
                digest(&old),
                digest(&new),
                key,
                (varlena::text_array(&names), pgtext::plain_array(&names)),
                values(&old),
                values(&new),
            )
        });
    let amr = claims.map(|c| {
        let amr: SmallVec<[&str; 8]> = c.amr.iter().map(String::as_str).collect();
        (varlena::text_array(&amr), pgtext::plain_array(&amr))
    });
    let (log, seq) = super::relations();
    // Under one guard (raw.rs): an error (the id sequence at its maximum)
    // unwinds as from any pg_sys call.
    let (id, now, txid, user, session_user, client_addr) = unsafe {
        raw::guarded(|| {
            (
                raw::nextval_internal(seq, false),
                raw::GetCurrentTimestamp(),
                raw::GetTopFullTransactionId().value,
                raw::GetUserId(),
                raw::GetSessionUserId(),
                client_addr(),
            )
        })
    };
    // The setting's variable, read in place (GetConfigOption looks the name
    // up): nothing below changes a setting before it is copied into the
    // entry.
    let application = unsafe { pg_sys::application_name };
    let application =
        (!application.is_null()).then(|| unsafe { CStr::from_ptr(application) }.to_string_lossy());
    let auth_time = claims.and_then(|c| {
        c.auth_time?
            .checked_mul(1_000_000)?
            .checked_sub(PG_EPOCH_OFFSET_US)
    });
    let (role, session_role) = (role_name(user), role_name(session_user));
    let [table, op, old_digest, new_digest, role, session_role, application, kid, jti, sub, acr] =
        varlena::text_datums([
            Some(&shape.name),
            Some(op.name()),
            old_digest.as_deref(),
            new_digest.as_deref(),
            Some(&role),
            Some(&session_role),
            application.as_deref(),
            claims.map(|c| c.kid.as_str()),
            claims.and_then(|c| c.jti.as_deref()),
            claims.map(|c| c.sub.as_str()),
            claims.map(|c| c.acr.as_str()),
        ]);
    let mut values: Values = [None; HASHED];
    for (i, value) in [
        (at!("id"), Some(pg_sys::Datum::from(id))),
        (at!("at"), micros(Some(now))),
        (
            at!("txid"),
            Some(pg_sys::Datum::from(i64::try_from(txid).unwrap_or(i64::MAX))),
        ),
        (at!("table_name"), table),
        (at!("op"), op),
        (at!("key"), key.as_ref().map(|k| k.0)),
        (at!("old_digest"), old_digest),
        (at!("new_digest"), new_digest),
        (at!("changed"), Some(changed.0)),
        (at!("old_values"), old_values.as_ref().map(|v| v.0)),
        (at!("new_values"), new_values.as_ref().map(|v| v.0)),
        (at!("role_name"), role),
        (at!("session_role"), session_role),
        (at!("application_name"), application),
        (at!("client_addr"), client_addr),
        (at!("kid"), kid),
        (at!("jti"), jti),
        (at!("sub"), sub),
        (at!("acr"), acr),
        (at!("amr"), amr.as_ref().map(|a| a.0)),
        (at!("auth_time"), micros(auth_time)),
    ] {
        values[i] = value;
    }
    fn text(v: &Option<(pg_sys::Datum, Option<Vec<u8>>)>) -> Option<&[u8]> {
        v.as_ref().and_then(|v| v.1.as_deref())
    }
    let mut known = [None; HASHED];
    for (i, text) in [
        (at!("key"), text(&key)),
        (at!("changed"), changed.1.as_deref()),
        (at!("old_values"), text(&old_values)),
        (at!("new_values"), text(&new_values)),
        (at!("amr"), text(&amr)),
    ] {
        known[i] = text;
    }
    let hash = entry::hash_known(&values, &known);
    let mut row: Entry = [None; LOG_COLUMNS.len()];
    row[..HASHED].copy_from_slice(&values);
    [row[at!("entry_hash")]] = varlena::text_datums([Some(hash.as_str())]);
    append(log, &row);
}

/// inet_client_addr() (NULL over a Unix socket), called as the fmgr would.
///
/// # Safety
/// Under a guard (raw.rs).
unsafe fn client_addr() -> Option<pg_sys::Datum> {
    let mut fcinfo: pg_sys::FunctionCallInfoBaseData = std::mem::zeroed();
    let d = raw::inet_client_addr(&mut fcinfo);
    (!fcinfo.isnull).then_some(d)
}

/// A role's name, kept per backend until any role changes (pg_authid
/// invalidation): two catalog lookups per entry otherwise.
pub(super) fn role_name(oid: pg_sys::Oid) -> Rc<str> {
    if let Some(name) = ROLE_NAMES.with(|n| {
        n.borrow()
            .iter()
            .find(|(o, _)| *o == oid)
            .map(|(_, n)| n.clone())
    }) {
        return name;
    }
    let generation = ROLES_GENERATION.with(Cell::get);
    let name: Rc<str> = unsafe {
        let p = pg_sys::GetUserNameFromId(oid, true);
        if p.is_null() {
            format!("oid {}", u32::from(oid)).into()
        } else {
            CStr::from_ptr(p).to_string_lossy().into()
        }
    };
    if ROLES_GENERATION.with(Cell::get) == generation {
        ROLE_NAMES.with(|n| n.borrow_mut().push((oid, name.clone())));
    }
    name
}

thread_local! {
    static ROLE_NAMES: RefCell<Vec<(pg_sys::Oid, Rc<str>)>> = const { RefCell::new(Vec::new()) };
    /// Bumped by every invalidation, so a name looked up across one is not kept.
    static ROLES_GENERATION: Cell<u64> = const { Cell::new(0) };
}

pub fn register_invalidation() {
    crate::pg::cache::on_syscache_change(pg_sys::SysCacheIdentifier::AUTHOID, on_role_inval);
}

#[pg_guard]
unsafe extern "C-unwind" fn on_role_inval(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    ROLES_GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
    ROLE_NAMES.with(|n| n.borrow_mut().clear());
}
