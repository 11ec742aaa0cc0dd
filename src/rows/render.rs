//! How rows render: as text (their types' output functions) for row
//! digests, as jsonb (as `to_jsonb` renders them) for audit values and
//! change digests; the same whatever the session's settings.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::CStr;
use std::ptr::null_mut;

use pgrx::pg_sys::{self, JsonbIteratorToken as Tok};
use serde_json::{Map, Value};

use crate::pg::cache::OidMap;
use crate::pg::jsonb;
use crate::pg::jsonb_disk;
use crate::pg::pgtext::{self, Scalar};
use crate::pg::raw;
use crate::pg::varlena::packed;
use crate::rows::{self, pinned, Column, Row, Values};

/// Runs `f`, which renders rows of `rel`, so that the text is the same
/// whatever the session's settings: directly when every column has a type
/// whose rendering reads no setting ([`rows::Shape::settings_free`]), otherwise under [`OUTPUT_SETTINGS`].
/// Switching settings (two set_config_option calls) costs more than
/// rendering a small row. `shape` is the table's, which the caller has at
/// hand.
pub fn rendered<R>(shape: &rows::Shape, f: impl FnOnce() -> R) -> R {
    if shape.settings_free {
        f()
    } else {
        pinned(OUTPUT_SETTINGS, f)
    }
}

/// Output settings under which rows are rendered (to_jsonb, digests, the
/// audit): the same text whatever the session's settings.
pub const OUTPUT_SETTINGS: &[(&CStr, &CStr)] = &[
    (c"search_path", c"pg_catalog, pg_temp"),
    (c"TimeZone", c"UTC"),
    (c"DateStyle", c"ISO, MDY"),
    (c"IntervalStyle", c"postgres"),
    (c"extra_float_digits", c"1"),
    (c"bytea_output", c"hex"),
];

/// The row as `to_jsonb` renders it with TimeZone UTC and the default
/// output settings, read as a change digest reads it (numbers a double
/// cannot hold exactly as strings of their text): what
/// `stepup.change_digest` callers are told to send. An error names what
/// serde_json cannot hold (JSON nested 128 levels deep).
pub fn as_json(row: Row) -> Result<Map<String, Value>, serde_json::Error> {
    let json = rendered(&rows::shape(row.rel), || {
        let columns = row.columns();
        crate::pg::jsonb::to_exact_value(object(&row.values(), columns.iter()))
    })?;
    Ok(match json {
        Value::Object(m) => m,
        _ => Map::new(),
    })
}

/// The text of each value (type, datum; None: SQL NULL) as its type's
/// output function prints it, rendered under the caller's settings (see
/// [`rendered`]). Integers, booleans and text are written here (their
/// output functions print exactly that); other built-in types are printed
/// under one guard (raw.rs), user types one call each. Printed text is
/// left to the caller's memory context (the audit trigger's is reset
/// after each row): a pfree is one more call per value.
pub fn texts(items: &[(pg_sys::Oid, Option<pg_sys::Datum>)]) -> Vec<Text> {
    let mut out: Vec<Text> = items
        .iter()
        .map(|(t, d)| match (*t, d) {
            (_, None) => Text::Null,
            (pg_sys::INT2OID, Some(d)) => Text::Int(i64::from(d.value() as i16)),
            (pg_sys::INT4OID, Some(d)) => Text::Int(i64::from(d.value() as i32)),
            (pg_sys::INT8OID, Some(d)) => Text::Int(d.value() as i64),
            (pg_sys::BOOLOID, Some(d)) => Text::Bool(d.value() != 0),
            (pg_sys::TEXTOID | pg_sys::VARCHAROID, Some(d)) => Text::InPlace(unsafe { packed(*d) }),
            (pg_sys::BYTEAOID, Some(d)) => {
                refuse_unprintable_bytea(*d);
                Text::Printed(null_mut(), built_in_output(pg_sys::BYTEAOID))
            }
            (t, Some(_)) if u32::from(t) < pg_sys::FirstNormalObjectId => {
                Text::Printed(null_mut(), built_in_output(t))
            }
            (_, Some(_)) => Text::Printed(null_mut(), null_mut()),
        })
        .collect();
    // Most rows have nothing to print (integers, booleans, text): no guard.
    let printing = out
        .iter()
        .any(|o| matches!(o, Text::Printed(_, f) if !f.is_null()));
    unsafe {
        if printing {
            raw::guarded(|| {
                for (o, (_, d)) in out.iter_mut().zip(items) {
                    if let (Text::Printed(p, f), Some(d)) = (o, d) {
                        if !f.is_null() {
                            *p = raw::OutputFunctionCall(*f, *d);
                        }
                    }
                }
            });
        }
        for (o, (t, d)) in out.iter_mut().zip(items) {
            if let (Text::Printed(p, _), Some(d)) = (o, d) {
                if p.is_null() {
                    *p = output(*t, *d);
                }
            }
        }
    }
    out
}

