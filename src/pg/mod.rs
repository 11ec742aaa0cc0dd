//! The thin glue to Postgres: raw calls, the byte layouts Postgres defines
//! (each beside the #[pg_test] that compares it with Postgres' own
//! functions, in tests.rs), caches and their invalidation, settings, and
//! raising SQLSTATEs. Nothing here knows about assertions, policies or the
//! audit; everything above calls down into it.

pub mod args;
pub mod array_disk;
pub mod cache;
pub mod heap;
pub mod jsonb;
pub mod jsonb_disk;
pub mod names;
pub mod pgtext;
pub mod raise;
pub mod raw;
pub mod reject;
pub mod settings;
pub mod time;
pub mod utility;
pub mod varlena;
