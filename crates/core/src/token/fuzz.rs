//! Property tests of the token parser and the claim checks, run with a fixed
//! budget and a fixed seed (the same cases on every run, no files written):
//!
//! - any text, bytes or base64url junk is refused with `Malformed` or
//!   `TooLarge`, never a panic;
//! - headers with arbitrary `alg`, `kid`, `crit` and extra members are judged
//!   as the contract says (unknown alg, missing or unknown kid, retired key,
//!   alg confusion, bad signature);
//! - correctly signed payloads with mutated claims (every JSON type, huge and
//!   fractional numbers, long and hostile strings, duplicate keys, deep
//!   nesting, invalid UTF-8) are accepted exactly when [`contract`], an
//!   independent statement of README "The assertion", accepts them;
//! - bit flips, truncations and other edits of a valid token are refused.

use std::sync::LazyLock;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, RngSeed};
use serde_json::{json, Map, Value};

use super::tests::{claims, keys, run_with, sign_eddsa, sign_hs256, LEVELS, NOW, SECRET};
use super::{jws, Claims, RegisteredKey, TokenError, MAX_TOKEN_LEN};

/// Issuer of the `ed` test key (see `tests::keys`).
const ED_ISSUER: &str = "https://idp.example";
const LEEWAY: i64 = 30;
const MAX_LIFETIME: i64 = 900;
/// 9999-12-31T23:59:59Z, the last NumericDate accepted.
const LAST_DATE: i64 = 253_402_300_799;

/// Built once: deriving the Ed25519 public key is slow in a debug build.
static KEYS: LazyLock<Vec<RegisteredKey>> = LazyLock::new(keys);

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(0x5745_5055_7355),
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    }
}

fn run(token: &str) -> Result<Claims, TokenError> {
    run_with(&KEYS, token)
}

// --- strategies ---------------------------------------------------------------

/// Any JSON value, nested a few levels, with every number kind.
fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        ".{0,16}".prop_map(Value::String),
        select(vec!["", "\0", "a\0b", "aal2", "bank", "otp"]).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            vec((".{0,6}", inner), 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

fn text(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn raw(literals: Vec<&'static [u8]>) -> BoxedStrategy<Vec<u8>> {
    select(literals).prop_map(<[u8]>::to_vec).boxed()
}

fn nested(depth: usize, object: bool) -> Vec<u8> {
    let (open, close) = if object { ("{\"a\":", "}") } else { ("[", "]") };
    format!("{}1{}", open.repeat(depth), close.repeat(depth)).into_bytes()
}

/// JSON text (or almost JSON) that parsers get wrong: numbers beyond every
/// range, lone surrogates, overlong and other invalid UTF-8, deep nesting.
fn hostile_value() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        raw(vec![
            b"1e400",
            b"-1e400",
            b"1e-400",
            b"123456789012345678901234567890",
            b"-123456789012345678901234567890",
            b"18446744073709551616",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"-0",
            b"-0.0",
            b"1E3",
            b"0.1e1",
            b"01",
            b"NaN",
            b"Infinity",
            b"\"\\ud800\"",
            b"\"\\udfff\"",
            b"\"\\ud800\\u0041\"",
            b"\"\\ud83d\\ude00\"",
            b"\"\\u0000\"",
            b"\"a\\u0000\"",
            b"\"\xc0\xaf\"",
            b"\"\xe0\x80\xaf\"",
            b"\"\xed\xa0\x80\"",
            b"\"\xf4\x90\x80\x80\"",
            b"\"\xff\xfe\"",
            b"\"\x01\x1f\"",
            b"\"\\x41\"",
            b"'aal2'",
            b"\"unterminated",
        ]),
        (0usize..200, any::<bool>()).prop_map(|(d, o)| nested(d, o)),
        (0usize..6000).prop_map(|n| text(&Value::String("x".repeat(n)))),
    ]
    .boxed()
}

/// Any claim value: JSON of every type, hostile text, or hostile strings.
fn any_raw() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        3 => json_value().prop_map(|v| text(&v)),
        2 => hostile_value(),
        1 => ".{0,32}".prop_map(|s| text(&Value::String(s))),
    ]
    .boxed()
}

