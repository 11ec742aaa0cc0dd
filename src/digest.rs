//! Pure: the change digest of DESIGN section 5, the value an identity
//! provider puts in `chg` so that an assertion authorises one exact change
//! (PSD2-style dynamic linking).
//!
//! digest = lowercase hex SHA-256 of the RFC 8785 (JCS) canonical JSON of
//! `{"table": "<schema>.<name>", "op": "<OP>", "key": {...}, "changes": {...}}`.
//! JCS sorts members by UTF-16 code units and writes numbers as IEEE-754
//! doubles in ECMAScript form; serde_jcs does both, so an IdP using any
//! RFC 8785 library (Python: `rfc8785`) computes the same bytes.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestError {
    UnknownOp(String),
    NotAnObject(&'static str),
    Canonicalization(String),
}

impl std::fmt::Display for DigestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DigestError::UnknownOp(op) => write!(f, "op \"{op}\" is not INSERT, UPDATE or DELETE"),
            DigestError::NotAnObject(what) => write!(f, "{what} must be a JSON object"),
            DigestError::Canonicalization(e) => write!(f, "cannot canonicalize: {e}"),
        }
    }
}

/// Operations a change digest can name.
pub const OPS: [&str; 3] = ["INSERT", "UPDATE", "DELETE"];

/// The JCS bytes that are hashed; exposed so tests and docs can show them.
pub fn canonical_change(
    table: &str,
    op: &str,
    key: &Value,
    changes: &Value,
) -> Result<Vec<u8>, DigestError> {
    let op = op.to_ascii_uppercase();
    if !OPS.contains(&op.as_str()) {
        return Err(DigestError::UnknownOp(op));
    }
    if !key.is_object() {
        return Err(DigestError::NotAnObject("key"));
    }
    if !changes.is_object() {
        return Err(DigestError::NotAnObject("changes"));
    }
    let doc = json!({"table": table, "op": op, "key": key, "changes": changes});
    serde_jcs::to_vec(&doc).map_err(|e| DigestError::Canonicalization(e.to_string()))
}

/// What to do about a value the change digest cannot hold (serde_json's
/// limits, which RFC 8785's IEEE-double numbers share).
pub const UNREPRESENTABLE_HINT: &str =
    "Numbers in a change digest are IEEE doubles (RFC 8785): keep \
     them within 1.8e308 (amounts as integers of the smallest unit, or as text), and JSON nesting \
     under 128 levels.";

/// Lowercase hex SHA-256 of [`canonical_change`].
pub fn change_digest(
    table: &str,
    op: &str,
    key: &Value,
    changes: &Value,
) -> Result<String, DigestError> {
    let bytes = canonical_change(table, op, key, changes)?;
    Ok(lower_hex(&Sha256::digest(bytes)))
}

/// The `key` and `changes` objects of one row change, from the rows as
/// `to_jsonb` renders them: key = the primary key columns of the row being
/// changed (the old row, or the new one for an INSERT); changes = every
/// column of an inserted row, the columns whose value an UPDATE changes,
/// nothing for a DELETE.
pub fn row_change(
    key_columns: &[String],
    old: Option<&Map<String, Value>>,
    new: Option<&Map<String, Value>>,
) -> (Value, Value) {
    let identity = old.or(new);
    let key: Map<String, Value> = key_columns
        .iter()
        .map(|c| {
            let v = identity.and_then(|r| r.get(c)).cloned();
            (c.clone(), v.unwrap_or(Value::Null))
        })
        .collect();
    let changes: Map<String, Value> = match (old, new) {
        (None, Some(new)) => new.clone(),
        (Some(old), Some(new)) => new
            .iter()
            .filter(|(c, v)| old.get(*c) != Some(*v))
            .map(|(c, v)| (c.clone(), v.clone()))
            .collect(),
        _ => Map::new(),
    };
    (Value::Object(key), Value::Object(changes))
}

/// Lowercase hex, as every digest here is written. (`hex::encode` builds
/// it char by char through an iterator: it was half of a row digest's
/// cost, perf of the audit trigger.)
pub fn lower_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    lower_hex_into(bytes, &mut out);
    // SAFETY: lower_hex_into writes ASCII digits only.
    unsafe { String::from_utf8_unchecked(out) }
}

/// A SHA-256 as lowercase hex, on the stack: the audit writes three per
/// row, and a String each was an allocation and a free.
#[derive(Clone, Copy)]
pub struct Hex([u8; 64]);

