//! Relations' schema-qualified names, as entries and digests record them.

use std::ffi::CStr;

use pgrx::pg_sys;

/// `"<schema>.<name>"` of a relation, unquoted, as the digest names it.
pub fn qualified_name(relid: pg_sys::Oid) -> Option<String> {
    unsafe {
        let name = pg_sys::get_rel_name(relid);
        if name.is_null() {
            return None;
        }
        in_schema(pg_sys::get_rel_namespace(relid), CStr::from_ptr(name))
    }
}

/// [`qualified_name`] of an open relation (one catalog lookup, not three).
pub fn relation_name(rel: pg_sys::Relation) -> Option<String> {
    unsafe {
        let form = &*(*rel).rd_rel;
        in_schema(
            form.relnamespace,
            CStr::from_ptr(form.relname.data.as_ptr()),
        )
    }
}

fn in_schema(nsp: pg_sys::Oid, name: &CStr) -> Option<String> {
    let nsp = unsafe { pg_sys::get_namespace_name(nsp) };
    if nsp.is_null() {
        return None;
    }
    let nsp = unsafe { CStr::from_ptr(nsp) };
    Some(format!(
        "{}.{}",
        nsp.to_string_lossy(),
        name.to_string_lossy()
    ))
}