/// A NumericDate near `base`, or something that is not one.
fn date_raw(base: i64) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        4 => (-1000i64..1000).prop_map(move |d| text(&json!(base + d))),
        2 => (-1000.0f64..1000.0).prop_map(move |d| text(&json!(base as f64 + d))),
        1 => any::<i64>().prop_map(|v| text(&json!(v))),
        1 => any::<u64>().prop_map(|v| text(&json!(v))),
        1 => raw(vec![
            b"0",
            b"253402300799",
            b"253402300800",
            b"253402300799.5",
            b"-1",
            b"-0.5",
            b"1800000000.999999999999",
            b"1.8e9",
            b"\"1800000000\"",
            b"null",
            b"true",
            b"[1800000000]",
            b"{}",
        ]),
        1 => any_raw(),
    ]
    .boxed()
}

type Member = (String, Vec<u8>);

/// One claim: as in the valid baseline (`base`, or absent when `None`),
/// dropped, or replaced by a value from `alt`.
fn claim(
    name: &'static str,
    base: Option<Vec<u8>>,
    alt: BoxedStrategy<Vec<u8>>,
) -> BoxedStrategy<Vec<Member>> {
    let kept: Vec<Member> = base.map(|b| (name.to_string(), b)).into_iter().collect();
    prop_oneof![
        16 => Just(kept),
        1 => Just(Vec::new()),
        3 => alt.prop_map(move |v| vec![(name.to_string(), v)]),
    ]
    .boxed()
}

fn string_claim(name: &'static str, base: &str) -> BoxedStrategy<Vec<Member>> {
    let alt = prop_oneof![
        raw(vec![b"\"\"", b"null", b"\" \""]),
        "[a-z0-9-]{1,12}".prop_map(|s| text(&Value::String(s))),
        any_raw(),
    ];
    claim(name, Some(text(&json!(base))), alt.boxed())
}

/// Claims of the valid baseline (`tests::claims` plus `iss`, so both test
/// keys accept it), each kept, dropped or replaced; extra members that may
/// repeat a claim name (duplicate keys: the lexically last one counts, RFC
/// 7515 section 4); all in random order.
fn payload_members() -> impl Strategy<Value = Vec<Member>> {
    let hex = || "[0-9a-f]{64}".prop_map(|s| text(&json!(s)));
    let claims = (
        string_claim("sub", "alice"),
        claim(
            "aud",
            Some(text(&json!("bank"))),
            prop_oneof![
                raw(vec![
                    b"[\"x\",\"bank\"]",
                    b"[\"x\",\"y\"]",
                    b"[\"Bank\"]",
                    b"[]",
                    b"[\"bank\",1]",
                    b"[\"bank\",null]",
                    b"[[\"bank\"]]",
                    b"\"BANK\"",
                    b"\"bank \"",
                    b"null",
                ]),
                any_raw(),
            ]
            .boxed(),
        ),
        claim("iat", Some(text(&json!(NOW - 10))), date_raw(NOW - 10)),
        claim("exp", Some(text(&json!(NOW + 290))), date_raw(NOW + 290)),
        claim(
            "auth_time",
            Some(text(&json!(NOW - 20))),
            date_raw(NOW - 20),
        ),
        claim("nbf", None, date_raw(NOW)),
        claim(
            "acr",
            Some(text(&json!("aal2"))),
            prop_oneof![
                raw(vec![
                    b"\"aal1\"",
                    b"\"aal3\"",
                    b"\"aal4\"",
                    b"\"AAL2\"",
                    b"\"\"",
                    b"null",
                    b"[\"aal2\"]",
                ]),
                any_raw(),
            ]
            .boxed(),
        ),
        claim(
            "amr",
            Some(text(&json!(["otp"]))),
            prop_oneof![
                raw(vec![
                    b"[]",
                    b"[\"otp\",\"hwk\"]",
                    b"\"otp\"",
                    b"[\"otp\",1]",
                    b"null",
                    b"[null]",
                    b"{}",
                ]),
                any_raw(),
            ]
            .boxed(),
        ),
        string_claim("jti", "j-1"),
        claim(
            "iss",
            Some(text(&json!(ED_ISSUER))),
            prop_oneof![
                raw(vec![b"\"https://evil.example\"", b"\"\"", b"1", b"null"]),
                any_raw(),
            ]
            .boxed(),
        ),
        claim(
            "chg",
            None,
            prop_oneof![
                hex(),
                vec(hex(), 0..3).prop_map(|v| {
                    let items: Vec<String> = v
                        .iter()
                        .map(|b| String::from_utf8_lossy(b).into())
                        .collect();
                    format!("[{}]", items.join(",")).into_bytes()
                }),
                "[0-9A-F]{64}".prop_map(|s| text(&json!(s))),
                "[0-9a-f]{63}".prop_map(|s| text(&json!(s))),
                "[0-9a-f]{64}".prop_map(|s| text(&json!([s, "x"]))),
                any_raw(),
            ]
            .boxed(),
        ),
    );
    let names = vec![
        "sub",
        "aud",
        "iat",
        "exp",
        "auth_time",
        "nbf",
        "acr",
        "amr",
        "jti",
        "iss",
        "chg",
    ];
    let extra = vec(
        (
            prop_oneof![1 => select(names).prop_map(String::from), 3 => ".{0,10}"],
            any_raw(),
        ),
        0..4,
    );
    (claims, extra)
        .prop_map(|((a, b, c, d, e, f, g, h, i, j, k), extra)| {
            [a, b, c, d, e, f, g, h, i, j, k, extra].concat()
        })
        .prop_shuffle()
}

