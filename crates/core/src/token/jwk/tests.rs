use super::*;
use crate::token::{der, jws, TokenError};
use serde_json::json;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $name
        ))
    };
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn jws_fixture(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap().trim_end()
}

/// n and e of the committed RSA 2048 fixture, base64url.
fn rsa_members() -> (String, String) {
    let spki = der::parse_spki(fixture!("rsa2048.pub.der")).unwrap();
    let (n, e) = der::parse_rsa_public_key(spki.key).unwrap();
    (b64(n), b64(e))
}

/// x and y of an EC fixture, base64url.
fn ec_members(spki_der: &[u8]) -> (String, String) {
    let point = der::parse_spki(spki_der).unwrap().key;
    let half = (point.len() - 1) / 2;
    (b64(&point[1..1 + half]), b64(&point[1 + half..]))
}

fn ed_member() -> String {
    b64(&fixture!("ed25519.pub.der")[12..])
}

fn usable(j: &Jwk) -> (&str, &VerifyingKey) {
    match j {
        Jwk::Usable { kid, key } => (kid, key),
        Jwk::Skipped { kid, reason, .. } => panic!("skipped {kid:?}: {reason}"),
    }
}

fn reason(j: &Jwk) -> &str {
    match j {
        Jwk::Skipped { reason, .. } => reason,
        Jwk::Usable { kid, .. } => panic!("{kid} was imported"),
    }
}

fn one(key: Value) -> Jwk {
    let mut v = read_jwks(&json!({ "keys": [key] })).unwrap();
    assert_eq!(v.len(), 1);
    v.pop().unwrap()
}

fn verifies(key: &VerifyingKey, token: &str) -> Result<(), TokenError> {
    let env = jws::split(token)?;
    key.verify(env.signing_input, &env.signature)
}

// RFC 7515 appendix A.2: the RSA JWK's public members and the JWS.
const A2_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
const A2_JWS: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
// RFC 7515 appendix A.3: the P-256 JWK's public members and the JWS.
const A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
const A3_JWS: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

/// Every single-byte change of a token, at each position, inside the
/// base64url alphabet (so the envelope still splits where it can).
fn each_flip(token: &str) -> impl Iterator<Item = String> + '_ {
    (0..token.len())
        .filter(move |&i| token.as_bytes()[i] != b'.')
        .map(move |i| {
            let mut b = token.as_bytes().to_vec();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            String::from_utf8(b).unwrap()
        })
}

#[test]
fn rfc7515_a2_rs256_and_a3_es256() {
    let doc = json!({"keys": [
        {"kty": "RSA", "kid": "a2", "n": A2_N, "e": "AQAB"},
        {"kty": "EC", "crv": "P-256", "kid": "a3", "x": A3_X, "y": A3_Y},
    ]});
    let keys = read_jwks(&doc).unwrap();
    let (kid, rsa) = usable(&keys[0]);
    assert_eq!((kid, rsa.alg()), ("a2", Alg::RS256));
    let (kid, ec) = usable(&keys[1]);
    assert_eq!((kid, ec.alg()), ("a3", Alg::ES256));
    for (key, token) in [(rsa, A2_JWS), (ec, A3_JWS)] {
        verifies(key, token).unwrap();
        let mut flips = 0;
        for bad in each_flip(token) {
            // A change in the last base64 character's unused bits could
            // decode to the same bytes; the decoder refuses those, so
            // every change must fail.
            assert!(verifies(key, &bad).is_err(), "{bad}");
            flips += 1;
        }
        assert!(flips > 100);
        let env = jws::split(token).unwrap();
        for i in 0..env.signature.len() {
            let mut sig = env.signature.clone();
            sig[i] ^= 0x40;
            assert_eq!(
                key.verify(env.signing_input, &sig),
                Err(TokenError::BadSignature)
            );
        }
    }
    // The RS256 key under the other alg does not verify the other's token.
    assert!(verifies(rsa, A3_JWS).is_err());
    assert!(verifies(ec, A2_JWS).is_err());
}

