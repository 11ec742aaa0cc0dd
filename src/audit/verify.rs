//! `stepup.verify_audit`, `stepup.audit_digest`: seal, then walk the chain
//! in order, recomputing every entry hash and link (chain.rs).

use pgrx::prelude::*;
use pgrx::{JsonB, PgMemoryContexts};
use serde_json::{json, Value};

use super::chain::{Bad, Head, Link, Walk};
use super::encoding::{ENTRY_FIELDS, GENESIS};
use super::entry::{self, Values};
use crate::catalog::owner;
use crate::pg::jsonb::JsonbArg;
use crate::pg::{reject, varlena};
use std::sync::OnceLock;

/// Each link with the stored columns of the entry it names, in the order
/// entry::hash renders them (l.id NULL: the entry is gone).
fn walk_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let fields: Vec<String> = ENTRY_FIELDS.iter().map(|f| format!("l.{f}")).collect();
        format!(
            "SELECT c.seq, c.entry_id, c.entry_hash, c.prev_hash, c.link_hash, l.entry_hash, {} \
               FROM stepup.audit_chain c \
               LEFT JOIN stepup.audit_log l ON l.id OPERATOR(pg_catalog.=) c.entry_id \
              ORDER BY c.seq",
            fields.join(", ")
        )
    })
}

/// The walk's columns: five of the link, the stored hash, the fields.
const WALK_COLUMNS: usize = 6 + ENTRY_FIELDS.len();

const BATCH: i64 = 1_000;

/// Seals, then recomputes every entry hash and link; names the first entry
/// edited, deleted or reordered.
#[pg_extern(volatile, parallel_unsafe, name = "verify_audit")]
fn verify_audit() -> TableIterator<
    'static,
    (
        name!(ok, bool),
        name!(entries, i64),
        name!(first_bad_id, Option<i64>),
        name!(reason, Option<String>),
    ),
> {
    report(walk_chain(None))
}

/// As verify_audit(), and the head recorded in `digest` (stepup.audit_digest)
/// must still be in the chain: catches removal of the newest entries.
#[pg_extern(volatile, parallel_unsafe, name = "verify_audit")]
fn verify_audit_digest(
    digest: Option<JsonbArg>,
) -> TableIterator<
    'static,
    (
        name!(ok, bool),
        name!(entries, i64),
        name!(first_bad_id, Option<i64>),
        name!(reason, Option<String>),
    ),
> {
    // Not STRICT: a NULL digest is an error, not an empty answer that a
    // script could read as "nothing wrong".
    let Some(digest) = digest else {
        reject::null_argument("digest must not be NULL", HEAD_HINT)
    };
    let digest = digest.value().unwrap_or_else(|e| {
        reject::invalid_parameter(format!("digest cannot be read: {e}"), HEAD_HINT)
    });
    let want = head_of(&digest);
    report(walk_chain(Some(want)))
}

/// The head of the chain, to keep outside the database.
#[pg_extern(volatile, parallel_unsafe)]
fn audit_digest() -> JsonB {
    owner::as_owner(seal);
    let head = owner::as_owner(|| {
        Spi::get_three::<i64, i64, String>(
            "SELECT seq, entry_id, link_hash FROM stepup.audit_chain ORDER BY seq DESC LIMIT 1",
        )
    });
    let (seq, entry_id, hash) = match head {
        Ok((Some(s), Some(e), Some(h))) => (s, Some(e), h),
        _ => (0, None, GENESIS.to_string()),
    };
    let system_identifier = unsafe { pg_sys::GetSystemIdentifier() };
    JsonB(json!({
        "seq": seq,
        "entry_id": entry_id,
        "hash": hash,
        "at": Spi::get_one::<String>("SELECT pg_catalog.to_char(pg_catalog.now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')").ok().flatten(),
        "system_identifier": system_identifier.to_string(),
    }))
}

/// The verdict when the chain no longer holds the digest's head
/// ([`Head::missing`]), with the first link up to it sealed after the
/// digest was taken, if any.
fn rewritten(head: &Head) -> Bad {
    let first = head.at.as_deref().and_then(|at| {
        match Spi::get_two_with_args::<i64, i64>(
            "SELECT c.seq, c.entry_id FROM stepup.audit_chain c \
              WHERE c.seq OPERATOR(pg_catalog.<=) $1 \
                AND c.sealed_at OPERATOR(pg_catalog.>) $2::pg_catalog.timestamptz \
              ORDER BY c.seq LIMIT 1",
            &[head.seq.into(), at.into()],
        ) {
            Ok((Some(seq), Some(entry_id))) => Some((seq, entry_id)),
            _ => None,
        }
    });
    head.missing(first)
}

const HEAD_HINT: &str = "Pass the jsonb stepup.audit_digest() returned.";

