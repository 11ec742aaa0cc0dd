//! Pure: the stored form of a one-dimensional text[] without NULLs, byte
//! for byte as Postgres' `construct_array` lays it out (arrayfuncs.c,
//! construct_md_array and CopyArrayEls). An audit entry holds two (changed
//! columns, amr): laid out here, each is one allocation and no guard, where
//! packing the elements and construct_array were a guarded call each.
//! varlena.rs builds the datum and checks every form against construct_array.
//!
//! Layout: a varlena header; ndim, dataoffset (0: no NULL bitmap) and the
//! element type as int32; the dimension and lower bound (1); padding to 8
//! bytes (MAXALIGN); then each element as a text varlena with a 4-byte
//! header, padded to 4 bytes. No elements: the empty array, 16 bytes, ndim 0.

use crate::pg::jsonb_disk::varlena_header;

/// Bytes of the array's header with one dimension: MAXALIGN(16 + 8).
const HEADER_1D: usize = 24;
/// An empty array: the header alone, ndim 0.
const HEADER_EMPTY: usize = 16;
/// Postgres' MaxArraySize (MaxAllocSize / sizeof(Datum)): elements an
/// array may hold.
const MAX_ELEMENTS: usize = 0x3FFF_FFFF / std::mem::size_of::<usize>();

/// Size of the text[] of `items`; None if it is not an array Postgres
/// would build (too many elements, or over a varlena's 1 GB): the caller
/// then has Postgres build it, and raise its error.
pub fn text_array_len(items: &[&str]) -> Option<usize> {
    array_len(items.len(), items.iter().map(|s| s.len()))
}

/// Size of a text[] of `n` elements of byte lengths `lens`.
fn array_len(n: usize, mut lens: impl Iterator<Item = usize>) -> Option<usize> {
    if n == 0 {
        return Some(HEADER_EMPTY);
    }
    if n > MAX_ELEMENTS {
        return None;
    }
    let data = lens.try_fold(0usize, |sum, len| {
        sum.checked_add(len.checked_add(4)?.next_multiple_of(4))
    })?;
    let total = HEADER_1D.checked_add(data)?;
    // palloc's limit, MaxAllocSize.
    (total < 0x4000_0000).then_some(total)
}

/// Writes the text[] of `items`, of element type `text_oid`, into `out`,
/// exactly [`text_array_len`] bytes long (every byte is written).
pub fn write_text_array(items: &[&str], text_oid: u32, out: &mut [u8]) {
    let Some(header) = varlena_header(out.len()) else {
        return;
    };
    out.fill(0);
    out[..4].copy_from_slice(&header);
    out[12..16].copy_from_slice(&text_oid.to_ne_bytes());
    if items.is_empty() {
        return;
    }
    let n = i32::try_from(items.len()).unwrap_or(i32::MAX);
    out[4..8].copy_from_slice(&1i32.to_ne_bytes()); // ndim; dataoffset stays 0
    out[16..20].copy_from_slice(&n.to_ne_bytes());
    out[20..24].copy_from_slice(&1i32.to_ne_bytes()); // lower bound
    let mut at = HEADER_1D;
    for s in items {
        let Some(header) = varlena_header(4 + s.len()) else {
            return;
        };
        out[at..at + 4].copy_from_slice(&header);
        out[at + 4..at + 4 + s.len()].copy_from_slice(s.as_bytes());
        at += (4 + s.len()).next_multiple_of(4);
    }
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    fn array(items: &[&str]) -> Vec<u8> {
        let mut out = vec![0xAA; text_array_len(items).unwrap()];
        write_text_array(items, 25, &mut out);
        out
    }

    #[test]
    fn empty_array_is_the_bare_header() {
        // varsize 16, ndim 0, dataoffset 0, elemtype 25.
        assert_eq!(
            array(&[]),
            [64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25, 0, 0, 0]
        );
    }

    #[test]
    fn elements_are_padded_to_four_bytes() {
        let a = array(&["ab", "cdef"]);
        // 24-byte header, "ab" in 8 bytes (4 + 2, padded), "cdef" in 8.
        assert_eq!(a.len(), 40);
        assert_eq!(&a[..4], &(40u32 << 2).to_le_bytes());
        assert_eq!(
            &a[4..24],
            &[1, 0, 0, 0, 0, 0, 0, 0, 25, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0]
        );
        assert_eq!(&a[24..32], &[6 << 2, 0, 0, 0, b'a', b'b', 0, 0]);
        assert_eq!(&a[32..40], &[8 << 2, 0, 0, 0, b'c', b'd', b'e', b'f']);
    }

    #[test]
    fn sizes_and_limits() {
        assert_eq!(text_array_len(&[""]), Some(28));
        assert_eq!(text_array_len(&["abc"]), Some(32));
        assert_eq!(text_array_len(&["abcd"]), Some(32));
        assert_eq!(text_array_len(&["abcde"]), Some(36));
        assert_eq!(
            array_len(1, [0x4000_0000 - 40].into_iter()),
            Some(0x3FFF_FFF4)
        );
        assert_eq!(array_len(1, [0x4000_0000 - 28].into_iter()), None);
        assert_eq!(array_len(2, [usize::MAX - 2, 1].into_iter()), None);
        // MaxArraySize elements of "" fit (24 + 4 bytes each); one more does not.
        let empties = |n| array_len(n, std::iter::repeat_n(0, n));
        assert_eq!(empties(MAX_ELEMENTS), Some(24 + 4 * MAX_ELEMENTS));
        assert_eq!(empties(MAX_ELEMENTS + 1), None);
    }
}
