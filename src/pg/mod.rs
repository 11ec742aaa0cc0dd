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

/// Declares Postgres functions to call without pgrx's guard (each caller
/// says why), and checks at compile time that each declaration has the
/// signature of pgrx's binding of the same function, which pgrx generates
/// from the headers of the PostgreSQL version being built: a declaration
/// that is wrong for a version does not build for it. Functions pgrx does
/// not bind are declared plainly and listed in scripts/declarations.sh,
/// which checks them against each version's headers.
macro_rules! unguarded {
    ($( $(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?; )*) => {
        unsafe extern "C-unwind" {
            $( $(#[$meta])* $vis fn $name($($arg: $ty),*) $(-> $ret)?; )*
        }
        $( $(#[$meta])* const _: () = {
            let _: unsafe fn($($ty),*) $(-> $ret)? = pgrx::pg_sys::$name;
        }; )*
    };
}
pub(crate) use unguarded;
