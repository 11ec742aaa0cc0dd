//! `stepup.add_jwks`: an issuer's JWKS document (RFC 7517) as served at its
//! `jwks_uri`, imported key by key. Which keys are usable is decided by the
//! pure reader (`token::jwk`); here each is added, kept or refused against
//! `stepup.keys`, and the issuer's imported keys the document no longer
//! lists are retired. The database fetches nothing: `stepup sync-jwks`
//! (crates/cli) does, and calls this.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::pg::jsonb::JsonbArg;
use crate::pg::reject;
use stepup_core::token::VerifyingKey;
use stepup_core::token::{read_jwks, Jwk};

/// Largest document accepted, as jsonb prints it. Real JWKS documents are
/// a few kilobytes (Entra's, with certificate chains, about 20 kB).
const MAX_JWKS_BYTES: usize = 1 << 20;

type Outcome = (Option<String>, Option<String>, String);

/// Imports `jwks` as the current key set of `issuer`: one row per key of
/// the document (`added`, `kept`, `skipped: why`, `refused: why`) and one
/// per key of this issuer retired because the document no longer lists it.
#[pg_extern(volatile, parallel_unsafe)]
fn add_jwks(
    issuer: Option<&str>,
    jwks: Option<JsonbArg>,
    not_before: default!(Option<TimestampWithTimeZone>, "now()"),
) -> TableIterator<
    'static,
    (
        name!(kid, Option<String>),
        name!(alg, Option<String>),
        name!(action, String),
    ),
> {
    let (Some(issuer), Some(jwks)) = (issuer, jwks) else {
        reject::null_argument(
            "issuer and jwks must not be NULL",
            "Pass the issuer's URL (its tokens' iss) and the JSON document its jwks_uri serves.",
        );
    };
    if issuer.is_empty() {
        reject::invalid_parameter(
            "issuer must not be empty",
            "Pass the issuer exactly as its tokens' iss claim names it.",
        );
    }
    let size = jwks.text().len();
    if size > MAX_JWKS_BYTES {
        reject::invalid_parameter(
            format!("JWKS document is {size} bytes, more than the {MAX_JWKS_BYTES} accepted"),
            "Pass the document the issuer's jwks_uri serves; real ones are a few kilobytes.",
        );
    }
    let doc = match jwks.value() {
        Ok(doc) => doc,
        Err(e) => reject::invalid_parameter(
            format!("JWKS document cannot be read: {e}"),
            "Pass the document the issuer's jwks_uri serves, unchanged.",
        ),
    };
    let keys = match read_jwks(&doc) {
        Ok(keys) => keys,
        Err(e) => reject::invalid_parameter(
            format!("not a JWKS document: {e}"),
            "Pass the document the issuer's jwks_uri serves: {\"keys\": [...]} (RFC 7517 section 5).",
        ),
    };
    if !keys.iter().any(|k| matches!(k, Jwk::Usable { .. })) {
        let why: Vec<String> = keys
            .iter()
            .filter_map(|k| match k {
                Jwk::Skipped { kid, reason, .. } => Some(format!(
                    "{}: {reason}",
                    kid.as_deref().unwrap_or("(no kid)")
                )),
                Jwk::Usable { .. } => None,
            })
            .collect();
        reject::invalid_parameter(
            format!(
                "JWKS document holds no usable signing key ({}); nothing was changed",
                if why.is_empty() { "it is empty".into() } else { why.join("; ") }
            ),
            "An issuer always publishes its current signing key: check the jwks_uri. To stop trusting an issuer, retire its keys with stepup.retire_key.",
        );
    }
    let outcomes = Spi::connect_mut(|client| import(client, issuer, &keys, not_before));
    match outcomes {
        Ok(rows) => TableIterator::new(rows),
        Err(e) => reject::internal(
            format!("cannot import the JWKS: {e}"),
            "Report this with the server log.",
        ),
    }
}