fn object_text(members: &[Member]) -> Vec<u8> {
    let mut out = b"{".to_vec();
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend(text(&Value::String(name.clone())));
        out.push(b':');
        out.extend(value);
    }
    out.push(b'}');
    out
}

/// Seconds, biased to the edges of the time rules (leeway 30 s, lifetime
/// 900 s, the baseline's offsets), with a fraction now and then.
fn offset() -> BoxedStrategy<(i64, f64)> {
    let whole = prop_oneof![
        1 => -1000i64..1000,
        2 => select(vec![
            -901, -900, -899, -331, -330, -329, -301, -300, -299, -31, -30, -29, -1, 0, 1, 29,
            30, 31, 299, 300, 301, 899, 900, 901,
        ]),
    ];
    let fraction = prop_oneof![3 => Just(0.0), 1 => select(vec![0.25, 0.5, 0.999_999])];
    (whole, fraction).boxed()
}

/// A NumericDate `secs + fraction`: an integer when the fraction is 0.
fn date_text(secs: i64, fraction: f64) -> Vec<u8> {
    if fraction == 0.0 {
        text(&json!(secs))
    } else {
        text(&json!(secs as f64 + fraction))
    }
}

/// The valid baseline with only `iat`, `exp`, `auth_time` and `nbf`
/// moved to and around the edges of the time rules: `exp` and `auth_time`
/// relative to `iat` or to now.
fn time_members() -> impl Strategy<Value = Vec<Member>> {
    (
        offset(),
        (offset(), any::<bool>()),
        (offset(), any::<bool>()),
        option::of(offset()),
    )
        .prop_map(|(iat, (exp, exp_by_iat), (auth, auth_by_iat), nbf)| {
            let iat_s = NOW + iat.0;
            let from = |by_iat: bool| if by_iat { iat_s } else { NOW };
            let mut m: Vec<Member> = claims()
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| !["iat", "exp", "auth_time"].contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), text(v)))
                .collect();
            m.push(("iat".into(), date_text(iat_s, iat.1)));
            m.push(("exp".into(), date_text(from(exp_by_iat) + exp.0, exp.1)));
            m.push((
                "auth_time".into(),
                date_text(from(auth_by_iat) + auth.0, auth.1),
            ));
            m.extend(nbf.map(|(n, f)| ("nbf".to_string(), date_text(NOW + n, f))));
            m.push(("iss".into(), text(&json!(ED_ISSUER))));
            m
        })
}

