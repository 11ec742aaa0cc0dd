//! Why an assertion was refused. Every variant maps to SQLSTATE SU002 at the
//! SQL boundary; the text never carries key material or the token itself.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// NULL was presented.
    Missing,
    /// Longer than [`super::MAX_TOKEN_LEN`]; refused before any decoding.
    TooLarge(usize),
    /// Not three dot-separated segments, bad base64url, not a JSON object...
    Malformed(String),
    /// `alg` other than the ones we implement (including `none`).
    UnsupportedAlg(String),
    /// The header names a `crit` extension we do not understand (RFC 7515 4.1.11).
    CriticalHeader,
    MissingKid,
    UnknownKid(String),
    KeyNotYetValid(String),
    KeyRetired(String),
    /// The header's alg differs from the alg the key was registered with.
    AlgMismatch {
        kid: String,
        header: String,
        key: String,
    },
    BadSignature,
    MissingClaim(&'static str),
    InvalidClaim(&'static str, &'static str),
    Expired,
    NotYetValid,
    IssuedInFuture,
    AuthTimeInFuture,
    AuthTimeAfterIssue,
    LifetimeTooLong {
        lifetime: i64,
        max: i64,
    },
    /// `aud` lacks the audience expected: `stepup.audience`, or (Some) the
    /// one the named issuer's profile sets.
    WrongAudience(Option<String>),
    WrongIssuer,
    /// The issuer's profile pins header types and this `typ` is not one.
    WrongType(Option<String>),
    UnknownLevel(String),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TokenError::*;
        match self {
            Missing => write!(f, "assertion is NULL"),
            TooLarge(n) => write!(
                f,
                "assertion is {n} bytes, more than the {} allowed",
                super::MAX_TOKEN_LEN
            ),
            Malformed(why) => write!(f, "malformed assertion: {why}"),
            UnsupportedAlg(a) => write!(f, "unsupported alg \"{}\"", clip(a)),
            CriticalHeader => write!(f, "header has a \"crit\" parameter, which is not supported"),
            MissingKid => write!(f, "header has no \"kid\""),
            UnknownKid(k) => write!(f, "unknown kid \"{}\"", clip(k)),
            KeyNotYetValid(k) => write!(f, "key \"{}\" is not valid yet", clip(k)),
            KeyRetired(k) => write!(f, "key \"{}\" is retired", clip(k)),
            AlgMismatch { kid, header, key } => write!(
                f,
                "alg \"{}\" does not match key \"{}\", registered for {key}",
                clip(header),
                clip(kid)
            ),
            BadSignature => write!(f, "signature does not verify"),
            MissingClaim(c) => write!(f, "required claim \"{c}\" is missing"),
            InvalidClaim(c, why) => write!(f, "claim \"{c}\" {why}"),
            Expired => write!(f, "assertion has expired (exp)"),
            NotYetValid => write!(f, "assertion is not valid yet (nbf)"),
            IssuedInFuture => write!(f, "assertion is issued in the future (iat)"),
            AuthTimeInFuture => write!(f, "auth_time is in the future"),
            AuthTimeAfterIssue => write!(f, "auth_time is later than iat"),
            LifetimeTooLong { lifetime, max } => write!(
                f,
                "lifetime exp - iat = {lifetime} s exceeds stepup.max_lifetime = {max} s"
            ),
            WrongAudience(None) => write!(f, "aud does not match stepup.audience"),
            WrongAudience(Some(iss)) => write!(
                f,
                "aud does not match the audience stepup.define_issuer set for \"{}\"",
                clip(iss)
            ),
            WrongType(None) => write!(
                f,
                "header has no \"typ\", and the issuer's profile accepts only some types"
            ),
            WrongType(Some(t)) => write!(
                f,
                "header typ \"{}\" is not one the issuer's profile accepts (stepup.issuers)",
                clip(t)
            ),
            WrongIssuer => write!(f, "iss does not match the key's issuer"),
            UnknownLevel(l) => write!(f, "acr \"{}\" is not a level in stepup.levels", clip(l)),
        }
    }
}

impl std::error::Error for TokenError {}

/// Names echoed from an untrusted token are cut short so a DETAIL stays one
/// readable line however large the input.
fn clip(s: &str) -> String {
    const MAX: usize = 64;
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if clean.chars().count() <= MAX {
        clean
    } else {
        let mut out: String = clean.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_names_are_clipped_and_cleaned() {
        let e = TokenError::UnknownKid(format!("a\nb{}", "x".repeat(500)));
        let s = e.to_string();
        assert!(!s.contains('\n'));
        assert!(s.len() < 120, "{s}");
    }
}