/// The head a saved digest records.
fn head_of(d: &Value) -> Head {
    Head::from_json(d).unwrap_or_else(|e| reject::invalid_parameter(e, HEAD_HINT))
}

struct FreeOnDrop(*mut pg_sys::SPITupleTable);

impl Drop for FreeOnDrop {
    fn drop(&mut self) {
        unsafe { pg_sys::SPI_freetuptable(self.0) };
    }
}

/// Row `i` of an SPI tuple table, all columns at once.
///
/// # Safety
/// `table` is the live SPI_tuptable of a [`walk_sql`] fetch and `i` < its length.
unsafe fn deform(
    table: *mut pg_sys::SPITupleTable,
    i: usize,
) -> ([pg_sys::Datum; WALK_COLUMNS], [bool; WALK_COLUMNS]) {
    let mut datums = [pg_sys::Datum::from(0); WALK_COLUMNS];
    let mut nulls = [true; WALK_COLUMNS];
    let desc = (*table).tupdesc;
    if usize::try_from((*desc).natts).ok() == Some(WALK_COLUMNS) {
        pg_sys::heap_deform_tuple(
            *(*table).vals.add(i),
            desc,
            datums.as_mut_ptr(),
            nulls.as_mut_ptr(),
        );
    }
    (datums, nulls)
}

type Row4 = (bool, i64, Option<i64>, Option<String>);

fn report(r: (i64, Option<Bad>)) -> TableIterator<'static, Row4> {
    let (entries, bad) = r;
    TableIterator::once((
        bad.is_none(),
        entries,
        bad.as_ref().map(|b| b.entry_id),
        bad.map(|b| b.reason),
    ))
}

fn seal() {
    if let Err(e) = Spi::run("SELECT stepup.seal()") {
        reject::internal(
            format!("pg_stepup: seal failed: {e}"),
            "Report this with the server log.",
        );
    }
}

/// Walks the whole chain; with `want`, also checks that link `seq` still has
/// the saved hash.
fn walk_chain(want: Option<Head>) -> (i64, Option<Bad>) {
    owner::as_owner(|| {
        seal();
        let mut walk = Walk::default();
        let mut found_head = want.as_ref().is_some_and(Head::is_genesis);
        // Output functions allocate: everything of one row lives in a
        // context reset after it.
        let mut scratch = PgMemoryContexts::new("pg_stepup verify_audit");
        let bad = Spi::connect(|client| -> Result<Option<Bad>, pgrx::spi::Error> {
            let mut cursor = client.open_cursor(walk_sql(), &[]);
            loop {
                let batch = cursor.fetch(BATCH)?;
                if batch.is_empty() {
                    return Ok(None);
                }
                let (table, rows) = (unsafe { pg_sys::SPI_tuptable }, batch.len());
                // pgrx keeps every fetched table until the connection ends:
                // free each batch (`batch` is not used again), or a long
                // chain holds all of it in memory.
                let _free = FreeOnDrop(table);
                for i in 0..rows {
                    let found = unsafe {
                        scratch.switch_to(|_| {
                            let (datums, nulls) = deform(table, i);
                            let col = |n: usize| (!nulls[n]).then_some(datums[n]);
                            let int8 = |n: usize| col(n).map_or(0, |d| d.value() as i64);
                            let text =
                                |n: usize| col(n).map(|d| varlena::text(d)).unwrap_or_default();
                            let link_hash = text(4);
                            let fields_hash = col(6).map(|_| {
                                let mut values: Values = [None; ENTRY_FIELDS.len()];
                                for (k, v) in values.iter_mut().enumerate() {
                                    *v = col(6 + k);
                                }
                                entry::hash(&values)
                            });
                            let stored = col(5).map(|d| varlena::text(d));
                            let link = Link {
                                seq: int8(0),
                                entry_id: int8(1),
                                entry_hash: &text(2),
                                prev_hash: &text(3),
                                link_hash: &link_hash,
                                entry: stored.as_deref().zip(fields_hash.as_deref()),
                            };
                            walk.step(&link).map(|()| (link.seq, link_hash.clone()))
                        })
                    };
                    unsafe { scratch.reset() };
                    match found {
                        Err(b) => return Ok(Some(b)),
                        Ok((seq, link_hash)) => {
                            if want.as_ref().is_some_and(|h| h.is_link(seq, &link_hash)) {
                                found_head = true;
                            }
                        }
                    }
                }
            }
        });
        let bad = match bad {
            Ok(b) => b,
            Err(e) => reject::internal(
                format!("pg_stepup: cannot read the audit chain: {e}"),
                "Report this with the server log.",
            ),
        };
        if bad.is_none() {
            if let Some(head) = want.filter(|_| !found_head) {
                return (walk.entries, Some(rewritten(&head)));
            }
        }
        (walk.entries, bad)
    })
}
