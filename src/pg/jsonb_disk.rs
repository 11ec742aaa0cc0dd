//! Pure: the stored (binary) form of a flat jsonb object of plain scalars,
//! byte for byte as Postgres' `JsonbValueToJsonb` lays it out
//! (src/backend/utils/adt/jsonb_util.c, convertJsonbObject), integers as
//! `int64_to_numeric` makes them (numeric.c, make_result). The audit writes
//! each entry's key and old/new values this way, without Postgres' builder
//! and its numeric conversions, which cost more for every entry.
//! rows/render.rs checks every form against Postgres' own builder (a
//! pg_test).
//!
//! Layout: a varlena header; a uint32 container header (pair count |
//! object flag); one uint32 JEntry per key, then per value (type bits and
//! length, every 32nd the end offset instead); the keys' bytes; the values'
//! bytes (numerics 4-byte aligned, the padding counted in their length).
//! Integers are in native byte order, as Postgres stores them.

use crate::pg::pgtext::Scalar;

const JB_FOBJECT: u32 = 0x2000_0000;
const JENTRY_OFFLENMASK: u32 = 0x0FFF_FFFF;
const JENTRY_HAS_OFF: u32 = 0x8000_0000;
const JENTRY_ISNUMERIC: u32 = 0x1000_0000;
const JENTRY_ISBOOL_FALSE: u32 = 0x2000_0000;
const JENTRY_ISBOOL_TRUE: u32 = 0x3000_0000;
const JENTRY_ISNULL: u32 = 0x4000_0000;
const JB_OFFSET_STRIDE: usize = 32;

const NUMERIC_SHORT: u16 = 0x8000;
const NUMERIC_SHORT_SIGN_MASK: u16 = 0x2000;
const NBASE: u64 = 10_000;

/// The jsonb varlena of the object of `pairs`, whose keys are unique and
/// already in jsonb's key order (shorter first, then bytewise:
/// pgtext::sort_keys). None if they are not, or if it is too large for a
/// jsonb: the caller then builds it with Postgres (which sorts, keeps one
/// of equal keys, or raises the error).
#[cfg(any(test, feature = "pg_test"))]
pub fn object(pairs: &[(&[u8], Scalar)]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    object_into(pairs, &mut out)?;
    Some(out)
}

/// [`object`], written into `out` (emptied first): the audit lays three
/// objects out per row into one buffer it keeps.
pub fn object_into(pairs: &[(&[u8], Scalar)], out: &mut Vec<u8>) -> Option<()> {
    let ordered = |a: &[u8], b: &[u8]| (a.len(), a) < (b.len(), b);
    if !pairs.windows(2).all(|w| ordered(w[0].0, w[1].0)) {
        return None;
    }
    let n = u32::try_from(pairs.len())
        .ok()
        .filter(|n| *n <= 0x0FFF_FFFF)?;
    // At most this much data (an integer: up to 3 bytes of padding and 16
    // of numeric): over jsonb's limit, Postgres decides.
    let data = pairs
        .iter()
        .map(|(k, v)| match v {
            Scalar::Str(s) => k.len() + s.len(),
            Scalar::Int(_) => k.len() + 19,
            _ => k.len(),
        })
        .sum::<usize>();
    if data > JENTRY_OFFLENMASK as usize {
        return None;
    }
    out.clear();
    out.reserve(8 + pairs.len() * 8 + data);
    out.extend_from_slice(&[0; 4]); // varlena header, set below
    out.extend_from_slice(&(n | JB_FOBJECT).to_ne_bytes());
    let entries = out.len();
    out.resize(entries + pairs.len() * 2 * 4, 0);
    let mut total: u32 = 0;
    let mut put = |out: &mut Vec<u8>, i: usize, meta: u32| -> Option<()> {
        total = total.checked_add(meta & JENTRY_OFFLENMASK)?;
        if total > JENTRY_OFFLENMASK {
            return None;
        }
        let meta = if i.is_multiple_of(JB_OFFSET_STRIDE) {
            (meta & !JENTRY_OFFLENMASK) | total | JENTRY_HAS_OFF
        } else {
            meta
        };
        out[entries + i * 4..entries + i * 4 + 4].copy_from_slice(&meta.to_ne_bytes());
        Some(())
    };
    for (i, (key, _)) in pairs.iter().enumerate() {
        out.extend_from_slice(key);
        put(out, i, u32::try_from(key.len()).ok()?)?;
    }
    for (i, (_, value)) in pairs.iter().enumerate() {
        let meta = match value {
            Scalar::Null => JENTRY_ISNULL,
            Scalar::Bool(false) => JENTRY_ISBOOL_FALSE,
            Scalar::Bool(true) => JENTRY_ISBOOL_TRUE,
            Scalar::Str(s) => {
                out.extend_from_slice(s);
                u32::try_from(s.len()).ok()?
            }
            Scalar::Int(v) => {
                let start = out.len();
                out.resize(start.next_multiple_of(4), 0);
                numeric(out, *v);
                JENTRY_ISNUMERIC | u32::try_from(out.len() - start).ok()?
            }
        };
        put(out, pairs.len() + i, meta)?;
    }
    // A varlena is at most 1 GB.
    let header = varlena_header(out.len()).filter(|_| out.len() < 0x4000_0000)?;
    out[..4].copy_from_slice(&header);
    Some(())
}