/// Payloads that are not a JSON object at all.
fn hostile_payload() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..512),
        json_value().prop_map(|v| text(&v)),
        hostile_value(),
        (0usize..3000, any::<bool>()).prop_map(|(d, o)| {
            let mut t = b"{\"sub\":".to_vec();
            t.extend(nested(d, o));
            t.push(b'}');
            t
        }),
        raw(vec![
            b"",
            b" ",
            b"{",
            b"}",
            b"{}}",
            b"{\"a\":1,}",
            b"\xef\xbb\xbf{}"
        ]),
    ]
    .boxed()
}

// --- the contract, stated independently of claims.rs -------------------------

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// A NumericDate: a JSON number of seconds in 0..=LAST_DATE, fractions
/// truncated toward the past. `Err` when present but not one.
fn date(m: &Map<String, Value>, name: &str) -> Result<Option<i64>, ()> {
    let Some(v) = m.get(name) else {
        return Ok(None);
    };
    let Value::Number(n) = v else {
        return Err(());
    };
    if n.is_i64() {
        let i = n.as_i64().unwrap();
        return if (0..=LAST_DATE).contains(&i) {
            Ok(Some(i))
        } else {
            Err(())
        };
    }
    if n.is_u64() {
        return Err(()); // beyond i64, so beyond year 9999
    }
    let f = n.as_f64().unwrap();
    if f.is_finite() && f >= 0.0 && f <= LAST_DATE as f64 {
        Ok(Some(f.floor() as i64))
    } else {
        Err(())
    }
}

fn nonempty(m: &Map<String, Value>, name: &str) -> Result<String, ()> {
    match m.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(()),
    }
}

fn strings(v: &Value) -> Result<Vec<String>, ()> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(String::from).ok_or(()))
            .collect(),
        _ => Err(()),
    }
}

/// README "The assertion", for a payload signed by `kid` (whose key has
/// `issuer`), verified at `NOW` with a leeway of 30 s and a maximum
/// lifetime of 900 s: the claims `verify` must return, or `Err` when the
/// payload must be refused.
fn contract(
    m: &Map<String, Value>,
    kid: &str,
    issuer: Option<&str>,
    signed: &str,
) -> Result<Claims, ()> {
    let sub = nonempty(m, "sub")?;
    let aud_ok = match m.get("aud") {
        Some(Value::String(a)) => a == "bank",
        Some(list) => strings(list)?.iter().any(|a| a == "bank"),
        None => false,
    };
    let iat = date(m, "iat")?.ok_or(())?;
    let exp = date(m, "exp")?.ok_or(())?;
    let auth_time = date(m, "auth_time")?.ok_or(())?;
    let nbf = date(m, "nbf")?;
    let acr = nonempty(m, "acr")?;
    // Optional; null counts as absent, as for acr and sub.
    let jti = match m.get("jti") {
        None | Some(Value::Null) => None,
        Some(_) => Some(nonempty(m, "jti")?),
    };
    let replay_id = match &jti {
        Some(j) => j.clone(),
        None => {
            use sha2::Digest;
            sha2::Sha256::digest(signed.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        }
    };
    // Method names, or {method, timestamp} objects (the timestamps matter
    // only to issuers with a profile).
    let amr = match m.get("amr") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Object(o) => match o.get("method") {
                    Some(Value::String(s)) => date(o, "timestamp").map(|_| s.clone()),
                    _ => Err(()),
                },
                _ => Err(()),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(()),
    };
    let chg = match m.get("chg") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(list) => strings(list)?,
    };
    let hex64 = |d: &String| d.len() == 64 && d.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'));
    let iss = match m.get("iss") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(()),
    };
    let ok = aud_ok
        && chg.iter().all(hex64)
        && issuer.is_none_or(|want| iss.as_deref() == Some(want))
        && LEVELS.contains(&acr.as_str())
        && iat < exp
        && exp - iat <= MAX_LIFETIME
        && NOW < exp + LEEWAY
        && nbf.is_none_or(|nbf| nbf <= NOW + LEEWAY)
        && iat <= NOW + LEEWAY
        && auth_time <= NOW + LEEWAY
        && auth_time <= iat + LEEWAY;
    if !ok {
        return Err(());
    }
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
        auth_time: Some(auth_time),
        chg,
        raw: m.clone().into(),
    })
}

