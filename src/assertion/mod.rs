//! The step-up assertion: presented and verified once (present), held for
//! the transaction or session (held), checked against a requirement
//! (require), spent once where a policy says so (replay); and the keys
//! that verify it (keys, jwks).

pub mod held;
pub mod jwks;
pub mod keys;
pub mod present;
pub mod replay;
pub mod require;
