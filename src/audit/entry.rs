//! An audit entry as Postgres values, and the one rendering of its hashed
//! fields as text (docs/audit-encoding.md). The writer renders the
//! values it is about to insert, the verifier the values it reads back:
//! both as the stored types' own output functions print them (render::texts,
//! pgtext.rs), so the text is what `stepup.entry_fields` gives in SQL, with
//! no SQL in between.

use pgrx::prelude::*;

use super::encoding::{ColumnType, EntryHasher, HASHED, LOG_COLUMNS};
use crate::pg::array_disk;
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

/// A text datum's bytes, in place (detoasted if it must be).
///
/// # Safety
/// `d` is a non-null text datum; the bytes live as long as it does.
unsafe fn text_bytes<'a>(d: pg_sys::Datum) -> &'a [u8] {
    pgrx::varlena::varlena_to_byte_slice(crate::rows::render::packed(d))
}

/// A text datum as a String.
///
/// # Safety
/// `d` is a non-null text datum.
pub unsafe fn text(d: pg_sys::Datum) -> String {
    String::from_utf8_lossy(text_bytes(d)).into_owned()
}

/// Text datums of `strings` (None: SQL NULL), all in one palloc: pgrx's
/// into_datum is a guarded call and an allocation per string, and an entry
/// has a dozen.
pub fn text_datums<const N: usize>(strings: [Option<&str>; N]) -> [Option<pg_sys::Datum>; N] {
    let mut out = [None; N];
    pack(strings.iter().copied(), |i, d| out[i] = Some(d));
    out
}

/// A text[] of `items`, laid out here (array_disk.rs) in one palloc.
pub fn text_array(items: &[&str]) -> pg_sys::Datum {
    let Some(len) = array_disk::text_array_len(items) else {
        return text_array_by_postgres(items);
    };
    unsafe {
        let p = crate::pg::raw::alloc(len);
        // Initialised before a slice is made over it.
        std::ptr::write_bytes(p, 0, len);
        let out = std::slice::from_raw_parts_mut(p, len);
        array_disk::write_text_array(items, u32::from(pg_sys::TEXTOID), out);
        pg_sys::Datum::from(p)
    }
}

/// A text[] of `items` built by Postgres (construct_array): what
/// array_disk.rs is checked against (tests.rs), and the builder of an
/// array over its limits (which raises Postgres' error).
pub fn text_array_by_postgres(items: &[&str]) -> pg_sys::Datum {
    let mut elems: smallvec::SmallVec<[pg_sys::Datum; 8]> =
        smallvec::smallvec![pg_sys::Datum::from(0); items.len()];
    pack(items.iter().copied().map(Some), |i, d| elems[i] = d);
    let n = std::ffi::c_int::try_from(elems.len()).unwrap_or(0);
    // text: variable length, not by value, int-aligned.
    let align = b'i' as std::ffi::c_char;
    let array = unsafe {
        pg_sys::construct_array(elems.as_mut_ptr(), n, pg_sys::TEXTOID, -1, false, align)
    };
    pg_sys::Datum::from(array)
}

/// Writes each string as a varlena (4-byte header, int-aligned) into one
/// allocation and hands string i's to `put(i, datum)` (NULLs are skipped).
fn pack<'s>(
    strings: impl Iterator<Item = Option<&'s str>> + Clone,
    mut put: impl FnMut(usize, pg_sys::Datum),
) {
    let header = pg_sys::VARHDRSZ;
    let size = |s: &str| (header + s.len() + 3) & !3;
    let total: usize = strings.clone().flatten().map(size).sum();
    if total == 0 {
        return;
    }
    let base = crate::pg::raw::alloc(total);
    let mut at = 0;
    for (i, s) in strings.enumerate() {
        let Some(s) = s else { continue };
        unsafe {
            let p = base.add(at);
            std::ptr::copy_nonoverlapping(s.as_ptr(), p.add(header), s.len());
            // Entry strings are names, digests and claims: far below 1 GB.
            let len = i32::try_from(header + s.len()).unwrap_or(i32::MAX);
            pgrx::set_varsize_4b(p.cast(), len);
            put(i, pg_sys::Datum::from(p));
        }
        at += size(s);
    }
}
