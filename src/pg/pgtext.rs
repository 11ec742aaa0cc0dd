//! Pure: Postgres' text forms of the jsonb objects and text[] arrays an
//! audit entry holds, byte for byte as `jsonb_out` and `array_out` write
//! them. The audit hashes an entry's fields as that text; writing it here
//! from the values costs a fraction of printing the stored values back
//! (tests/test_audit.py checks every form against the server, and the
//! verifier recomputes each entry through the server's own functions).

/// Largest column value, in bytes, that an audit entry's `key`,
/// `old_values` and `new_values` copy: the value's size uncompressed and
/// without its 4-byte varlena header (`octet_length` of a text or bytea),
/// read from the header or TOAST pointer, never by detoasting. A larger
/// value is written as [`omitted`] instead. So an entry's jsonb text stays
/// under jsonb_out's 1 GB even for 1600 such columns of control
/// characters, each escaped to six bytes: 1600 * 64 KiB * 6 = 600 MiB.
pub const VALUE_LIMIT: usize = 64 * 1024;

// The bound the limit exists for.
const _: () = assert!(1600 * VALUE_LIMIT * 6 < 0x3FFF_FFFF);

/// Does a value of `size` bytes (as [`VALUE_LIMIT`] counts them) go into
/// an entry as [`omitted`]?
#[inline(always)]
pub fn over_limit(size: usize) -> bool {
    size > VALUE_LIMIT
}

/// The string an entry holds in place of a value over [`VALUE_LIMIT`]:
/// `pg_stepup:omitted size=<bytes> sha256=<hex>` over `text`, the value's
/// text as the row digest hashes it (its output function, UTF-8); the row
/// digests keep covering the whole value.
pub fn omitted(text: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!(
        "pg_stepup:omitted size={} sha256={}",
        text.len(),
        stepup_core::digest::lower_hex(&Sha256::digest(text))
    )
}

/// An object's keys and values.
pub type Pairs<'a> = Vec<(&'a [u8], Scalar<'a>)>;

/// A jsonb scalar as the audit renders column values.
#[derive(Clone, Copy)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Str(&'a [u8]),
}

/// Puts pairs in jsonb's key order: shorter keys first, then bytewise
/// (keys are unique column names).
pub fn sort_keys(pairs: &mut [(&[u8], Scalar)]) {
    pairs.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(b.0)));
}

/// A jsonb object's text, of pairs already in key order ([`sort_keys`]):
/// `": "` and `", "` between.
pub fn object_sorted(pairs: &[(&[u8], Scalar)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + pairs.len() * 24);
    out.push(b'{');
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        string(&mut out, key);
        out.extend_from_slice(b": ");
        match value {
            Scalar::Null => out.extend_from_slice(b"null"),
            Scalar::Bool(true) => out.extend_from_slice(b"true"),
            Scalar::Bool(false) => out.extend_from_slice(b"false"),
            Scalar::Int(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
            Scalar::Str(s) => string(&mut out, s),
        }
    }
    out.push(b'}');
    out
}

/// A JSON string as Postgres' escape_json writes it.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in s {
        match b {
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            c if c < b' ' => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(c >> 4)]);
                out.push(HEX[usize::from(c & 15)]);
            }
            c => out.push(c),
        }
    }
    out.push(b'"');
}

/// A text[]'s text when no element needs quoting (each is ASCII letters,
/// digits and underscores, and not NULL in any case): `{a,b}`. None
/// otherwise: array_out's quoting rules are left to array_out.
pub fn plain_array(items: &[&str]) -> Option<Vec<u8>> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !s.eq_ignore_ascii_case("null")
    };
    if !items.iter().all(|s| plain(s)) {
        return None;
    }
    let mut out = Vec::with_capacity(2 + items.iter().map(|s| s.len() + 1).sum::<usize>());
    out.push(b'{');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(s.as_bytes());
    }
    out.push(b'}');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omitted_names_size_and_sha256() {
        assert_eq!(
            omitted(b"abc"),
            "pg_stepup:omitted size=3 sha256=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(!over_limit(VALUE_LIMIT));
        assert!(over_limit(VALUE_LIMIT + 1));
        // The marker is plain ASCII: jsonb_out escapes nothing in it.
        let m = omitted(&[1u8; 100]);
        assert!(m
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'));
        assert_eq!(m.len(), "pg_stepup:omitted size=100 sha256=".len() + 64);
    }

    fn object(mut pairs: Vec<(&[u8], Scalar)>) -> Vec<u8> {
        sort_keys(&mut pairs);
        object_sorted(&pairs)
    }

    #[test]
    fn objects_as_jsonb_out_writes_them() {
        // psql: SELECT '{"b":1,"a":"x\u0001\n\"é","aa":null,"t":true,"ccc":-12}'::jsonb
        let pairs = vec![
            (&b"b"[..], Scalar::Int(1)),
            (b"a", Scalar::Str("x\u{1}\n\"é".as_bytes())),
            (b"aa", Scalar::Null),
            (b"t", Scalar::Bool(true)),
            (b"ccc", Scalar::Int(-12)),
        ];
        assert_eq!(
            String::from_utf8(object(pairs)).unwrap(),
            r#"{"a": "x\u0001\n\"é", "b": 1, "t": true, "aa": null, "ccc": -12}"#
        );
        assert_eq!(object(vec![]), b"{}");
        let mut s = Vec::new();
        string(&mut s, b"\x08\x0c\r\t\\\x1f/");
        assert_eq!(s, br#""\b\f\r\t\\\u001f/""#);
    }

    #[test]
    fn plain_arrays_only() {
        assert_eq!(
            plain_array(&["amount", "iban_2"]).unwrap(),
            b"{amount,iban_2}"
        );
        assert_eq!(plain_array(&[]).unwrap(), b"{}");
        for needs_quotes in ["a b", "NULL", "null", "x\"y", "", "é", "a,b", "{"] {
            assert_eq!(plain_array(&["ok", needs_quotes]), None, "{needs_quotes}");
        }
    }
}
