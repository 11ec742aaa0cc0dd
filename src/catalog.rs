//! Backend-local cache of `stepup.keys` and `stepup.levels`.
//!
//! Loaded once per backend, dropped when either table changes: a statement
//! trigger on both sends a relcache invalidation (delivered to every backend
//! at commit, and to this one at the next command), and the callback
//! registered in `_PG_init` forgets the snapshot. Verification therefore
//! needs no SPI on the hot path.
//!
//! Application roles cannot read `stepup.keys`; loading runs as the
//! extension's owner under SECURITY_RESTRICTED_OPERATION, with queries that
//! call no function or operator, so search_path cannot redirect them.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::prelude::*;
use pgrx::spi::SpiTupleTable;

use crate::token::{RegisteredKey, VerifyingKey};

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
pub const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

pub struct Snapshot {
    pub keys: HashMap<String, RegisteredKey>,
    pub levels: HashMap<String, i32>,
}

thread_local! {
    static CACHE: RefCell<Option<Rc<Snapshot>>> = const { RefCell::new(None) };
    /// OIDs of stepup.keys and stepup.levels when the cache was filled.
    static WATCHED: Cell<[pg_sys::Oid; 2]> = const { Cell::new([pg_sys::InvalidOid; 2]) };
}

/// The current snapshot, loading it if needed.
pub fn snapshot() -> Rc<Snapshot> {
    if let Some(s) = CACHE.with(|c| c.borrow().clone()) {
        return s;
    }
    let s = Rc::new(load());
    CACHE.with(|c| *c.borrow_mut() = Some(s.clone()));
    s
}

/// Rank of a level, if it is defined.
pub fn level_rank(name: &str) -> Option<i32> {
    snapshot().levels.get(name).copied()
}

pub fn register_invalidation() {
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_inval), pg_sys::Datum::from(0));
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_inval(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let watched = WATCHED.with(Cell::get);
    if relid == pg_sys::InvalidOid || watched.contains(&relid) {
        CACHE.with(|c| c.borrow_mut().take());
    }
}

/// Statement trigger on stepup.keys and stepup.levels: every backend drops
/// its cached snapshot once the change commits.
#[pg_trigger]
fn catalog_changed<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    let relid = trigger.relid()?;
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    Ok(None)
}

fn relid(name: &std::ffi::CStr) -> pg_sys::Oid {
    unsafe {
        let nsp = pg_sys::get_namespace_oid(c"stepup".as_ptr(), true);
        if nsp == pg_sys::InvalidOid {
            return pg_sys::InvalidOid;
        }
        pg_sys::get_relname_relid(name.as_ptr(), nsp)
    }
}

fn load() -> Snapshot {
    WATCHED.with(|w| w.set([relid(c"keys"), relid(c"levels")]));
    let owner = Spi::get_one::<pg_sys::Oid>(
        "SELECT extowner FROM pg_catalog.pg_extension \
         WHERE extname OPERATOR(pg_catalog.=) 'pg_stepup'",
    )
    .ok()
    .flatten();
    let Some(owner) = owner else {
        // Not installed in this database: nothing verifies.
        return Snapshot {
            keys: HashMap::new(),
            levels: HashMap::new(),
        };
    };
    let _as_owner = AsOwner::switch(owner);
    Spi::connect(|client| {
        let keys = client
            .select(
                "SELECT kid, alg, key, issuer, not_before, not_after FROM stepup.keys",
                None,
                &[],
            )
            .map(read_keys)
            .unwrap_or_default();
        let levels = client
            .select("SELECT name, rank FROM stepup.levels", None, &[])
            .map(|rows| {
                rows.filter_map(|r| Some((r.get::<String>(1).ok()??, r.get::<i32>(2).ok()??)))
                    .collect()
            })
            .unwrap_or_default();
        Snapshot { keys, levels }
    })
}

fn read_keys(rows: SpiTupleTable) -> HashMap<String, RegisteredKey> {
    let mut keys = HashMap::new();
    for r in rows {
        let (Ok(Some(kid)), Ok(Some(alg)), Ok(Some(material))) =
            (r.get::<String>(1), r.get::<String>(2), r.get::<Vec<u8>>(3))
        else {
            continue;
        };
        // A row that add_key would have refused (written by hand) verifies
        // nothing: its kid then reads as unknown.
        let Ok(key) = VerifyingKey::from_names(&alg, &material) else {
            continue;
        };
        let issuer = r.get::<String>(4).ok().flatten();
        let not_before_us =
            timestamp_us(r.get::<TimestampWithTimeZone>(5).ok().flatten()).unwrap_or(i64::MIN);
        let not_after_us = timestamp_us(r.get::<TimestampWithTimeZone>(6).ok().flatten());
        keys.insert(
            kid.clone(),
            RegisteredKey {
                kid,
                key,
                issuer,
                not_before_us,
                not_after_us,
            },
        );
    }
    keys
}

/// A timestamptz as Unix microseconds; infinities saturate.
fn timestamp_us(t: Option<TimestampWithTimeZone>) -> Option<i64> {
    let pg: i64 = t?.into_inner();
    Some(match pg {
        i64::MAX => i64::MAX,
        i64::MIN => i64::MIN,
        t => t.saturating_add(PG_EPOCH_OFFSET_US),
    })
}

/// The wall clock as Unix microseconds (not the transaction start).
pub fn now_us() -> i64 {
    unsafe { pg_sys::GetCurrentTimestamp() }.saturating_add(PG_EPOCH_OFFSET_US)
}

/// Runs as `owner` until dropped, also when an error unwinds through it.
struct AsOwner {
    user: pg_sys::Oid,
    context: i32,
}

impl AsOwner {
    fn switch(owner: pg_sys::Oid) -> AsOwner {
        let mut user = pg_sys::InvalidOid;
        let mut context = 0;
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
            pg_sys::SetUserIdAndSecContext(
                owner,
                context
                    | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                    | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
            );
        }
        AsOwner { user, context }
    }
}

impl Drop for AsOwner {
    fn drop(&mut self) {
        unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.context) };
    }
}
