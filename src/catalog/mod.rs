//! Backend-local cache of `stepup.keys` (parsed once per load, never per
//! token), `stepup.issuer_profiles`, `stepup.levels` and `stepup.protected`.
//!
//! Loaded once per backend, dropped when either table changes: a statement
//! trigger on both sends a relcache invalidation (delivered to every backend
//! at commit, and to this one at the next command), and the callback
//! registered in `_PG_init` forgets the snapshot. Verification therefore
//! needs no SPI on the hot path.
//!
//! Application roles cannot read `stepup.keys`; loading is a direct heap
//! scan, which checks no privilege and runs no SQL (see [`scan_latest`]).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use std::num::NonZeroUsize;

use pgrx::prelude::*;
use pgrx::PgTupleDesc;

pub mod owner;
pub mod policy;

use crate::pg::cache::{on_relcache_change, NameMap, OidMap};
use crate::pg::reject;
use crate::pg::time::timestamp_us;
use policy::Policy;
use std::sync::Arc;
use stepup_core::token::{normalize_typ, LevelClaim, Profile, RegisteredKey, VerifyingKey};

pub struct Snapshot {
    pub keys: NameMap<RegisteredKey>,
    pub levels: NameMap<i32>,
    /// Protected tables by relation OID.
    pub policies: OidMap<Policy>,
    /// Owner of the catalog (of stepup.protected), whom owner::as_owner
    /// becomes; InvalidOid if the catalog is missing.
    pub owner: pg_sys::Oid,
    /// stepup.audit_log and its id sequence (InvalidOid if missing): the
    /// audit trigger writes every entry without looking them up by name.
    pub audit_log: pg_sys::Oid,
    pub audit_seq: pg_sys::Oid,
}

