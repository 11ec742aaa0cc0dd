//! JWK Set (RFC 7517) import: a public JWKS document, as an issuer serves
//! it at its `jwks_uri`, into verifying keys. Pure: the caller fetched the
//! document; here nothing is trusted but the key members themselves (x5c,
//! x5t and the like are ignored, neither trusted nor required).
//!
//! One entry comes out per element of `keys`, in order: a key that cannot
//! or must not be used is `Skipped` with a reason for the operator, never
//! an error for the whole document, so one odd key does not block the
//! issuer's rotation.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use super::sig::{Alg, KeyError, VerifyingKey};

/// Most keys accepted in one document. Real JWKS hold a handful; the
/// bound keeps a hostile or broken document cheap to refuse.
pub const MAX_JWKS_KEYS: usize = 100;

/// Longest base64url member looked at: an 8192-bit modulus is 1366
/// characters.
const MAX_MEMBER_LEN: usize = 2048;

/// Members that only a private (or symmetric) key has (RFC 7518 6.2.2,
/// 6.3.2, 6.4.1; RFC 8037 2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a whole document is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    NotAnObject,
    NoKeysArray,
    TooManyKeys(usize),
}

impl std::fmt::Display for JwksError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksError::NotAnObject => write!(
                f,
                "the JWKS is not a JSON object: pass the document served at the issuer's jwks_uri, {{\"keys\": [...]}}"
            ),
            JwksError::NoKeysArray => write!(
                f,
                "the JWKS has no \"keys\" array: pass the document served at the issuer's jwks_uri, {{\"keys\": [...]}}"
            ),
            JwksError::TooManyKeys(n) => write!(
                f,
                "the JWKS holds {n} keys; at most {MAX_JWKS_KEYS} are accepted in one document"
            ),
        }
    }
}

impl std::error::Error for JwksError {}

/// One element of `keys`.
#[derive(Debug, Clone)]
pub enum Jwk {
    Usable {
        kid: String,
        key: VerifyingKey,
    },
    Skipped {
        kid: Option<String>,
        /// The JWK's `alg`, else the one its type implies, when known.
        alg: Option<String>,
        /// Short, for an operator: why this key was not imported.
        reason: String,
    },
}

/// Reads a JWKS document: one entry per element of `keys`, in order.
pub fn read_jwks(doc: &Value) -> Result<Vec<Jwk>, JwksError> {
    let obj = doc.as_object().ok_or(JwksError::NotAnObject)?;
    let keys = obj
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(JwksError::NoKeysArray)?;
    if keys.len() > MAX_JWKS_KEYS {
        return Err(JwksError::TooManyKeys(keys.len()));
    }
    let mut kid_count: HashMap<&str, usize> = HashMap::new();
    for k in keys {
        if let Some(kid) = k.get("kid").and_then(Value::as_str) {
            *kid_count.entry(kid).or_default() += 1;
        }
    }
    Ok(keys.iter().map(|k| read_one(k, &kid_count)).collect())
}

fn skipped(kid: Option<&str>, alg: Option<String>, reason: impl Into<String>) -> Jwk {
    Jwk::Skipped {
        kid: kid.map(str::to_string),
        alg,
        reason: reason.into(),
    }
}

