//! Claim rules of DESIGN section 2, applied to a payload whose signature has
//! already been verified. Missing or mistyped required claims fail closed.

use std::rc::Rc;

use serde_json::{Map, Value};

use super::profile::{LevelClaim, Profile};
use super::TokenError;

/// What the database expects of every assertion, read from settings.
#[derive(Debug, Clone)]
pub struct Rules<'a> {
    /// `stepup.audience`, or the database name.
    pub audience: &'a str,
    /// `stepup.leeway`, seconds of clock skew forgiven.
    pub leeway: i64,
    /// `stepup.max_lifetime`, the longest `exp - iat` accepted, seconds.
    pub max_lifetime: i64,
    /// Wall clock, microseconds since the Unix epoch.
    pub now_us: i64,
}

impl Rules<'_> {
    pub fn now_s(&self) -> i64 {
        self.now_us.div_euclid(1_000_000)
    }
}

/// The verified claims the rest of the extension relies on.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub kid: String,
    pub sub: String,
    /// The `stepup.levels` name the token's level means (through the
    /// issuer's profile), or the raw value when it means none, which
    /// [`judge`] refuses.
    pub acr: String,
    /// Method names, whether `amr` held strings or `{method, timestamp}`.
    pub amr: Vec<String>,
    pub jti: Option<String>,
    /// What a one-time policy spends: the `jti`, else the lowercase hex
    /// SHA-256 of the signed bytes, `BASE64URL(header) '.' BASE64URL(payload)`
    /// (ID tokens rarely carry a jti). Not of the whole assertion: an ECDSA
    /// signature can be changed into another valid one, (r, n - s), by anyone,
    /// and the same signed claims must not count as a new assertion.
    pub replay_id: String,
    pub iss: Option<String>,
    pub iat: i64,
    pub exp: i64,
    pub nbf: Option<i64>,
    /// When the user authenticated: `auth_time`, else (for an issuer with
    /// a profile) the newest timestamp in `amr`. None satisfies no max_age.
    pub auth_time: Option<i64>,
    /// Change digests the user confirmed (section 5), lowercase hex.
    pub chg: Vec<String>,
    /// The whole payload, returned by `stepup.present` and `stepup.current`.
    pub raw: Rc<Map<String, Value>>,
}

/// The rules that hold for a payload once and for all: each claim present
/// (if required) and well-typed, `chg` digests well-formed, the level read
/// as `profile` says. [`judge`] checks the rest, except the key's issuer
/// (see [`super::verify`]). `signed` is the JWS signing input (the replay
/// id's source when there is no jti); `rank_of` ranks a level name.
pub fn parse(
    raw: Rc<Map<String, Value>>,
    kid: &str,
    signed: &[u8],
    profile: &Profile,
    rank_of: impl Fn(&str) -> Option<i32>,
) -> Result<Claims, TokenError> {
    let sub = nonempty_string(&raw, "sub")?;
    // Typed here; matched against the audience at each presentation.
    let _ = audiences(&raw)?;
    let iat = numeric_date(&raw, "iat")?.ok_or(TokenError::MissingClaim("iat"))?;
    let exp = numeric_date(&raw, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    let (amr, amr_newest) = methods(&raw)?;
    let auth_time = match numeric_date(&raw, "auth_time")? {
        Some(t) => Some(t),
        None if profile.defined() => amr_newest,
        None => return Err(TokenError::MissingClaim("auth_time")),
    };
    let nbf = numeric_date(&raw, "nbf")?;
    let acr = level(&raw, profile, rank_of)?;
    let jti = match raw.get("jti") {
        None | Some(Value::Null) => None,
        Some(_) => Some(nonempty_string(&raw, "jti")?),
    };
    let replay_id = match &jti {
        Some(j) => j.clone(),
        None => hex_sha256(signed),
    };
    let chg = string_list(&raw, "chg", true)?;
    if chg.iter().any(|d| !is_sha256_hex(d)) {
        return Err(TokenError::InvalidClaim(
            "chg",
            "holds a value that is not 64 lowercase hex digits",
        ));
    }
    let iss = match raw.get("iss") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(TokenError::InvalidClaim("iss", "is not a string")),
    };
    Ok(Claims {
        kid: kid.to_string(),
        sub,
        acr,
        amr,
        jti,
        replay_id,
        iss,
        iat,
        exp,
        nbf,
        auth_time,
        chg,
        raw,
    })
}

/// The rules that depend on settings and the clock, judged at every
/// presentation of parsed claims: audience (the profile's, else
/// `stepup.audience`), lifetime, validity window.
pub fn judge(c: &Claims, profile: &Profile, rules: &Rules) -> Result<(), TokenError> {
    let audience = profile.audience.as_deref().unwrap_or(rules.audience);
    if !audiences(&c.raw)?.any(|a| a == audience) {
        return Err(TokenError::WrongAudience(
            profile.audience.as_ref().and(profile.issuer.clone()),
        ));
    }
    let (iat, exp) = (c.iat, c.exp);
    let now = rules.now_s();
    let leeway = rules.leeway;
    if exp <= iat {
        return Err(TokenError::InvalidClaim("exp", "is not later than iat"));
    }
    if exp.saturating_sub(iat) > rules.max_lifetime {
        return Err(TokenError::LifetimeTooLong {
            lifetime: exp.saturating_sub(iat),
            max: rules.max_lifetime,
        });
    }
    if now >= exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if c.nbf.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
        return Err(TokenError::NotYetValid);
    }
    if iat > now.saturating_add(leeway) {
        return Err(TokenError::IssuedInFuture);
    }
    if let Some(auth_time) = c.auth_time {
        if auth_time > now.saturating_add(leeway) {
            return Err(TokenError::AuthTimeInFuture);
        }
        if auth_time > iat.saturating_add(leeway) {
            return Err(TokenError::AuthTimeAfterIssue);
        }
    }
    Ok(())
}