/// A value's text, as [`texts`] renders it.
pub enum Text {
    Null,
    Int(i64),
    Bool(bool),
    /// A text or varchar datum, read in place.
    InPlace(*mut pg_sys::varlena),
    /// What an output function printed, and the built-in one that prints
    /// it under the block's guard (null: looked up and called apart).
    Printed(*mut std::ffi::c_char, *mut pg_sys::FmgrInfo),
}

impl Text {
    /// Hands the text as UTF-8 bytes (None: SQL NULL) to `f`.
    pub fn with<R>(&self, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        match self {
            Text::Null => f(None),
            Text::Int(n) => f(Some(itoa::Buffer::new().format(*n).as_bytes())),
            Text::Bool(b) => f(Some(if *b { b"t" } else { b"f" })),
            Text::InPlace(p) => f(Some(&utf8(unsafe {
                pgrx::varlena::varlena_to_byte_slice(*p)
            }))),
            Text::Printed(p, _) if p.is_null() => f(None),
            Text::Printed(p, _) => f(Some(&utf8(unsafe { CStr::from_ptr(*p) }.to_bytes()))),
        }
    }
}

/// A built-in type's output function, looked up once per backend (it
/// cannot change); boxed, so it stays where the pointer says.
fn built_in_output(type_oid: pg_sys::Oid) -> *mut pg_sys::FmgrInfo {
    OUTPUT.with(|cache| {
        let mut cache = cache.borrow_mut();
        let flinfo = cache.entry(type_oid).or_insert_with(|| unsafe {
            let mut f = Box::new(std::mem::zeroed::<pg_sys::FmgrInfo>());
            pg_sys::fmgr_info_cxt(
                output_function(type_oid),
                f.as_mut(),
                pg_sys::TopMemoryContext,
            );
            f
        });
        &raw mut **flinfo
    })
}

/// Text from the database as the UTF-8 bytes the audit hashes: as it is
/// in a UTF-8 database (Postgres checked it on the way in: no second
/// check for every text an entry hashes), converted lossily in any other.
pub fn utf8(bytes: &[u8]) -> Cow<'_, [u8]> {
    use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
    // The database's encoding never changes under a backend (a process):
    // 0 not read yet, 1 UTF-8, 2 another. A static, not a thread_local: each
    // of those is a TLS lookup, and this runs for every text an entry hashes.
    static UTF8: AtomicU8 = AtomicU8::new(0);
    let is_utf8 = match UTF8.load(Relaxed) {
        0 => {
            let utf8 = unsafe { pg_sys::GetDatabaseEncoding() } == pg_sys::pg_enc::PG_UTF8 as i32;
            UTF8.store(if utf8 { 1 } else { 2 }, Relaxed);
            utf8
        }
        v => v == 1,
    };
    if is_utf8 {
        return Cow::Borrowed(bytes);
    }
    match String::from_utf8_lossy(bytes) {
        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    }
}

/// The text output of `d`, a value of type `type_oid`, looked up at each
/// call (a user type's output function can change).
///
/// # Safety
/// `d` is a non-null datum of type `type_oid`.
unsafe fn output(type_oid: pg_sys::Oid, d: pg_sys::Datum) -> *mut std::ffi::c_char {
    pg_sys::OidOutputFunctionCall(output_function(type_oid), d)
}

/// The output function of a type.
fn output_function(type_oid: pg_sys::Oid) -> pg_sys::Oid {
    let (mut func, mut varlena) = (pg_sys::InvalidOid, false);
    unsafe { pg_sys::getTypeOutputInfo(type_oid, &mut func, &mut varlena) };
    func
}