fn import(
    client: &mut SpiClient<'_>,
    issuer: &str,
    keys: &[Jwk],
    not_before: Option<TimestampWithTimeZone>,
) -> Result<Vec<Outcome>, pgrx::spi::Error> {
    let mut rows: Vec<Outcome> = Vec::with_capacity(keys.len());
    let mut current: Vec<String> = Vec::new();
    for jwk in keys {
        let (kid, key) = match jwk {
            Jwk::Skipped { kid, alg, reason } => {
                rows.push((kid.clone(), alg.clone(), format!("skipped: {reason}")));
                continue;
            }
            Jwk::Usable { kid, key } => (kid, key),
        };
        let alg = key.alg().name();
        let action = add_or_compare(client, issuer, kid, key, not_before)?;
        if action == "added" || action == "kept" {
            current.push(kid.clone());
        }
        rows.push((Some(kid.clone()), Some(alg.into()), action));
    }
    // This issuer's imported keys that the document no longer lists stop
    // verifying now (keys registered with add_key are the operator's).
    let args: [DatumWithOid; 2] = [issuer.into(), current.into()];
    let retired = client.update(
        "UPDATE stepup.keys AS k \
            SET not_after = GREATEST(pg_catalog.now(), k.not_before OPERATOR(pg_catalog.+) '1 microsecond'::pg_catalog.interval) \
          WHERE k.issuer OPERATOR(pg_catalog.=) $1 AND k.source OPERATOR(pg_catalog.=) 'jwks' \
            AND (k.not_after IS NULL OR k.not_after OPERATOR(pg_catalog.>) pg_catalog.now()) \
            AND NOT (k.kid OPERATOR(pg_catalog.=) ANY ($2)) \
          RETURNING k.kid, k.alg",
        None,
        &args,
    )?;
    for row in retired {
        rows.push((row.get(1)?, row.get(2)?, "retired".into()));
    }
    Ok(rows)
}

/// `added` if the kid is new; `kept` if it names this very key of this
/// issuer and is active; otherwise why the document's key is not used.
fn add_or_compare(
    client: &mut SpiClient<'_>,
    issuer: &str,
    kid: &str,
    key: &VerifyingKey,
    not_before: Option<TimestampWithTimeZone>,
) -> Result<String, pgrx::spi::Error> {
    let alg = key.alg().name();
    let material = key.material();
    let args: [DatumWithOid; 5] = [
        kid.into(),
        alg.into(),
        material.into(),
        issuer.into(),
        not_before.into(),
    ];
    // No row limit: a limited INSERT ... RETURNING stops before the end of
    // the statement, and the statement trigger that tells every backend to
    // reload its key cache would never fire.
    let inserted = client.update(
        "INSERT INTO stepup.keys (kid, alg, key, issuer, not_before, source) \
         VALUES ($1, $2, $3, $4, coalesce($5, pg_catalog.now()), 'jwks') \
         ON CONFLICT (kid) DO NOTHING RETURNING kid",
        None,
        &args,
    )?;
    if inserted.len() == 1 {
        return Ok("added".into());
    }
    let args: [DatumWithOid; 1] = [kid.into()];
    let existing = client.select(
        "SELECT k.alg, k.key, k.issuer, \
                coalesce(k.not_after OPERATOR(pg_catalog.<=) pg_catalog.now(), false) \
           FROM stepup.keys AS k WHERE k.kid OPERATOR(pg_catalog.=) $1",
        None,
        &args,
    )?;
    let Some(row) = existing.into_iter().next() else {
        // Removed between the two statements: nothing to compare with.
        return Ok(
            "refused: the kid was removed while importing; call stepup.add_jwks again".into(),
        );
    };
    let same = row.get::<String>(1)?.as_deref() == Some(alg)
        && row.get::<&[u8]>(2)? == Some(material)
        && row.get::<String>(3)?.as_deref() == Some(issuer);
    let retired = row.get::<bool>(4)?.unwrap_or(true);
    Ok(match (same, retired) {
        (true, false) => "kept".into(),
        (true, true) => "skipped: this kid was retired (stepup.key_info); a retired kid is never trusted again".into(),
        (false, _) => "refused: the kid already names a different key or issuer, and kids are never reused (stepup.key_info)".into(),
    })
}