fn read_one(k: &Value, kid_count: &HashMap<&str, usize>) -> Jwk {
    let Some(m) = k.as_object() else {
        return skipped(None, None, "not a JSON object");
    };
    let kid = m
        .get("kid")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let jwk_alg = m.get("alg").and_then(Value::as_str);
    let implied = implied_alg(m);
    let shown_alg = jwk_alg
        .map(str::to_string)
        .or(implied.map(|a| a.name().to_string()));
    let skip = |reason: String| skipped(kid, shown_alg.clone(), reason);

    // Private material first: the operator must hear about it even when
    // the key would be skipped for another reason too.
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|p| m.contains_key(**p)) {
        let what = if *member == "k" {
            "a symmetric key"
        } else {
            "private key material"
        };
        return skip(format!(
            "holds {what} (\"{member}\"): publish only public keys"
        ));
    }
    if let Some(u) = m.get("use") {
        match u.as_str() {
            Some("sig") => {}
            Some("enc") => return skip("use \"enc\": an encryption key".into()),
            Some(other) => return skip(format!("use {}: not a signature key", quoted(other))),
            None => return skip("\"use\" is not a string".into()),
        }
    }
    if let Some(ops) = m.get("key_ops") {
        let Some(ops) = ops.as_array().filter(|a| a.iter().all(Value::is_string)) else {
            return skip("\"key_ops\" is not an array of strings".into());
        };
        if !ops.iter().any(|o| o.as_str() == Some("verify")) {
            return skip("key_ops without \"verify\": not for verifying signatures".into());
        }
    }
    let Some(kid_str) = kid else {
        return skip(match m.get("kid") {
            None => "no \"kid\": tokens could not select this key".into(),
            Some(_) => "\"kid\" is not a non-empty string".into(),
        });
    };
    if kid_count.get(kid_str).copied().unwrap_or(0) > 1 {
        return skip("kid appears more than once in the document".into());
    }
    if kid_str.len() > super::MAX_KID_BYTES {
        return skip(format!(
            "kid is {} bytes, more than the {} a key id may have",
            kid_str.len(),
            super::MAX_KID_BYTES
        ));
    }
    if m.get("alg").is_some_and(|a| !a.is_string()) {
        return skip("\"alg\" is not a string".into());
    }
    match build(m, jwk_alg) {
        Ok(key) => Jwk::Usable {
            kid: kid_str.to_string(),
            key,
        },
        Err(reason) => skip(reason),
    }
}

/// A string for a reason text: quoted, and cut short if long.
fn quoted(s: &str) -> String {
    let cut: String = s.chars().take(40).collect();
    if cut.len() < s.len() {
        format!("{:?}...", cut)
    } else {
        format!("{:?}", s)
    }
}

/// The algorithm a key's type implies when it names none.
fn implied_alg(m: &Map<String, Value>) -> Option<Alg> {
    let crv = m.get("crv").and_then(Value::as_str);
    match (m.get("kty").and_then(Value::as_str)?, crv) {
        ("RSA", _) => Some(Alg::RS256),
        ("EC", Some("P-256")) => Some(Alg::ES256),
        ("EC", Some("P-384")) => Some(Alg::ES384),
        ("OKP", Some("Ed25519")) => Some(Alg::EdDSA),
        _ => None,
    }
}

fn is_encryption_alg(a: &str) -> bool {
    a.starts_with("RSA-OAEP")
        || a == "RSA1_5"
        || a.starts_with("ECDH-ES")
        || a.starts_with("A128")
        || a.starts_with("A192")
        || a.starts_with("A256")
        || a.starts_with("PBES2")
        || a == "dir"
}

