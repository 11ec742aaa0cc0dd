//! An audit entry as Postgres values, and the one rendering of its 21
//! hashed fields as text (docs/audit-encoding.md). The writer renders the
//! values it is about to insert, the verifier the values it reads back:
//! both through the stored types' own output functions, so the text is
//! what `stepup.entry_fields` gives in SQL, with no SQL in between.

use std::cell::RefCell;
use std::ffi::CStr;

use pgrx::prelude::*;

use crate::catalog::PG_EPOCH_OFFSET_US;

/// How a field is stored, and so how it renders.
#[derive(Clone, Copy)]
enum Kind {
    /// bigint, as decimal.
    Int8,
    /// timestamptz, as microseconds since 1970-01-01 UTC.
    Micros,
    Text,
    Jsonb,
    TextArray,
    Inet,
}

use Kind::*;

/// Hashed columns of stepup.audit_log, in hashing order
/// (encoding::ENTRY_FIELDS), with their SQL types.
const COLUMNS: [(Kind, pg_sys::Oid); 21] = [
    (Int8, pg_sys::INT8OID),           // id
    (Micros, pg_sys::TIMESTAMPTZOID),  // at
    (Int8, pg_sys::INT8OID),           // txid
    (Text, pg_sys::TEXTOID),           // table_name
    (Text, pg_sys::TEXTOID),           // op
    (Jsonb, pg_sys::JSONBOID),         // key
    (Text, pg_sys::TEXTOID),           // old_digest
    (Text, pg_sys::TEXTOID),           // new_digest
    (TextArray, pg_sys::TEXTARRAYOID), // changed
    (Jsonb, pg_sys::JSONBOID),         // old_values
    (Jsonb, pg_sys::JSONBOID),         // new_values
    (Text, pg_sys::TEXTOID),           // role_name
    (Text, pg_sys::TEXTOID),           // session_role
    (Text, pg_sys::TEXTOID),           // application_name
    (Inet, pg_sys::INETOID),           // client_addr
    (Text, pg_sys::TEXTOID),           // kid
    (Text, pg_sys::TEXTOID),           // jti
    (Text, pg_sys::TEXTOID),           // sub
    (Text, pg_sys::TEXTOID),           // acr
    (TextArray, pg_sys::TEXTARRAYOID), // amr
    (Micros, pg_sys::TIMESTAMPTZOID),  // auth_time
];

/// The 21 hashed fields as datums (None: SQL NULL), in hashing order.
pub type Values = [Option<pg_sys::Datum>; 21];

/// SQL type of field `i`.
pub fn type_of(i: usize) -> pg_sys::Oid {
    COLUMNS[i].1
}

/// Each field's text, as hashed.
pub fn texts(values: &Values) -> Vec<Option<String>> {
    values
        .iter()
        .zip(COLUMNS)
        .map(|(v, (kind, _))| v.map(|d| unsafe { render(kind, d) }))
        .collect()
}

/// # Safety
/// `d` is a non-null datum of the field's type.
unsafe fn render(kind: Kind, d: pg_sys::Datum) -> String {
    // A bigint / timestamptz datum is the 64-bit value itself.
    let int8 = d.value() as i64;
    match kind {
        Int8 => int8.to_string(),
        Micros => int8.saturating_add(PG_EPOCH_OFFSET_US).to_string(),
        Text => text(d),
        Jsonb | TextArray | Inet => OUTPUTS.with(|o| {
            let mut o = o.borrow_mut();
            let o = o.get_or_insert_with(Outputs::new);
            let f = match kind {
                Jsonb => &mut o.jsonb,
                TextArray => &mut o.array,
                _ => &mut o.inet,
            };
            take_cstring(pg_sys::OutputFunctionCall(f.as_mut(), d))
        }),
    }
}

/// A text datum as a String.
///
/// # Safety
/// `d` is a non-null text datum.
pub unsafe fn text(d: pg_sys::Datum) -> String {
    // Read in place: one copy, not text_to_cstring's palloc and a second.
    let t = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
    String::from_utf8_lossy(pgrx::varlena::varlena_to_byte_slice(t)).into_owned()
}

unsafe fn take_cstring(p: *mut std::ffi::c_char) -> String {
    let s = CStr::from_ptr(p).to_string_lossy().into_owned();
    pg_sys::pfree(p.cast());
    s
}

/// Output functions looked up once per backend (array_out keeps its
/// element type cache in the FmgrInfo, so each lives at a fixed address).
struct Outputs {
    jsonb: Box<pg_sys::FmgrInfo>,
    array: Box<pg_sys::FmgrInfo>,
    inet: Box<pg_sys::FmgrInfo>,
}

impl Outputs {
    fn new() -> Self {
        let info = |oid: u32| {
            let mut f = Box::new(unsafe { std::mem::zeroed::<pg_sys::FmgrInfo>() });
            unsafe {
                pg_sys::fmgr_info_cxt(pg_sys::Oid::from(oid), f.as_mut(), pg_sys::TopMemoryContext)
            };
            f
        };
        Outputs {
            jsonb: info(pg_sys::F_JSONB_OUT),
            array: info(pg_sys::F_ARRAY_OUT),
            inet: info(pg_sys::F_INET_OUT),
        }
    }
}

thread_local! {
    static OUTPUTS: RefCell<Option<Outputs>> = const { RefCell::new(None) };
}
