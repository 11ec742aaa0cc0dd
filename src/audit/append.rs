//! Appending one entry to `stepup.audit_log`.
//!
//! The table as the extension made it gets the entry straight into its heap
//! and indexes, as COPY does (pg/heap.rs). Whenever the table is not
//! exactly that (an INSERT trigger or rule, forced row security, a CHECK
//! constraint, a deferrable index, a column added, changed or made NOT
//! NULL), the entry goes through a plain INSERT instead, so whatever the
//! DBA added applies as to any INSERT.

use std::cell::Cell;
use std::ffi::CStr;
use std::sync::OnceLock;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use super::encoding::{column, LOG_COLUMNS};
use super::entry;
use crate::catalog::owner;
use crate::pg::{heap, reject};
use crate::rows;

/// The columns of an entry, in [`LOG_COLUMNS`] order (None: SQL NULL).
pub type Entry = [Option<pg_sys::Datum>; LOG_COLUMNS.len()];

/// The INSERT of an entry that is not appended directly.
fn insert_entry() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let names: Vec<&str> = LOG_COLUMNS.iter().map(|c| c.0).collect();
        let params: Vec<String> = (1..=LOG_COLUMNS.len()).map(|i| format!("${i}")).collect();
        format!(
            "INSERT INTO stepup.audit_log ({}) VALUES ({})",
            names.join(", "),
            params.join(", ")
        )
    })
}

/// Appends `e` to stepup.audit_log (`relid`); errors (and so refuses the
/// change) if it cannot.
pub fn append(relid: pg_sys::Oid, e: &Entry) {
    // SAFETY: plain_columns lays out datums of entry::type_of types, one
    // per attribute of the open log.
    if unsafe { heap::insert(relid, |rel| plain_columns(rel, e)) } {
        return;
    }
    let args: Vec<DatumWithOid> = e
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Some(d) => unsafe { DatumWithOid::new(*d, entry::type_of(i)) },
            None => DatumWithOid::null_oid(entry::type_of(i)),
        })
        .collect();
    if owner::as_owner(|| rows::update_kept(insert_entry(), &args)) != Some(1) {
        reject::internal(
            "pg_stepup: could not write the audit entry; the change is refused",
            "Report this with the server log.",
        );
    }
}

/// The entry laid out on the table's attributes, if the table is a plain
/// table with exactly the entry's columns (dropped ones aside), no INSERT
/// trigger, rule, forced row security, CHECK constraint, identity or
/// generated column, and no NOT NULL the entry would break.
/// Also gives the attribute number of `id`.
unsafe fn plain_columns(rel: pg_sys::Relation, e: &Entry) -> Option<(heap::Slots, i16)> {
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
    crate::pg::cache::on_relcache_change(on_relcache_inval);
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
    let mut seen = [false; LOG_COLUMNS.len()];
    for (live, (slot, a)) in l
        .field
        .iter_mut()
        .zip(attrs)
        .filter(|(_, a)| !a.attisdropped)
        .enumerate()
    {
        let attname = CStr::from_ptr(a.attname.data.as_ptr()).to_bytes();
        // Columns are in entry order unless someone dropped and re-added one.
        let i = std::iter::once(live)
            .chain(0..seen.len())
            .find(|&i| i < seen.len() && LOG_COLUMNS[i].0.as_bytes() == attname)?;
        if seen[i] || a.atttypid != entry::type_of(i) || a.attidentity != 0 || a.attgenerated != 0 {
            return None;
        }
        seen[i] = true;
        *slot = u8::try_from(i).ok()?;
        if a.attnotnull {
            l.not_null |= 1 << i;
        }
        if i == const { column("id") } {
            l.key = a.attnum;
        }
    }
    seen.iter().all(|s| *s).then_some(l)
}
