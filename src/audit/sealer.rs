//! Sealing on a schedule: with `shared_preload_libraries = 'pg_stepup'` and
//! `stepup.seal_interval` above 0, a launcher worker wakes every interval
//! and, for each database that accepts connections, starts a short-lived
//! worker that runs `stepup.seal()` there if pg_stepup is installed. An
//! entry nobody has sealed can be deleted by a superuser without trace;
//! sealing often shrinks that window. The launcher connects to no database
//! and lists them by reading the shared catalog, as autovacuum's does.

use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;

use crate::pg::settings;

/// Registers the launcher; only while the library is preloaded.
pub fn register() {
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    BackgroundWorkerBuilder::new("pg_stepup sealer")
        .set_type("pg_stepup sealer")
        .set_library("pg_stepup")
        .set_function("stepup_seal_launcher")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(10)))
        .load();
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn stepup_seal_launcher(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    loop {
        let interval = settings::seal_interval_s();
        // Off: look again at the setting now and then (a reload wakes us).
        let wait = if interval > 0 { interval } else { 60 };
        if !BackgroundWorker::wait_latch(Some(Duration::from_secs(wait))) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if settings::seal_interval_s() == 0 {
            continue;
        }
        for database in databases() {
            seal_in(database);
        }
    }
    // SIGTERM. A worker that exits 0 is unregistered for good, so a
    // pg_terminate_backend() of the launcher would end sealing until the
    // server restarts: exit 1, and the postmaster starts it again after
    // its restart time (not while the server shuts down).
    unsafe { pg_sys::proc_exit(1) };
}

/// Databases that accept connections, from pg_database (a shared catalog,
/// readable without connecting to one).
fn databases() -> Vec<pg_sys::Oid> {
    BackgroundWorker::transaction(|| unsafe {
        let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, pg_sys::AccessShareLock as i32);
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        let mut out = Vec::new();
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let form = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
            if form.datallowconn && !form.datistemplate {
                out.push(form.oid);
            }
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
        out
    })
}

/// Seals one database in a worker of its own, and waits for it.
fn seal_in(database: pg_sys::Oid) {
    let worker = BackgroundWorkerBuilder::new("pg_stepup seal")
        .set_type("pg_stepup sealer")
        .set_library("pg_stepup")
        .set_function("stepup_seal_database")
        .set_argument(Some(pg_sys::Datum::from(database)))
        .enable_spi_access()
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic();
    // No free worker slot: the next interval tries again.
    if let Ok(worker) = worker {
        let _ = worker.wait_for_shutdown();
    }
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn stepup_seal_database(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    let database = pg_sys::Oid::from(u32::try_from(arg.value()).unwrap_or(0));
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    BackgroundWorker::transaction(|| {
        let installed = Spi::get_one::<bool>(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension \
                             WHERE extname OPERATOR(pg_catalog.=) 'pg_stepup')",
        );
        if let Ok(Some(true)) = installed {
            if let Err(e) = Spi::run("SELECT stepup.seal()") {
                log!("pg_stepup: scheduled seal failed: {e}");
            }
        }
    });
}
