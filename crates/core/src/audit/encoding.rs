//! Pure: the byte-exact encodings of the audit (docs/audit-encoding.md).
//!
//! Every hashed structure is a domain line followed by fields; a field is
//! `0x00` for NULL, or `0x01`, its length as a 4-byte big-endian integer and
//! its UTF-8 bytes. Hashes are SHA-256, written as lowercase hex.

use sha2::{Digest, Sha256};

#[cfg(test)]
use crate::digest::lower_hex;
use crate::digest::Hex;

pub const ROW_DOMAIN: &[u8] = b"pg_stepup row v1\n";
pub const ENTRY_DOMAIN: &[u8] = b"pg_stepup entry v1\n";
pub const LINK_DOMAIN: &[u8] = b"pg_stepup link v1\n";

/// The `prev_hash` of the first link.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The SQL type of a column of `stepup.audit_log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Int8,
    Timestamptz,
    Text,
    Jsonb,
    TextArray,
    Inet,
}

impl ColumnType {
    /// As Postgres' `format_type` names it.
    pub const fn sql_name(self) -> &'static str {
        match self {
            ColumnType::Int8 => "bigint",
            ColumnType::Timestamptz => "timestamp with time zone",
            ColumnType::Text => "text",
            ColumnType::Jsonb => "jsonb",
            ColumnType::TextArray => "text[]",
            ColumnType::Inet => "inet",
        }
    }
}

/// The one description of an audit entry: `stepup.audit_log`'s columns in
/// order, the hashed fields in hashing order, then the hash. The writer's
/// values and insert, the verifier's reads and the export reader all come
/// from this table; sql/audit.sql declares the same (a #[pg_test] compares
/// the two). How each field renders as text: docs/audit-encoding.md.
pub const LOG_COLUMNS: [(&str, ColumnType); 22] = {
    use ColumnType::*;
    [
        ("id", Int8),
        ("at", Timestamptz),
        ("txid", Int8),
        ("table_name", Text),
        ("op", Text),
        ("key", Jsonb),
        ("old_digest", Text),
        ("new_digest", Text),
        ("changed", TextArray),
        ("old_values", Jsonb),
        ("new_values", Jsonb),
        ("role_name", Text),
        ("session_role", Text),
        ("application_name", Text),
        ("client_addr", Inet),
        ("kid", Text),
        ("jti", Text),
        ("sub", Text),
        ("acr", Text),
        ("amr", TextArray),
        ("auth_time", Timestamptz),
        ("entry_hash", Text),
    ]
};

/// How many of [`LOG_COLUMNS`] the entry hash covers: all but the hash.
pub const HASHED: usize = LOG_COLUMNS.len() - 1;

/// The names of the hashed fields, in hashing order.
pub const ENTRY_FIELDS: [&str; HASHED] = {
    let mut names = [""; HASHED];
    let mut i = 0;
    while i < HASHED {
        names[i] = LOG_COLUMNS[i].0;
        i += 1;
    }
    names
};

/// The position of column `name` in [`LOG_COLUMNS`]. In a const context a
/// name that is not a column does not compile.
pub const fn column(name: &str) -> usize {
    let mut i = 0;
    while i < LOG_COLUMNS.len() {
        if bytes_eq(LOG_COLUMNS[i].0.as_bytes(), name.as_bytes()) {
            return i;
        }
        i += 1;
    }
    panic!("not a column of stepup.audit_log")
}

const fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[inline]
fn field(h: &mut Sha256, value: Option<&[u8]>) {
    match value {
        None => h.update([0u8]),
        Some(v) => {
            // Values come from the database; a field over 4 GiB cannot occur.
            let [a, b, c, d] = u32::try_from(v.len()).unwrap_or(u32::MAX).to_be_bytes();
            // Marker and length in one update: each update is a call.
            h.update([1u8, a, b, c, d]);
            h.update(v);
        }
    }
}

/// Digest of a row: its columns sorted by name (bytewise), each as name and
/// text value, under a count of columns. The reference form for tests: the
/// audit renders columns straight into a [`RowHasher`].
#[cfg(test)]
pub fn row_digest(columns: &[(String, Option<String>)]) -> String {
    let mut sorted: Vec<&(String, Option<String>)> = columns.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut h = RowHasher::new(sorted.len());
    for (name, value) in sorted {
        h.column(name, value.as_deref().map(str::as_bytes));
    }
    h.finish().to_string()
}

/// A row digest fed column by column, by a caller that renders the columns
/// already sorted by name (bytewise): no copy of any value is kept.
pub struct RowHasher(Sha256);

impl RowHasher {
    #[inline]
    pub fn new(columns: usize) -> Self {
        let mut h = Sha256::new();
        h.update(ROW_DOMAIN);
        h.update(u32::try_from(columns).unwrap_or(u32::MAX).to_be_bytes());
        RowHasher(h)
    }

