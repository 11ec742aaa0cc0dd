//! Argument adapters: SQL arguments as the extension reads them, where
//! pgrx's own would panic or copy.

use pgrx::callconv::{Arg, ArgAbi};
use pgrx::nullable::Nullable;
use pgrx::prelude::*;

/// A `text` argument as its bytes. pgrx's `&str` panics (XX000, with the
/// statement, and so the assertion, in the server log) on text that is not
/// UTF-8, which a SQL_ASCII database can hold; present() refuses it as SU002.
pub struct TextBytes<'a>(pub &'a [u8]);

impl FromDatum for TextBytes<'_> {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _: pg_sys::Oid,
    ) -> Option<Self> {
        if is_null || datum.is_null() {
            return None;
        }
        // SAFETY: a non-null text datum; detoasted (if needed) into the
        // function's memory context, which outlives the call.
        unsafe {
            let varlena = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
            Some(TextBytes(pgrx::varlena::varlena_to_byte_slice(varlena)))
        }
    }
}

// SAFETY: unboxed with FromDatum from a `text` argument, as pgrx does for &str.
unsafe impl<'fcx> ArgAbi<'fcx> for TextBytes<'fcx> {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        // SAFETY: the caller's contract (the argument is non-null text).
        unsafe { arg.unbox_arg_using_from_datum() }.unwrap_or_else(|| null_for_strict())
    }

    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        // SAFETY: the caller's contract (the argument is text).
        unsafe { arg.unbox_arg_using_from_datum() }.into()
    }
}

pgrx::impl_sql_translatable!(TextBytes<'_>, "text");

/// pgrx unboxes an argument unchecked only for a STRICT function, which
/// Postgres never calls with NULL; should it happen, refuse.
pub(super) fn null_for_strict() -> ! {
    super::reject::internal(
        "pg_stepup: a NULL argument reached a function declared STRICT",
        "Report this with the statement that caused it.",
    )
}