/// Refusals that judge the claims of a well-formed, well-signed payload.
fn is_claim_error(e: &TokenError) -> bool {
    use TokenError::*;
    matches!(
        e,
        MissingClaim(_)
            | InvalidClaim(..)
            | Expired
            | NotYetValid
            | IssuedInFuture
            | AuthTimeInFuture
            | AuthTimeAfterIssue
            | LifetimeTooLong { .. }
            | WrongAudience(_)
            | WrongIssuer
            | UnknownLevel(_)
    )
}

/// Signs `payload` as kid `ed` (EdDSA) or `hs` (HS256), verifies it and
/// compares the outcome with [`contract`].
fn check_signed_payload(ed: bool, payload: &[u8]) -> Result<(), TestCaseError> {
    let (token, kid, issuer) = if ed {
        let h = br#"{"alg":"EdDSA","kid":"ed"}"#;
        (sign_eddsa(h, payload), "ed", Some(ED_ISSUER))
    } else {
        let h = br#"{"alg":"HS256","kid":"hs","typ":"JWT"}"#;
        (sign_hs256(h, payload, SECRET), "hs", None)
    };
    let got = run(&token);
    let shown = String::from_utf8_lossy(&payload[..payload.len().min(400)]).into_owned();
    if token.len() > MAX_TOKEN_LEN {
        prop_assert_eq!(got, Err(TokenError::TooLarge(token.len())));
        return Ok(());
    }
    let m = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(m)) if !m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)) => m,
        _ => {
            prop_assert!(
                matches!(got, Err(TokenError::Malformed(_))),
                "{:?} for {}",
                got,
                shown
            );
            return Ok(());
        }
    };
    let signed = token.rsplit_once('.').map_or("", |(input, _)| input);
    match (contract(&m, kid, issuer, signed), got) {
        (Ok(want), Ok(claims)) => prop_assert_eq!(claims, want),
        (Err(()), Err(e)) => prop_assert!(is_claim_error(&e), "{:?} for {}", e, shown),
        (want, got) => prop_assert!(
            false,
            "contract accepts: {}, verify: {:?}, payload {}",
            want.is_ok(),
            got,
            shown
        ),
    }
    Ok(())
}

/// The header rules of DESIGN section 2, for a header built by
/// [`header`]: the error `verify` must return, `None` when the header is
/// fine and only the signature decides.
fn header_verdict(h: &Value) -> Option<TokenError> {
    use TokenError::*;
    let malformed = Some(Malformed(String::new()));
    let Value::Object(m) = h else {
        return malformed;
    };
    let Some(Value::String(alg)) = m.get("alg") else {
        return malformed;
    };
    if m.contains_key("crit") {
        return Some(CriticalHeader);
    }
    let kid = match m.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return malformed,
    };
    if !["HS256", "EdDSA", "RS256", "PS256", "ES256", "ES384"].contains(&alg.as_str()) {
        return Some(UnsupportedAlg(alg.clone()));
    }
    let Some(kid) = kid else {
        return Some(MissingKid);
    };
    let registered = match kid.as_str() {
        "hs" | "old" | "later" => "HS256",
        "ed" => "EdDSA",
        _ => return Some(UnknownKid(kid)),
    };
    match kid.as_str() {
        "old" => Some(KeyRetired(kid)),
        "later" => Some(KeyNotYetValid(kid)),
        _ if alg != registered => Some(AlgMismatch {
            kid,
            header: alg.clone(),
            key: registered.into(),
        }),
        _ => None,
    }
}

