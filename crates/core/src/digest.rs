//! Pure: the change digest of DESIGN section 5, the value an identity
//! provider puts in `chg` so that an assertion authorises one exact change
//! (PSD2-style dynamic linking).
//!
//! digest = lowercase hex SHA-256 of the RFC 8785 (JCS) canonical JSON of
//! `{"table": "<schema>.<name>", "op": "<OP>", "key": {...}, "changes": {...}}`.
//! JCS sorts members by UTF-16 code units and writes numbers as IEEE-754
//! doubles in ECMAScript form; serde_jcs does both, so an IdP using any
//! RFC 8785 library (Python: `rfc8785`) computes the same bytes. A number
//! that no double prints back as the same value (2^53 + 1, a numeric with
//! more digits than a double holds) would print as its neighbour, so that
//! one digest would authorise two changes: it goes in as a JSON string of
//! its exact text instead ([`exact_value`]).

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
/// nesting limit).
pub const UNREPRESENTABLE_HINT: &str =
    "A change digest reads JSON nested under 128 levels: keep jsonb values shallower.";

/// Marks, in [`exact_numbers`]' output, a string that stands for a number
/// a double holds. JSON text from Postgres never has it: jsonb refuses
/// `\u0000`, and [`exact_numbers`] refuses input that has it.
const NUMBER_MARK: &str = "\\u0000";

/// The JSON value of `json` (Postgres' jsonb text: numbers written as
/// `numeric_out` prints them) as the change digest canonicalizes it: a
/// number a double holds (RFC 8785 prints a double of the same decimal
/// value) stays a number; any other (2^53 + 1, 12345678901234567890.5,
/// 1e400) becomes a JSON string of its exact text, so that distinct values
/// never print, and so hash, alike. Numbers are read with Rust's correctly
/// rounded parser, as an IdP's `float()` reads them, not serde_json's.
pub fn exact_value(json: &str) -> Result<Value, serde_json::Error> {
    let mut value: Value = serde_json::from_str(&exact_numbers(json)?)?;
    restore_numbers(&mut value)?;
    Ok(value)
}

fn invalid(msg: &str) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(msg)
}

/// `json` with every number token turned into a JSON string: its text
/// behind [`NUMBER_MARK`] when a double holds it ([`double_holds`]),
/// its bare text otherwise.
fn exact_numbers(json: &str) -> Result<String, serde_json::Error> {
    let bytes = json.as_bytes();
    let mut out = String::with_capacity(json.len() + 16);
    let (mut i, mut copied) = (0, 0);
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => {
                    if bytes[i + 1..].starts_with(b"u0000") {
                        return Err(invalid("JSON text holds \\u0000"));
                    }
                    i += 2;
                    continue;
                }
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                let token = &json[start..i];
                out.push_str(&json[copied..start]);
                out.push('"');
                if double_holds(token) {
                    out.push_str(NUMBER_MARK);
                }
                out.push_str(token);
                out.push('"');
                copied = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&json[copied..]);
    Ok(out)
}

/// Turns the marked strings of [`exact_numbers`] back into numbers.
fn restore_numbers(v: &mut Value) -> Result<(), serde_json::Error> {
    match v {
        Value::String(s) => {
            if let Some(text) = s.strip_prefix('\0') {
                let n = text
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .ok_or_else(|| invalid("a number cannot be read"))?;
                *v = Value::Number(n);
            }
        }
        Value::Array(a) => a.iter_mut().try_for_each(restore_numbers)?,
        Value::Object(m) => m.values_mut().try_for_each(restore_numbers)?,
        _ => {}
    }
    Ok(())
}

/// Does the double nearest to the JSON number `text` print, in RFC 8785
/// form, as the same decimal value? True for 0.1, 1.10, 1e20 and every
/// integer within 2^53; false for 2^53 + 1, for digits beyond a double's
/// precision and for values beyond its range.
pub fn double_holds(text: &str) -> bool {
    // Integers of up to 15 digits are below 2^53: the common case, cheaply.
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    let Ok(f) = text.parse::<f64>() else {
        return false;
    };
    if !f.is_finite() {
        return false;
    }
    match (serde_jcs::to_string(&f), decimal(text)) {
        (Ok(printed), Some(value)) => decimal(&printed) == Some(value),
        _ => false,
    }
}

/// A decimal number's value as (negative, significant digits, power of ten
/// of the last digit); zero is (false, "", 0). None if it is not a JSON
/// number or its exponent is beyond i64.
fn decimal(text: &str) -> Option<(bool, String, i64)> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(at) => {
            let e = &rest[at + 1..];
            (
                &rest[..at],
                e.strip_prefix('+').unwrap_or(e).parse::<i64>().ok()?,
            )
        }
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    let count = |n: usize| i64::try_from(n).ok();
    let digits = format!("{int}{frac}");
    let exp = exp.checked_sub(count(frac.len())?)?;
    let significant = digits.trim_start_matches('0');
    let trimmed = significant.trim_end_matches('0');
    if trimmed.is_empty() {
        return Some((false, String::new(), 0));
    }
    let exp = exp.checked_add(count(significant.len() - trimmed.len())?)?;
    Some((negative, trimmed.to_string(), exp))
}

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
#[inline]
pub fn lower_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    lower_hex_into(bytes, &mut out);
    // SAFETY: lower_hex_into writes ASCII digits only.
    unsafe { String::from_utf8_unchecked(out) }
}

