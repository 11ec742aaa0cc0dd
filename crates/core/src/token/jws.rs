//! The JWS compact envelope (RFC 7515 section 7.1): three base64url segments,
//! a JSON header and a payload. Nothing here trusts what it reads.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use super::{TokenError, MAX_TOKEN_LEN};

/// A split, decoded but not yet verified assertion.
#[derive(Debug)]
pub struct Envelope<'a> {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`: the bytes signed.
    pub signing_input: &'a [u8],
    pub signature: Vec<u8>,
    pub payload: Vec<u8>,
}

pub fn split(token: &str) -> Result<Envelope<'_>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLarge(token.len()));
    }
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        let n = token.split('.').count();
        return Err(malformed(format!(
            "expected 3 dot-separated segments, found {n}"
        )));
    };
    if h.is_empty() || p.is_empty() {
        return Err(malformed("empty header or payload segment".into()));
    }
    let header = object(&b64(h, "header")?, "header")?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => a.clone(),
        Some(_) => return Err(malformed("header \"alg\" is not a string".into())),
        None => return Err(malformed("header has no \"alg\"".into())),
    };
    if header.contains_key("crit") {
        return Err(TokenError::CriticalHeader);
    }
    let kid = match header.get("kid") {
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(malformed("header \"kid\" is not a string".into())),
        None => None,
    };
    let typ = match header.get("typ") {
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(malformed("header \"typ\" is not a string".into())),
        None => None,
    };
    Ok(Envelope {
        alg,
        kid,
        typ,
        signing_input: &token.as_bytes()[..h.len() + 1 + p.len()],
        signature: b64(s, "signature")?,
        payload: b64(p, "payload")?,
    })
}

/// Decodes the payload once the signature has been checked.
pub fn claims(payload: &[u8]) -> Result<Map<String, Value>, TokenError> {
    let map = object(payload, "payload")?;
    // PostgreSQL text and jsonb cannot hold U+0000; refuse it here rather
    // than fail later while returning the claims.
    if map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)) {
        return Err(malformed(
            "payload contains U+0000, which PostgreSQL cannot store".into(),
        ));
    }
    Ok(map)
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn b64(segment: &str, what: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| malformed(format!("{what} is not base64url without padding")))
}

fn object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, TokenError> {
    // serde_json refuses nesting deeper than 128 levels, so hostile depth
    // is an error here, not a stack overflow.
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(malformed(format!("{what} is not a JSON object"))),
        Err(_) => Err(malformed(format!("{what} is not valid JSON"))),
    }
}

fn malformed(why: String) -> TokenError {
    TokenError::Malformed(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn splits_a_well_formed_token() {
        let t = format!(
            "{}.{}.{}",
            enc(r#"{"alg":"HS256","kid":"k"}"#),
            enc("{}"),
            enc("sig")
        );
        let e = split(&t).unwrap();
        assert_eq!(e.alg, "HS256");
        assert_eq!(e.kid.as_deref(), Some("k"));
        assert_eq!(e.signature, b"sig");
        assert_eq!(e.signing_input, t.rsplit_once('.').unwrap().0.as_bytes());
    }

    #[test]
    fn refuses_bad_shapes() {
        let h = enc(r#"{"alg":"HS256"}"#);
        let cases = [
            String::new(),
            "a.b".into(),
            "a.b.c.d".into(),
            format!("{h}..sig"),
            format!("{h}.!!!.{}", enc("s")),
            format!("{}.{}.{}", enc("not json"), enc("{}"), enc("s")),
            format!("{}.{}.{}", enc("[1]"), enc("{}"), enc("s")),
            format!("{}.{}.{}", enc(r#"{"alg":5}"#), enc("{}"), enc("s")),
            format!("{}.{}.{}", enc(r#"{"kid":"x"}"#), enc("{}"), enc("s")),
            format!("{h}.{}.{}=", enc("{}"), enc("s")),
            format!(
                "{}.{}.{}",
                enc(r#"{"alg":"HS256","kid":7}"#),
                enc("{}"),
                enc("s")
            ),
        ];
        for c in cases {
            assert!(matches!(split(&c), Err(TokenError::Malformed(_))), "{c:?}");
        }
    }

    #[test]
    fn refuses_huge_input_before_decoding() {
        let t = "a".repeat(MAX_TOKEN_LEN + 1);
        assert!(matches!(split(&t), Err(TokenError::TooLarge(_))));
    }

    #[test]
    fn refuses_crit() {
        let t = format!(
            "{}.{}.{}",
            enc(r#"{"alg":"HS256","crit":["b64"]}"#),
            enc("{}"),
            enc("s")
        );
        assert_eq!(split(&t).unwrap_err(), TokenError::CriticalHeader);
    }

    #[test]
    fn nul_anywhere_in_the_payload_is_refused() {
        for p in [
            r#"{"sub":"a\u0000b"}"#,
            r#"{"x":[{"y":"\u0000"}]}"#,
            r#"{"a\u0000":1}"#,
        ] {
            assert!(
                matches!(claims(p.as_bytes()), Err(TokenError::Malformed(_))),
                "{p}"
            );
        }
        assert!(claims(br#"{"sub":"a\u0001b"}"#).is_ok());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert!(claims(deep.as_bytes()).is_err());
        let deep_obj = format!("{{\"a\":{}1{}}}", "[".repeat(2000), "]".repeat(2000));
        assert!(claims(deep_obj.as_bytes()).is_err());
    }
}