thread_local! {
    static CACHE: RefCell<Option<Rc<Snapshot>>> = const { RefCell::new(None) };
    /// OIDs of the catalog tables and audit relations when the cache was
    /// filled: dropping any of them drops the cache.
    static WATCHED: Cell<[pg_sys::Oid; 6]> = const { Cell::new([pg_sys::InvalidOid; 6]) };
    /// Bumped by every relevant invalidation, so a load that overlapped one
    /// is used once and not kept.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// The current snapshot, loading it if needed.
pub fn snapshot() -> Rc<Snapshot> {
    // A key retired by another session counts from its commit, even in the
    // middle of this session's transaction.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    snapshot_as_read()
}

/// The snapshot as of the invalidations this backend has read, without
/// reading new ones (a guarded call): for a caller in the same row event
/// as a [`snapshot`] call, or looking up relations it is about to lock
/// (taking the lock reads them).
pub fn snapshot_as_read() -> Rc<Snapshot> {
    if let Some(s) = CACHE.with(|c| c.borrow().clone()) {
        return s;
    }
    let generation = GENERATION.with(Cell::get);
    let s = Rc::new(load());
    // A load in parallel mode used the transaction's snapshot (see
    // scan_latest): good for this call, not for keeping.
    let parallel = unsafe { pg_sys::IsInParallelMode() };
    if GENERATION.with(Cell::get) == generation && !parallel {
        CACHE.with(|c| *c.borrow_mut() = Some(s.clone()));
    }
    s
}

/// Rank of a level, if it is defined.
pub fn level_rank(name: &str) -> Option<i32> {
    snapshot().levels.get(name).copied()
}

pub fn register_invalidation() {
    on_relcache_change(on_relcache_inval);
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_inval(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let watched = WATCHED.with(Cell::get);
    if relid == pg_sys::InvalidOid || watched.contains(&relid) {
        forget();
    }
}

/// Drops the cached snapshot; the next [`snapshot`] loads anew.
pub fn forget() {
    CACHE.with(|c| c.borrow_mut().take());
    GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
}

/// Statement trigger on the catalog tables: every backend drops
/// its cached snapshot once the change commits.
#[pg_trigger]
fn catalog_changed<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    let relid = trigger.relid().unwrap_or_else(|e| {
        reject::internal(
            format!("pg_stepup: catalog_changed: {e}"),
            "It is a statement trigger on the extension's catalog tables; do not call it otherwise.",
        )
    });
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    Ok(None)
}

/// `stepup.<name>`, but only if that relation belongs to this extension:
/// a look-alike table in a squatted or renamed schema is never read.
pub fn relid(name: &std::ffi::CStr) -> pg_sys::Oid {
    unsafe {
        let ext = pg_sys::get_extension_oid(c"pg_stepup".as_ptr(), true);
        let nsp = pg_sys::get_namespace_oid(c"stepup".as_ptr(), true);
        if ext == pg_sys::InvalidOid || nsp == pg_sys::InvalidOid {
            return pg_sys::InvalidOid;
        }
        let rel = pg_sys::get_relname_relid(name.as_ptr(), nsp);
        if rel == pg_sys::InvalidOid
            || pg_sys::getExtensionOfObject(pg_sys::RelationRelationId, rel) != ext
        {
            return pg_sys::InvalidOid;
        }
        rel
    }
}

fn load() -> Snapshot {
    let watched = [
        relid(c"keys"),
        relid(c"levels"),
        relid(c"protected"),
        relid(c"audit_log"),
        relid(c"audit_log_id_seq"),
        relid(c"issuer_profiles"),
    ];
    WATCHED.with(|w| w.set(watched));
    let [keys_oid, levels_oid, protected_oid, audit_log, audit_seq, profiles_oid] = watched;
    let mut profiles: NameMap<Arc<Profile>> = NameMap::default();
    scan_latest(profiles_oid, |row, _| {
        if let Some(p) = read_profile(row) {
            if let Some(issuer) = p.issuer.clone() {
                profiles.insert(issuer, Arc::new(p));
            }
        }
    });
    let mut keys = NameMap::default();
    let mut levels = NameMap::default();
    let mut policies = OidMap::default();
    scan_latest(protected_oid, |row, target| {
        if let Some((relid, p)) = target.and_then(|t| policy::read(row, t)) {
            policies.insert(relid, p);
        }
    });
    scan_latest(keys_oid, |row, _| {
        if let Some(k) = read_key(row, &profiles) {
            keys.insert(k.kid.clone(), k);
        }
    });
    scan_latest(levels_oid, |row, _| {
        if let (Ok(Some(name)), Ok(Some(rank))) = (
            row.get_by_index::<String>(ATT1),
            row.get_by_index::<i32>(ATT2),
        ) {
            levels.insert(name, rank);
        }
    });
    let owner = if protected_oid == pg_sys::InvalidOid {
        pg_sys::InvalidOid
    } else {
        unsafe {
            let rel = pg_sys::RelationIdGetRelation(protected_oid);
            if rel.is_null() {
                pg_sys::InvalidOid
            } else {
                let owner = (*(*rel).rd_rel).relowner;
                pg_sys::RelationClose(rel);
                owner
            }
        }
    };
    Snapshot {
        owner,
        keys,
        levels,
        policies,
        audit_log,
        audit_seq,
    }
}

const ATT1: NonZeroUsize = NonZeroUsize::MIN;
const ATT2: NonZeroUsize = ATT1.saturating_add(1);
const ATT3: NonZeroUsize = ATT1.saturating_add(2);
const ATT4: NonZeroUsize = ATT1.saturating_add(3);
const ATT5: NonZeroUsize = ATT1.saturating_add(4);
const ATT6: NonZeroUsize = ATT1.saturating_add(5);

/// Reads every row of `relid` under the latest committed snapshot, not this
/// transaction's: under REPEATABLE READ the latter could bring back a key
/// retired since. A direct heap scan also needs no privilege on the table
/// and runs no SQL, so neither the caller's role nor its search_path matter.
fn scan_latest(
    relid: pg_sys::Oid,
    mut each: impl FnMut(&PgHeapTuple<'_, AllocatedByPostgres>, Option<pg_sys::Datum>),
) {
    if relid == pg_sys::InvalidOid {
        return;
    }
    unsafe {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let rel = pg_sys::table_open(relid, lock);
        // GetLatestSnapshot is not allowed in parallel mode; there the
        // transaction snapshot serves this one call and is not cached.
        let latest = if pg_sys::IsInParallelMode() {
            pg_sys::GetTransactionSnapshot()
        } else {
            pg_sys::GetLatestSnapshot()
        };
        let snapshot = pg_sys::RegisterSnapshot(latest);
        let scan = pg_sys::systable_beginscan(
            rel,
            pg_sys::InvalidOid,
            false,
            snapshot,
            0,
            std::ptr::null_mut(),
        );
        loop {
            let tuple = pg_sys::systable_getnext(scan);
            if tuple.is_null() {
                break;
            }
            // The first column raw: typed getters refuse types pgrx does not
            // know, such as stepup.protected's regclass.
            let first = pgrx::heap_getattr_raw(tuple, ATT1, (*rel).rd_att);
            let row =
                PgHeapTuple::from_heap_tuple(PgTupleDesc::from_pg_unchecked((*rel).rd_att), tuple);
            each(&row, first);
        }
        pg_sys::systable_endscan(scan);
        pg_sys::UnregisterSnapshot(snapshot);
        pg_sys::table_close(rel, lock);
    }
}

fn read_key(
    row: &PgHeapTuple<'_, AllocatedByPostgres>,
    profiles: &NameMap<Arc<Profile>>,
) -> Option<RegisteredKey> {
    let kid = row.get_by_index::<String>(ATT1).ok()??;
    let alg = row.get_by_index::<String>(ATT2).ok()??;
    let material = row.get_by_index::<&[u8]>(ATT3).ok()??;
    // A row that add_key would have refused (written by hand) verifies
    // nothing: its kid then reads as unknown.
    let key = VerifyingKey::from_names(&alg, material).ok()?;
    let issuer = row.get_by_index::<String>(ATT4).ok().flatten();
    let not_before_us = timestamp_us(
        row.get_by_index::<TimestampWithTimeZone>(ATT5)
            .ok()
            .flatten(),
    )
    .unwrap_or(i64::MIN);
    let not_after_us = timestamp_us(
        row.get_by_index::<TimestampWithTimeZone>(ATT6)
            .ok()
            .flatten(),
    );
    let profile = issuer
        .as_ref()
        .and_then(|i| profiles.get(i).cloned())
        .unwrap_or_default();
    Some(RegisteredKey {
        kid,
        key,
        issuer,
        not_before_us,
        not_after_us,
        profile,
    })
}

/// A row of `stepup.issuer_profiles` (written by define_issuer; the
/// table's constraints keep `levels` an object of strings). Parts that do
/// not read fail closed: no level maps, no type is accepted.
fn read_profile(row: &PgHeapTuple<'_, AllocatedByPostgres>) -> Option<Profile> {
    let issuer = row.get_by_index::<String>(ATT1).ok()??;
    let audience = row.get_by_index::<String>(ATT2).ok().flatten();
    let levels = match row.get_by_index::<pgrx::JsonB>(ATT3) {
        Ok(Some(pgrx::JsonB(serde_json::Value::Object(m)))) => Some(
            m.into_iter()
                .filter_map(|(k, v)| Some((k, v.as_str()?.to_string())))
                .collect(),
        ),
        Ok(None) => None,
        // Not an object: nothing maps, every value is an unknown level.
        _ => Some(Vec::new()),
    };
    let level_claim = row
        .get_by_index::<String>(ATT4)
        .ok()
        .flatten()
        .and_then(|c| LevelClaim::parse(&c));
    let accepted_types = match row.get_by_index::<pgrx::Array<'_, String>>(ATT5) {
        Ok(Some(a)) => Some(a.iter().flatten().map(|t| normalize_typ(&t)).collect()),
        Ok(None) => None,
        Err(_) => Some(Vec::new()),
    };
    Some(Profile {
        issuer: Some(issuer),
        audience,
        // An unreadable level claim: an empty map, so no token has a level.
        levels: if level_claim.is_some() {
            levels
        } else {
            Some(Vec::new())
        },
        level_claim: level_claim.unwrap_or_default(),
        accepted_types,
    })
}