/// A SHA-256 as lowercase hex, on the stack: the audit writes three per
/// row, and a String each was an allocation and a free.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hex([u8; 64]);

// Inlined across the crate boundary as they were inside the extension:
// three per audited row.
impl Hex {
    #[inline]
    pub fn of(digest: [u8; 32]) -> Hex {
        let mut out = [0u8; 64];
        lower_hex_into(&digest, &mut out);
        Hex(out)
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        // SAFETY: only ASCII digits are ever written (Hex::of).
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

impl std::ops::Deref for Hex {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hex({})", self.as_str())
    }
}

impl std::fmt::Display for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes `bytes` as lowercase hex into `out` (twice as long) and returns it.
#[inline]
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

    fn canonical_of(key: &str, changes: &str) -> String {
        let (key, changes) = (exact_value(key).unwrap(), exact_value(changes).unwrap());
        String::from_utf8(canonical_change("s.t", "UPDATE", &key, &changes).unwrap()).unwrap()
    }

    #[test]
    fn double_holds_exactly_what_rfc8785_prints_back() {
        for held in [
            "0",
            "-0",
            "1",
            "-1",
            "9007199254740992",
            "-9007199254740992",
            "9007199254740994",
            "100000000000000000000",
            "1e20",
            "0.1",
            "1.10",
            "1.1",
            "10000.50",
            "0.000001",
            "1e-7",
            "123456789012345",
            "-999999999999999",
            "1.7976931348623157e308",
            "5e-324",
            "0.30000000000000004",
            "1e21",
        ] {
            assert!(double_holds(held), "{held}");
        }
        for not_held in [
            "9007199254740993",
            "-9007199254740993",
            "12345678901234567890.5",
            "12345678901234567890",
            "1152921504606846976",
            "0.1000000000000000055511151231257827",
            "1e400",
            "-1e400",
            "1e-400",
            "0.30000000000000000001",
            // Postgres' text of 1e400: 401 digits.
            &format!("1{}", "0".repeat(400)),
        ] {
            assert!(!double_holds(not_held), "{not_held}");
        }
    }

    #[test]
    fn decimal_values_compare_by_value() {
        assert_eq!(decimal("1.10"), decimal("1.1"));
        assert_eq!(decimal("0.00"), Some((false, String::new(), 0)));
        assert_eq!(decimal("-0"), decimal("0"));
        assert_eq!(decimal("100"), decimal("1e+2"));
        assert_eq!(decimal("0.0012"), decimal("1.2e-3"));
        assert_eq!(decimal("-12.5"), Some((true, "125".into(), -1)));
        assert_ne!(decimal("1.2"), decimal("12"));
        assert_eq!(decimal("1e99999999999999999999"), None);
        assert_eq!(decimal("x"), None);
        assert_eq!(decimal(".5"), None);
    }

    #[test]
    fn numbers_beyond_a_double_become_their_text() {
        assert_eq!(
            canonical_of(
                r#"{"id": 9007199254740993}"#,
                r#"{"a": -9007199254740993, "b": 12345678901234567890.5, "c": 100000000000000000000, "d": 0.1, "e": 1.10, "f": 42, "g": [9007199254740993, {"h": 1e400}]}"#,
            ),
            r#"{"changes":{"a":"-9007199254740993","b":"12345678901234567890.5","c":100000000000000000000,"d":0.1,"e":1.1,"f":42,"g":["9007199254740993",{"h":"1e400"}]},"key":{"id":"9007199254740993"},"op":"UPDATE","table":"s.t"}"#
        );
        // Neighbours that a double cannot tell apart no longer share a digest.
        let digest = |id: &str| {
            let key = exact_value(&format!(r#"{{"id": {id}}}"#)).unwrap();
            change_digest("s.t", "DELETE", &key, &json!({})).unwrap()
        };
        assert_ne!(digest("9007199254740993"), digest("9007199254740992"));
        assert_ne!(digest("-9007199254740993"), digest("-9007199254740992"));
        assert_eq!(digest("1.10"), digest("1.1"));
        // What a double holds hashes as before: plain serde_json agrees.
        let plain = change_digest(
            "s.t",
            "DELETE",
            &json!({"id": 9007199254740992u64}),
            &json!({}),
        );
        assert_eq!(digest("9007199254740992"), plain.unwrap());
    }

    #[test]
    fn strings_are_left_alone() {
        assert_eq!(
            exact_value(r#"{"a": "9007199254740993", "b": "x\"1e400\\", "c": ["-1", true, null]}"#)
                .unwrap(),
            json!({"a": "9007199254740993", "b": "x\"1e400\\", "c": ["-1", true, null]})
        );
        // A marker-like string from outside is refused, never read as a number.
        assert!(exact_value(r#"{"a": "\u0000 1"}"#).is_err());
        assert!(exact_value(r#"{"a": "\\u0000"}"#).is_ok());
        assert!(exact_value(r#"{"a": 1"#).is_err());
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(exact_value(&deep).is_err());
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
