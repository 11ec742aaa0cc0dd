//! The audit's pure parts (docs/audit-encoding.md): the byte-exact
//! encodings, the chain walk with its verdicts, and the export format that
//! `stepup verify` reads. The extension hashes and walks with these same
//! functions.

pub mod chain;
pub mod encoding;
pub mod export;
