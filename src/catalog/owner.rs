//! Writes the extension makes on behalf of any role (spent one-time
//! assertions, the protection baseline) run as the owner of its catalog,
//! the way Postgres runs foreign-key checks: user id switched for the one
//! statement, with SECURITY_RESTRICTED_OPERATION, restored afterwards (and
//! by Postgres itself if the statement fails).

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use crate::catalog;
use crate::pg::reject;

/// Runs `f` as the owner of the extension's catalog.
pub fn as_owner<R>(f: impl FnOnce() -> R) -> R {
    let owner = catalog_owner();
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(
            owner,
            context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
    }
    let r = f();
    unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
    r
}

/// Runs one fully qualified statement as the owner of `stepup.protected`;
/// returns how many rows it returned.
pub fn run(sql: &str, args: &[DatumWithOid]) -> usize {
    let rows =
        as_owner(|| Spi::connect_mut(|client| client.update(sql, None, args).map(|t| t.len())));
    match rows {
        Ok(n) => n,
        Err(e) => reject::internal(
            format!("pg_stepup: internal statement failed: {e}"),
            "Report this with the server log.",
        ),
    }
}

fn catalog_owner() -> pg_sys::Oid {
    let owner = catalog::snapshot().owner;
    if owner == pg_sys::InvalidOid {
        reject::internal(
            "pg_stepup: catalog table stepup.protected is missing; reinstall the extension",
            "Save stepup.audit_log, then DROP EXTENSION pg_stepup CASCADE and CREATE EXTENSION pg_stepup.",
        );
    }
    owner
}