impl Hex {
    pub fn of(digest: [u8; 32]) -> Hex {
        let mut out = [0u8; 64];
        lower_hex_into(&digest, &mut out);
        Hex(out)
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: only ASCII digits are ever written (Hex::of).
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

impl std::ops::Deref for Hex {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes `bytes` as lowercase hex into `out` (twice as long) and returns it.
fn lower_hex_into<'o>(bytes: &[u8], out: &'o mut [u8]) -> &'o str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    // Bytes, not chars: String::push encodes each as UTF-8.
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
    // SAFETY: only ASCII digits were written (a check was ~200 instructions
    // per digest, three digests per audited row).
    unsafe { std::str::from_utf8_unchecked(&out[..bytes.len() * 2]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_hex_is_hex_encode() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(lower_hex(&all), hex::encode(&all));
        assert_eq!(lower_hex(&[]), "");
        let digest = Sha256::digest(b"pg_stepup");
        assert_eq!(lower_hex(&digest), hex::encode(digest));
        assert_eq!(Hex::of(digest.into()).as_str(), hex::encode(digest));
        assert_eq!(Hex::of(digest.into()).to_string(), hex::encode(digest));
    }

    #[test]
    fn row_change_names_key_and_changed_columns() {
        let old = json!({"id": 7, "iban": "DE1", "amount": 5})
            .as_object()
            .unwrap()
            .clone();
        let new = json!({"id": 7, "iban": "DE2", "amount": 5})
            .as_object()
            .unwrap()
            .clone();
        let pk = vec!["id".to_string()];
        assert_eq!(
            row_change(&pk, Some(&old), Some(&new)),
            (json!({"id": 7}), json!({"iban": "DE2"}))
        );
        assert_eq!(
            row_change(&pk, None, Some(&new)),
            (json!({"id": 7}), Value::Object(new.clone()))
        );
        assert_eq!(
            row_change(&pk, Some(&old), None),
            (json!({"id": 7}), json!({}))
        );
    }

    #[test]
    fn canonical_form_is_sorted_and_compact() {
        let bytes = canonical_change(
            "public.payouts",
            "update",
            &json!({"id": 7}),
            &json!({"iban": "DE89 3704", "amount": 10000.50, "note": null}),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"changes":{"amount":10000.5,"iban":"DE89 3704","note":null},"key":{"id":7},"op":"UPDATE","table":"public.payouts"}"#
        );
    }

    #[test]
    fn rfc8785_number_and_string_forms() {
        // Numbers as ECMAScript renders doubles; non-ASCII kept as UTF-8,
        // control characters escaped.
        let bytes = canonical_change(
            "s.t",
            "INSERT",
            &json!({"k": 1}),
            &json!({"a": 1e21, "b": 0.000001, "c": 1e-7, "d": -0.0, "e": "é\u{1}\u{2028}", "f": 100}),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "{\"changes\":{\"a\":1e+21,\"b\":0.000001,\"c\":1e-7,\"d\":0,\"e\":\"é\\u0001\u{2028}\",\"f\":100},\"key\":{\"k\":1},\"op\":\"INSERT\",\"table\":\"s.t\"}"
        );
    }

    #[test]
    fn digest_is_lowercase_sha256_hex_and_input_sensitive() {
        let d = change_digest("public.t", "DELETE", &json!({"id": 1}), &json!({})).unwrap();
        assert_eq!(d.len(), 64);
        assert!(d.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        let other = change_digest("public.t", "DELETE", &json!({"id": 2}), &json!({})).unwrap();
        assert_ne!(d, other);
        // Member order in the input does not matter.
        let a = change_digest(
            "public.t",
            "UPDATE",
            &json!({"a": 1, "b": 2}),
            &json!({"x": [1, {"z": 1, "y": 2}]}),
        );
        let b = change_digest(
            "public.t",
            "UPDATE",
            &json!({"b": 2, "a": 1}),
            &json!({"x": [1, {"y": 2, "z": 1}]}),
        );
        assert_eq!(a, b);
    }

    #[test]
    fn bad_inputs() {
        assert_eq!(
            change_digest("t", "MERGE", &json!({}), &json!({})),
            Err(DigestError::UnknownOp("MERGE".into()))
        );
        assert_eq!(
            change_digest("t", "UPDATE", &json!([1]), &json!({})),
            Err(DigestError::NotAnObject("key"))
        );
        assert_eq!(
            change_digest("t", "UPDATE", &json!({}), &json!("x")),
            Err(DigestError::NotAnObject("changes"))
        );
    }
}