#[test]
fn keycloak_sig_and_enc() {
    let (n, e) = rsa_members();
    let doc = json!({"keys": [
        {"kid": "nYwZ9y1Qp6K3cEqVqD0iHcE2Qv4mYlS8y6k1B2u3Z0s", "kty": "RSA", "alg": "RS256",
         "use": "sig", "n": n, "e": e, "x5c": ["MIICnTCCAYUCBgGQ"], "x5t": "3q2-7w",
         "x5t#S256": "Zm9v"},
        {"kid": "K1m3lq0yH7q2bqD3Cq7S1nqz1kQyq1nYl3eN2J5rX2w", "kty": "RSA", "alg": "RSA-OAEP",
         "use": "enc", "n": A2_N, "e": "AQAB", "x5c": ["MIICnTCCAYUCBgGQ"], "x5t": "3q2-7w",
         "x5t#S256": "Zm9v"},
    ]});
    let keys = read_jwks(&doc).unwrap();
    let (_, key) = usable(&keys[0]);
    assert_eq!(key.alg(), Alg::RS256);
    verifies(key, jws_fixture(fixture!("rs256.jws"))).unwrap();
    assert_eq!(key.material(), fixture!("rsa2048.pub.der"));
    assert_eq!(reason(&keys[1]), "use \"enc\": an encryption key");
    match &keys[1] {
        Jwk::Skipped { kid, alg, .. } => {
            assert_eq!(
                kid.as_deref(),
                Some("K1m3lq0yH7q2bqD3Cq7S1nqz1kQyq1nYl3eN2J5rX2w")
            );
            assert_eq!(alg.as_deref(), Some("RSA-OAEP"));
        }
        Jwk::Usable { .. } => unreachable!(),
    }
}

#[test]
fn entra_rsa_without_alg() {
    let (n, e) = rsa_members();
    let doc = json!({"keys": [
        {"kty": "RSA", "use": "sig", "kid": "JYhAcTPMZ_LX6DBlOWQ7Hn0NeXE", "x5t": "JYhAcTPMZ_LX6DBlOWQ7Hn0NeXE",
         "n": n, "e": e, "x5c": ["MIIC/TCCAeWgAwIBAgIIUd7j/OIahkYwDQYJKoZIhvcNAQELBQAw"],
         "cloud_instance_name": "microsoftonline.com",
         "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0"},
        {"kty": "RSA", "use": "sig", "kid": "L1KfKFI_jnXbwWc22xZxw1sUHH0", "x5t": "L1KfKFI_jnXbwWc22xZxw1sUHH0",
         "n": A2_N, "e": "AQAB", "x5c": ["not even base64 !"],
         "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0"},
    ]});
    let keys = read_jwks(&doc).unwrap();
    assert_eq!(keys.len(), 2);
    let (kid, a) = usable(&keys[0]);
    assert_eq!((kid, a.alg()), ("JYhAcTPMZ_LX6DBlOWQ7Hn0NeXE", Alg::RS256));
    let (_, b) = usable(&keys[1]);
    verifies(a, jws_fixture(fixture!("rs256.jws"))).unwrap();
    verifies(b, A2_JWS).unwrap();
}

#[test]
fn okta_rs256() {
    let (n, e) = rsa_members();
    let doc = json!({"keys": [
        {"kty": "RSA", "alg": "RS256", "kid": "b3d5uGv0rj9hYVh0gkK1m0G5kQyHn1vG0FJ3p6oG1XQ",
         "use": "sig", "e": e, "n": n},
    ]});
    let keys = read_jwks(&doc).unwrap();
    let (_, key) = usable(&keys[0]);
    verifies(key, jws_fixture(fixture!("rs256.jws"))).unwrap();
    // The same members with alg PS256 make a PS256 key.
    let (n, e) = rsa_members();
    let ps = one(json!({"kty": "RSA", "alg": "PS256", "kid": "p", "e": e, "n": n}));
    let (_, ps) = usable(&ps);
    assert_eq!(ps.alg(), Alg::PS256);
    verifies(ps, jws_fixture(fixture!("ps256.jws"))).unwrap();
    assert!(verifies(ps, jws_fixture(fixture!("rs256.jws"))).is_err());
}

#[test]
fn supabase_es256() {
    let (x, y) = ec_members(fixture!("p256.pub.der"));
    let doc = json!({"keys": [
        {"alg": "ES256", "crv": "P-256", "ext": true, "key_ops": ["verify"],
         "kid": "0e3c4a5b-8a2d-4c4f-9b7e-1f2a3b4c5d6e", "kty": "EC", "use": "sig", "x": x, "y": y},
    ]});
    let keys = read_jwks(&doc).unwrap();
    let (_, key) = usable(&keys[0]);
    assert_eq!(key.alg(), Alg::ES256);
    assert_eq!(key.material(), fixture!("p256.pub.der"));
    verifies(key, jws_fixture(fixture!("es256.jws"))).unwrap();
}

