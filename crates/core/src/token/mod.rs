//! Pure verification of step-up assertions: no pgrx types, plain `#[test]`s.
//!
//! Order matters: the envelope is split, the key is chosen by `kid` and must
//! be registered for the header's `alg`, the signature is checked, and only
//! then is the payload decoded and its claims judged.

mod claims;
mod der;
mod error;
mod jwk;
mod jws;
mod profile;
mod sig;

pub use claims::{Claims, Rules};
pub use der::DerError;
pub use error::TokenError;
pub use jwk::{read_jwks, Jwk, JwksError, MAX_JWKS_KEYS};
pub use profile::{normalize_typ, LevelClaim, Profile};
pub use sig::{Alg, KeyError, VerifyingKey};

use std::rc::Rc;
use std::sync::Arc;

/// Longest key id a key may be registered under, in bytes (add_key and
/// add_jwks alike).
pub const MAX_KID_BYTES: usize = 256;

/// Longest assertion accepted, in bytes. Real ones are under 1 KiB; the
/// bound keeps hostile input cheap to refuse.
pub const MAX_TOKEN_LEN: usize = 8192;

/// A key as registered with `stepup.add_key`, validity in microseconds
/// since the Unix epoch.
#[derive(Debug, Clone)]
pub struct RegisteredKey {
    pub kid: String,
    pub key: VerifyingKey,
    pub issuer: Option<String>,
    pub not_before_us: i64,
    pub not_after_us: Option<i64>,
    /// The profile of the key's issuer (section 3); the default when the
    /// key has no issuer or its issuer no profile.
    pub profile: Arc<Profile>,
}

/// Verifies `token` and returns its claims. `lookup` finds a key by kid;
/// `rank_of` ranks a level name (None: not a defined level).
pub fn verify<'k>(
    token: &str,
    lookup: impl Fn(&str) -> Option<&'k RegisteredKey>,
    rank_of: impl Fn(&str) -> Option<i32> + Copy,
    rules: &Rules,
) -> Result<Claims, TokenError> {
    let (key, authentic) = authenticate(token, lookup, rank_of, rules.now_us)?;
    judge(&authentic, key, rank_of, rules).map(Rc::unwrap_or_clone)
}

/// An assertion whose signature checked out: the kid it was verified
/// under and its parsed claims, not yet judged.
#[derive(Debug, Clone)]
pub struct Authentic {
    pub kid: String,
    /// Shared with every presentation judged from it: presenting the same
    /// assertion again copies and parses nothing.
    claims: Rc<Claims>,
}

/// The envelope, the key chosen by kid, the signature, the header type
/// and the claims' types: what holds for these bytes as long as the same
/// key, profile and levels are registered.
pub fn authenticate<'k>(
    token: &str,
    lookup: impl Fn(&str) -> Option<&'k RegisteredKey>,
    rank_of: impl Fn(&str) -> Option<i32>,
    now_us: i64,
) -> Result<(&'k RegisteredKey, Authentic), TokenError> {
    let env = jws::split(token)?;
    let Some(header_alg) = Alg::parse(&env.alg) else {
        return Err(TokenError::UnsupportedAlg(env.alg));
    };
    let kid = env.kid.ok_or(TokenError::MissingKid)?;
    let key = lookup(&kid).ok_or_else(|| TokenError::UnknownKid(kid.clone()))?;
    // Before the signature: a retired key's tokens are refused as such.
    in_validity(key, &kid, now_us)?;
    if key.key.alg() != header_alg {
        return Err(TokenError::AlgMismatch {
            kid,
            header: env.alg,
            key: key.key.alg().name().to_string(),
        });
    }
    key.key.verify(env.signing_input, &env.signature)?;
    if !key.profile.accepts_type(env.typ.as_deref()) {
        return Err(TokenError::WrongType(env.typ));
    }
    let payload = jws::claims(&env.payload)?;
    let claims = claims::parse(
        Rc::new(payload),
        &kid,
        env.signing_input,
        &key.profile,
        rank_of,
    )?;
    let claims = Rc::new(claims);
    Ok((key, Authentic { kid, claims }))
}

/// Everything that depends on the clock and on settings, judged at every
/// presentation: `key` (the one registered under the kid) still valid,
/// the claim rules, the key's issuer, a known level.
pub fn judge(
    a: &Authentic,
    key: &RegisteredKey,
    rank_of: impl Fn(&str) -> Option<i32>,
    rules: &Rules,
) -> Result<Rc<Claims>, TokenError> {
    in_validity(key, &a.kid, rules.now_us)?;
    let claims = &a.claims;
    claims::judge(claims, &key.profile, rules)?;
    if let Some(expected) = &key.issuer {
        if claims.iss.as_ref() != Some(expected) {
            return Err(TokenError::WrongIssuer);
        }
    }
    if rank_of(&claims.acr).is_none() {
        return Err(TokenError::UnknownLevel(claims.acr.clone()));
    }
    Ok(Rc::clone(claims))
}

fn in_validity(key: &RegisteredKey, kid: &str, now_us: i64) -> Result<(), TokenError> {
    if now_us < key.not_before_us {
        return Err(TokenError::KeyNotYetValid(kid.into()));
    }
    if key.not_after_us.is_some_and(|end| now_us >= end) {
        return Err(TokenError::KeyRetired(kid.into()));
    }
    Ok(())
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
