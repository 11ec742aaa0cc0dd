//! Pure checks of URLs and of the two documents: the OpenID discovery
//! document and the JWKS it points to.

use serde_json::Value;

use crate::error::Error;

/// OpenID Connect Discovery 1.0 section 4: the path appended to the issuer.
pub const WELL_KNOWN: &str = "/.well-known/openid-configuration";

/// Whether plain http is acceptable, and only to this machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    pub allow_http_loopback: bool,
}

/// The parts of an absolute http(s) URL the checks need.
#[derive(Debug, PartialEq, Eq)]
pub struct UrlParts<'a> {
    pub https: bool,
    /// As written, IPv6 literals with their brackets.
    pub host: &'a str,
    pub has_query_or_fragment: bool,
}

/// Splits `url` just enough to judge it; anything unusual is refused rather
/// than interpreted (no userinfo, no whitespace or control characters).
pub fn parse_url(url: &str) -> Result<UrlParts<'_>, String> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters".into());
    }
    let (https, rest) = if let Some(r) = strip_prefix_ci(url, "https://") {
        (true, r)
    } else if let Some(r) = strip_prefix_ci(url, "http://") {
        (false, r)
    } else {
        return Err("not an https URL".into());
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains('@') {
        return Err("user information in the URL is not accepted".into());
    }
    let host = if authority.starts_with('[') {
        match authority.find(']') {
            Some(i) => &authority[..=i],
            None => return Err("unterminated IPv6 address".into()),
        }
    } else {
        authority.split(':').next().unwrap_or("")
    };
    if host.is_empty() || host == "[]" {
        return Err("no host".into());
    }
    let port = &authority[host.len()..];
    if !port.is_empty() {
        let digits = port.strip_prefix(':').unwrap_or("x");
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 5 {
            return Err("bad port".into());
        }
    }
    Ok(UrlParts {
        https,
        host,
        has_query_or_fragment: rest[end..].contains(['?', '#']),
    })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// 127.0.0.1, ::1 and localhost: the only hosts plain http may reach.
pub fn is_loopback(host: &str) -> bool {
    host == "127.0.0.1" || host == "[::1]" || host.eq_ignore_ascii_case("localhost")
}

/// `url` may be fetched under `policy`; `what` names it in the message.
pub fn check_fetchable(url: &str, what: &str, policy: UrlPolicy) -> Result<(), String> {
    let parts = parse_url(url).map_err(|e| format!("{what} {url:?}: {e}"))?;
    if parts.https {
        return Ok(());
    }
    if !policy.allow_http_loopback {
        return Err(format!(
            "{what} {url:?} is plain http: only https is accepted \
             (--allow-http-loopback permits http to 127.0.0.1, ::1 or localhost, for local development)"
        ));
    }
    if !is_loopback(parts.host) {
        return Err(format!(
            "{what} {url:?} is plain http to {}: --allow-http-loopback permits only 127.0.0.1, ::1 and localhost",
            parts.host
        ));
    }
    Ok(())
}

/// The issuer as `--issuer` gives it: fetchable, and an OpenID issuer
/// identifier (no query, no fragment).
pub fn check_issuer(issuer: &str, policy: UrlPolicy) -> Result<(), Error> {
    check_fetchable(issuer, "issuer", policy).map_err(Error::Usage)?;
    let parts = parse_url(issuer).map_err(Error::Usage)?;
    if parts.has_query_or_fragment {
        return Err(Error::Usage(format!(
            "issuer {issuer:?}: an issuer identifier has no query or fragment"
        )));
    }
    Ok(())
}

/// `URL/.well-known/openid-configuration`, one trailing slash of URL removed
/// first (OpenID Connect Discovery 1.0 section 4.1).
pub fn discovery_url(issuer: &str) -> String {
    let base = issuer.strip_suffix('/').unwrap_or(issuer);
    format!("{base}{WELL_KNOWN}")
}

/// Parses a body as JSON, saying why not.
pub fn parse_json(url: &str, body: &[u8]) -> Result<Value, Error> {
    let text = std::str::from_utf8(body).map_err(|_| Error::Response {
        url: url.into(),
        reason: "not JSON: the body is not UTF-8".into(),
    })?;
    serde_json::from_str(text).map_err(|e| Error::Response {
        url: url.into(),
        reason: format!("not JSON: {e}"),
    })
}

/// Checks the discovery document and returns its `jwks_uri`.
/// Its `issuer` must equal `issuer` exactly (section 4.3): a document
/// served for one issuer must not install keys under another's name.
pub fn jwks_uri(url: &str, doc: &Value, issuer: &str, policy: UrlPolicy) -> Result<String, Error> {
    let bad = |reason: String| Error::Response {
        url: url.into(),
        reason,
    };
    let obj = doc
        .as_object()
        .ok_or_else(|| bad("the discovery document is not a JSON object".into()))?;
    match obj.get("issuer") {
        Some(Value::String(found)) if found == issuer => {}
        Some(Value::String(found)) => {
            return Err(Error::IssuerMismatch {
                expected: issuer.into(),
                found: found.clone(),
            })
        }
        Some(_) => {
            return Err(bad(
                "the discovery document's \"issuer\" is not a string".into()
            ))
        }
        None => return Err(bad("the discovery document has no \"issuer\"".into())),
    }
    let uri = match obj.get("jwks_uri") {
        Some(Value::String(u)) => u.clone(),
        Some(_) => {
            return Err(bad(
                "the discovery document's \"jwks_uri\" is not a string".into()
            ))
        }
        None => return Err(bad("the discovery document has no \"jwks_uri\"".into())),
    };
    check_fetchable(&uri, "jwks_uri", policy).map_err(bad)?;
    Ok(uri)
}

/// The JWKS has the shape RFC 7517 section 5 gives it (an object with a
/// "keys" array); its keys are the database's to judge. Returns their number.
pub fn check_jwks(url: &str, doc: &Value) -> Result<usize, Error> {
    match doc.get("keys") {
        Some(Value::Array(keys)) if doc.is_object() => Ok(keys.len()),
        _ => Err(Error::Response {
            url: url.into(),
            reason: "not a JWKS: expected a JSON object with a \"keys\" array".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const STRICT: UrlPolicy = UrlPolicy {
        allow_http_loopback: false,
    };
    const LOOP: UrlPolicy = UrlPolicy {
        allow_http_loopback: true,
    };

    #[test]
    fn joins_discovery_url() {
        assert_eq!(
            discovery_url("https://idp.example"),
            "https://idp.example/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://idp.example/"),
            "https://idp.example/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://idp.example/realms/r/"),
            "https://idp.example/realms/r/.well-known/openid-configuration"
        );
        // One slash only.
        assert_eq!(
            discovery_url("https://idp.example/t//"),
            "https://idp.example/t//.well-known/openid-configuration"
        );
    }

    #[test]
    fn parses_urls() {
        let p = parse_url("https://idp.example:8443/x").unwrap();
        assert_eq!(
            (p.https, p.host, p.has_query_or_fragment),
            (true, "idp.example", false)
        );
        let p = parse_url("HTTP://[::1]:80/").unwrap();
        assert_eq!((p.https, p.host), (false, "[::1]"));
        assert!(parse_url("https://h/x?y=1").unwrap().has_query_or_fragment);
        assert!(parse_url("https://h#f").unwrap().has_query_or_fragment);
        for bad in [
            "ftp://h/",
            "https://",
            "https:///x",
            "https://user@h/",
            "https://h:port/",
            "https://h:/",
            "https://[::1/",
            "https://h/ x",
            "https://h/\n",
            "idp.example",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn http_only_to_loopback_with_the_flag() {
        assert!(check_fetchable("https://idp.example", "issuer", STRICT).is_ok());
        assert!(check_fetchable("http://127.0.0.1:8080", "issuer", STRICT).is_err());
        assert!(check_fetchable("http://127.0.0.1:8080", "issuer", LOOP).is_ok());
        assert!(check_fetchable("http://[::1]:8080/x", "issuer", LOOP).is_ok());
        assert!(check_fetchable("http://LocalHost/x", "issuer", LOOP).is_ok());
        assert!(check_fetchable("http://idp.example", "issuer", LOOP).is_err());
        assert!(check_fetchable("http://127.0.0.2", "issuer", LOOP).is_err());
        assert!(check_fetchable("http://localhost.evil.example", "issuer", LOOP).is_err());
    }

    #[test]
    fn issuer_has_no_query() {
        assert!(check_issuer("https://idp.example/r", STRICT).is_ok());
        assert!(matches!(
            check_issuer("https://idp.example/?a", STRICT),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            check_issuer("http://idp.example", STRICT),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn discovery_document_checks() {
        let iss = "https://idp.example/";
        let doc = json!({"issuer": iss, "jwks_uri": "https://idp.example/jwks"});
        assert_eq!(
            jwks_uri("u", &doc, iss, STRICT).unwrap(),
            "https://idp.example/jwks"
        );
        // Exact: a trailing slash makes another issuer.
        let e = jwks_uri("u", &doc, "https://idp.example", STRICT).unwrap_err();
        assert!(matches!(e, Error::IssuerMismatch { .. }), "{e}");
        let doc = json!({"issuer": iss, "jwks_uri": "http://idp.example/jwks"});
        assert!(jwks_uri("u", &doc, iss, STRICT)
            .unwrap_err()
            .to_string()
            .contains("plain http"));
        for doc in [
            json!([]),
            json!({"jwks_uri": "https://h/j"}),
            json!({"issuer": 1, "jwks_uri": "https://h/j"}),
            json!({"issuer": iss}),
            json!({"issuer": iss, "jwks_uri": 5}),
        ] {
            assert!(
                matches!(
                    jwks_uri("u", &doc, iss, STRICT),
                    Err(Error::Response { .. })
                ),
                "{doc}"
            );
        }
    }

    #[test]
    fn jwks_shape() {
        assert_eq!(check_jwks("u", &json!({"keys": []})).unwrap(), 0);
        assert_eq!(check_jwks("u", &json!({"keys": [{}, {}]})).unwrap(), 2);
        assert!(check_jwks("u", &json!({"keys": {}})).is_err());
        assert!(check_jwks("u", &json!([1])).is_err());
        assert!(parse_json("u", b"<html>")
            .unwrap_err()
            .to_string()
            .contains("not JSON"));
        assert!(parse_json("u", b"\xff")
            .unwrap_err()
            .to_string()
            .contains("not JSON"));
    }
}
