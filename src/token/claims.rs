//! Claim rules of DESIGN section 2, applied to a payload whose signature has
//! already been verified. Missing or mistyped required claims fail closed.

use std::rc::Rc;

use serde_json::{Map, Value};

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
    pub acr: String,
    pub amr: Vec<String>,
    pub jti: String,
    pub iss: Option<String>,
    pub iat: i64,
    pub exp: i64,
    pub nbf: Option<i64>,
    pub auth_time: i64,
    /// Change digests the user confirmed (section 5), lowercase hex.
    pub chg: Vec<String>,
    /// The whole payload, returned by `stepup.present` and `stepup.current`.
    pub raw: Rc<Map<String, Value>>,
}

/// The rules that hold for a payload once and for all: each claim present
/// (if required) and well-typed, `chg` digests well-formed. [`judge`]
/// checks the rest, except the key's issuer (see [`super::verify`]).
pub fn parse(raw: Rc<Map<String, Value>>, kid: &str) -> Result<Claims, TokenError> {
    let sub = nonempty_string(&raw, "sub")?;
    // Typed here; matched against stepup.audience at each presentation.
    let _ = audiences(&raw)?;
    let iat = numeric_date(&raw, "iat")?.ok_or(TokenError::MissingClaim("iat"))?;
    let exp = numeric_date(&raw, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    let auth_time =
        numeric_date(&raw, "auth_time")?.ok_or(TokenError::MissingClaim("auth_time"))?;
    let nbf = numeric_date(&raw, "nbf")?;
    let acr = nonempty_string(&raw, "acr")?;
    let jti = nonempty_string(&raw, "jti")?;
    let amr = string_list(&raw, "amr", false)?;
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
/// presentation of parsed claims: audience, lifetime, validity window.
pub fn judge(c: &Claims, rules: &Rules) -> Result<(), TokenError> {
    if !audiences(&c.raw)?.any(|a| a == rules.audience) {
        return Err(TokenError::WrongAudience);
    }
    let (iat, exp, auth_time) = (c.iat, c.exp, c.auth_time);
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
    if auth_time > now.saturating_add(leeway) {
        return Err(TokenError::AuthTimeInFuture);
    }
    if auth_time > iat.saturating_add(leeway) {
        return Err(TokenError::AuthTimeAfterIssue);
    }
    Ok(())
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