fn header() -> impl Strategy<Value = Value> {
    let alg = prop_oneof![
        4 => select(vec!["HS256", "EdDSA", "none", "None", "RS256", "hs256", "ES256", ""])
            .prop_map(Value::from),
        1 => json_value(),
    ];
    let kid = prop_oneof![
        4 => select(vec!["hs", "ed", "old", "later", "nope", "", "HS"]).prop_map(Value::from),
        1 => json_value(),
    ];
    let object = (
        option::weighted(0.9, alg),
        option::weighted(0.9, kid),
        option::weighted(0.1, json_value()),
        vec(("x-[a-z]{0,6}", json_value()), 0..3),
    )
        .prop_map(|(alg, kid, crit, extra)| {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            for (name, v) in [("alg", alg), ("kid", kid), ("crit", crit)] {
                if let Some(v) = v {
                    m.insert(name.into(), v);
                }
            }
            Value::Object(m)
        });
    prop_oneof![1 => json_value(), 9 => object]
}

/// A mutation of a token, applied by [`mutate`].
#[derive(Debug, Clone)]
enum Edit {
    FlipBit(Index, u8),
    KeepPrefix(Index),
    KeepSuffix(Index),
    Delete(Index),
    Insert(Index, char),
    Replace(Index, char),
    SwapAdjacent(Index),
    SwapSegments(usize, usize),
    /// Replaces the last character of segment `.0`, whose low bits are
    /// padding when its length is not a multiple of 4.
    SegmentEnd(usize, char),
    /// Appends `=` padding to segment `.0`.
    Pad(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let ch = prop_oneof![
        8 => select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                .chars()
                .collect::<Vec<_>>()
        ),
        1 => select(vec!['.', '=', '+', '/', '\0', '\u{fffd}', '\u{a0}']),
    ];
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Edit::FlipBit(i, b)),
        2 => any::<Index>().prop_map(Edit::KeepPrefix),
        1 => any::<Index>().prop_map(Edit::KeepSuffix),
        1 => any::<Index>().prop_map(Edit::Delete),
        2 => (any::<Index>(), ch.clone()).prop_map(|(i, c)| Edit::Insert(i, c)),
        2 => (any::<Index>(), ch.clone()).prop_map(|(i, c)| Edit::Replace(i, c)),
        1 => any::<Index>().prop_map(Edit::SwapAdjacent),
        1 => (0usize..3, 0usize..3).prop_map(|(a, b)| Edit::SwapSegments(a, b)),
        2 => (0usize..3, ch.clone()).prop_map(|(s, c)| Edit::SegmentEnd(s, c)),
        1 => (0usize..3, 1usize..3).prop_map(|(s, n)| Edit::Pad(s, n)),
    ]
}

/// Applies `e` to `token`; `None` when the edit would leave it unchanged.
fn mutate(token: &str, e: &Edit) -> Option<String> {
    let b = token.as_bytes();
    let n = b.len();
    if n < 2 {
        return None;
    }
    let out: Vec<u8> = match e {
        Edit::FlipBit(i, bit) => {
            let mut v = b.to_vec();
            v[i.index(n)] ^= 1 << bit;
            v
        }
        Edit::KeepPrefix(i) => b[..i.index(n)].to_vec(),
        Edit::KeepSuffix(i) => b[1 + i.index(n - 1)..].to_vec(),
        Edit::Delete(i) => {
            let mut v = b.to_vec();
            v.remove(i.index(n));
            v
        }
        Edit::Insert(i, c) => {
            let at = i.index(n + 1);
            [&b[..at], c.to_string().as_bytes(), &b[at..]].concat()
        }
        Edit::Replace(i, c) => {
            let at = i.index(n);
            [&b[..at], c.to_string().as_bytes(), &b[at + 1..]].concat()
        }
        Edit::SwapAdjacent(i) => {
            let mut v = b.to_vec();
            let at = i.index(n - 1);
            v.swap(at, at + 1);
            v
        }
        Edit::SwapSegments(x, y) => {
            let mut parts: Vec<&str> = token.split('.').collect();
            if parts.len() <= *x.max(y) {
                return None;
            }
            parts.swap(*x, *y);
            parts.join(".").into_bytes()
        }
        Edit::SegmentEnd(seg, c) => {
            let mut parts: Vec<String> = token.split('.').map(String::from).collect();
            let part = parts.get_mut(*seg)?;
            part.pop()?;
            part.push(*c);
            parts.join(".").into_bytes()
        }
        Edit::Pad(seg, n) => {
            let mut parts: Vec<String> = token.split('.').map(String::from).collect();
            parts.get_mut(*seg)?.push_str(&"=".repeat(*n));
            parts.join(".").into_bytes()
        }
    };
    let s = String::from_utf8_lossy(&out).into_owned();
    // Whitespace around a token is ignored, by design: not an edit.
    (s.trim() != token).then_some(s)
}