#[test]
fn node_oidc_provider_rs256_es256_eddsa() {
    let (n, e) = rsa_members();
    let (x, y) = ec_members(fixture!("p256.pub.der"));
    let (x384, y384) = ec_members(fixture!("p384.pub.der"));
    let doc = json!({"keys": [
        {"e": e, "n": n, "kty": "RSA", "kid": "r1", "alg": "RS256", "use": "sig"},
        {"crv": "P-256", "x": x, "y": y, "kty": "EC", "kid": "e1", "alg": "ES256", "use": "sig"},
        {"crv": "Ed25519", "x": ed_member(), "kty": "OKP", "kid": "o1", "alg": "EdDSA", "use": "sig"},
        {"crv": "P-384", "x": x384, "y": y384, "kty": "EC", "kid": "e2", "use": "sig"},
    ]});
    let keys = read_jwks(&doc).unwrap();
    let algs: Vec<(String, Alg)> = keys
        .iter()
        .map(|k| {
            let (kid, key) = usable(k);
            (kid.to_string(), key.alg())
        })
        .collect();
    assert_eq!(
        algs,
        [
            ("r1".to_string(), Alg::RS256),
            ("e1".to_string(), Alg::ES256),
            ("o1".to_string(), Alg::EdDSA),
            ("e2".to_string(), Alg::ES384),
        ]
    );
    verifies(usable(&keys[3]).1, jws_fixture(fixture!("es384.jws"))).unwrap();
    assert_eq!(
        usable(&keys[2]).1.material(),
        &fixture!("ed25519.pub.der")[12..]
    );
}

