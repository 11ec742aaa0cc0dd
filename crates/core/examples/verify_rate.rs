//! Signature verifications per second: the libraries called directly (the
//! limit) against `VerifyingKey::verify`, on the same keys and tokens, in
//! the same process.
//!
//!     cargo run --release -p stepup-core --example verify_rate -- FILE
//!
//! FILE has lines `ALG<TAB>base64url key<TAB>compact JWS`: the key as
//! `stepup.add_key` takes it (DER SubjectPublicKeyInfo for RS256, PS256,
//! ES256, ES384; the 32-byte public key or its SPKI for EdDSA; the secret
//! for HS256), every token of one algorithm signed by the same key. Prints
//! one line per algorithm: `ALG raw_per_s=N core_per_s=N`.
//!
//! Both sides get the signing input and the decoded signature, so what is
//! compared is the verification alone; splitting and base64 are not timed.
//! "raw" is the library the core itself uses for that algorithm: aws-lc-rs
//! `ParsedPublicKey::verify_sig` (key parsed once, as the core does) for
//! RSA and ECDSA, `ed25519_dalek` `verify_strict` for EdDSA, `hmac` for HS256.
//!
//!     cargo run --release -p stepup-core --example verify_rate -- --make FILE [N]
//!
//! writes such a FILE: fresh keys (RSA 2048, P-256, P-384, Ed25519, a
//! 32-byte secret) and N tokens (default 50) per algorithm.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self as lc, KeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use stepup_core::token::{Alg, VerifyingKey};

/// Time per algorithm and side.
const RUN: Duration = Duration::from_millis(1500);

struct Token {
    input: Vec<u8>,
    sig: Vec<u8>,
}

enum Raw {
    Hmac(Vec<u8>),
    Ed(ed25519_dalek::VerifyingKey),
    Lc(lc::ParsedPublicKey),
}

impl Raw {
    fn new(alg: Alg, key: &[u8]) -> Raw {
        let lc_alg: &'static dyn lc::VerificationAlgorithm = match alg {
            Alg::HS256 => return Raw::Hmac(key.to_vec()),
            Alg::EdDSA => {
                // The last 32 bytes of an Ed25519 SPKI are the key.
                let raw: [u8; 32] = key[key.len() - 32..].try_into().unwrap();
                return Raw::Ed(ed25519_dalek::VerifyingKey::from_bytes(&raw).unwrap());
            }
            Alg::RS256 => &lc::RSA_PKCS1_2048_8192_SHA256,
            Alg::PS256 => &lc::RSA_PSS_2048_8192_SHA256,
            Alg::ES256 => &lc::ECDSA_P256_SHA256_FIXED,
            Alg::ES384 => &lc::ECDSA_P384_SHA384_FIXED,
        };
        Raw::Lc(lc::ParsedPublicKey::new(lc_alg, key).expect("key"))
    }

    fn verify(&self, input: &[u8], sig: &[u8]) -> bool {
        match self {
            Raw::Hmac(secret) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
                mac.update(input);
                mac.verify_slice(sig).is_ok()
            }
            Raw::Ed(key) => match ed25519_dalek::Signature::from_slice(sig) {
                Ok(s) => key.verify_strict(input, &s).is_ok(),
                Err(_) => false,
            },
            Raw::Lc(key) => key.verify_sig(input, sig).is_ok(),
        }
    }
}

/// Verifications per second of `raw` and `core`, each run in alternating
/// slices (whole passes over `tokens`) for about `RUN` in total, so that
/// drift in machine load or clock speed falls on both alike.
fn rates(
    tokens: &[Token],
    raw: impl Fn(&[u8], &[u8]) -> bool,
    core: impl Fn(&[u8], &[u8]) -> bool,
) -> (f64, f64) {
    const SLICES: u32 = 6;
    let slice = RUN / SLICES;
    let mut totals = [(0u64, Duration::ZERO); 2];
    for _ in 0..SLICES {
        for (which, verify) in [&raw as &dyn Fn(&[u8], &[u8]) -> bool, &core]
            .into_iter()
            .enumerate()
        {
            let started = Instant::now();
            let mut done = 0u64;
            while started.elapsed() < slice {
                for t in tokens {
                    assert!(
                        verify(black_box(&t.input), black_box(&t.sig)),
                        "a token does not verify"
                    );
                }
                done += tokens.len() as u64;
            }
            totals[which].0 += done;
            totals[which].1 += started.elapsed();
        }
    }
    let per_s = |(n, t): (u64, Duration)| n as f64 / t.as_secs_f64();
    (per_s(totals[0]), per_s(totals[1]))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, file] if flag == "--make" => make(file, 50),
        [flag, file, n] if flag == "--make" => make(file, n.parse().expect("N")),
        [file] => measure(file),
        _ => {
            eprintln!("usage: verify_rate FILE | verify_rate --make FILE [N]");
            std::process::exit(2);
        }
    }
}

