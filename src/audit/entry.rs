//! An audit entry as Postgres values, and the one rendering of its hashed
//! fields as text (docs/audit-encoding.md). The writer renders the
//! values it is about to insert, the verifier the values it reads back:
//! both as the stored types' own output functions print them (render::texts,
//! pgtext.rs), so the text is what `stepup.entry_fields` gives in SQL, with
//! no SQL in between.

use pgrx::prelude::*;

use super::encoding::{ColumnType, EntryHasher, HASHED, LOG_COLUMNS};
use crate::pg::time::PG_EPOCH_OFFSET_US;
use crate::rows::render;
use stepup_core::digest::Hex;

/// The SQL type of column `i` of [`LOG_COLUMNS`].
pub const fn type_of(i: usize) -> pg_sys::Oid {
    match LOG_COLUMNS[i].1 {
        ColumnType::Int8 => pg_sys::INT8OID,
        ColumnType::Timestamptz => pg_sys::TIMESTAMPTZOID,
        ColumnType::Text => pg_sys::TEXTOID,
        ColumnType::Jsonb => pg_sys::JSONBOID,
        ColumnType::TextArray => pg_sys::TEXTARRAYOID,
        ColumnType::Inet => pg_sys::INETOID,
    }
}

/// The hashed fields' SQL types, in hashing order. Each renders as its
/// output function prints it, except timestamptz: microseconds since
/// 1970-01-01 UTC.
const COLUMNS: [pg_sys::Oid; HASHED] = {
    let mut c = [pg_sys::InvalidOid; HASHED];
    let mut i = 0;
    while i < HASHED {
        c[i] = type_of(i);
        i += 1;
    }
    c
};

/// The hashed fields as datums (None: SQL NULL), in hashing order.
pub type Values = [Option<pg_sys::Datum>; HASHED];

/// The entry hash of the fields, rendered one at a time into the hash
/// (no copy of any field is kept). The verifier hashes the values it reads
/// back this way.
pub fn hash(values: &Values) -> Hex {
    hash_known(values, &[None; HASHED])
}

/// [`hash`], with the text of some fields already known (`known[i]`, the
/// writer's own rendering of a jsonb or text[] it built, byte for byte
/// what the output function would print): those are not printed again.
pub fn hash_known(values: &Values, known: &[Option<&[u8]>; HASHED]) -> Hex {
    let items: [_; HASHED] = std::array::from_fn(|i| match (COLUMNS[i], known[i], values[i]) {
        (oid, Some(_), _) => (oid, None),
        // A timestamptz datum is microseconds since 2000: rendered as the
        // integer of microseconds since 1970.
        (pg_sys::TIMESTAMPTZOID, None, Some(d)) => (
            pg_sys::INT8OID,
            Some(pg_sys::Datum::from(
                (d.value() as i64).saturating_add(PG_EPOCH_OFFSET_US),
            )),
        ),
        (oid, _, v) => (oid, v),
    });
    let mut h = EntryHasher::start();
    for ((t, v), k) in render::texts(&items).iter().zip(values).zip(known) {
        match (v, k) {
            (None, _) => h.field(None),
            (Some(_), Some(text)) => h.field(Some(&render::utf8(text))),
            (Some(_), None) => t.with(|text| h.field(text)),
        }
    }
    h.finish()
}