    /// `value`: the column's text as UTF-8 bytes (None: SQL NULL).
    #[inline]
    pub fn column(&mut self, name: &str, value: Option<&[u8]>) {
        field(&mut self.0, Some(name.as_bytes()));
        field(&mut self.0, value);
    }

    #[inline]
    pub fn finish(self) -> Hex {
        Hex::of(self.0.finalize().into())
    }
}

/// Hash of an entry from its fields in [`ENTRY_FIELDS`] order.
pub fn entry_hash<'a>(fields: impl IntoIterator<Item = Option<&'a str>>) -> String {
    let mut h = EntryHasher::start();
    for f in fields {
        h.field(f.map(str::as_bytes));
    }
    h.finish().to_string()
}

/// An entry hash fed field by field, in [`ENTRY_FIELDS`] order.
pub struct EntryHasher(Sha256);

impl EntryHasher {
    #[inline]
    pub fn start() -> Self {
        let mut h = Sha256::new();
        h.update(ENTRY_DOMAIN);
        EntryHasher(h)
    }

    /// `value`: the field's text as UTF-8 bytes (None: SQL NULL).
    #[inline]
    pub fn field(&mut self, value: Option<&[u8]>) {
        field(&mut self.0, value);
    }

    #[inline]
    pub fn finish(self) -> Hex {
        Hex::of(self.0.finalize().into())
    }
}

/// Hash of one chain link.
pub fn link_hash(seq: i64, entry_id: i64, entry_hash: &str, prev_hash: &str) -> String {
    link_hash_hex(seq, entry_id, entry_hash, prev_hash).to_string()
}

/// [`link_hash`] on the stack: the chain walk computes one per link.
pub fn link_hash_hex(seq: i64, entry_id: i64, entry_hash: &str, prev_hash: &str) -> Hex {
    let mut h = Sha256::new();
    h.update(LINK_DOMAIN);
    field(&mut h, Some(itoa::Buffer::new().format(seq).as_bytes()));
    field(
        &mut h,
        Some(itoa::Buffer::new().format(entry_id).as_bytes()),
    );
    field(&mut h, Some(entry_hash.as_bytes()));
    field(&mut h, Some(prev_hash.as_bytes()));
    Hex::of(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(n: &str, v: Option<&str>) -> (String, Option<String>) {
        (n.into(), v.map(Into::into))
    }

    #[test]
    fn row_digest_is_order_free_and_null_aware() {
        let a = row_digest(&[col("id", Some("1")), col("iban", Some("DE1"))]);
        let b = row_digest(&[col("iban", Some("DE1")), col("id", Some("1"))]);
        assert_eq!(a, b);
        assert_ne!(a, row_digest(&[col("id", Some("1")), col("iban", None)]));
        assert_ne!(
            a,
            row_digest(&[col("id", Some("1")), col("iban", Some(""))])
        );
        // Lengths keep fields apart: ("ab","c") is not ("a","bc").
        assert_ne!(
            row_digest(&[col("ab", Some("c"))]),
            row_digest(&[col("a", Some("bc"))])
        );
    }

    #[test]
    fn known_vectors() {
        // Computed independently (Python hashlib) from the documented bytes;
        // docs/audit-encoding.md shows the same examples.
        let empty_row = {
            let mut h = Sha256::new();
            h.update(b"pg_stepup row v1\n\x00\x00\x00\x00");
            lower_hex(&h.finalize())
        };
        assert_eq!(row_digest(&[]), empty_row);
        assert_eq!(
            row_digest(&[col("id", Some("1"))]),
            hex::encode(Sha256::digest(
                b"pg_stepup row v1\n\x00\x00\x00\x01\x01\x00\x00\x00\x02id\x01\x00\x00\x00\x011"
            ))
        );
        assert_eq!(
            link_hash(1, 7, "ab", GENESIS),
            hex::encode(Sha256::digest(
                [
                    &b"pg_stepup link v1\n\x01\x00\x00\x00\x011\x01\x00\x00\x00\x017\x01\x00\x00\x00\x02ab\x01\x00\x00\x00\x40"[..],
                    GENESIS.as_bytes()
                ]
                .concat()
            ))
        );
        assert_eq!(
            link_hash(-3, i64::MAX, "", "x"),
            hex::encode(Sha256::digest(
                [
                    &b"pg_stepup link v1\n\x01\x00\x00\x00\x02-3\x01\x00\x00\x00\x13"[..],
                    i64::MAX.to_string().as_bytes(),
                    b"\x01\x00\x00\x00\x00\x01\x00\x00\x00\x01x",
                ]
                .concat()
            ))
        );
        assert_eq!(
            entry_hash([Some("1"), None]),
            hex::encode(Sha256::digest(
                b"pg_stepup entry v1\n\x01\x00\x00\x00\x011\x00"
            ))
        );
    }
}