/// The key, or why not.
fn build(m: &Map<String, Value>, jwk_alg: Option<&str>) -> Result<VerifyingKey, String> {
    let kty = match m.get("kty") {
        None => return Err("no \"kty\"".into()),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err("\"kty\" is not a string".into()),
    };
    let crv = || match m.get("crv") {
        None => Err(format!("kty {kty} without \"crv\"")),
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(_) => Err("\"crv\" is not a string".into()),
    };
    // The algorithms this kind of key may carry, and the default.
    let (allowed, what): (&[Alg], &str) = match kty {
        "RSA" => (&[Alg::RS256, Alg::PS256], "RSA keys"),
        "EC" => match crv()? {
            "P-256" => (&[Alg::ES256], "P-256 keys"),
            "P-384" => (&[Alg::ES384], "P-384 keys"),
            other => {
                return Err(format!(
                    "EC crv {} is not supported (P-256 and P-384 are)",
                    quoted(other)
                ))
            }
        },
        "OKP" => match crv()? {
            "Ed25519" => (&[Alg::EdDSA], "Ed25519 keys"),
            c @ ("X25519" | "X448") => {
                return Err(format!("OKP crv {c} is for key agreement, not signatures"))
            }
            other => {
                return Err(format!(
                    "OKP crv {} is not supported (Ed25519 is)",
                    quoted(other)
                ))
            }
        },
        "oct" => {
            return Err(
                "kty \"oct\": symmetric keys are never imported from a published JWKS".into(),
            )
        }
        other => return Err(format!("unknown kty {}", quoted(other))),
    };
    let alg = match jwk_alg {
        None => allowed[0],
        Some(a) => match Alg::parse(a).filter(|p| allowed.contains(p)) {
            Some(p) => p,
            None if is_encryption_alg(a) => {
                return Err(format!(
                    "alg {} is an encryption algorithm, not a signature one",
                    quoted(a)
                ))
            }
            None => {
                let names: Vec<&str> = allowed.iter().map(|p| p.name()).collect();
                return Err(format!(
                    "alg {} is not supported for {what} (use {})",
                    quoted(a),
                    names.join(" or ")
                ));
            }
        },
    };
    let key = match alg {
        Alg::RS256 | Alg::PS256 => {
            let n = member(m, "n")?;
            let e = member(m, "e")?;
            VerifyingKey::rsa(alg, &n, &e)
        }
        Alg::ES256 | Alg::ES384 => {
            let (len, curve) = if alg == Alg::ES256 {
                (32, "P-256")
            } else {
                (48, "P-384")
            };
            let x = member(m, "x")?;
            let y = member(m, "y")?;
            for (name, v) in [("x", &x), ("y", &y)] {
                if v.len() != len {
                    return Err(format!(
                        "\"{name}\" is {} bytes; {curve} coordinates are {len}",
                        v.len()
                    ));
                }
            }
            VerifyingKey::ec_xy(alg, &x, &y)
        }
        Alg::EdDSA => {
            let x = member(m, "x")?;
            let raw: [u8; 32] = x
                .as_slice()
                .try_into()
                .map_err(|_| format!("\"x\" is {} bytes; an Ed25519 public key is 32", x.len()))?;
            VerifyingKey::ed25519(&raw)
        }
        Alg::HS256 => return Err("kty \"oct\": symmetric keys are never imported".into()),
    };
    key.map_err(|e| reason_for(&e))
}

/// A required base64url member, decoded.
fn member(m: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    match m.get(name) {
        None => Err(format!("no \"{name}\"")),
        Some(Value::String(s)) if s.len() > MAX_MEMBER_LEN => {
            Err(format!("\"{name}\" is too long for a key member"))
        }
        Some(Value::String(s)) => URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| format!("\"{name}\" is not base64url without padding")),
        Some(_) => Err(format!("\"{name}\" is not a string")),
    }
}

fn reason_for(e: &KeyError) -> String {
    match e {
        KeyError::RsaTooSmall(bits) => {
            format!("RSA modulus is {bits} bits: at least 2048 are required")
        }
        KeyError::RsaTooLarge(bits) => {
            format!("RSA modulus is {bits} bits: at most 8192 are supported")
        }
        KeyError::RsaModulusEven => "RSA modulus \"n\" is even: not an RSA key".into(),
        KeyError::RsaExponent => {
            "RSA exponent \"e\" must be odd, at least 3 and at most 32 bits".into()
        }
        KeyError::EcNotOnCurve(alg) | KeyError::Rejected(alg)
            if matches!(alg, Alg::ES256 | Alg::ES384) =>
        {
            let curve = if *alg == Alg::ES256 { "P-256" } else { "P-384" };
            format!("the point (x, y) is not on the curve {curve}")
        }
        KeyError::EcPointLength { .. } => "\"x\" and \"y\" differ in length".into(),
        KeyError::Ed25519NotAPoint => "\"x\" is not a valid Ed25519 public key".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
