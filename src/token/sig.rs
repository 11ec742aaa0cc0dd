//! Signature algorithms. A key is registered with exactly one algorithm and
//! only that algorithm is ever run with it: the header's `alg` must agree,
//! it never chooses. New algorithms (RS256, ES256) are new variants here.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::TokenError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    HS256,
    EdDSA,
}

impl Alg {
    pub fn parse(name: &str) -> Option<Alg> {
        match name {
            "HS256" => Some(Alg::HS256),
            "EdDSA" => Some(Alg::EdDSA),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::EdDSA => "EdDSA",
        }
    }
}

/// Why key material cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    UnknownAlg(String),
    HmacTooShort(usize),
    Ed25519Length(usize),
    Ed25519NotAPoint,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::UnknownAlg(a) => {
                write!(f, "unsupported alg \"{a}\": use 'HS256' or 'EdDSA'")
            }
            KeyError::HmacTooShort(n) => write!(
                f,
                "HS256 key is {n} bytes; it must be at least 32 random bytes (RFC 7518 3.2)"
            ),
            KeyError::Ed25519Length(n) => write!(
                f,
                "EdDSA key is {n} bytes; it must be the 32-byte Ed25519 public key"
            ),
            KeyError::Ed25519NotAPoint => {
                write!(f, "EdDSA key is not a valid Ed25519 public key")
            }
        }
    }
}

/// A key ready to verify: material checked once, at registration or load.
#[derive(Clone)]
pub enum VerifyingKey {
    Hs256(Vec<u8>),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl std::fmt::Debug for VerifyingKey {
    // Never print key material, not even in a debug trace.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyingKey({})", self.alg().name())
    }
}

impl VerifyingKey {
    pub fn new(alg: Alg, material: &[u8]) -> Result<VerifyingKey, KeyError> {
        match alg {
            Alg::HS256 if material.len() < 32 => Err(KeyError::HmacTooShort(material.len())),
            Alg::HS256 => Ok(VerifyingKey::Hs256(material.to_vec())),
            Alg::EdDSA => {
                let bytes: [u8; 32] = material
                    .try_into()
                    .map_err(|_| KeyError::Ed25519Length(material.len()))?;
                ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .map(VerifyingKey::Ed25519)
                    .map_err(|_| KeyError::Ed25519NotAPoint)
            }
        }
    }

    pub fn from_names(alg: &str, material: &[u8]) -> Result<VerifyingKey, KeyError> {
        let alg = Alg::parse(alg).ok_or_else(|| KeyError::UnknownAlg(alg.to_string()))?;
        VerifyingKey::new(alg, material)
    }

    pub fn alg(&self) -> Alg {
        match self {
            VerifyingKey::Hs256(_) => Alg::HS256,
            VerifyingKey::Ed25519(_) => Alg::EdDSA,
        }
    }

    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> Result<(), TokenError> {
        let ok = match self {
            VerifyingKey::Hs256(secret) => {
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
                    return Err(TokenError::BadSignature);
                };
                mac.update(signing_input);
                // verify_slice compares in constant time.
                mac.verify_slice(signature).is_ok()
            }
            VerifyingKey::Ed25519(key) => match ed25519_dalek::Signature::from_slice(signature) {
                // verify_strict refuses small-order keys and malleable signatures.
                Ok(sig) => key.verify_strict(signing_input, &sig).is_ok(),
                Err(_) => false,
            },
        };
        if ok {
            Ok(())
        } else {
            Err(TokenError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::jws;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    // RFC 7515 appendix A.1: the JWK "k" and the complete JWS.
    const A1_KEY: &str =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
    const A1_JWS: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    // RFC 8037 appendix A.1 public key "x" and A.4 JWS.
    const A4_PUB: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const A4_JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

    fn check(key: &VerifyingKey, jws: &str) -> Result<(), TokenError> {
        let env = jws::split(jws)?;
        key.verify(env.signing_input, &env.signature)
    }

    fn flip_each_segment(jws: &str) -> Vec<String> {
        // Change one character in the header, payload and signature in turn,
        // staying inside the base64url alphabet.
        let bytes = jws.as_bytes();
        let dots: Vec<usize> = jws.match_indices('.').map(|(i, _)| i).collect();
        [2, dots[0] + 3, dots[1] + 3]
            .iter()
            .map(|&i| {
                let mut b = bytes.to_vec();
                b[i] = if b[i] == b'A' { b'B' } else { b'A' };
                String::from_utf8(b).unwrap()
            })
            .collect()
    }

    #[test]
    fn rfc7515_a1_hs256_verifies() {
        let key = VerifyingKey::new(Alg::HS256, &URL_SAFE_NO_PAD.decode(A1_KEY).unwrap()).unwrap();
        assert_eq!(jws::split(A1_JWS).unwrap().alg, "HS256");
        check(&key, A1_JWS).unwrap();
        for bad in flip_each_segment(A1_JWS) {
            assert!(check(&key, &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc8037_a4_ed25519_verifies() {
        let key = VerifyingKey::new(Alg::EdDSA, &URL_SAFE_NO_PAD.decode(A4_PUB).unwrap()).unwrap();
        assert_eq!(jws::split(A4_JWS).unwrap().alg, "EdDSA");
        check(&key, A4_JWS).unwrap();
        for bad in flip_each_segment(A4_JWS) {
            assert!(check(&key, &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_flipped_signature_byte_fails() {
        let key = VerifyingKey::new(Alg::HS256, &URL_SAFE_NO_PAD.decode(A1_KEY).unwrap()).unwrap();
        let env = jws::split(A1_JWS).unwrap();
        for i in 0..env.signature.len() {
            let mut sig = env.signature.clone();
            sig[i] ^= 0x01;
            assert_eq!(
                key.verify(env.signing_input, &sig),
                Err(TokenError::BadSignature)
            );
        }
        assert!(key.verify(env.signing_input, &env.signature[..31]).is_err());
        assert!(key.verify(env.signing_input, &[]).is_err());
    }

    #[test]
    fn key_rules() {
        assert_eq!(
            VerifyingKey::new(Alg::HS256, &[0u8; 31]).unwrap_err(),
            KeyError::HmacTooShort(31)
        );
        assert!(VerifyingKey::new(Alg::HS256, &[7u8; 32]).is_ok());
        assert_eq!(
            VerifyingKey::new(Alg::EdDSA, &[1u8; 33]).unwrap_err(),
            KeyError::Ed25519Length(33)
        );
        assert!(matches!(
            VerifyingKey::from_names("none", &[0u8; 32]),
            Err(KeyError::UnknownAlg(_))
        ));
        assert!(matches!(
            VerifyingKey::from_names("RS256", &[0u8; 32]),
            Err(KeyError::UnknownAlg(_))
        ));
        let dbg = format!(
            "{:?}",
            VerifyingKey::new(Alg::HS256, b"super-secret-material-0123456789").unwrap()
        );
        assert!(!dbg.contains("secret"), "{dbg}");
    }
}