#[test]
fn bad_members_are_skipped_with_reasons() {
    let (n, e) = rsa_members();
    let (x, y) = ec_members(fixture!("p256.pub.der"));
    let (x384, y384) = ec_members(fixture!("p384.pub.der"));
    let rsa = json!({"kty": "RSA", "kid": "k", "n": n, "e": e});
    let ec = json!({"kty": "EC", "crv": "P-256", "kid": "k", "x": x, "y": y});
    let with = |base: &Value, member: &str, v: Value| {
        let mut m = base.as_object().unwrap().clone();
        m.insert(member.into(), v);
        Value::Object(m)
    };
    let without = |base: &Value, member: &str| {
        let mut m = base.as_object().unwrap().clone();
        m.remove(member);
        Value::Object(m)
    };
    assert!(matches!(one(rsa.clone()), Jwk::Usable { .. }));
    assert!(matches!(one(ec.clone()), Jwk::Usable { .. }));
    let weak = der::parse_spki(fixture!("rsa1024.pub.der")).unwrap().key;
    let short = b64(der::parse_rsa_public_key(weak).unwrap().0);
    let cases: Vec<(Value, &str)> = vec![
        (
            with(&rsa, "use", json!("enc")),
            "use \"enc\": an encryption key",
        ),
        (
            with(&rsa, "use", json!("tls")),
            "use \"tls\": not a signature key",
        ),
        (with(&rsa, "use", json!(1)), "\"use\" is not a string"),
        (
            with(&rsa, "key_ops", json!(["encrypt", "wrapKey"])),
            "key_ops without \"verify\"",
        ),
        (
            with(&rsa, "key_ops", json!(["sign"])),
            "key_ops without \"verify\"",
        ),
        (
            with(&rsa, "key_ops", json!("verify")),
            "\"key_ops\" is not an array",
        ),
        (without(&rsa, "kid"), "no \"kid\""),
        (
            with(&rsa, "kid", json!("")),
            "\"kid\" is not a non-empty string",
        ),
        (
            with(&rsa, "kid", json!(7)),
            "\"kid\" is not a non-empty string",
        ),
        (
            with(&rsa, "kty", json!("oct")),
            "kty \"oct\": symmetric keys are never imported",
        ),
        (with(&rsa, "kty", json!("RSA-X")), "unknown kty \"RSA-X\""),
        (without(&rsa, "kty"), "no \"kty\""),
        (
            with(&ec, "crv", json!("P-521")),
            "EC crv \"P-521\" is not supported",
        ),
        (
            with(&ec, "crv", json!("secp256k1")),
            "EC crv \"secp256k1\" is not supported",
        ),
        (without(&ec, "crv"), "kty EC without \"crv\""),
        (
            json!({"kty": "OKP", "crv": "X25519", "kid": "k", "x": ed_member()}),
            "OKP crv X25519 is for key agreement",
        ),
        (
            json!({"kty": "OKP", "crv": "Ed448", "kid": "k", "x": ed_member()}),
            "OKP crv \"Ed448\" is not supported",
        ),
        (
            with(&rsa, "alg", json!("RS384")),
            "alg \"RS384\" is not supported for RSA keys (use RS256 or PS256)",
        ),
        (
            with(&rsa, "alg", json!("RS512")),
            "alg \"RS512\" is not supported",
        ),
        (
            with(&rsa, "alg", json!("ES256")),
            "alg \"ES256\" is not supported for RSA keys",
        ),
        (
            with(&rsa, "alg", json!("RSA-OAEP")),
            "alg \"RSA-OAEP\" is an encryption algorithm",
        ),
        (
            with(&rsa, "alg", json!("RSA-OAEP-256")),
            "is an encryption algorithm",
        ),
        (with(&rsa, "alg", json!(256)), "\"alg\" is not a string"),
        (
            with(&ec, "alg", json!("ES512")),
            "alg \"ES512\" is not supported for P-256 keys (use ES256)",
        ),
        (
            with(&ec, "alg", json!("ES384")),
            "alg \"ES384\" is not supported for P-256 keys",
        ),
        (
            with(&ec, "alg", json!("ECDH-ES")),
            "is an encryption algorithm",
        ),
        (
            with(&rsa, "n", json!(format!("{n}=="))),
            "\"n\" is not base64url without padding",
        ),
        (
            with(&rsa, "n", json!(n.replace('_', "/").replace('-', "+"))),
            "\"n\" is not base64url",
        ),
        (with(&rsa, "n", json!(12345)), "\"n\" is not a string"),
        (without(&rsa, "e"), "no \"e\""),
        (
            with(&rsa, "e", json!("AQ")),
            "RSA exponent \"e\" must be odd, at least 3",
        ),
        (
            with(&rsa, "e", json!("AQAA")),
            "RSA exponent \"e\" must be odd",
        ),
        (
            with(&rsa, "e", json!("Ag")),
            "RSA exponent \"e\" must be odd",
        ),
        (
            with(&rsa, "n", json!(short)),
            "RSA modulus is 1024 bits: at least 2048 are required",
        ),
        (
            with(&ec, "y", json!(b64(&[7u8; 32]))),
            "the point (x, y) is not on the curve P-256",
        ),
        (
            with(&ec, "x", json!(b64(&[7u8; 31]))),
            "\"x\" is 31 bytes; P-256 coordinates are 32",
        ),
        (
            with(&ec, "y", json!(b64(&[7u8; 33]))),
            "\"y\" is 33 bytes; P-256 coordinates are 32",
        ),
        (
            json!({"kty": "EC", "crv": "P-384", "kid": "k", "x": x, "y": y}),
            "\"x\" is 32 bytes; P-384 coordinates are 48",
        ),
        (
            json!({"kty": "EC", "crv": "P-256", "kid": "k", "x": x384, "y": y384}),
            "\"x\" is 48 bytes; P-256 coordinates are 32",
        ),
        (
            json!({"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": b64(&[1u8; 31])}),
            "\"x\" is 31 bytes; an Ed25519 public key is 32",
        ),
        (
            with(&rsa, "d", json!("AQAB")),
            "holds private key material (\"d\"): publish only public keys",
        ),
        (
            with(&rsa, "p", json!("AQAB")),
            "holds private key material (\"p\")",
        ),
        (with(&rsa, "q", json!("AQAB")), "holds private key material"),
        (
            with(&rsa, "dp", json!("AQAB")),
            "holds private key material",
        ),
        (
            with(&rsa, "dq", json!("AQAB")),
            "holds private key material",
        ),
        (
            with(&rsa, "qi", json!("AQAB")),
            "holds private key material",
        ),
        (with(&ec, "d", json!("AQAB")), "holds private key material"),
        (
            json!({"kty": "oct", "kid": "k", "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ"}),
            "holds a symmetric key (\"k\"): publish only public keys",
        ),
        (json!("a string"), "not a JSON object"),
        (json!(null), "not a JSON object"),
        (json!([1, 2]), "not a JSON object"),
    ];
    for (k, want) in cases {
        let got = one(k.clone());
        let r = reason(&got);
        assert!(
            r.starts_with(want) || r.contains(want),
            "{k}: {r:?} lacks {want:?}"
        );
        assert!(!r.contains('\n') && r.len() < 120, "{r}");
    }
    // x5c and x5t are ignored, however odd.
    assert!(matches!(
        one(with(&rsa, "x5c", json!([1, {"a": null}]))),
        Jwk::Usable { .. }
    ));
    assert!(matches!(
        one(with(&rsa, "x5t", json!(false))),
        Jwk::Usable { .. }
    ));
    // Leading zero octets in n are tolerated; material stays canonical.
    let nz = b64(&[&[0u8][..], &URL_SAFE_NO_PAD.decode(&n).unwrap()].concat());
    let padded = one(with(&rsa, "n", json!(nz)));
    assert_eq!(usable(&padded).1.material(), fixture!("rsa2048.pub.der"));
}

