//! A strict DER reader and writer for exactly what public-key registration
//! needs: SubjectPublicKeyInfo (RFC 5280 4.1) of RSA (RFC 3279 2.3.1), EC
//! (RFC 5480) and Ed25519 (RFC 8410) keys. Only SEQUENCE, INTEGER, BIT
//! STRING, OBJECT IDENTIFIER and NULL; single-byte tags, definite minimal
//! lengths. The reader never recurses (callers descend one level at a time
//! with `Reader::new(content)`), so hostile nesting costs nothing.
//!
//! Written here rather than taken from a DER crate: the subset is about a
//! hundred lines, and a full ASN.1 crate brings a larger surface that key
//! registration does not need.

pub const SEQUENCE: u8 = 0x30;
pub const INTEGER: u8 = 0x02;
pub const BIT_STRING: u8 = 0x03;
pub const NULL: u8 = 0x05;
pub const OID: u8 = 0x06;

/// No key this module reads comes close: an 8192-bit RSA SPKI is ~1 KiB.
pub const MAX_INPUT: usize = 16 * 1024;

/// DER-encoded object identifier contents (without tag and length).
pub mod oid {
    /// 1.2.840.113549.1.1.1 rsaEncryption
    pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// 1.2.840.113549.1.1.10 id-RSASSA-PSS (a PSS-restricted RSA key)
    pub const RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
    /// 1.2.840.10045.2.1 id-ecPublicKey
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// 1.2.840.10045.3.1.7 prime256v1 (P-256)
    pub const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    /// 1.3.132.0.34 secp384r1 (P-384)
    pub const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    /// 1.3.132.0.35 secp521r1 (P-521)
    pub const P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
    /// 1.3.132.0.10 secp256k1
    pub const SECP256K1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x0a];
    /// 1.3.101.112 Ed25519
    pub const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
    /// 1.3.101.113 Ed448
    pub const ED448: &[u8] = &[0x2b, 0x65, 0x71];
    /// 1.3.101.110 X25519
    pub const X25519: &[u8] = &[0x2b, 0x65, 0x6e];
    /// 1.3.101.111 X448
    pub const X448: &[u8] = &[0x2b, 0x65, 0x6f];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerError {
    /// Input ends inside a tag, length or value.
    Truncated,
    /// A multi-byte tag, an indefinite or a non-minimal length.
    NotDer,
    /// A different element than the structure requires here.
    UnexpectedTag { expected: u8, found: u8 },
    /// Bytes left after the outermost element or inside a closed one.
    TrailingBytes,
    /// An INTEGER that is empty, not minimally encoded, or negative.
    BadInteger,
    /// A BIT STRING that is empty or has unused bits.
    BadBitString,
    /// An OBJECT IDENTIFIER that is empty or malformed, or a NULL with content.
    BadValue,
    /// More than `MAX_INPUT` bytes.
    TooLong,
}

impl std::fmt::Display for DerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DerError::Truncated => write!(f, "the DER ends early"),
            DerError::NotDer => write!(
                f,
                "not strict DER (multi-byte tag, indefinite or non-minimal length)"
            ),
            DerError::UnexpectedTag { expected, found } => {
                write!(f, "expected DER tag 0x{expected:02x}, found 0x{found:02x}")
            }
            DerError::TrailingBytes => write!(f, "bytes follow the end of a DER element"),
            DerError::BadInteger => write!(
                f,
                "a DER INTEGER is empty, negative or not minimally encoded"
            ),
            DerError::BadBitString => write!(f, "a DER BIT STRING is empty or has unused bits"),
            DerError::BadValue => write!(f, "a DER OBJECT IDENTIFIER or NULL is malformed"),
            DerError::TooLong => write!(f, "the DER is longer than {MAX_INPUT} bytes"),
        }
    }
}

