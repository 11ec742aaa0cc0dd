//! Audit entries that are not row changes: a TRUNCATE of a protected table
//! and DDL allowed by step-up. Rare, so written with one SQL call
//! (`stepup.record_event`, sql/audit.sql) as the extension's owner, with
//! the same encoding and chain as every entry.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use crate::catalog::owner;
use stepup_core::token::Claims;

/// Appends an entry for `table` with `op`; `old_values` / `new_values` are
/// JSON objects as text. The roles are the ones running the statement,
/// read before the switch to the owner.
pub fn record_event(
    table: &str,
    op: &str,
    old_values: Option<&str>,
    new_values: Option<&str>,
    claims: Option<&Claims>,
) {
    let (user, session) = unsafe { (pg_sys::GetUserId(), pg_sys::GetSessionUserId()) };
    let (user, session) = (
        super::trigger::role_name(user),
        super::trigger::role_name(session),
    );
    let amr: Option<Vec<&str>> = claims.map(|c| c.amr.iter().map(String::as_str).collect());
    let args: [DatumWithOid; 12] = [
        table.into(),
        op.into(),
        old_values.into(),
        new_values.into(),
        (&*user).into(),
        (&*session).into(),
        claims.map(|c| c.kid.as_str()).into(),
        claims.and_then(|c| c.jti.as_deref()).into(),
        claims.map(|c| c.sub.as_str()).into(),
        claims.map(|c| c.acr.as_str()).into(),
        amr.into(),
        claims.and_then(|c| c.auth_time).map(|t| t as f64).into(),
    ];
    owner::run(
        "SELECT stepup.record_event($1, $2, $3::pg_catalog.jsonb, $4::pg_catalog.jsonb, $5, $6, \
                $7, $8, $9, $10, $11, pg_catalog.to_timestamp($12))",
        &args,
    );
}
