//! `stepup.add_key`: registers one key, refusing material the verifier
//! could not use, and stores it in canonical form (so that the same key
//! from a JWKS is recognised as such). `retire_key` and the `key_info`
//! view are plain SQL (sql/finalize.sql); `add_jwks` is in jwks.rs.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use crate::pg::reject;
use stepup_core::token::VerifyingKey;

/// Registers a verification key. HS256 keys are shared secrets of at least
/// 32 bytes; EdDSA keys the 32-byte Ed25519 public key or its DER
/// SubjectPublicKeyInfo; RSA and ECDSA keys a DER SubjectPublicKeyInfo.
#[pg_extern(volatile, parallel_unsafe)]
fn add_key(
    kid: Option<&str>,
    key: Option<&[u8]>,
    alg: default!(Option<&str>, "'HS256'"),
    issuer: default!(Option<&str>, "NULL"),
    not_before: default!(Option<TimestampWithTimeZone>, "now()"),
    not_after: default!(Option<TimestampWithTimeZone>, "NULL"),
) {
    let (Some(kid), Some(key), Some(alg)) = (kid, key, alg) else {
        reject::null_argument(
            "kid, key and alg must not be NULL",
            "Pass the key id, the key bytes and its alg: 'HS256', 'EdDSA', 'RS256', 'PS256', 'ES256' or 'ES384'.",
        );
    };
    if kid.is_empty() || kid.len() > stepup_core::token::MAX_KID_BYTES {
        reject::invalid_parameter(
            "kid must be 1 to 256 bytes",
            "Use the kid the issuer puts in its tokens' header (at most 256 bytes).",
        );
    }
    let parsed = match VerifyingKey::from_names(alg, key) {
        Ok(parsed) => parsed,
        Err(e) => reject::invalid_parameter(
            format!("cannot register key \"{kid}\": {e}"),
            "For RSA and ECDSA pass the DER SubjectPublicKeyInfo (openssl pkey -pubin -outform DER), or import the issuer's JWKS with stepup.add_jwks.",
        ),
    };
    // Checked here, not by the table's CHECK constraint, whose DETAIL would
    // print the row and with it the key.
    if let Some(na) = not_after {
        let nb = not_before.unwrap_or_else(|| unsafe {
            TimestampWithTimeZone::try_from(pg_sys::GetCurrentTransactionStartTimestamp())
                .unwrap_or(na)
        });
        if na <= nb {
            reject::invalid_parameter(
                "not_after must be later than not_before",
                "Pass a not_after after not_before (by default now()), or NULL for no end.",
            );
        }
    }
    let args: [DatumWithOid; 6] = [
        kid.into(),
        alg.into(),
        parsed.material().into(),
        issuer.into(),
        not_before.into(),
        not_after.into(),
    ];
    // No row limit: a limited INSERT ... RETURNING stops before the end of
    // the statement, and the statement trigger that tells every backend to
    // reload its key cache would never fire.
    let inserted = Spi::connect_mut(|client| {
        client
            .update(
                "INSERT INTO stepup.keys (kid, alg, key, issuer, not_before, not_after) \
                 VALUES ($1, $2, $3, $4, coalesce($5, pg_catalog.now()), $6) \
                 ON CONFLICT (kid) DO NOTHING RETURNING kid",
                None,
                &args,
            )
            .map(|rows| rows.len())
    });
    if !matches!(inserted, Ok(1)) {
        reject::duplicate(
            format!("key \"{kid}\" already exists"),
            "Key ids are never reused: retire the old key with stepup.retire_key and add the new one under a new kid."
        );
    }
}