fn measure(file: &str) {
    let text = std::fs::read_to_string(file).expect("read FILE");
    // alg -> (key bytes, tokens), in the order algs first appear.
    let mut order: Vec<Alg> = Vec::new();
    let mut groups: BTreeMap<&'static str, (Vec<u8>, Vec<Token>)> = BTreeMap::new();
    for (no, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut cols = line.split('\t');
        let (Some(alg), Some(key), Some(jws), None) =
            (cols.next(), cols.next(), cols.next(), cols.next())
        else {
            panic!("line {}: want ALG<TAB>key<TAB>JWS", no + 1);
        };
        let alg = Alg::parse(alg).unwrap_or_else(|| panic!("line {}: alg {alg}", no + 1));
        let key = URL_SAFE_NO_PAD.decode(key).expect("key is base64url");
        let (input, sig) = jws.rsplit_once('.').expect("compact JWS");
        let token = Token {
            input: input.as_bytes().to_vec(),
            sig: URL_SAFE_NO_PAD.decode(sig).expect("signature is base64url"),
        };
        let entry = groups.entry(alg.name()).or_insert_with(|| {
            order.push(alg);
            (key.clone(), Vec::new())
        });
        assert_eq!(
            entry.0,
            key,
            "line {}: another key for {}",
            no + 1,
            alg.name()
        );
        entry.1.push(token);
    }
    for alg in order {
        let (key, tokens) = &groups[alg.name()];
        let raw = Raw::new(alg, key);
        let core = VerifyingKey::new(alg, key).unwrap_or_else(|e| panic!("{}: {e}", alg.name()));
        // Warm both paths (caches, lazy CPU-feature detection) first.
        for t in tokens {
            assert!(raw.verify(&t.input, &t.sig) && core.verify(&t.input, &t.sig).is_ok());
        }
        let (raw_per_s, core_per_s) = rates(
            tokens,
            |i, s| raw.verify(i, s),
            |i, s| core.verify(i, s).is_ok(),
        );
        println!(
            "{} raw_per_s={:.0} core_per_s={:.0}",
            alg.name(),
            raw_per_s,
            core_per_s
        );
        eprintln!(
            "{}: {} tokens, {:.1} us raw, {:.1} us core per verify",
            alg.name(),
            tokens.len(),
            1e6 / raw_per_s,
            1e6 / core_per_s
        );
    }
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn make(file: &str, n: usize) {
    let rng = SystemRandom::new();
    let rsa = lc::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let rsa_der = rsa.public_key().as_der().unwrap().as_ref().to_vec();
    let p256 = lc::EcdsaKeyPair::generate(&lc::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let p256_der = p256.public_key().as_der().unwrap().as_ref().to_vec();
    let p384 = lc::EcdsaKeyPair::generate(&lc::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
    let p384_der = p384.public_key().as_der().unwrap().as_ref().to_vec();
    let ed = lc::Ed25519KeyPair::generate().unwrap();
    let ed_raw = ed.public_key().as_ref().to_vec();
    let mut secret = [0u8; 32];
    rng.fill(&mut secret).unwrap();

    let mut out = String::new();
    for alg in Alg::ALL {
        let key: &[u8] = match alg {
            Alg::HS256 => &secret,
            Alg::EdDSA => &ed_raw,
            Alg::RS256 | Alg::PS256 => &rsa_der,
            Alg::ES256 => &p256_der,
            Alg::ES384 => &p384_der,
        };
        for i in 0..n {
            let header = format!(
                r#"{{"alg":"{}","kid":"bench-{}","typ":"JWT"}}"#,
                alg.name(),
                alg.name()
            );
            let payload = format!(
                r#"{{"sub":"user-{i}","aud":"bench","iat":1700000000,"exp":1700000300,"auth_time":1700000000,"acr":"aal2","amr":["otp"],"jti":"{i:08}"}}"#
            );
            let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
            let sig = match alg {
                Alg::HS256 => {
                    let mut mac = Hmac::<Sha256>::new_from_slice(&secret).unwrap();
                    mac.update(input.as_bytes());
                    mac.finalize().into_bytes().to_vec()
                }
                Alg::EdDSA => ed.sign(input.as_bytes()).as_ref().to_vec(),
                Alg::RS256 | Alg::PS256 => {
                    let pad: &'static dyn lc::RsaEncoding = if alg == Alg::RS256 {
                        &lc::RSA_PKCS1_SHA256
                    } else {
                        &lc::RSA_PSS_SHA256
                    };
                    let mut sig = vec![0u8; rsa.public_modulus_len()];
                    rsa.sign(pad, &rng, input.as_bytes(), &mut sig).unwrap();
                    sig
                }
                Alg::ES256 => p256.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
                Alg::ES384 => p384.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            };
            out.push_str(&format!(
                "{}\t{}\t{}.{}\n",
                alg.name(),
                b64(key),
                input,
                b64(&sig)
            ));
        }
    }
    std::fs::write(file, out).expect("write FILE");
}
