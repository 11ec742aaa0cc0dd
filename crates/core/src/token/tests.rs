//! Every rejection reason of DESIGN section 2, one case each, against tokens
//! minted here with the same primitives an IdP would use.

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::Signer;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub(super) const NOW: i64 = 1_800_000_000;
pub(super) const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const ED_SEED: [u8; 32] = [9u8; 32];
pub(super) const LEVELS: [&str; 3] = ["aal1", "aal2", "aal3"];

fn rules() -> Rules<'static> {
    Rules {
        audience: "bank",
        leeway: 30,
        max_lifetime: 900,
        now_us: NOW * 1_000_000,
    }
}

pub(super) fn keys() -> Vec<RegisteredKey> {
    let ed_pub = ed25519_dalek::SigningKey::from_bytes(&ED_SEED).verifying_key();
    vec![
        RegisteredKey {
            kid: "hs".into(),
            key: VerifyingKey::new(Alg::HS256, SECRET).unwrap(),
            issuer: None,
            not_before_us: 0,
            not_after_us: None,
            profile: Default::default(),
        },
        RegisteredKey {
            kid: "ed".into(),
            key: VerifyingKey::new(Alg::EdDSA, ed_pub.as_bytes()).unwrap(),
            issuer: Some("https://idp.example".into()),
            not_before_us: 0,
            not_after_us: None,
            profile: Default::default(),
        },
        RegisteredKey {
            kid: "old".into(),
            key: VerifyingKey::new(Alg::HS256, SECRET).unwrap(),
            issuer: None,
            not_before_us: 0,
            not_after_us: Some((NOW - 10) * 1_000_000),
            profile: Default::default(),
        },
        RegisteredKey {
            kid: "later".into(),
            key: VerifyingKey::new(Alg::HS256, SECRET).unwrap(),
            issuer: None,
            not_before_us: (NOW + 3600) * 1_000_000,
            not_after_us: None,
            profile: Default::default(),
        },
    ]
}