/// Reads consecutive elements of one level.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(input: &'a [u8]) -> Reader<'a> {
        Reader { rest: input }
    }

    /// The tag of the next element, without consuming it.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element: its tag and its contents.
    pub fn read_any(&mut self) -> Result<(u8, &'a [u8]), DerError> {
        let (&tag, after_tag) = self.rest.split_first().ok_or(DerError::Truncated)?;
        // Low five bits all set: high-tag-number form, never used here.
        if tag & 0x1f == 0x1f {
            return Err(DerError::NotDer);
        }
        let (&first, mut after_len) = after_tag.split_first().ok_or(DerError::Truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            // 0x80 is the indefinite form; more than 3 length bytes would
            // exceed MAX_INPUT anyway.
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 3 {
                return Err(DerError::NotDer);
            }
            if after_len.len() < n {
                return Err(DerError::Truncated);
            }
            let (len_bytes, rest) = after_len.split_at(n);
            after_len = rest;
            if len_bytes[0] == 0 {
                return Err(DerError::NotDer);
            }
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            // Long form only where the short form cannot say it.
            if len < 0x80 {
                return Err(DerError::NotDer);
            }
            len
        };
        if after_len.len() < len {
            return Err(DerError::Truncated);
        }
        let (content, rest) = after_len.split_at(len);
        self.rest = rest;
        Ok((tag, content))
    }

    /// The next element, which must carry `tag`: its contents.
    pub fn read(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        match self.peek_tag() {
            None => Err(DerError::Truncated),
            Some(found) if found != tag => Err(DerError::UnexpectedTag {
                expected: tag,
                found,
            }),
            Some(_) => Ok(self.read_any()?.1),
        }
    }

    /// A non-negative INTEGER: its big-endian magnitude without the sign
    /// byte (so never empty and never starting with 0, except for zero
    /// itself, which is `[0]`).
    pub fn read_unsigned(&mut self) -> Result<&'a [u8], DerError> {
        let v = self.read(INTEGER)?;
        match v {
            [] => Err(DerError::BadInteger),
            [b, ..] if b & 0x80 != 0 => Err(DerError::BadInteger),
            [0] => Ok(v),
            [0, next, ..] if next & 0x80 == 0 => Err(DerError::BadInteger),
            [0, rest @ ..] => Ok(rest),
            _ => Ok(v),
        }
    }

    /// A BIT STRING of whole bytes: its bytes.
    pub fn read_bit_string(&mut self) -> Result<&'a [u8], DerError> {
        match self.read(BIT_STRING)? {
            [0, bits @ ..] => Ok(bits),
            _ => Err(DerError::BadBitString),
        }
    }

    pub fn read_oid(&mut self) -> Result<&'a [u8], DerError> {
        let v = self.read(OID)?;
        // Each arc ends with a byte whose high bit is clear and starts
        // without a 0x80 padding byte.
        let well_formed = !v.is_empty()
            && v.last().is_some_and(|b| b & 0x80 == 0)
            && v.iter()
                .enumerate()
                .all(|(i, &b)| b != 0x80 || (i > 0 && v[i - 1] & 0x80 != 0));
        if well_formed {
            Ok(v)
        } else {
            Err(DerError::BadValue)
        }
    }

    pub fn read_null(&mut self) -> Result<(), DerError> {
        if self.read(NULL)?.is_empty() {
            Ok(())
        } else {
            Err(DerError::BadValue)
        }
    }

    /// Nothing may follow.
    pub fn finish(&self) -> Result<(), DerError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DerError::TrailingBytes)
        }
    }
}

/// Reads exactly one element of `tag` spanning all of `input`.
pub fn read_single(input: &[u8], tag: u8) -> Result<&[u8], DerError> {
    if input.len() > MAX_INPUT {
        return Err(DerError::TooLong);
    }
    let mut r = Reader::new(input);
    let content = r.read(tag)?;
    r.finish()?;
    Ok(content)
}

/// The algorithm of a SubjectPublicKeyInfo, as far as it is understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpkiAlg<'a> {
    /// rsaEncryption with NULL parameters.
    Rsa,
    /// id-ecPublicKey with a named curve: the curve's OID contents.
    Ec(&'a [u8]),
    /// Any other algorithm identifier: its OID contents (parameters not
    /// looked at).
    Other(&'a [u8]),
}

/// A SubjectPublicKeyInfo split into its algorithm and key bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spki<'a> {
    pub alg: SpkiAlg<'a>,
    /// The BIT STRING's bytes (unused-bits byte removed).
    pub key: &'a [u8],
}

pub fn parse_spki(input: &[u8]) -> Result<Spki<'_>, DerError> {
    let mut outer = Reader::new(read_single(input, SEQUENCE)?);
    let mut alg_id = Reader::new(outer.read(SEQUENCE)?);
    let key = outer.read_bit_string()?;
    outer.finish()?;
    let alg_oid = alg_id.read_oid()?;
    let alg = if alg_oid == oid::RSA_ENCRYPTION {
        // RFC 3279 2.3.1: the parameters MUST be NULL.
        alg_id.read_null()?;
        alg_id.finish()?;
        SpkiAlg::Rsa
    } else if alg_oid == oid::EC_PUBLIC_KEY {
        // RFC 5480 2.1.1: namedCurve only (implicit and specified curves
        // are not allowed).
        let curve = alg_id.read_oid()?;
        alg_id.finish()?;
        SpkiAlg::Ec(curve)
    } else if alg_oid == oid::ED25519 {
        // RFC 8410 3: the parameters MUST be absent.
        alg_id.finish()?;
        SpkiAlg::Other(alg_oid)
    } else {
        SpkiAlg::Other(alg_oid)
    };
    Ok(Spki { alg, key })
}