/// The level claim `profile` names, mapped to a `stepup.levels` name. Of
/// an `acrs` array the best-ranked member that names a level counts; when
/// no value names one, the (first) raw value is an unknown level.
fn level(
    raw: &Map<String, Value>,
    profile: &Profile,
    rank_of: impl Fn(&str) -> Option<i32>,
) -> Result<String, TokenError> {
    let claim = profile.level_claim;
    let values: Vec<&str> = match claim {
        LevelClaim::Acr | LevelClaim::Aal => {
            let name = claim.name();
            match raw.get(name) {
                None | Some(Value::Null) => return Err(TokenError::MissingClaim(name)),
                Some(Value::String(s)) if s.is_empty() => {
                    return Err(TokenError::InvalidClaim(name, "is empty"))
                }
                Some(Value::String(s)) => vec![s.as_str()],
                Some(_) => return Err(TokenError::InvalidClaim(name, "is not a string")),
            }
        }
        LevelClaim::Acrs => match raw.get("acrs") {
            None | Some(Value::Null) => return Err(TokenError::MissingClaim("acrs")),
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .filter(|s| !s.is_empty())
                        .ok_or(TokenError::InvalidClaim(
                            "acrs",
                            "holds a value that is not a non-empty string",
                        ))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(TokenError::InvalidClaim(
                    "acrs",
                    "is not a non-empty array of strings",
                ))
            }
        },
    };
    let best = values
        .iter()
        .filter_map(|v| profile.level_of(v))
        .filter_map(|name| rank_of(name).map(|rank| (rank, name)))
        .max_by_key(|(rank, _)| *rank);
    match best {
        Some((_, name)) => Ok(name.to_string()),
        None => Err(TokenError::UnknownLevel(values[0].to_string())),
    }
}

/// `amr`: method names as strings (RFC 8176), or `{"method": ...,
/// "timestamp": ...}` objects (Supabase); with the newest timestamp.
fn methods(raw: &Map<String, Value>) -> Result<(Vec<String>, Option<i64>), TokenError> {
    const BAD: TokenError = TokenError::InvalidClaim(
        "amr",
        "holds a value that is neither a method name nor a {\"method\", \"timestamp\"} object",
    );
    let items = match raw.get("amr") {
        None => return Ok((Vec::new(), None)),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(TokenError::InvalidClaim("amr", "is not an array")),
    };
    let mut names = Vec::with_capacity(items.len());
    let mut newest: Option<i64> = None;
    for item in items {
        match item {
            Value::String(s) => names.push(s.clone()),
            Value::Object(o) => {
                let Some(Value::String(m)) = o.get("method") else {
                    return Err(BAD);
                };
                names.push(m.clone());
                if let Some(t) = numeric_date(o, "timestamp").map_err(|_| BAD)? {
                    newest = newest.max(Some(t));
                }
            }
            _ => return Err(BAD),
        }
    }
    Ok((names, newest))
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// The `aud` claim's audiences: one string, or (RFC 7519 4.1.3) an array
/// of strings naming several, of which ours must be one.
fn audiences(raw: &Map<String, Value>) -> Result<impl Iterator<Item = &str>, TokenError> {
    let list: &[Value] = match raw.get("aud") {
        None => return Err(TokenError::MissingClaim("aud")),
        Some(one @ Value::String(_)) => std::slice::from_ref(one),
        Some(Value::Array(list)) if list.iter().all(Value::is_string) => list,
        Some(_) => {
            return Err(TokenError::InvalidClaim(
                "aud",
                "is not a string or array of strings",
            ))
        }
    };
    Ok(list.iter().filter_map(Value::as_str))
}

fn nonempty_string(raw: &Map<String, Value>, name: &'static str) -> Result<String, TokenError> {
    match raw.get(name) {
        None | Some(Value::Null) => Err(TokenError::MissingClaim(name)),
        Some(Value::String(s)) if s.is_empty() => Err(TokenError::InvalidClaim(name, "is empty")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(TokenError::InvalidClaim(name, "is not a string")),
    }
}

/// RFC 7519 NumericDate: seconds since the epoch, fractions allowed and
/// truncated toward the past. Absurd values are refused, not wrapped.
fn numeric_date(raw: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, TokenError> {
    // Year 9999; beyond that timestamps mean nothing to Postgres either.
    const MAX: f64 = 253_402_300_799.0;
    match raw.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                if (0..=MAX as i64).contains(&i) {
                    return Ok(Some(i));
                }
            } else if let Some(f) = n.as_f64() {
                if f.is_finite() && (0.0..=MAX).contains(&f) {
                    return Ok(Some(f.floor() as i64));
                }
            }
            Err(TokenError::InvalidClaim(name, "is out of range"))
        }
        Some(_) => Err(TokenError::InvalidClaim(name, "is not a NumericDate")),
    }
}

fn string_list(
    raw: &Map<String, Value>,
    name: &'static str,
    single_allowed: bool,
) -> Result<Vec<String>, TokenError> {
    match raw.get(name) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) if single_allowed => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(TokenError::InvalidClaim(
                    name,
                    "holds a value that is not a string",
                )),
            })
            .collect(),
        Some(_) => Err(TokenError::InvalidClaim(name, "is not an array of strings")),
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
