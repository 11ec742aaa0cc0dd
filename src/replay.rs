//! One-time assertions: the first transaction that writes a `one_time`
//! table with a `jti` spends it, once that transaction commits.
//!
//! Spending is an INSERT into `stepup.used_jti` keyed by jti, so Postgres'
//! unique index arbitrates between connections: a second transaction waits
//! for the first and then finds the jti taken. A transaction that rolls
//! back (or a savepoint rolled back) takes its row with it, so an aborted
//! use spends nothing.

use pgrx::datum::DatumWithOid;

use crate::owner;
use crate::token::Claims;

/// True if this transaction may use the assertion: it spent the jti now, or
/// had already spent it itself.
pub fn spend(claims: &Claims) -> bool {
    let sql = "INSERT INTO stepup.used_jti AS u (jti, kid, sub, txid, used_at, expires_at) \
               VALUES ($1, $2, $3, pg_catalog.txid_current(), pg_catalog.now(), pg_catalog.to_timestamp($4)) \
               ON CONFLICT (jti) DO UPDATE SET used_at = u.used_at \
               WHERE u.txid OPERATOR(pg_catalog.=) pg_catalog.txid_current() \
               RETURNING 1";
    let args: [DatumWithOid; 4] = [
        claims.jti.as_str().into(),
        claims.kid.as_str().into(),
        claims.sub.as_str().into(),
        (claims.exp as f64).into(),
    ];
    owner::run(sql, &args) == 1
}
