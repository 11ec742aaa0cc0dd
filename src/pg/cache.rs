//! Backend-local caches: maps keyed by OID or name, and the invalidation
//! callbacks that tell a cache its entries changed.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use pgrx::pg_sys;

/// A map keyed by OID, hashed by one multiplication: looked up several
/// times per audited row, where SipHash is more hashing than OIDs need.
/// (Keys are OIDs of the database's own objects, not attacker-chosen.)
pub type OidMap<V> = HashMap<pg_sys::Oid, V, BuildHasherDefault<OidHasher>>;

/// Keys and levels by name, hashed as [`OidMap`]: looked up at every
/// presentation, where SipHash is more than they need. A lookup's name
/// comes from an assertion, but the map holds only what an administrator
/// registered: no one else can fill it with colliding names.
pub type NameMap<V> = HashMap<String, V, BuildHasherDefault<OidHasher>>;

#[derive(Default)]
pub struct OidHasher(u64);

impl Hasher for OidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u32(u32::from(*b) ^ (self.0 as u32).rotate_left(8));
        }
    }

    fn write_u32(&mut self, i: u32) {
        // Fibonacci hashing: the high bits, which the table uses, mix all of i.
        self.0 = (u64::from(i) ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Calls `callback` with a relation's OID whenever its relcache entry is
/// invalidated (InvalidOid: every relation's).
pub fn on_relcache_change(callback: unsafe extern "C-unwind" fn(pg_sys::Datum, pg_sys::Oid)) {
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(callback), pg_sys::Datum::from(0)) }
}

/// Calls `callback` whenever an entry of system cache `cache` changes (in
/// this backend or, once it reads invalidations, in any other).
pub fn on_syscache_change(
    cache: pg_sys::SysCacheIdentifier::Type,
    callback: unsafe extern "C-unwind" fn(pg_sys::Datum, std::ffi::c_int, u32),
) {
    let id = std::ffi::c_int::try_from(cache).unwrap_or(-1);
    unsafe { pg_sys::CacheRegisterSyscacheCallback(id, Some(callback), pg_sys::Datum::from(0)) }
}