/// A valid token with random `sub`, `jti` and `amr`, signed by `hs` or `ed`.
fn valid_token() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        "[a-zA-Z0-9@.]{1,24}",
        "[a-f0-9-]{1,36}",
        vec(
            select(vec!["otp", "hwk", "swk", "fpt", "face", "pwd"]),
            0..3,
        ),
        -60i64..0,
    )
        .prop_map(|(ed, sub, jti, amr, age)| {
            let mut c = claims();
            let m = c.as_object_mut().unwrap();
            m.insert("sub".into(), json!(sub));
            m.insert("jti".into(), json!(jti));
            m.insert("amr".into(), json!(amr));
            m.insert("iat".into(), json!(NOW + age));
            m.insert("auth_time".into(), json!(NOW + age - 5));
            m.insert("iss".into(), json!(ED_ISSUER));
            let payload = c.to_string();
            if ed {
                sign_eddsa(br#"{"alg":"EdDSA","kid":"ed"}"#, payload.as_bytes())
            } else {
                sign_hs256(br#"{"alg":"HS256","kid":"hs"}"#, payload.as_bytes(), SECRET)
            }
        })
}

// --- properties ---------------------------------------------------------------

proptest! {
    #![proptest_config(config(6000))]

    /// (a) Any text, of any length, is refused before a key is even looked up.
    #[test]
    fn arbitrary_text_is_refused(s in prop_oneof![
        ".{0,64}",
        "[A-Za-z0-9_.=-]{0,300}",
        "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,40}",
        vec(any::<u8>(), 0..2048).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        (MAX_TOKEN_LEN - 4..MAX_TOKEN_LEN + 4).prop_map(|n| "eyJ".repeat(n / 3 + 1)[..n].to_string()),
    ]) {
        let got = run(&s);
        if s.len() > MAX_TOKEN_LEN {
            prop_assert_eq!(got, Err(TokenError::TooLarge(s.len())));
        } else {
            prop_assert!(matches!(got, Err(TokenError::Malformed(_))), "{:?}", got);
        }
    }

    /// (a) Three base64url segments of random bytes: well-formed envelope,
    /// contents that are no JSON header.
    #[test]
    fn random_segments_are_malformed(
        h in vec(any::<u8>(), 0..200),
        p in vec(any::<u8>(), 0..200),
        s in vec(any::<u8>(), 0..80),
    ) {
        use base64::Engine;
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let got = run(&format!("{}.{}.{}", b64(&h), b64(&p), b64(&s)));
        prop_assert!(matches!(got, Err(TokenError::Malformed(_))), "{:?}", got);
    }

    /// (a) The payload decoder takes any bytes; what it accepts is an object
    /// without U+0000 (which jsonb cannot hold).
    #[test]
    fn payload_decoder_takes_any_bytes(p in prop_oneof![
        vec(any::<u8>(), 0..256),
        "[\\[\\]{}\":,0-9a-z\\\\ .eE+-]{0,200}".prop_map(String::into_bytes),
        hostile_payload(),
        payload_members().prop_map(|m| object_text(&m)),
    ]) {
        match jws::claims(&p) {
            Ok(m) => prop_assert!(!has_nul(&Value::Object(m))),
            Err(e) => prop_assert!(matches!(e, TokenError::Malformed(_)), "{:?}", e),
        }
    }
}

proptest! {
    #![proptest_config(config(3000))]

    /// (b) Arbitrary headers, correctly signed for their alg (or not): the
    /// outcome follows the header rules, never the header's word alone.
    #[test]
    fn headers_are_judged_by_the_contract(h in header(), good_signature in prop::bool::weighted(0.8)) {
        let alg = h.get("alg").and_then(Value::as_str);
        let mut payload = claims();
        payload["iss"] = json!(ED_ISSUER);
        let (h_text, p_text) = (text(&h), text(&payload));
        let token = match (alg, good_signature) {
            (Some("EdDSA"), true) => sign_eddsa(&h_text, &p_text),
            (_, true) => sign_hs256(&h_text, &p_text, SECRET),
            (_, false) => sign_hs256(&h_text, &p_text, b"another secret of at least 32 bytes"),
        };
        let got = run(&token);
        match header_verdict(&h) {
            Some(TokenError::Malformed(_)) => {
                prop_assert!(matches!(got, Err(TokenError::Malformed(_))), "{:?} for {}", got, h)
            }
            Some(want) => prop_assert_eq!(got, Err(want), "{}", h),
            None if good_signature => prop_assert!(got.is_ok(), "{:?} for {}", got, h),
            None => prop_assert_eq!(got, Err(TokenError::BadSignature), "{}", h),
        }
    }

    /// (b) HS256-signed payloads with mutated claims: accepted exactly when
    /// the contract accepts them, with exactly these claims.
    #[test]
    fn hs256_claims_follow_the_contract(members in payload_members()) {
        check_signed_payload(false, &object_text(&members))?;
    }

    /// (b) The time rules at and around their boundaries.
    #[test]
    fn hs256_time_rules_follow_the_contract(members in time_members()) {
        check_signed_payload(false, &object_text(&members))?;
    }

    /// (b) Payloads that are not a JSON object, correctly signed.
    #[test]
    fn hs256_hostile_payloads_are_malformed(p in hostile_payload()) {
        check_signed_payload(false, &p)?;
    }
}

proptest! {
    // Ed25519 is slow without optimisation: fewer cases.
    #![proptest_config(config(400))]

    /// (b) As above, signed with Ed25519 by a key that names an issuer.
    #[test]
    fn eddsa_claims_follow_the_contract(members in payload_members()) {
        check_signed_payload(true, &object_text(&members))?;
    }

    /// (c) Every edit of a valid HS256 or EdDSA token is refused.
    #[test]
    fn edited_tokens_are_refused(token in valid_token(), edits in vec(edit(), 1..4)) {
        prop_assert!(run(&token).is_ok());
        let mut t = token.clone();
        for e in &edits {
            if let Some(next) = mutate(&t, e) {
                t = next;
            }
        }
        if t != token {
            prop_assert!(run(&t).is_err(), "{:?} accepted {}", edits, t);
        }
    }
}

proptest! {
    #![proptest_config(config(3000))]

    /// (c) As above, HS256 only, one edit at a time, more cases.
    #[test]
    fn single_edits_of_hs256_tokens_are_refused(sub in "[a-z]{1,12}", e in edit()) {
        let mut c = claims();
        c["sub"] = json!(sub);
        let token = sign_hs256(br#"{"alg":"HS256","kid":"hs"}"#, c.to_string().as_bytes(), SECRET);
        prop_assert!(run(&token).is_ok());
        if let Some(t) = mutate(&token, &e) {
            prop_assert!(run(&t).is_err(), "{:?} accepted {}", e, t);
        }
    }
}

/// Deep nesting at every depth up to far beyond serde_json's limit (128):
/// an error, never a stack overflow, in the header and in the payload.
#[test]
fn nesting_depth_sweep() {
    for depth in (0..400).chain([1_000, 3_000]) {
        for object in [false, true] {
            let deep = nested(depth, object);
            let mut payload = b"{\"sub\":".to_vec();
            payload.extend(&deep);
            payload.push(b'}');
            let parsed = jws::claims(&payload);
            assert_eq!(parsed.is_ok(), depth < 127, "payload depth {depth}");
            let token = sign_hs256(&deep, b"{}", SECRET);
            let got = run(&token);
            if token.len() > MAX_TOKEN_LEN {
                assert_eq!(got, Err(TokenError::TooLarge(token.len())));
            } else {
                assert!(
                    matches!(got, Err(TokenError::Malformed(_))),
                    "header depth {depth}"
                );
            }
        }
    }
}
