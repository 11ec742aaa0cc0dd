//! `stepup.*` settings. All are PGC_SUSET: an application role that can run
//! any SQL still cannot widen the clock skew, stretch lifetimes or change the
//! audience it must present assertions for.

use std::ffi::CString;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;

static AUDIENCE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static LEEWAY: GucSetting<i32> = GucSetting::<i32>::new(30);
static MAX_LIFETIME: GucSetting<i32> = GucSetting::<i32>::new(15 * 60);
static SEAL_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(0);

pub fn define() {
    GucRegistry::define_string_guc(
        c"stepup.audience",
        c"Audience (aud) that step-up assertions must carry.",
        c"Empty means the current database's name.",
        &AUDIENCE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"stepup.leeway",
        c"Clock skew forgiven when checking exp, nbf, iat and auth_time.",
        c"",
        &LEEWAY,
        0,
        600,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"stepup.max_lifetime",
        c"Longest lifetime (exp - iat) accepted for a step-up assertion.",
        c"",
        &MAX_LIFETIME,
        1,
        24 * 60 * 60,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    // Read by the sealer worker (audit/sealer.rs): set in postgresql.conf
    // or by ALTER SYSTEM, applied on reload.
    GucRegistry::define_int_guc(
        c"stepup.seal_interval",
        c"Seal the audit of every database this often (0: off).",
        c"Needs shared_preload_libraries = 'pg_stepup'.",
        &SEAL_INTERVAL,
        0,
        24 * 60 * 60,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    // Any other stepup.* name is an error, not a silently kept placeholder.
    unsafe {
        pg_sys::MarkGUCPrefixReserved(c"stepup".as_ptr());
    }
}

/// `stepup.audience`, or the current database's name when it is empty.
pub fn audience() -> String {
    match AUDIENCE.get() {
        Some(a) if !a.as_bytes().is_empty() => a.to_string_lossy().into_owned(),
        _ => database_name(),
    }
}

pub fn leeway_s() -> i64 {
    i64::from(LEEWAY.get())
}

pub fn seal_interval_s() -> u64 {
    u64::try_from(SEAL_INTERVAL.get()).unwrap_or(0)
}

pub fn max_lifetime_s() -> i64 {
    i64::from(MAX_LIFETIME.get())
}

fn database_name() -> String {
    unsafe {
        let p = pg_sys::get_database_name(pg_sys::MyDatabaseId);
        if p.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}
