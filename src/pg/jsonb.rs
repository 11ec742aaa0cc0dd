//! A serde_json value as a `jsonb` datum, built with Postgres's own jsonb
//! builder instead of printed and parsed again: `present()` returns the
//! claims it already parsed, and parsing them again with jsonb_in was a
//! large part of its cost.

use std::ffi::{CStr, CString};
use std::ptr::null_mut;

use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::nullable::Nullable;
use pgrx::pg_sys::{self, JsonbIteratorToken as Tok};
use pgrx::FromDatum;
use serde_json::{Map, Value};

/// A jsonb datum, returned as is.
pub struct Jsonb(pg_sys::Datum);

impl Jsonb {
    /// A JSON object as jsonb.
    pub fn from_object(m: &Map<String, Value>) -> Jsonb {
        unsafe {
            let mut state: *mut pg_sys::JsonbParseState = null_mut();
            Jsonb(pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(push_object(
                &mut state, m,
            ))))
        }
    }

    /// The varlena's bytes, to keep beyond this call.
    pub fn to_bytes(&self) -> Vec<u8> {
        unsafe {
            let p = self.0.cast_mut_ptr::<u8>();
            std::slice::from_raw_parts(p, pgrx::varsize_any(p.cast())).to_vec()
        }
    }

    /// A jsonb datum, in the current memory context, from [`Jsonb::to_bytes`].
    pub fn copy_of(bytes: &[u8]) -> Jsonb {
        unsafe {
            let p = crate::pg::raw::alloc(bytes.len());
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
            Jsonb(pg_sys::Datum::from(p))
        }
    }
}

unsafe fn push_object(
    state: &mut *mut pg_sys::JsonbParseState,
    m: &Map<String, Value>,
) -> *mut pg_sys::JsonbValue {
    pg_sys::pushJsonbValue(state, Tok::WJB_BEGIN_OBJECT, null_mut());
    for (k, v) in m {
        let mut key = string(k);
        pg_sys::pushJsonbValue(state, Tok::WJB_KEY, &mut key);
        push(state, v, Tok::WJB_VALUE);
    }
    pg_sys::pushJsonbValue(state, Tok::WJB_END_OBJECT, null_mut())
}

/// Pushes `v` (as `token` when it is a scalar); returns what the builder
/// returned for its last token (the finished container at the top level).
unsafe fn push(
    state: &mut *mut pg_sys::JsonbParseState,
    v: &Value,
    token: Tok::Type,
) -> *mut pg_sys::JsonbValue {
    match v {
        Value::Object(m) => push_object(state, m),
        Value::Array(a) => {
            pg_sys::pushJsonbValue(state, Tok::WJB_BEGIN_ARRAY, null_mut());
            for e in a {
                push(state, e, Tok::WJB_ELEM);
            }
            pg_sys::pushJsonbValue(state, Tok::WJB_END_ARRAY, null_mut())
        }
        scalar => {
            let mut s = scalar_value(scalar);
            pg_sys::pushJsonbValue(state, token, &mut s)
        }
    }
}

/// A string JsonbValue; the builder copies the bytes into the jsonb.
pub unsafe fn string(s: &str) -> pg_sys::JsonbValue {
    let mut v = pg_sys::JsonbValue {
        type_: pg_sys::jbvType::jbvString,
        val: std::mem::zeroed(),
    };
    // Strings here are parts of an assertion (a few KB at most), far
    // below jsonb's 256 MB string limit.
    v.val.string.len = i32::try_from(s.len()).unwrap_or(i32::MAX);
    v.val.string.val = s.as_ptr().cast_mut().cast();
    v
}