/// The jsonb object of `columns` of the row, each value as `to_jsonb(row)`
/// renders it under the caller's settings (see [`rendered`]): built
/// column by column, so an UPDATE's entry renders only the columns it
/// names instead of two whole rows cut down afterwards. An object of
/// integers, booleans, strings and nulls is laid out here
/// (jsonb_disk.rs); any other is built by Postgres under one guard
/// (raw.rs).
pub fn object<'c>(
    values: &Values,
    columns: impl Iterator<Item = &'c Column> + Clone,
) -> pg_sys::Datum {
    laid_out(values, columns, false).0
}

/// The audit's form of [`object`]: each value over
/// [`pgtext::VALUE_LIMIT`] written as [`pgtext::omitted`] (so no entry's
/// text outgrows what jsonb_out can print), and the object's text exactly
/// as `jsonb_out` writes it when every value is an integer, boolean,
/// string or null (None otherwise): the audit hashes that text, and
/// writing it here costs a fraction of printing the jsonb back.
pub fn object_and_text<'c>(
    values: &Values,
    columns: impl Iterator<Item = &'c Column> + Clone,
) -> (pg_sys::Datum, Option<Vec<u8>>) {
    laid_out(values, columns, true)
}

/// The object, and, for the audit (`audit`: values bounded), its text if
/// it is plain: integer, boolean and text columns straight from the row
/// ([`scalars`]); other plain values through the builder's values
/// ([`plain`]); anything else, or an object too large to lay out here,
/// built by Postgres.
fn laid_out<'c>(
    values: &Values,
    columns: impl Iterator<Item = &'c Column> + Clone,
    audit: bool,
) -> (pg_sys::Datum, Option<Vec<u8>>) {
    let text = |sorted: &[(&[u8], Scalar)]| audit.then(|| pgtext::object_sorted(sorted));
    if let Some(sorted) = scalars(values, columns.clone(), audit) {
        if let Some(datum) = stored(&sorted) {
            return (datum, text(&sorted));
        }
    }
    let pairs = pairs(values, columns, audit);
    let (datum, printed) = match unsafe { plain(&pairs) } {
        Some(sorted) => (stored(&sorted), text(&sorted)),
        None => (None, None),
    };
    (datum.unwrap_or_else(|| build(&pairs)), printed)
}

/// The columns as plain scalars in jsonb's key order, read straight from
/// the row when each is an integer, boolean or text column (the common
/// row): no builder values in between. None if any is of another type.
/// `bounded`: a text over the limit is its [`pgtext::omitted`] marker.
fn scalars<'v, 'c: 'v>(
    values: &Values,
    columns: impl Iterator<Item = &'c Column>,
    bounded: bool,
) -> Option<pgtext::Pairs<'v>> {
    let mut sorted = columns
        .map(|c| {
            let value = match values.get(c.index) {
                None => Scalar::Null,
                // Other types than text leave this path anyway (None below).
                Some(d)
                    if bounded
                        && matches!(c.type_oid, pg_sys::TEXTOID | pg_sys::VARCHAROID)
                        && oversized(c.type_oid, d) =>
                unsafe { Scalar::Str(omitted(c.type_oid, d)) },
                // Text in place, or detoasted into the row's memory context.
                Some(d) => unsafe { plain_scalar(c.type_oid, d)? },
            };
            Some((c.name.as_bytes(), value))
        })
        .collect::<Option<Vec<_>>>()?;
    pgtext::sort_keys(&mut sorted);
    Some(sorted)
}

/// Each column's key and value, laid out for the builder; `bounded`: a
/// value over the limit as its [`pgtext::omitted`] marker.
fn pairs<'c>(
    values: &Values,
    columns: impl Iterator<Item = &'c Column>,
    bounded: bool,
) -> Vec<(pg_sys::JsonbValue, Pending)> {
    columns
        .map(|c| unsafe {
            let value = match values.get(c.index) {
                None => Pending::Ready(null_value()),
                Some(d) if bounded && oversized(c.type_oid, d) => {
                    let marker = omitted(c.type_oid, d);
                    let mut v = null_value();
                    v.type_ = pg_sys::jbvType::jbvString;
                    // The marker is under 100 bytes.
                    v.val.string.len = i32::try_from(marker.len()).unwrap_or(0);
                    v.val.string.val = marker.as_ptr().cast_mut().cast();
                    Pending::Ready(v)
                }
                Some(d) => scalar(c.type_oid, d).unwrap_or_else(|| {
                    let mut v = null_value();
                    any_value(c.type_oid, d, &mut v);
                    Pending::Ready(v)
                }),
            };
            (jsonb::string(&c.name), value)
        })
        .collect()
}

