//! pg_stepup: refuse changes to sensitive rows unless the transaction holds
//! a fresh, signed step-up assertion. This file is wiring only.

use pgrx::prelude::*;

// From the top floor down: each module uses only those below it.
mod assertion;
mod audit;
mod catalog;
mod pg;
mod protect;
mod rows;

#[cfg(any(test, feature = "pg_test"))]
mod tests;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/bootstrap.sql", bootstrap);
extension_sql_file!(
    "../sql/protect.sql",
    name = "protect",
    requires = [
        "bootstrap",
        catalog_changed,
        guard,
        guard_ddl_start,
        guard_ddl,
        guard_drop,
        guard_rewrite,
        in_row_filter,
        filter_columns
    ]
);
extension_sql_file!(
    "../sql/audit.sql",
    name = "audit",
    requires = ["bootstrap", append_only, entry_hash, link_hash]
);
extension_sql_file!("../sql/finalize.sql", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    pg::settings::define();
    assertion::held::register_callbacks();
    protect::ddl::register_callbacks();
    catalog::register_invalidation();
    rows::register_invalidation();
    audit::register_invalidation();
    // DISCARD ALL drops a session-scoped assertion, as the contract promises.
    pg::utility::on_discard_all(assertion::held::discard_all);
    audit::register_sealer();
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
