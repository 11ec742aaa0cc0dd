//! pg_stepup's pure core: what the extension and the `stepup` command-line
//! tool share. No pgrx anywhere in its dependency tree (scripts/test.sh
//! checks), so every rule here is tested with plain `#[test]`s.

pub mod audit;
pub mod digest;
pub mod requirement;
pub mod token;
