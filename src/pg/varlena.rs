//! Text and text[] datums the audit writes and reads: built in one palloc
//! each (the text[] laid out by array_disk.rs, which the #[pg_test] below
//! compares with construct_array), read in place.

use pgrx::pg_sys;

use super::array_disk;

/// A varlena datum to read in place: detoasted (a guarded call) only if it
/// is compressed or stored out of line, as pg_detoast_datum_packed decides.
///
/// # Safety
/// `d` is a non-null varlena datum.
pub unsafe fn packed(d: pg_sys::Datum) -> *mut pg_sys::varlena {
    let p = d.cast_mut_ptr::<pg_sys::varlena>();
    if pgrx::varlena::varatt_is_4b_c(p) || pgrx::varlena::varatt_is_1b_e(p) {
        pg_sys::pg_detoast_datum_packed(p)
    } else {
        p
    }
}

/// A text datum's bytes, in place (detoasted if it must be).
///
/// # Safety
/// `d` is a non-null text datum; the bytes live as long as it does.
unsafe fn text_bytes<'a>(d: pg_sys::Datum) -> &'a [u8] {
    pgrx::varlena::varlena_to_byte_slice(packed(d))
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

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// array_disk.rs writes text[] byte for byte as construct_array does:
    /// empty, one element, every padding (element lengths 0 to 7), names
    /// and methods as an entry holds them, multibyte and long strings.
    #[pg_test]
    fn text_arrays_are_laid_out_as_postgres_builds_them() {
        let long = "x".repeat(3000);
        let lists: Vec<Vec<&str>> = vec![
            vec![],
            vec![""],
            vec!["a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg", ""],
            vec!["balance"],
            vec![
                "otp", "hwk", "pwd", "mfa", "face", "fpt", "sc", "sms", "swk",
            ],
            vec!["été", "a b", "NULL", "{x}", "\\"],
            vec![&long, "y"],
        ];
        for items in &lists {
            let bytes = |d: pg_sys::Datum| unsafe {
                let p = d.cast_mut_ptr::<u8>();
                std::slice::from_raw_parts(p, pgrx::varsize_any(p.cast())).to_vec()
            };
            let ours = bytes(super::text_array(items));
            assert_eq!(
                ours,
                bytes(super::text_array_by_postgres(items)),
                "{items:?}"
            );
            // And Postgres reads it back as the same array.
            let text = Spi::get_one_with_args::<String>(
                "SELECT $1::text",
                &[unsafe {
                    pgrx::datum::DatumWithOid::new(super::text_array(items), pg_sys::TEXTARRAYOID)
                }],
            )
            .unwrap()
            .unwrap();
            let want = Spi::get_one_with_args::<String>(
                "SELECT $1::text[]::text",
                &[items
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .into()],
            )
            .unwrap()
            .unwrap();
            assert_eq!(text, want);
        }
    }
}