#[test]
fn skipped_entries_keep_kid_and_alg() {
    let keys = read_jwks(&json!({"keys": [
        7,
        {"kty": "EC", "crv": "P-256", "kid": "e", "use": "enc", "x": "AA", "y": "AA"},
        {"kty": "RSA", "alg": "RSA1_5", "kid": "r", "n": "AQAB", "e": "AQAB"},
        {"kty": "weird"},
    ]}))
    .unwrap();
    let triples: Vec<(Option<&str>, Option<&str>)> = keys
        .iter()
        .map(|k| match k {
            Jwk::Skipped { kid, alg, .. } => (kid.as_deref(), alg.as_deref()),
            Jwk::Usable { .. } => panic!("usable"),
        })
        .collect();
    assert_eq!(
        triples,
        [
            (None, None),
            (Some("e"), Some("ES256")),
            (Some("r"), Some("RSA1_5")),
            (None, None)
        ]
    );
}

#[test]
fn duplicate_kids_skip_every_holder() {
    let (n, e) = rsa_members();
    let (x, y) = ec_members(fixture!("p256.pub.der"));
    let keys = read_jwks(&json!({"keys": [
        {"kty": "RSA", "kid": "same", "n": n, "e": e},
        {"kty": "EC", "crv": "P-256", "kid": "other", "x": x, "y": y},
        {"kty": "EC", "crv": "P-256", "kid": "same", "x": x, "y": y},
    ]}))
    .unwrap();
    assert_eq!(
        reason(&keys[0]),
        "kid appears more than once in the document"
    );
    assert_eq!(usable(&keys[1]).0, "other");
    assert_eq!(
        reason(&keys[2]),
        "kid appears more than once in the document"
    );
}

#[test]
fn whole_document_errors() {
    assert_eq!(read_jwks(&json!([])).unwrap_err(), JwksError::NotAnObject);
    assert_eq!(
        read_jwks(&json!("keys")).unwrap_err(),
        JwksError::NotAnObject
    );
    assert_eq!(read_jwks(&json!(null)).unwrap_err(), JwksError::NotAnObject);
    assert_eq!(read_jwks(&json!({})).unwrap_err(), JwksError::NoKeysArray);
    assert_eq!(
        read_jwks(&json!({"keys": {"kty": "RSA"}})).unwrap_err(),
        JwksError::NoKeysArray
    );
    assert_eq!(
        read_jwks(&json!({"keys": null})).unwrap_err(),
        JwksError::NoKeysArray
    );
    assert!(read_jwks(&json!({"keys": []})).unwrap().is_empty());
    let hundred: Vec<Value> = (0..MAX_JWKS_KEYS).map(|_| json!({})).collect();
    assert_eq!(read_jwks(&json!({ "keys": hundred })).unwrap().len(), 100);
    let more: Vec<Value> = (0..=MAX_JWKS_KEYS).map(|_| json!({})).collect();
    assert_eq!(
        read_jwks(&json!({ "keys": more })).unwrap_err(),
        JwksError::TooManyKeys(101)
    );
    for e in [
        JwksError::NotAnObject,
        JwksError::NoKeysArray,
        JwksError::TooManyKeys(5),
    ] {
        assert!(!e.to_string().contains('\n'));
    }
}

