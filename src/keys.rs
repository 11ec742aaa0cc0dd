//! `stepup.add_key`: the key registry's one write path that needs Rust, to
//! refuse material the verifier could not use. `retire_key` and the
//! `key_info` view are plain SQL (sql/bootstrap.sql).

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use crate::token::VerifyingKey;

/// Registers a verification key. HS256 keys are shared secrets of at least
/// 32 bytes; EdDSA keys are the 32-byte Ed25519 public key.
#[pg_extern(volatile, parallel_unsafe)]
fn add_key(
    kid: &str,
    key: &[u8],
    alg: default!(&str, "'HS256'"),
    issuer: default!(Option<&str>, "NULL"),
    not_before: default!(Option<TimestampWithTimeZone>, "now()"),
    not_after: default!(Option<TimestampWithTimeZone>, "NULL"),
) {
    if kid.is_empty() || kid.len() > 256 {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "kid must be 1 to 256 bytes"
        );
    }
    if let Err(e) = VerifyingKey::from_names(alg, key) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("cannot register key \"{kid}\": {e}")
        );
    }
    if let (Some(nb), Some(na)) = (not_before, not_after) {
        if na <= nb {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "not_after must be later than not_before"
            );
        }
    }
    let args: [DatumWithOid; 6] = [
        kid.into(),
        alg.into(),
        key.into(),
        issuer.into(),
        not_before.into(),
        not_after.into(),
    ];
    let inserted = Spi::get_one_with_args::<String>(
        "INSERT INTO stepup.keys (kid, alg, key, issuer, not_before, not_after) \
         VALUES ($1, $2, $3, $4, coalesce($5, pg_catalog.now()), $6) \
         ON CONFLICT (kid) DO NOTHING RETURNING kid",
        &args,
    );
    if !matches!(inserted, Ok(Some(_))) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
            format!("key \"{kid}\" already exists"),
            "Key ids are never reused: retire the old key with stepup.retire_key and add the new one under a new kid."
        );
    }
}