/// Is `d`, a non-null value of type `type_oid`, over [`pgtext::VALUE_LIMIT`]?
/// A header read for the common row (integers and booleans: never; a
/// short or plain inline varlena: its length); only a compressed or
/// out-of-line value costs a call (its TOAST pointer or header holds the
/// raw size: nothing is detoasted to decide).
fn oversized(type_oid: pg_sys::Oid, d: pg_sys::Datum) -> bool {
    match type_oid {
        pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID | pg_sys::BOOLOID => return false,
        pg_sys::TEXTOID | pg_sys::VARCHAROID => {}
        t if typlen(t) != -1 => return false,
        _ => {}
    }
    // SAFETY: a non-null varlena datum (typlen -1).
    pgtext::over_limit(unsafe { raw_size(d) })
}

/// The size of varlena datum `d` uncompressed, without its header: from
/// its header, or (compressed, out of line) its TOAST pointer; nothing is
/// detoasted.
///
/// # Safety
/// `d` is a non-null varlena datum.
unsafe fn raw_size(d: pg_sys::Datum) -> usize {
    use pgrx::varlena::{varatt_is_1b, varatt_is_1b_e, varatt_is_4b_u, varsize_1b, varsize_4b};
    let p = d.cast_mut_ptr::<pg_sys::varlena>();
    if varatt_is_1b(p) && !varatt_is_1b_e(p) {
        varsize_1b(p).saturating_sub(1)
    } else if varatt_is_4b_u(p) {
        varsize_4b(p).saturating_sub(pg_sys::VARHDRSZ)
    } else {
        pg_sys::toast_raw_datum_size(d).saturating_sub(pg_sys::VARHDRSZ)
    }
}

/// A bytea whose hex text (`\x`, two digits a byte) would pass palloc's
/// 1 GB: byteaout would fail with an internal error (XX000, "invalid
/// memory alloc request size"); refuse it first, as the limit it is.
fn refuse_unprintable_bytea(d: pg_sys::Datum) {
    const MAX_ALLOC: usize = 0x3FFF_FFFF;
    // SAFETY: a non-null bytea datum.
    let size = unsafe { raw_size(d) };
    if size > (MAX_ALLOC - 3) / 2 {
        crate::pg::reject::program_limit(
            format!("pg_stepup: a bytea of {size} bytes is too large to audit"),
            Some("Its text form (hex) would pass PostgreSQL's 1 GB limit, so no row digest can cover it. \
             Keep values over 512 MB out of protected tables (store a reference and its digest)."),
        );
    }
}

/// A type's typlen (-1: varlena), kept per backend: a type's length
/// never changes.
fn typlen(type_oid: pg_sys::Oid) -> i16 {
    TYPLEN.with(|cache| {
        *cache
            .borrow_mut()
            .entry(type_oid)
            .or_insert_with(|| unsafe { pg_sys::get_typlen(type_oid) })
    })
}

/// The [`pgtext::omitted`] marker of `d`, in the current memory context:
/// over the value's text as the row digest hashes it ([`texts`]; a value
/// its output function cannot print raises that function's error).
///
/// # Safety
/// `d` is a non-null datum of type `type_oid`.
unsafe fn omitted<'a>(type_oid: pg_sys::Oid, d: pg_sys::Datum) -> &'a [u8] {
    let marker = texts(&[(type_oid, Some(d))])
        .first()
        .map(|t| t.with(|text| pgtext::omitted(text.unwrap_or_default())))
        .unwrap_or_default();
    let p = raw::alloc(marker.len());
    std::ptr::copy_nonoverlapping(marker.as_ptr(), p, marker.len());
    std::slice::from_raw_parts(p, marker.len())
}

/// The object of `pairs`, built by Postgres under one guard.
fn build(pairs: &[(pg_sys::JsonbValue, Pending)]) -> pg_sys::Datum {
    let (p, n) = (pairs.as_ptr(), pairs.len());
    unsafe { raw::guarded(|| build_object(p, n)) }
}