#[test]
fn a_megabyte_of_keys_is_refused_quickly() {
    let (n, e) = rsa_members();
    let mut text = String::from("{\"keys\":[");
    for i in 0..100_000 {
        if i > 0 {
            text.push(',');
        }
        text.push_str("{\"kty\":\"EC\"}");
    }
    text.push_str("]}");
    assert!(text.len() > 1_000_000);
    let doc: Value = serde_json::from_str(&text).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        read_jwks(&doc).unwrap_err(),
        JwksError::TooManyKeys(100_000)
    );
    assert!(started.elapsed() < std::time::Duration::from_millis(50));
    // A hundred real RSA keys (the most allowed) are quick too.
    let keys: Vec<Value> = (0..MAX_JWKS_KEYS)
        .map(|i| json!({"kty": "RSA", "kid": format!("k{i}"), "n": n, "e": e}))
        .collect();
    let started = std::time::Instant::now();
    let out = read_jwks(&json!({ "keys": keys })).unwrap();
    assert!(out.iter().all(|k| matches!(k, Jwk::Usable { .. })));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn pool() -> Vec<Value> {
        let (n, e) = rsa_members();
        let (x, y) = ec_members(fixture!("p256.pub.der"));
        let (x384, y384) = ec_members(fixture!("p384.pub.der"));
        [
            "RSA", "EC", "OKP", "oct", "P-256", "P-384", "P-521", "Ed25519", "X25519", "sig",
            "enc", "RS256", "PS256", "ES256", "ES384", "EdDSA", "RS512", "RSA-OAEP", "verify",
            "AQAB", "AQ", "", "=", "kid",
        ]
        .iter()
        .map(|s| json!(s))
        .chain([
            json!(n),
            json!(e),
            json!(x),
            json!(y),
            json!(x384),
            json!(y384),
            json!(ed_member()),
            json!(A2_N),
            json!(["verify"]),
            json!(["sign", 3]),
            json!(null),
            json!(true),
            json!(-1.5),
            json!({"nested": [1, 2]}),
        ])
        .collect()
    }

    const NAMES: [&str; 14] = [
        "kty", "crv", "kid", "alg", "use", "key_ops", "n", "e", "x", "y", "d", "k", "x5c", "oth",
    ];

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[A-Za-z0-9_=+/ -]{0,60}".prop_map(Value::String),
            proptest::collection::vec(any::<u8>(), 0..80).prop_map(|b| json!(b64(&b))),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z]{1,4}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A JWK-ish object: names from the JWK vocabulary, values from real
    /// members, near misses and arbitrary JSON.
    fn jwkish() -> impl Strategy<Value = Value> {
        let pool = pool();
        let value = prop_oneof![
            3 => proptest::sample::select(pool),
            1 => json_value(),
        ];
        proptest::collection::btree_map(proptest::sample::select(NAMES.to_vec()), value, 0..10)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn jwks_never_panic_and_round_trip(keys in proptest::collection::vec(
            prop_oneof![4 => jwkish(), 1 => json_value()], 0..8)) {
            let doc = json!({ "keys": keys });
            let out = read_jwks(&doc).unwrap();
            prop_assert_eq!(out.len(), keys.len());
            for j in &out {
                match j {
                    Jwk::Usable { kid, key } => {
                        prop_assert!(!kid.is_empty());
                        let again = VerifyingKey::new(key.alg(), key.material()).unwrap();
                        prop_assert_eq!(again.material(), key.material());
                        prop_assert_eq!(again.alg(), key.alg());
                    }
                    Jwk::Skipped { reason, .. } => prop_assert!(!reason.is_empty()),
                }
            }
        }

        #[test]
        fn arbitrary_documents_never_panic(doc in json_value()) {
            let _ = read_jwks(&doc);
            let _ = read_jwks(&json!({ "keys": [doc] }));
        }
    }
}

#[test]
fn kids_longer_than_a_key_id_may_be_are_skipped() {
    let x = ed_member();
    let long = "k".repeat(257);
    let keys = read_jwks(&json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": long, "x": x},
        {"kty": "OKP", "crv": "Ed25519", "kid": "k".repeat(256), "x": x},
    ]}))
    .unwrap();
    assert_eq!(
        reason(&keys[0]),
        "kid is 257 bytes, more than the 256 a key id may have"
    );
    assert_eq!(usable(&keys[1]).0.len(), 256);
}