pub(super) fn claims() -> Value {
    json!({
        "sub": "alice", "aud": "bank", "iat": NOW - 10, "exp": NOW + 290,
        "auth_time": NOW - 20, "acr": "aal2", "amr": ["otp"], "jti": "j-1",
    })
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

/// A compact JWS over raw header and payload bytes (which need not be JSON),
/// HMAC-signed with `secret`.
pub(super) fn sign_hs256(header: &[u8], payload: &[u8], secret: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

/// As [`sign_hs256`], signed with the Ed25519 key of kid `ed`.
pub(super) fn sign_eddsa(header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig = ed25519_dalek::SigningKey::from_bytes(&ED_SEED).sign(input.as_bytes());
    format!("{input}.{}", b64(&sig.to_bytes()))
}

fn hs256(header: &Value, payload: &Value, secret: &[u8]) -> String {
    sign_hs256(
        header.to_string().as_bytes(),
        payload.to_string().as_bytes(),
        secret,
    )
}

fn eddsa(header: &Value, payload: &Value) -> String {
    sign_eddsa(
        header.to_string().as_bytes(),
        payload.to_string().as_bytes(),
    )
}

fn hs(payload: &Value) -> String {
    hs256(
        &json!({"alg": "HS256", "kid": "hs", "typ": "JWT"}),
        payload,
        SECRET,
    )
}

fn run(token: &str) -> Result<Claims, TokenError> {
    run_with(&keys(), token)
}

/// Verifies against `keys` (built once by callers that verify many tokens)
/// with the levels `aal1`..`aal3` and [`rules`].
pub(super) fn run_with(keys: &[RegisteredKey], token: &str) -> Result<Claims, TokenError> {
    verify(
        token,
        |kid| keys.iter().find(|k| k.kid == kid),
        |acr| LEVELS.iter().position(|l| *l == acr).map(|i| i as i32 + 1),
        &rules(),
    )
}

fn with(change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut c = claims();
    change(c.as_object_mut().unwrap());
    c
}

#[test]
fn accepts_hs256_and_eddsa() {
    let c = run(&hs(&claims())).unwrap();
    assert_eq!(
        (c.sub.as_str(), c.acr.as_str(), c.jti.as_deref()),
        ("alice", "aal2", Some("j-1"))
    );
    assert_eq!(c.amr, vec!["otp"]);
    assert_eq!(c.kid, "hs");
    let ed = with(|c| {
        c.insert("iss".into(), json!("https://idp.example"));
    });
    let c = run(&eddsa(&json!({"alg": "EdDSA", "kid": "ed"}), &ed)).unwrap();
    assert_eq!(c.iss.as_deref(), Some("https://idp.example"));
}

#[test]
fn bad_signature_and_wrong_key() {
    let other = b"ffffffffffffffffffffffffffffffff";
    let t = hs256(&json!({"alg": "HS256", "kid": "hs"}), &claims(), other);
    assert_eq!(run(&t).unwrap_err(), TokenError::BadSignature);
    // Payload swapped under a valid header and signature.
    let good = hs(&claims());
    let forged_payload = b64(with(|c| {
        c.insert("acr".into(), json!("aal3"));
    })
    .to_string()
    .as_bytes());
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_eq!(run(&forged).unwrap_err(), TokenError::BadSignature);
}

#[test]
fn unknown_retired_and_future_kid() {
    let t = hs256(&json!({"alg": "HS256", "kid": "nope"}), &claims(), SECRET);
    assert_eq!(run(&t).unwrap_err(), TokenError::UnknownKid("nope".into()));
    let t = hs256(&json!({"alg": "HS256", "kid": "old"}), &claims(), SECRET);
    assert_eq!(run(&t).unwrap_err(), TokenError::KeyRetired("old".into()));
    let t = hs256(&json!({"alg": "HS256", "kid": "later"}), &claims(), SECRET);
    assert_eq!(
        run(&t).unwrap_err(),
        TokenError::KeyNotYetValid("later".into())
    );
    let t = hs256(&json!({"alg": "HS256"}), &claims(), SECRET);
    assert_eq!(run(&t).unwrap_err(), TokenError::MissingKid);
}

#[test]
fn alg_none_and_confusion() {
    let payload = b64(claims().to_string().as_bytes());
    for header in [
        json!({"alg": "none", "kid": "hs"}),
        json!({"alg": "None", "kid": "hs"}),
    ] {
        let t = format!("{}.{payload}.", b64(header.to_string().as_bytes()));
        assert!(
            matches!(run(&t).unwrap_err(), TokenError::UnsupportedAlg(_)),
            "{header}"
        );
    }
    // HS256 signed with the Ed25519 public key as secret: the classic confusion.
    let ed_pub = ed25519_dalek::SigningKey::from_bytes(&ED_SEED).verifying_key();
    let t = hs256(
        &json!({"alg": "HS256", "kid": "ed"}),
        &claims(),
        ed_pub.as_bytes(),
    );
    assert!(matches!(
        run(&t).unwrap_err(),
        TokenError::AlgMismatch { .. }
    ));
    let t = eddsa(&json!({"alg": "EdDSA", "kid": "hs"}), &claims());
    assert!(matches!(
        run(&t).unwrap_err(),
        TokenError::AlgMismatch { .. }
    ));
    // An algorithm the key was not registered for, however well known.
    let t = hs256(&json!({"alg": "RS256", "kid": "hs"}), &claims(), SECRET);
    assert!(matches!(
        run(&t).unwrap_err(),
        TokenError::AlgMismatch { .. }
    ));
    let t = hs256(&json!({"alg": "RS512", "kid": "hs"}), &claims(), SECRET);
    assert!(matches!(
        run(&t).unwrap_err(),
        TokenError::UnsupportedAlg(_)
    ));
}

#[test]
fn time_rules() {
    let cases: Vec<(Value, TokenError)> = vec![
        (
            with(|c| {
                c.insert("iat".into(), json!(NOW - 400));
                c.insert("exp".into(), json!(NOW - 31));
                c.insert("auth_time".into(), json!(NOW - 400));
            }),
            TokenError::Expired,
        ),
        (
            with(|c| {
                c.insert("nbf".into(), json!(NOW + 31));
            }),
            TokenError::NotYetValid,
        ),
        (
            with(|c| {
                c.insert("iat".into(), json!(NOW - 10));
                c.insert("exp".into(), json!(NOW + 891));
            }),
            TokenError::LifetimeTooLong {
                lifetime: 901,
                max: 900,
            },
        ),
        (
            with(|c| {
                c.insert("iat".into(), json!(NOW + 31));
                c.insert("exp".into(), json!(NOW + 300));
                c.insert("auth_time".into(), json!(NOW));
            }),
            TokenError::IssuedInFuture,
        ),
        (
            with(|c| {
                c.insert("auth_time".into(), json!(NOW + 31));
                c.insert("iat".into(), json!(NOW + 20));
            }),
            TokenError::AuthTimeInFuture,
        ),
        (
            with(|c| {
                c.insert("exp".into(), json!(NOW - 10));
            }),
            TokenError::InvalidClaim("exp", "is not later than iat"),
        ),
    ];
    for (payload, want) in cases {
        assert_eq!(run(&hs(&payload)).unwrap_err(), want, "{payload}");
    }
}

#[test]
fn auth_time_after_issue_is_refused() {
    let late = with(|c| {
        c.insert("auth_time".into(), json!(NOW - 10 + 31));
    });
    assert_eq!(run(&hs(&late)).unwrap_err(), TokenError::AuthTimeAfterIssue);
}

#[test]
fn leeway_forgives_small_skew() {
    let ok = with(|c| {
        c.insert("iat".into(), json!(NOW + 25));
        c.insert("auth_time".into(), json!(NOW + 25));
        c.insert("exp".into(), json!(NOW + 300));
        c.insert("nbf".into(), json!(NOW + 25));
    });
    assert!(run(&hs(&ok)).is_ok());
    let just_expired = with(|c| {
        c.insert("exp".into(), json!(NOW - 29));
        c.insert("iat".into(), json!(NOW - 100));
        c.insert("auth_time".into(), json!(NOW - 100));
    });
    assert!(run(&hs(&just_expired)).is_ok());
}

#[test]
fn audience_and_issuer() {
    let wrong = with(|c| {
        c.insert("aud".into(), json!("other"));
    });
    assert_eq!(
        run(&hs(&wrong)).unwrap_err(),
        TokenError::WrongAudience(None)
    );
    let list = with(|c| {
        c.insert("aud".into(), json!(["x", "bank"]));
    });
    assert!(run(&hs(&list)).is_ok());
    let list = with(|c| {
        c.insert("aud".into(), json!(["x", "y"]));
    });
    assert_eq!(
        run(&hs(&list)).unwrap_err(),
        TokenError::WrongAudience(None)
    );
    let ed_no_iss = eddsa(&json!({"alg": "EdDSA", "kid": "ed"}), &claims());
    assert_eq!(run(&ed_no_iss).unwrap_err(), TokenError::WrongIssuer);
    let bad_iss = with(|c| {
        c.insert("iss".into(), json!("https://evil.example"));
    });
    let t = eddsa(&json!({"alg": "EdDSA", "kid": "ed"}), &bad_iss);
    assert_eq!(run(&t).unwrap_err(), TokenError::WrongIssuer);
}

#[test]
fn each_required_claim_missing() {
    for name in ["sub", "aud", "iat", "exp", "auth_time", "acr"] {
        let payload = with(|c| {
            c.remove(name);
        });
        assert_eq!(
            run(&hs(&payload)).unwrap_err(),
            TokenError::MissingClaim(name),
            "{name}"
        );
    }
}

#[test]
fn mistyped_claims() {
    let cases = [
        ("sub", json!(42)),
        ("sub", json!("")),
        ("iat", json!("yesterday")),
        ("exp", json!(1e300)),
        ("auth_time", json!(-5)),
        ("acr", json!(["aal2"])),
        ("amr", json!("otp")),
        ("amr", json!([1])),
        ("jti", json!({})),
        ("aud", json!(7)),
        ("iss", json!(1)),
        ("chg", json!(["ABC"])),
        ("chg", json!(5)),
    ];
    for (name, value) in cases {
        let payload = with(|c| {
            c.insert(name.into(), value.clone());
        });
        assert!(
            matches!(run(&hs(&payload)).unwrap_err(), TokenError::InvalidClaim(n, _) if n == name),
            "{name} = {value}"
        );
    }
}

#[test]
fn unknown_acr() {
    let payload = with(|c| {
        c.insert("acr".into(), json!("gold"));
    });
    assert_eq!(
        run(&hs(&payload)).unwrap_err(),
        TokenError::UnknownLevel("gold".into())
    );
}

#[test]
fn chg_single_or_list() {
    let d = "a".repeat(64);
    let one = with(|c| {
        c.insert("chg".into(), json!(d));
    });
    assert_eq!(run(&hs(&one)).unwrap().chg, vec![d.clone()]);
    let two = with(|c| {
        c.insert("chg".into(), json!([d, "b".repeat(64)]));
    });
    assert_eq!(run(&hs(&two)).unwrap().chg.len(), 2);
}

#[test]
fn malformed_inputs_never_panic() {
    let good = hs(&claims());
    let mut inputs = vec![
        String::new(),
        ".".into(),
        "..".into(),
        "...".into(),
        "\u{0}\u{1}.\u{ff}.x".into(),
        good.replace('.', ""),
        format!("{good}.extra"),
        "a".repeat(MAX_TOKEN_LEN + 1),
    ];
    // Every prefix of a valid token: truncation at every point.
    inputs.extend((0..good.len()).map(|i| good[..i].to_string()));
    for t in inputs {
        assert!(run(&t).is_err(), "{t:?}");
    }
}

#[test]
fn without_jti_the_replay_id_is_the_hash_of_the_signed_bytes() {
    let t = hs(&with(|c| {
        c.remove("jti");
    }));
    let c = run(&t).unwrap();
    assert_eq!(c.jti, None);
    let signed = t.rsplit_once('.').unwrap().0;
    let want: String = Sha256::digest(signed.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(c.replay_id, want);
    // Surrounding whitespace (trimmed) does not make a new assertion.
    assert_eq!(run(&format!(" {t}\n")).unwrap().replay_id, want);
    assert_eq!(run(&hs(&claims())).unwrap().replay_id, "j-1");
    for bad in [json!(""), json!(7), json!(["j"])] {
        let t = hs(&with(|c| {
            c.insert("jti".into(), bad.clone());
        }));
        assert!(
            matches!(run(&t), Err(TokenError::InvalidClaim("jti", _))),
            "{bad}"
        );
    }
}

// --- issuer profiles (DESIGN section 3) --------------------------------------

const ISSUER: &str = "https://login.example";

/// Key "p" (HS256) of [`ISSUER`], whose profile is `profile`.
fn profiled(profile: Profile) -> Vec<RegisteredKey> {
    vec![RegisteredKey {
        kid: "p".into(),
        key: VerifyingKey::new(Alg::HS256, SECRET).unwrap(),
        issuer: Some(ISSUER.into()),
        not_before_us: 0,
        not_after_us: None,
        profile: Arc::new(Profile {
            issuer: Some(ISSUER.into()),
            ..profile
        }),
    }]
}

fn signed_p(header: Value, payload: &Value) -> String {
    hs256(&header, payload, SECRET)
}

fn p_token(payload: &Value) -> String {
    signed_p(json!({"alg": "HS256", "kid": "p"}), payload)
}

/// [`claims`] as the issuer of key "p" mints them, changed by `change`.
fn p_claims(change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    with(|c| {
        c.insert("iss".into(), json!(ISSUER));
        change(c);
    })
}

#[test]
fn profile_maps_level_values() {
    let keys = profiled(Profile {
        levels: Some(vec![
            ("1".into(), "aal1".into()),
            ("2".into(), "aal2".into()),
        ]),
        ..Profile::default()
    });
    let t = p_token(&p_claims(|c| {
        c.insert("acr".into(), json!("2"));
    }));
    assert_eq!(run_with(&keys, &t).unwrap().acr, "aal2");
    // With a map, only mapped values count: a level name passed through
    // unmapped is unknown.
    let t = p_token(&p_claims(|_| {}));
    assert_eq!(
        run_with(&keys, &t).unwrap_err(),
        TokenError::UnknownLevel("aal2".into())
    );
}

#[test]
fn profile_reads_acrs_best_ranked_member() {
    let keys = profiled(Profile {
        level_claim: LevelClaim::Acrs,
        levels: Some(vec![
            ("c1".into(), "aal2".into()),
            ("c9".into(), "aal3".into()),
        ]),
        ..Profile::default()
    });
    let t = |acrs: Value| {
        p_token(&p_claims(|c| {
            c.remove("acr");
            c.insert("acrs".into(), acrs);
        }))
    };
    let acr = |v: Value| run_with(&keys, &t(v)).map(|c| c.acr);
    assert_eq!(acr(json!(["c1"])), Ok("aal2".into()));
    assert_eq!(acr(json!(["c0", "c1", "c9"])), Ok("aal3".into()));
    assert_eq!(
        acr(json!(["c0"])),
        Err(TokenError::UnknownLevel("c0".into()))
    );
    assert!(matches!(
        acr(json!([])),
        Err(TokenError::InvalidClaim("acrs", _))
    ));
    assert!(matches!(
        acr(json!("c1")),
        Err(TokenError::InvalidClaim("acrs", _))
    ));
    assert!(matches!(
        acr(json!(["c1", 2])),
        Err(TokenError::InvalidClaim("acrs", _))
    ));
    let none = p_token(&p_claims(|_| {}));
    assert_eq!(
        run_with(&keys, &none).unwrap_err(),
        TokenError::MissingClaim("acrs")
    );
}

#[test]
fn profile_reads_aal_and_amr_objects_for_freshness() {
    let keys = profiled(Profile {
        level_claim: LevelClaim::Aal,
        ..Profile::default()
    });
    let supabase = |amr: Value| {
        p_claims(|c| {
            c.remove("acr");
            c.remove("auth_time");
            c.insert("aal".into(), json!("aal2"));
            c.insert("amr".into(), amr);
        })
    };
    let c = run_with(
        &keys,
        &p_token(&supabase(json!([
            {"method": "password", "timestamp": NOW - 300},
            {"method": "totp", "timestamp": NOW - 40}
        ]))),
    )
    .unwrap();
    assert_eq!(
        (c.acr.as_str(), c.auth_time, c.amr.clone()),
        (
            "aal2",
            Some(NOW - 40),
            vec!["password".into(), "totp".into()]
        )
    );
    // auth_time, when present, is the freshness; amr timestamps are not.
    let with_auth_time = supabase(json!([{"method": "totp", "timestamp": NOW - 40}]));
    let mut with_auth_time = with_auth_time.as_object().unwrap().clone();
    with_auth_time.insert("auth_time".into(), json!(NOW - 100));
    let c = run_with(&keys, &p_token(&Value::Object(with_auth_time))).unwrap();
    assert_eq!(c.auth_time, Some(NOW - 100));
    // No timestamp anywhere: valid, but fresh for no max_age.
    let c = run_with(&keys, &p_token(&supabase(json!(["otp"])))).unwrap();
    assert_eq!(c.auth_time, None);
    // A timestamp in the future is refused like a future auth_time.
    let t = p_token(&supabase(
        json!([{"method": "totp", "timestamp": NOW + 60}]),
    ));
    assert_eq!(
        run_with(&keys, &t).unwrap_err(),
        TokenError::AuthTimeInFuture
    );
    for bad in [
        json!([{"timestamp": NOW}]),
        json!([{"method": 1}]),
        json!([{"method": "totp", "timestamp": "now"}]),
        json!([7]),
        json!("otp"),
    ] {
        let t = p_token(&supabase(bad.clone()));
        assert!(
            matches!(run_with(&keys, &t), Err(TokenError::InvalidClaim("amr", _))),
            "{bad}"
        );
    }
    // Without a profile auth_time stays required, amr timestamps or not.
    let t = hs(&with(|c| {
        c.remove("auth_time");
        c.insert(
            "amr".into(),
            json!([{"method": "otp", "timestamp": NOW - 5}]),
        );
    }));
    assert_eq!(run(&t).unwrap_err(), TokenError::MissingClaim("auth_time"));
}

#[test]
fn profile_audience_replaces_the_setting() {
    let keys = profiled(Profile {
        audience: Some("client-123".into()),
        ..Profile::default()
    });
    let ok = p_token(&p_claims(|c| {
        c.insert("aud".into(), json!("client-123"));
    }));
    assert!(run_with(&keys, &ok).is_ok());
    // stepup.audience ("bank" in these rules) no longer counts for it.
    let t = p_token(&p_claims(|_| {}));
    assert_eq!(
        run_with(&keys, &t).unwrap_err(),
        TokenError::WrongAudience(Some(ISSUER.into()))
    );
}

#[test]
fn profile_pins_header_types() {
    let keys = profiled(Profile {
        accepted_types: Some(vec!["at+jwt".into()]),
        ..Profile::default()
    });
    let payload = p_claims(|_| {});
    let typed = |typ: Option<&str>| {
        let mut h = json!({"alg": "HS256", "kid": "p"});
        if let Some(t) = typ {
            h["typ"] = json!(t);
        }
        run_with(&keys, &signed_p(h, &payload))
    };
    assert!(typed(Some("at+jwt")).is_ok());
    assert!(typed(Some("application/AT+JWT")).is_ok());
    assert_eq!(
        typed(Some("JWT")).unwrap_err(),
        TokenError::WrongType(Some("JWT".into()))
    );
    assert_eq!(typed(None).unwrap_err(), TokenError::WrongType(None));
    let h = json!({"alg": "HS256", "kid": "p", "typ": 5});
    assert!(matches!(
        run_with(&keys, &signed_p(h, &payload)),
        Err(TokenError::Malformed(_))
    ));
}