/// An RSAPublicKey (RFC 8017 A.1.1): modulus and exponent magnitudes.
pub fn parse_rsa_public_key(input: &[u8]) -> Result<(&[u8], &[u8]), DerError> {
    let mut r = Reader::new(read_single(input, SEQUENCE)?);
    let n = r.read_unsigned()?;
    let e = r.read_unsigned()?;
    r.finish()?;
    Ok((n, e))
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Appends one element.
pub fn push_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    push_len(out, content.len());
    out.extend_from_slice(content);
}

/// Appends a non-negative INTEGER given its big-endian magnitude (leading
/// zeros allowed; they are dropped and a sign byte added where needed).
pub fn push_unsigned(out: &mut Vec<u8>, magnitude: &[u8]) {
    let skip = magnitude.iter().take_while(|&&b| b == 0).count();
    let m = &magnitude[skip..];
    let mut content = Vec::with_capacity(m.len() + 1);
    if m.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(m);
    push_tlv(out, INTEGER, &content);
}

fn spki(alg_id: &[u8], key: &[u8]) -> Vec<u8> {
    let mut bits = Vec::with_capacity(key.len() + 1);
    bits.push(0);
    bits.extend_from_slice(key);
    let mut body = Vec::with_capacity(alg_id.len() + bits.len() + 8);
    push_tlv(&mut body, SEQUENCE, alg_id);
    push_tlv(&mut body, BIT_STRING, &bits);
    let mut out = Vec::with_capacity(body.len() + 4);
    push_tlv(&mut out, SEQUENCE, &body);
    out
}

/// The SPKI of an RSA key, as OpenSSL writes it.
pub fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut alg_id = Vec::new();
    push_tlv(&mut alg_id, OID, oid::RSA_ENCRYPTION);
    push_tlv(&mut alg_id, NULL, &[]);
    let mut ints = Vec::with_capacity(n.len() + e.len() + 16);
    push_unsigned(&mut ints, n);
    push_unsigned(&mut ints, e);
    let mut key = Vec::with_capacity(ints.len() + 4);
    push_tlv(&mut key, SEQUENCE, &ints);
    spki(&alg_id, &key)
}

/// The SPKI of an EC key on `curve` (OID contents) with the SEC1 point.
pub fn ec_spki(curve: &[u8], point: &[u8]) -> Vec<u8> {
    let mut alg_id = Vec::new();
    push_tlv(&mut alg_id, OID, oid::EC_PUBLIC_KEY);
    push_tlv(&mut alg_id, OID, curve);
    spki(&alg_id, point)
}

