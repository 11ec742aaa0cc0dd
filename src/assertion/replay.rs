//! One-time assertions: the first transaction that writes a `one_time`
//! table with an assertion spends its replay id (the `jti`, else the
//! SHA-256 of its signed bytes: `Claims::replay_id`), once that
//! transaction commits.
//!
//! Spending is an INSERT into `stepup.used_jti` keyed by replay id, so
//! Postgres' unique index arbitrates between connections: a second
//! transaction waits for the first and then finds the id taken. A transaction that rolls
//! back (or a savepoint rolled back) takes its row with it, so an aborted
//! use spends nothing.

use std::cell::RefCell;

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;

use crate::assertion::held;
use crate::catalog::owner;
use crate::pg::raise::Rejection;
use crate::pg::reject;

use stepup_core::token::Claims;

thread_local! {
    /// The replay id this backend spent last, with the transaction and
    /// subtransaction that spent it: the other rows of a bulk write in the
    /// same subtransaction need not spend it again. A subtransaction rolled
    /// back is never current again, so its spend is not trusted.
    static SPENT: RefCell<Option<(String, pg_sys::TransactionId, pg_sys::SubTransactionId)>> =
        const { RefCell::new(None) };
}

/// True if this transaction may use the assertion: it spent the jti now, or
/// had already spent it itself.
pub fn spend(claims: &Claims) -> bool {
    let here = || unsafe {
        (
            pg_sys::GetTopTransactionIdIfAny(),
            pg_sys::GetCurrentSubTransactionId(),
        )
    };
    let (xid, subxact) = here();
    let known = SPENT.with(|s| {
        s.borrow()
            .as_ref()
            .is_some_and(|(jti, x, sx)| *jti == claims.replay_id && *x == xid && *sx == subxact)
    });
    if known && xid != pg_sys::InvalidTransactionId {
        return true;
    }
    // Ids of assertions that expired more than an hour ago (the leeway is
    // at most 10 minutes) can never be presented again: purged on the way.
    let sql = "WITH purged AS (DELETE FROM stepup.used_jti AS p \
                 WHERE p.expires_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) '1 hour'::pg_catalog.interval)) \
               INSERT INTO stepup.used_jti AS u (jti, kid, sub, txid, used_at, expires_at) \
               VALUES ($1, $2, $3, pg_catalog.txid_current(), pg_catalog.now(), pg_catalog.to_timestamp($4)) \
               ON CONFLICT (jti) DO UPDATE SET used_at = u.used_at \
               WHERE u.txid OPERATOR(pg_catalog.=) pg_catalog.txid_current() \
               RETURNING 1";
    let args: [DatumWithOid; 4] = [
        claims.replay_id.as_str().into(),
        claims.kid.as_str().into(),
        claims.sub.as_str().into(),
        (claims.exp as f64).into(),
    ];
    let ok = owner::run(sql, &args) == 1;
    if ok {
        let (xid, subxact) = here();
        SPENT.with(|s| *s.borrow_mut() = Some((claims.replay_id.clone(), xid, subxact)));
    }
    ok
}

/// SU003 if the assertion was spent by an earlier transaction; spends it
/// otherwise.
pub fn refuse_spent(claims: &Claims, table: Option<String>, operation: &str) -> Option<Rejection> {
    if spend(claims) {
        return None;
    }
    Some(reject::replayed(claims, held::log_fields(table, operation)))
}