/// Appends `v` as int64_to_numeric makes it: a short-header numeric of
/// base-10000 digits, trailing zero digits dropped, zero with none.
fn numeric(out: &mut Vec<u8>, v: i64) {
    let mut digits = [0u16; 5]; // u64::MAX has 5 base-10000 digits
    let (mut u, mut n) = (v.unsigned_abs(), 0);
    while u > 0 {
        digits[n] = (u % NBASE) as u16; // least significant first
        u /= NBASE;
        n += 1;
    }
    // weight: the power of NBASE of the first digit (0 for zero).
    let weight = n.saturating_sub(1) as u16;
    let skip = digits[..n].iter().take_while(|d| **d == 0).count();
    let sign = if v < 0 { NUMERIC_SHORT_SIGN_MASK } else { 0 };
    let kept = n - skip;
    let len = 4 + 2 + 2 * kept;
    out.extend_from_slice(&varlena_header(len).unwrap_or_default());
    out.extend_from_slice(&(NUMERIC_SHORT | sign | weight).to_ne_bytes());
    for d in digits[skip..n].iter().rev() {
        out.extend_from_slice(&d.to_ne_bytes());
    }
}

/// A 4-byte varlena header for `len` bytes (SET_VARSIZE_4B).
pub fn varlena_header(len: usize) -> Option<[u8; 4]> {
    let len = u32::try_from(len).ok().filter(|l| *l < 0x4000_0000)?;
    #[cfg(target_endian = "little")]
    let word = len << 2;
    #[cfg(target_endian = "big")]
    let word = len;
    Some(word.to_ne_bytes())
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    fn numeric_bytes(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        numeric(&mut out, v);
        out
    }

    #[test]
    fn numerics_as_int64_to_numeric_makes_them() {
        // zero: header only, weight 0, positive
        assert_eq!(numeric_bytes(0), [24, 0, 0, 0, 0x00, 0x80]);
        // 1: one digit
        assert_eq!(numeric_bytes(1), [32, 0, 0, 0, 0x00, 0x80, 1, 0]);
        // -1: sign bit
        assert_eq!(numeric_bytes(-1), [32, 0, 0, 0, 0x00, 0xa0, 1, 0]);
        // 10000 = 1 * 10000^1: trailing zero digit dropped, weight 1
        assert_eq!(numeric_bytes(10_000), [32, 0, 0, 0, 0x01, 0x80, 1, 0]);
        // 10001: two digits
        assert_eq!(numeric_bytes(10_001), [40, 0, 0, 0, 0x01, 0x80, 1, 0, 1, 0]);
        // i64::MIN = -922|3372|0368|5477|5808: five digits, weight 4
        let min = numeric_bytes(i64::MIN);
        assert_eq!(&min[..6], &[(6 + 10) << 2, 0, 0, 0, 0x04, 0xa0]);
        let digits: Vec<u16> = min[6..]
            .chunks(2)
            .map(|c| u16::from_ne_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(digits, [922, 3372, 368, 5477, 5808]);
    }

    #[test]
    fn a_small_object_laid_out_by_hand() {
        // {"a": 1, "bc": "x"}
        let got = object(&[(b"a", Scalar::Int(1)), (b"bc", Scalar::Str(b"x"))]).unwrap();
        let mut want: Vec<u8> = Vec::new();
        want.extend_from_slice(&[0; 4]);
        want.extend_from_slice(&(2u32 | JB_FOBJECT).to_le_bytes());
        // entry 0 (key "a"): offset form, end 1
        want.extend_from_slice(&(1u32 | JENTRY_HAS_OFF).to_le_bytes());
        // key "bc"
        want.extend_from_slice(&2u32.to_le_bytes());
        // value 1: the keys end at 4 + 4 + 16 + 3 = 27 bytes into the
        // varlena, so 1 byte of padding to 28, then 8 of numeric
        want.extend_from_slice(&(JENTRY_ISNUMERIC | (1 + 8)).to_le_bytes());
        want.extend_from_slice(&1u32.to_le_bytes()); // value "x"
        want.extend_from_slice(b"abc");
        want.push(0);
        want.extend_from_slice(&[32, 0, 0, 0, 0x00, 0x80, 1, 0]);
        want.push(b'x');
        let len = want.len() as u32;
        want[..4].copy_from_slice(&(len << 2).to_le_bytes());
        assert_eq!(got, want);
    }

    #[test]
    fn every_32nd_entry_holds_an_offset() {
        let keys: Vec<String> = (0..40).map(|i| format!("k{i:02}")).collect();
        let pairs: Vec<(&[u8], Scalar)> = keys
            .iter()
            .map(|k| (k.as_bytes(), Scalar::Str(b"vv")))
            .collect();
        let got = object(&pairs).unwrap();
        let entry = |i: usize| u32::from_le_bytes(got[8 + i * 4..12 + i * 4].try_into().unwrap());
        assert_eq!(entry(0), 3 | JENTRY_HAS_OFF);
        assert_eq!(entry(1), 3);
        // Entries 0..40 are the keys (3 bytes each), 40..80 the values (2).
        // Entry 32: key 32, ending after 33 keys
        assert_eq!(entry(32), 99 | JENTRY_HAS_OFF);
        // entry 64 is value 24, ending after 40 keys and 25 values
        assert_eq!(entry(64), (120 + 50) | JENTRY_HAS_OFF);
        assert_eq!(entry(79), 2);
    }

    #[test]
    fn keys_out_of_order_or_repeated_are_left_to_postgres() {
        let one = Scalar::Int(1);
        assert!(object(&[(b"b", one), (b"a", one)]).is_none());
        assert!(object(&[(b"aa", one), (b"b", one)]).is_none());
        assert!(object(&[(b"a", one), (b"a", one)]).is_none());
        assert!(object(&[(b"b", one), (b"aa", one)]).is_some());
    }

    #[test]
    fn too_large_is_left_to_postgres() {
        // Zeroed pages: never touched unless copied.
        let big = vec![0u8; 0x0FFF_FFFF];
        assert!(object(&[(b"a", Scalar::Str(&big))]).is_none());
        assert!(object(&[
            (b"a", Scalar::Str(&big[..0x0FFF_FFF0])),
            (b"b", Scalar::Int(7))
        ])
        .is_none());
    }
}