unsafe fn scalar_value(v: &Value) -> pg_sys::JsonbValue {
    let mut out = pg_sys::JsonbValue {
        type_: pg_sys::jbvType::jbvNull,
        val: std::mem::zeroed(),
    };
    match v {
        Value::String(s) => return string(s),
        Value::Bool(b) => {
            out.type_ = pg_sys::jbvType::jbvBool;
            out.val.boolean = *b;
        }
        Value::Number(n) => {
            let numeric = match n.as_i64() {
                // Integers (iat, exp, auth_time) without printing and parsing.
                Some(i) => Some(pg_sys::Datum::from(pg_sys::int64_to_numeric(i))),
                // serde_json prints finite numbers only; numeric_in reads them all.
                None => {
                    let text = CString::new(n.to_string()).unwrap_or_default();
                    pgrx::direct_function_call_as_datum(
                        pg_sys::numeric_in,
                        &[
                            Some(pg_sys::Datum::from(text.as_ptr())),
                            Some(pg_sys::Datum::from(pg_sys::InvalidOid)),
                            Some(pg_sys::Datum::from(-1i32)),
                        ],
                    )
                }
            };
            if let Some(d) = numeric {
                out.type_ = pg_sys::jbvType::jbvNumeric;
                out.val.numeric = d.cast_mut_ptr();
            }
        }
        _ => {}
    }
    out
}

unsafe impl BoxRet for Jsonb {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        unsafe { fcinfo.return_raw_datum(self.0) }
    }
}

pgrx::impl_sql_translatable!(Jsonb, "jsonb");

/// A jsonb datum as serde_json reads its text (`jsonb_out`). Unlike pgrx's
/// `JsonB`, which panics (XX000), what serde_json cannot hold comes back as
/// an error to report: a number beyond an IEEE double (`1e400`, which
/// `numeric` and so `jsonb` accept), nesting deeper than 128.
pub fn to_value(datum: pg_sys::Datum) -> Result<Value, serde_json::Error> {
    serde_json::from_slice(text_of(datum))
}

/// A jsonb datum as a change digest reads it ([`stepup_core::digest::exact_value`]):
/// numbers a double cannot hold exactly as strings of their exact text.
pub fn to_exact_value(datum: pg_sys::Datum) -> Result<Value, serde_json::Error> {
    let text = std::str::from_utf8(text_of(datum))
        .map_err(|_| <serde_json::Error as serde::de::Error>::custom("jsonb text is not UTF-8"))?;
    stepup_core::digest::exact_value(text)
}

/// `jsonb_out` of a jsonb datum, in the current memory context.
fn text_of<'a>(datum: pg_sys::Datum) -> &'a [u8] {
    // SAFETY: a non-null jsonb datum; jsonb_out detoasts it and returns a
    // palloc'd C string in the current memory context.
    unsafe {
        let p = pgrx::direct_function_call_as_datum(pg_sys::jsonb_out, &[Some(datum)])
            .map(|d| d.cast_mut_ptr::<std::ffi::c_char>())
            .unwrap_or(null_mut());
        if p.is_null() {
            &[][..]
        } else {
            CStr::from_ptr(p).to_bytes()
        }
    }
}

/// A `jsonb` argument, read with [`to_value`] by the function that takes it.
pub struct JsonbArg(pg_sys::Datum);

impl JsonbArg {
    pub fn value(&self) -> Result<Value, serde_json::Error> {
        to_value(self.0)
    }

    /// The argument's text as `jsonb_out` prints it: for a size check
    /// before anything parses it.
    pub fn text(&self) -> &[u8] {
        text_of(self.0)
    }

    /// As [`to_exact_value`] reads it.
    pub fn exact_value(&self) -> Result<Value, serde_json::Error> {
        to_exact_value(self.0)
    }
}

impl FromDatum for JsonbArg {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _: pg_sys::Oid,
    ) -> Option<Self> {
        (!is_null && !datum.is_null()).then_some(JsonbArg(datum))
    }
}

// SAFETY: unboxed with FromDatum from a `jsonb` argument, as pgrx does for JsonB.
unsafe impl<'fcx> ArgAbi<'fcx> for JsonbArg {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        // SAFETY: the caller's contract (the argument is non-null jsonb).
        unsafe { arg.unbox_arg_using_from_datum() }
            .unwrap_or_else(|| super::args::null_for_strict())
    }

    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        // SAFETY: the caller's contract (the argument is jsonb).
        unsafe { arg.unbox_arg_using_from_datum() }.into()
    }
}

pgrx::impl_sql_translatable!(JsonbArg, "jsonb");