/// The pairs as plain scalars in jsonb's key order; None if a value is not
/// an integer, boolean, string or null.
///
/// # Safety
/// The pairs' strings point at live bytes.
unsafe fn plain(pairs: &[(pg_sys::JsonbValue, Pending)]) -> Option<pgtext::Pairs<'_>> {
    let string = |v: &pg_sys::JsonbValue| {
        let len = usize::try_from(v.val.string.len).unwrap_or(0);
        std::slice::from_raw_parts(v.val.string.val.cast::<u8>(), len)
    };
    let mut sorted = pairs
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Pending::Int(n) => Scalar::Int(*n),
                Pending::Ready(v) => match v.type_ {
                    pg_sys::jbvType::jbvNull => Scalar::Null,
                    pg_sys::jbvType::jbvBool => Scalar::Bool(v.val.boolean),
                    pg_sys::jbvType::jbvString => Scalar::Str(string(v)),
                    _ => return None,
                },
            };
            Some((string(k), value))
        })
        .collect::<Option<Vec<_>>>()?;
    pgtext::sort_keys(&mut sorted);
    Some(sorted)
}

/// The jsonb datum of plain pairs in key order, laid out here
/// (jsonb_disk.rs) in the current memory context; None if too large for
/// a jsonb (Postgres then builds it, and raises its error).
fn stored(sorted: &[(&[u8], Scalar)]) -> Option<pg_sys::Datum> {
    thread_local! {
        // Laid out here, then copied into a palloc: kept, not a malloc per object.
        static LAYOUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    LAYOUT.with(|buf| {
        let mut bytes = buf.borrow_mut();
        let laid_out = jsonb_disk::object_into(sorted, &mut bytes);
        let datum = laid_out.map(|()| unsafe {
            let p = raw::alloc(bytes.len());
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
            pg_sys::Datum::from(p)
        });
        // A row's objects are small; a large one's buffer is not kept.
        if bytes.capacity() > 1 << 16 {
            *bytes = Vec::new();
        }
        datum
    })
}

/// Postgres' own build of the object of `pairs` (pushJsonbValue,
/// int64_to_numeric, JsonbValueToJsonb), as varlena bytes: the reference
/// jsonb_disk.rs is checked against (tests.rs).
#[cfg(any(test, feature = "pg_test"))]
pub fn object_by_postgres(pairs: &[(&[u8], Scalar)]) -> Vec<u8> {
    let pairs: Vec<(pg_sys::JsonbValue, Pending)> = pairs
        .iter()
        .map(|(k, v)| {
            let text = |b: &[u8]| {
                let mut t = null_value();
                t.type_ = pg_sys::jbvType::jbvString;
                t.val.string.len = i32::try_from(b.len()).unwrap_or(i32::MAX);
                t.val.string.val = b.as_ptr().cast_mut().cast();
                t
            };
            let value = match v {
                Scalar::Int(n) => Pending::Int(*n),
                Scalar::Null => Pending::Ready(null_value()),
                Scalar::Bool(b) => {
                    let mut out = null_value();
                    out.type_ = pg_sys::jbvType::jbvBool;
                    out.val.boolean = *b;
                    Pending::Ready(out)
                }
                Scalar::Str(s) => Pending::Ready(text(s)),
            };
            (text(k), value)
        })
        .collect();
    let d = build(&pairs);
    unsafe {
        let p = d.cast_mut_ptr::<u8>();
        std::slice::from_raw_parts(p, pgrx::varsize_any(p.cast())).to_vec()
    }
}

/// A value ready for the builder, or an integer still to convert to numeric
/// (a Postgres call, left to the guarded block).
enum Pending {
    Ready(pg_sys::JsonbValue),
    Int(i64),
}

fn null_value() -> pg_sys::JsonbValue {
    pg_sys::JsonbValue {
        type_: pg_sys::jbvType::jbvNull,
        val: unsafe { std::mem::zeroed() },
    }
}

/// # Safety
/// Under a guard (raw.rs); `pairs` points at `n` pairs.
unsafe fn build_object(pairs: *const (pg_sys::JsonbValue, Pending), n: usize) -> pg_sys::Datum {
    let mut state: *mut pg_sys::JsonbParseState = null_mut();
    raw::pushJsonbValue(&mut state, Tok::WJB_BEGIN_OBJECT, null_mut());
    for i in 0..n {
        let (key, value) = &*pairs.add(i);
        let mut key = *key;
        let mut value = match value {
            Pending::Ready(v) => *v,
            Pending::Int(i) => {
                let mut v = null_value();
                v.type_ = pg_sys::jbvType::jbvNumeric;
                v.val.numeric = raw::int64_to_numeric(*i);
                v
            }
        };
        raw::pushJsonbValue(&mut state, Tok::WJB_KEY, &mut key);
        raw::pushJsonbValue(&mut state, Tok::WJB_VALUE, &mut value);
    }
    let done = raw::pushJsonbValue(&mut state, Tok::WJB_END_OBJECT, null_mut());
    pg_sys::Datum::from(raw::JsonbValueToJsonb(done))
}

/// The commonest column types as to_jsonb renders them (integers as
/// numbers, booleans, text as strings), without its per-call type lookup
/// and the print-and-parse it does for integers; None for any other type.
///
/// # Safety
/// `d` is a non-null datum of type `type_oid`; text is read in place (or
/// detoasted into the current memory context) and lives as long as that.
unsafe fn plain_scalar<'a>(type_oid: pg_sys::Oid, d: pg_sys::Datum) -> Option<Scalar<'a>> {
    Some(match type_oid {
        pg_sys::INT2OID => Scalar::Int(i64::from(d.value() as i16)),
        pg_sys::INT4OID => Scalar::Int(i64::from(d.value() as i32)),
        pg_sys::INT8OID => Scalar::Int(d.value() as i64),
        pg_sys::BOOLOID => Scalar::Bool(d.value() != 0),
        pg_sys::TEXTOID | pg_sys::VARCHAROID => {
            let text = packed(d);
            Scalar::Str(std::slice::from_raw_parts(
                pgrx::vardata_any(text).cast::<u8>(),
                pgrx::varsize_any_exhdr(text),
            ))
        }
        _ => return None,
    })
}

/// [`plain_scalar`] as a value for the builder.
///
/// # Safety
/// As [`plain_scalar`].
unsafe fn scalar(type_oid: pg_sys::Oid, d: pg_sys::Datum) -> Option<Pending> {
    let mut out = null_value();
    match plain_scalar(type_oid, d)? {
        Scalar::Int(n) => return Some(Pending::Int(n)),
        Scalar::Null => {}
        Scalar::Bool(b) => {
            out.type_ = pg_sys::jbvType::jbvBool;
            out.val.boolean = b;
        }
        Scalar::Str(s) => {
            out.type_ = pg_sys::jbvType::jbvString;
            out.val.string.len = i32::try_from(s.len()).unwrap_or(i32::MAX);
            out.val.string.val = s.as_ptr().cast_mut().cast();
        }
    }
    Some(Pending::Ready(out))
}

/// Any value, through to_jsonb itself.
///
/// # Safety
/// `d` is a non-null datum of type `type_oid`.
unsafe fn any_value(type_oid: pg_sys::Oid, d: pg_sys::Datum, out: &mut pg_sys::JsonbValue) {
    let jb = value_to_jsonb(type_oid, d).cast_mut_ptr::<pg_sys::Jsonb>();
    let root = &raw mut (*jb).root;
    if (*root).header & pg_sys::JB_FSCALAR != 0 {
        pg_sys::JsonbExtractScalar(root, out);
    } else {
        // The builder copies a container's contents in.
        out.type_ = pg_sys::jbvType::jbvBinary;
        out.val.binary.data = root;
        out.val.binary.len = i32::try_from(pgrx::varsize_any_exhdr(jb.cast())).unwrap_or(i32::MAX);
    }
}

/// `to_jsonb(value)` for a value of type `type_oid`.
fn value_to_jsonb(type_oid: pg_sys::Oid, value: pg_sys::Datum) -> pg_sys::Datum {
    TO_JSONB.with(|cache| {
        let mut cache = cache.borrow_mut();
        let flinfo = cache
            .entry(type_oid)
            .or_insert_with(|| to_jsonb_of(type_oid));
        unsafe { pg_sys::FunctionCall1Coll(flinfo.as_mut(), pg_sys::InvalidOid, value) }
    })
}

/// to_jsonb, told its argument's type as a planner would tell it (it
/// reads the type from its call expression at each call, so an entry
/// never goes stale).
fn to_jsonb_of(type_oid: pg_sys::Oid) -> Box<pg_sys::FmgrInfo> {
    unsafe {
        let mut flinfo = Box::new(std::mem::zeroed::<pg_sys::FmgrInfo>());
        let caller = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        pg_sys::fmgr_info(pg_sys::Oid::from(pg_sys::F_TO_JSONB), flinfo.as_mut());
        let arg = pg_sys::makeNullConst(type_oid, -1, pg_sys::InvalidOid);
        flinfo.fn_expr = pg_sys::makeFuncExpr(
            pg_sys::Oid::from(pg_sys::F_TO_JSONB),
            pg_sys::JSONBOID,
            pg_sys::lappend(null_mut(), arg.cast()),
            pg_sys::InvalidOid,
            pg_sys::InvalidOid,
            pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
        )
        .cast();
        pg_sys::MemoryContextSwitchTo(caller);
        flinfo
    }
}

thread_local! {
    static OUTPUT: RefCell<OidMap<Box<pg_sys::FmgrInfo>>> = RefCell::new(OidMap::default());
    static TO_JSONB: RefCell<OidMap<Box<pg_sys::FmgrInfo>>> = RefCell::new(OidMap::default());
    static TYPLEN: RefCell<OidMap<i16>> = RefCell::new(OidMap::default());
}

/// The fast path (jsonb_disk.rs) against Postgres' own jsonb builder.
#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// The audit's jsonb values, laid out by jsonb_disk.rs, are byte for
    /// byte what Postgres' builder makes of the same pairs.
    #[pg_test]
    fn jsonb_objects_are_laid_out_as_postgres_builds_them() {
        use crate::pg::pgtext::{sort_keys, Scalar};
        let ints = [
            0,
            1,
            -1,
            9,
            9999,
            10_000,
            -10_000,
            10_001,
            99_990_000,
            100_000_000,
            1_000_000_000_000,
            i64::from(i32::MIN),
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
            i64::MIN + 1,
            -9_223_372_036_854_770_000,
        ];
        let long = "é".repeat(1500);
        let strings: [&[u8]; 6] = [
            b"",
            b"x",
            "€😀".as_bytes(),
            b"q\"\\\n",
            long.as_bytes(),
            b"null",
        ];
        let mut objects: Vec<Vec<(Vec<u8>, Scalar)>> = vec![vec![]];
        for n in ints {
            objects.push(vec![(b"id".to_vec(), Scalar::Int(n))]);
            // After a key of each length mod 4: every padding of the numeric.
            for k in 1..=4 {
                objects.push(vec![
                    (vec![b'k'; k], Scalar::Str(b"ab")),
                    (b"n".to_vec(), Scalar::Int(n)),
                ]);
            }
        }
        for s in strings {
            objects.push(vec![(b"s".to_vec(), Scalar::Str(s))]);
        }
        objects.push(vec![
            (b"amount".to_vec(), Scalar::Int(-42)),
            (b"t".to_vec(), Scalar::Bool(true)),
            (b"f".to_vec(), Scalar::Bool(false)),
            (b"gone".to_vec(), Scalar::Null),
            ("ключ".as_bytes().to_vec(), Scalar::Str(b"v")),
            (b"Z".to_vec(), Scalar::Str(b"")),
        ]);
        // Past the 32-entry stride (keys and values count alike), mixed.
        for n in [16, 17, 33, 70] {
            objects.push(
                (0..n)
                    .map(|i| {
                        let v = match i % 4 {
                            0 => Scalar::Int(i as i64 * 12_345),
                            1 => Scalar::Str(b"abc"),
                            2 => Scalar::Null,
                            _ => Scalar::Bool(i % 8 == 3),
                        };
                        (
                            format!("c{}", "x".repeat(i % 7) + &i.to_string()).into_bytes(),
                            v,
                        )
                    })
                    .collect(),
            );
        }
        for object in &objects {
            let mut pairs: Vec<(&[u8], Scalar)> =
                object.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
            sort_keys(&mut pairs);
            let ours = crate::pg::jsonb_disk::object(&pairs)
                .expect("fits a jsonb")
                .to_vec();
            assert_eq!(
                ours,
                super::object_by_postgres(&pairs),
                "{:?}",
                object
                    .iter()
                    .map(|(k, _)| String::from_utf8_lossy(k))
                    .collect::<Vec<_>>()
            );
        }
    }
}