/// The SPKI of an Ed25519 public key.
#[cfg(test)]
pub fn ed25519_spki(key: &[u8; 32]) -> Vec<u8> {
    let mut alg_id = Vec::new();
    push_tlv(&mut alg_id, OID, oid::ED25519);
    spki(&alg_id, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lengths_are_strict() {
        // Short form.
        assert_eq!(Reader::new(&[0x05, 0x00]).read_any(), Ok((0x05, &[][..])));
        // Indefinite.
        assert_eq!(
            Reader::new(&[0x30, 0x80, 0, 0]).read_any(),
            Err(DerError::NotDer)
        );
        // Long form for a short length.
        assert_eq!(
            Reader::new(&[0x04, 0x81, 0x01, 0xaa]).read_any(),
            Err(DerError::NotDer)
        );
        // Leading zero length byte.
        let mut v = vec![0x04, 0x82, 0x00, 0x80];
        v.extend([0u8; 0x80]);
        assert_eq!(Reader::new(&v).read_any(), Err(DerError::NotDer));
        // Minimal long form.
        let mut v = vec![0x04, 0x81, 0x80];
        v.extend([0u8; 0x80]);
        assert_eq!(Reader::new(&v).read_any().unwrap().1.len(), 0x80);
        // Too many length bytes, multi-byte tag, truncation.
        assert_eq!(
            Reader::new(&[0x04, 0x85, 1, 0, 0, 0, 0]).read_any(),
            Err(DerError::NotDer)
        );
        assert_eq!(
            Reader::new(&[0x1f, 0x01, 0x00]).read_any(),
            Err(DerError::NotDer)
        );
        assert_eq!(
            Reader::new(&[0x04, 0x02, 0x00]).read_any(),
            Err(DerError::Truncated)
        );
        assert_eq!(Reader::new(&[0x04]).read_any(), Err(DerError::Truncated));
        assert_eq!(Reader::new(&[]).read_any(), Err(DerError::Truncated));
        assert_eq!(
            read_single(&[0x05, 0x00, 0x00], NULL),
            Err(DerError::TrailingBytes)
        );
    }

    #[test]
    fn integers_are_minimal_and_positive() {
        let int = |b: &[u8]| {
            let mut v = vec![INTEGER, b.len() as u8];
            v.extend_from_slice(b);
            let mut r = Reader::new(&v);
            r.read_unsigned().map(|m| m.to_vec())
        };
        assert_eq!(int(&[0x01, 0x00, 0x01]), Ok(vec![1, 0, 1]));
        assert_eq!(int(&[0x00, 0x80]), Ok(vec![0x80]));
        assert_eq!(int(&[0x00]), Ok(vec![0]));
        assert_eq!(int(&[0x00, 0x7f]), Err(DerError::BadInteger));
        assert_eq!(int(&[0x80]), Err(DerError::BadInteger));
        assert_eq!(int(&[]), Err(DerError::BadInteger));
        for m in [&[0x80u8][..], &[0, 0, 5], &[0x7f, 1], &[]] {
            let mut out = Vec::new();
            push_unsigned(&mut out, m);
            let back = Reader::new(&out).read_unsigned().unwrap().to_vec();
            let skip = m.iter().take_while(|&&b| b == 0).count();
            let want = if m[skip..].is_empty() {
                vec![0]
            } else {
                m[skip..].to_vec()
            };
            assert_eq!(back, want);
        }
    }

    #[test]
    fn oids_and_bit_strings() {
        assert_eq!(
            Reader::new(&[0x06, 0x00]).read_oid(),
            Err(DerError::BadValue)
        );
        assert_eq!(
            Reader::new(&[0x06, 0x02, 0x2a, 0x86]).read_oid(),
            Err(DerError::BadValue)
        );
        assert_eq!(
            Reader::new(&[0x06, 0x02, 0x80, 0x01]).read_oid(),
            Err(DerError::BadValue)
        );
        assert_eq!(
            Reader::new(&[0x06, 0x03, 0x2b, 0x65, 0x70]).read_oid(),
            Ok(oid::ED25519)
        );
        assert_eq!(
            Reader::new(&[0x03, 0x02, 0x01, 0x80]).read_bit_string(),
            Err(DerError::BadBitString)
        );
        assert_eq!(
            Reader::new(&[0x03, 0x00]).read_bit_string(),
            Err(DerError::BadBitString)
        );
        assert_eq!(
            Reader::new(&[0x05, 0x01, 0x00]).read_null(),
            Err(DerError::BadValue)
        );
    }

    #[test]
    fn spki_round_trips() {
        let ed = ed25519_spki(&[7u8; 32]);
        let s = parse_spki(&ed).unwrap();
        assert_eq!(s.alg, SpkiAlg::Other(oid::ED25519));
        assert_eq!(s.key, &[7u8; 32]);
        let mut point = vec![4u8];
        point.extend([1u8; 64]);
        let ec = ec_spki(oid::P256, &point);
        let s = parse_spki(&ec).unwrap();
        assert_eq!(s.alg, SpkiAlg::Ec(oid::P256));
        assert_eq!(s.key, &point[..]);
        let n = [0xc5u8; 256];
        let rsa = rsa_spki(&n, &[1, 0, 1]);
        let s = parse_spki(&rsa).unwrap();
        assert_eq!(s.alg, SpkiAlg::Rsa);
        assert_eq!(
            parse_rsa_public_key(s.key).unwrap(),
            (&n[..], &[1u8, 0, 1][..])
        );
        // Any one byte more or less breaks it.
        assert_eq!(
            parse_spki(&[&rsa[..], &[0]].concat()),
            Err(DerError::TrailingBytes)
        );
        assert!(parse_spki(&rsa[..rsa.len() - 1]).is_err());
    }

    proptest! {
        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_spki(&bytes);
            let _ = parse_rsa_public_key(&bytes);
            let mut r = Reader::new(&bytes);
            while let Ok((_, inner)) = r.read_any() {
                let _ = Reader::new(inner).read_unsigned();
                let _ = Reader::new(inner).read_oid();
            }
        }

        #[test]
        fn writer_output_reads_back(n in proptest::collection::vec(any::<u8>(), 0..600),
                                    e in proptest::collection::vec(any::<u8>(), 0..8)) {
            let der = rsa_spki(&n, &e);
            let s = parse_spki(&der).unwrap();
            prop_assert_eq!(s.alg, SpkiAlg::Rsa);
            let (n2, e2) = parse_rsa_public_key(s.key).unwrap();
            let strip = |m: &[u8]| {
                let k = m.iter().take_while(|&&b| b == 0).count();
                if k == m.len() { vec![0] } else { m[k..].to_vec() }
            };
            prop_assert_eq!(n2.to_vec(), strip(&n));
            prop_assert_eq!(e2.to_vec(), strip(&e));
        }
    }
}
