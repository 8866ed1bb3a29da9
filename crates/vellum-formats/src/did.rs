//! `did:jwk` and `did:key` identifiers for the three key types Vellum uses.
//!
//! Both methods are pure transformations of a public key, so creating a DID and resolving it
//! back to a public JWK needs no network access. `did:key` uses the multicodec public-key
//! prefixes `ed25519-pub` (0xed), `p256-pub` (0x1200) and `p384-pub` (0x1201), with EC points in
//! SEC1 compressed form, encoded as multibase base58btc (`z`).

use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use serde_json::Value;

use crate::jose::{Jwk, b64, b64_decode};

const DID_JWK: &str = "did:jwk:";
const DID_KEY: &str = "did:key:";

/// Multicodec varint prefixes of the supported public keys.
const ED25519_PUB: [u8; 2] = [0xed, 0x01];
const P256_PUB: [u8; 2] = [0x80, 0x24];
const P384_PUB: [u8; 2] = [0x81, 0x24];

/// The longest `did:key` multibase value accepted: P-384 needs 70 characters, and the limit keeps
/// the quadratic base58 decoding cheap on hostile input.
const MAX_MULTIBASE_LEN: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DidError {
    #[error("malformed DID: {0}")]
    Malformed(&'static str),
    #[error("unsupported DID method {0:?}")]
    UnsupportedMethod(String),
    #[error("unsupported key type: {0}")]
    UnsupportedKey(&'static str),
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    #[error("a DID must not carry private key material")]
    PrivateKey,
}

/// Whether `did` has the syntax of DID Core §3.1: `did:` + a method name (lowercase letters and
/// digits) + `:` + a method-specific id of `idchar`s (letters, digits, `.`, `-`, `_` and
/// percent-encodings) in `:`-separated segments, the last one not empty.
pub fn is_well_formed(did: &str) -> bool {
    let Some((method, id)) = did
        .strip_prefix("did:")
        .and_then(|rest| rest.split_once(':'))
    else {
        return false;
    };
    let method_ok = !method.is_empty()
        && method
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit());
    let mut bytes = id.bytes();
    let mut id_ok = !id.is_empty() && !id.ends_with(':');
    while let Some(byte) = bytes.next() {
        id_ok &= match byte {
            b'%' => {
                bytes.next().is_some_and(|b| b.is_ascii_hexdigit())
                    && bytes.next().is_some_and(|b| b.is_ascii_hexdigit())
            }
            _ => byte.is_ascii_alphanumeric() || b".-_:".contains(&byte),
        };
    }
    method_ok && id_ok
}

/// `did:jwk:` + base64url of the public JWK's JSON, members in lexical order (`crv`, `kty`,
/// `x`, `y`; never `d`), as the did:jwk specification's example: one key, one DID.
pub fn did_jwk(jwk: &Jwk) -> String {
    format!("{DID_JWK}{}", b64(jwk.to_public().to_value().to_string()))
}

/// The verification method of a `did:jwk`: the fixed fragment `#0` (an existing one is replaced).
pub fn did_jwk_verification_method(did: &str) -> String {
    format!("{}#0", strip_fragment(did))
}

/// `did:key:z` + base58btc(multicodec prefix + public key bytes).
pub fn did_key(jwk: &Jwk) -> Result<String, DidError> {
    let mut bytes = Vec::with_capacity(2 + 49);
    match (jwk.kty.as_str(), jwk.crv.as_str()) {
        ("OKP", "Ed25519") => {
            let x = ed25519_bytes(&jwk.x)?;
            bytes.extend_from_slice(&ED25519_PUB);
            bytes.extend_from_slice(&x);
        }
        ("EC", "P-256") => {
            let (x, y) = ec_coordinates::<32>(jwk)?;
            p256::PublicKey::from_sec1_bytes(&uncompressed(&x, &y))
                .map_err(|_| DidError::InvalidKey("not a P-256 point"))?;
            bytes.extend_from_slice(&P256_PUB);
            bytes.extend_from_slice(&compressed(&x, &y));
        }
        ("EC", "P-384") => {
            let (x, y) = ec_coordinates::<48>(jwk)?;
            p384::PublicKey::from_sec1_bytes(&uncompressed(&x, &y))
                .map_err(|_| DidError::InvalidKey("not a P-384 point"))?;
            bytes.extend_from_slice(&P384_PUB);
            bytes.extend_from_slice(&compressed(&x, &y));
        }
        _ => {
            return Err(DidError::UnsupportedKey(
                "kty/crv is not Ed25519, P-256 or P-384",
            ));
        }
    }
    Ok(format!("{DID_KEY}z{}", base58_encode(&bytes)))
}

/// The verification method of a `did:key`: the DID with its multibase value as the fragment.
/// An existing fragment is replaced.
pub fn did_key_verification_method(did: &str) -> String {
    let did = strip_fragment(did);
    let multibase = did.strip_prefix(DID_KEY).unwrap_or(did);
    format!("{did}#{multibase}")
}

/// Resolves a `did:jwk` or `did:key` (or a DID URL with a `#fragment`) to its public JWK.
pub fn jwk_from_did(did: &str) -> Result<Jwk, DidError> {
    let did = strip_fragment(did);
    if let Some(encoded) = did.strip_prefix(DID_JWK) {
        resolve_did_jwk(encoded)
    } else if let Some(multibase) = did.strip_prefix(DID_KEY) {
        resolve_did_key(multibase)
    } else if let Some(rest) = did.strip_prefix("did:") {
        let method = rest.split(':').next().unwrap_or_default();
        Err(DidError::UnsupportedMethod(method.to_owned()))
    } else {
        Err(DidError::Malformed("does not start with did:"))
    }
}

fn strip_fragment(did: &str) -> &str {
    did.split_once('#').map_or(did, |(did, _)| did)
}

fn resolve_did_jwk(encoded: &str) -> Result<Jwk, DidError> {
    if encoded.is_empty() {
        return Err(DidError::Malformed("empty did:jwk value"));
    }
    let json = b64_decode(encoded).map_err(|_| DidError::Malformed("did:jwk is not base64url"))?;
    let value: Value =
        serde_json::from_slice(&json).map_err(|_| DidError::Malformed("did:jwk is not JSON"))?;
    if !value.is_object() {
        return Err(DidError::Malformed("did:jwk is not a JSON object"));
    }
    if value.get("d").is_some() {
        return Err(DidError::PrivateKey);
    }
    let jwk = Jwk::from_value(&value)
        .map_err(|_| DidError::UnsupportedKey("did:jwk is not an Ed25519, P-256 or P-384 JWK"))?;
    // Validates the key material (lengths, point on the curve) the same way did:key does.
    did_key(&jwk)?;
    Ok(jwk.to_public())
}

fn resolve_did_key(multibase: &str) -> Result<Jwk, DidError> {
    let encoded = multibase.strip_prefix('z').ok_or(DidError::Malformed(
        "did:key must be multibase base58btc (z)",
    ))?;
    if encoded.is_empty() || encoded.len() > MAX_MULTIBASE_LEN {
        return Err(DidError::Malformed(
            "did:key value has an impossible length",
        ));
    }
    let bytes = base58_decode(encoded)?;
    let (prefix, key) = bytes
        .split_first_chunk::<2>()
        .ok_or(DidError::Malformed("did:key value is too short"))?;
    match *prefix {
        ED25519_PUB => {
            let key: [u8; 32] = key
                .try_into()
                .map_err(|_| DidError::InvalidKey("Ed25519 key must be 32 bytes"))?;
            ed25519_dalek::VerifyingKey::from_bytes(&key)
                .map_err(|_| DidError::InvalidKey("not an Ed25519 point"))?;
            Ok(Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: b64(key),
                y: None,
                d: None,
            })
        }
        P256_PUB => {
            if key.len() != 33 {
                return Err(DidError::InvalidKey(
                    "P-256 key must be a 33-byte compressed point",
                ));
            }
            let point = p256::PublicKey::from_sec1_bytes(key)
                .map_err(|_| DidError::InvalidKey("not a P-256 point"))?
                .to_encoded_point(false);
            ec_jwk("P-256", point.x(), point.y())
        }
        P384_PUB => {
            if key.len() != 49 {
                return Err(DidError::InvalidKey(
                    "P-384 key must be a 49-byte compressed point",
                ));
            }
            let point = p384::PublicKey::from_sec1_bytes(key)
                .map_err(|_| DidError::InvalidKey("not a P-384 point"))?
                .to_encoded_point(false);
            ec_jwk("P-384", point.x(), point.y())
        }
        _ => Err(DidError::UnsupportedKey(
            "did:key multicodec is not Ed25519, P-256 or P-384",
        )),
    }
}

fn ec_jwk(
    crv: &str,
    x: Option<&impl AsRef<[u8]>>,
    y: Option<&impl AsRef<[u8]>>,
) -> Result<Jwk, DidError> {
    match (x, y) {
        (Some(x), Some(y)) => Ok(Jwk {
            kty: "EC".into(),
            crv: crv.into(),
            x: b64(x),
            y: Some(b64(y)),
            d: None,
        }),
        _ => Err(DidError::InvalidKey("the point at infinity is not a key")),
    }
}

fn ed25519_bytes(x: &str) -> Result<[u8; 32], DidError> {
    let x: [u8; 32] = b64_decode(x)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(DidError::InvalidKey(
            "Ed25519 x must be 32 bytes of base64url",
        ))?;
    ed25519_dalek::VerifyingKey::from_bytes(&x)
        .map_err(|_| DidError::InvalidKey("not an Ed25519 point"))?;
    Ok(x)
}

fn ec_coordinates<const N: usize>(jwk: &Jwk) -> Result<([u8; N], [u8; N]), DidError> {
    let decode = |text: &str| -> Result<[u8; N], DidError> {
        b64_decode(text)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(DidError::InvalidKey("EC coordinate has the wrong length"))
    };
    let y = jwk
        .y
        .as_deref()
        .ok_or(DidError::InvalidKey("EC key without y"))?;
    Ok((decode(&jwk.x)?, decode(y)?))
}

fn uncompressed(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut point = Vec::with_capacity(1 + x.len() + y.len());
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    point
}

/// SEC1 compressed point: 0x02 for an even y, 0x03 for an odd y, then x.
fn compressed(x: &[u8], y: &[u8]) -> Vec<u8> {
    let odd = y.last().is_some_and(|last| last & 1 == 1);
    let mut point = Vec::with_capacity(1 + x.len());
    point.push(if odd { 0x03 } else { 0x02 });
    point.extend_from_slice(x);
    point
}

const BASE58_ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Base58btc (Bitcoin alphabet): each leading zero byte becomes a `1`.
fn base58_encode(bytes: &[u8]) -> String {
    let zeros = bytes.iter().take_while(|&&byte| byte == 0).count();
    // Little-endian base-58 digits of the big-endian number in `bytes`.
    let mut digits: Vec<u8> = Vec::with_capacity(bytes.len() * 138 / 100 + 1);
    for &byte in &bytes[zeros..] {
        let mut carry = u32::from(byte);
        for digit in &mut digits {
            carry += u32::from(*digit) << 8;
            *digit = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut text = String::with_capacity(zeros + digits.len());
    text.extend(std::iter::repeat_n('1', zeros));
    text.extend(
        digits
            .iter()
            .rev()
            .map(|&digit| char::from(BASE58_ALPHABET[usize::from(digit)])),
    );
    text
}

fn base58_decode(text: &str) -> Result<Vec<u8>, DidError> {
    let zeros = text.bytes().take_while(|&c| c == b'1').count();
    // Little-endian base-256 bytes of the number.
    let mut bytes: Vec<u8> = Vec::with_capacity(text.len() * 733 / 1000 + 1);
    for c in text.bytes().skip(zeros) {
        let mut carry = BASE58_ALPHABET
            .iter()
            .position(|&a| a == c)
            .ok_or(DidError::Malformed("invalid base58btc character"))?
            as u32;
        for byte in &mut bytes {
            carry += u32::from(*byte) * 58;
            *byte = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let mut out = vec![0u8; zeros];
    out.extend(bytes.iter().rev());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::{Algorithm, SigningKey};
    use serde_json::json;

    #[test]
    fn did_syntax_is_the_one_of_did_core() {
        for did in [
            "did:web:127.0.0.1%3A7005:tenant",
            "did:example:123456789abcdefghi",
            "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
            "did:a1::b",
        ] {
            assert!(is_well_formed(did), "{did}");
        }
        for did in [
            "did:jwk",
            "did:web:",
            "did:Web:x",
            "did::x",
            "did:x:a:",
            "did:x:a b",
            "did:x:a\nb",
            "did:x:%4",
            "did:x:%zz",
            "DID:x:y",
            "did:x:ä",
        ] {
            assert!(!is_well_formed(did), "{did}");
        }
    }

    fn jwk(value: Value) -> Jwk {
        Jwk::from_value(&value).expect("valid JWK")
    }

    // did-method-key test vectors (w3c-ccg/did-method-key, test-vectors/ed25519-x25519.json):
    // the Ed25519 keys derived from the seeds 00..00 and 00..01.
    const ED25519_VECTORS: [([u8; 32], &str, &str); 2] = [
        (
            [0; 32],
            "4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS",
            "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
        ),
        (
            {
                let mut seed = [0; 32];
                seed[31] = 1;
                seed
            },
            "6ASf5EcmmEHTgDJ4X4ZT5vT6iHVJBXPg5AN5YoTCpGWt",
            "did:key:z6MkjchhfUsD6mmvni8mCdXHw216Xrm9bQe2mBH1P5RDjVJG",
        ),
    ];

    // did-method-key test vectors (w3c-ccg/did-method-key, test-vectors/nist-curves.json):
    // (DID, crv, x, y, d).
    const NIST_VECTORS: [(&str, &str, &str, &str, &str); 4] = [
        (
            "did:key:zDnaerx9CtbPJ1q36T5Ln5wYt3MQYeGRG5ehnPAmxcf5mDZpv",
            "P-256",
            "igrFmi0whuihKnj9R3Om1SoMph72wUGeFaBbzG2vzns",
            "efsX5b10x8yjyrj4ny3pGfLcY7Xby1KzgqOdqnsrJIM",
            "gPh-VvVS8MbvKQ9LSVVmfnxnKjHn4Tqj0bmbpehRlpc",
        ),
        (
            "did:key:zDnaerDaTF5BXEavCrfRZEk316dpbLsfPDZ3WJ5hRTPFU2169",
            "P-256",
            "fyNYMN0976ci7xqiSdag3buk-ZCwgXU4kz9XNkBlNUI",
            "hW2ojTNfH7Jbi8--CJUo3OCbH3y5n91g-IMA9MLMbTU",
            "YjRs6vNvw4sYrzVVY8ipkEpDAD9PFqw1sUnvPRMA-WI",
        ),
        (
            "did:key:z82Lm1MpAkeJcix9K8TMiLd5NMAhnwkjjCBeWHXyu3U4oT2MVJJKXkcVBgjGhnLBn2Kaau9",
            "P-384",
            "lInTxl8fjLKp_UCrxI0WDklahi-7-_6JbtiHjiRvMvhedhKVdHBfi2HCY8t_QJyc",
            "y6N1IC-2mXxHreETBW7K3mBcw0qGr3CWHCs-yl09yCQRLcyfGv7XhqAngHOu51Zv",
            "hAyGZNj9031guBCdpAOaZkO-E5m-LKLYnMIq0-msrp8JLctseaOeNTHmP3uKVWwX",
        ),
        (
            "did:key:z82LkvCwHNreneWpsgPEbV3gu1C6NFJEBg4srfJ5gdxEsMGRJUz2sG9FE42shbn2xkZJh54",
            "P-384",
            "CA-iNoHDg1lL8pvX3d1uvExzVfCz7Rn6tW781Ub8K5MrDf2IMPyL0RTDiaLHC1JT",
            "Kpnrn8DkXUD3ge4mFxi-DKr0DYO2KuJdwNBrhzLRtfMa3WFMZBiPKUPfJj8dYNl_",
            "Xe1HHeh-UsrJPRNLR_Y06VTrWpZYBXi7a7kiRqCgwnAOlJZPwE-xzL3DIIVMavAL",
        ),
    ];

    // The did:jwk specification's P-256 example (members serialised as crv, kty, x, y).
    const SPEC_DID_JWK: &str = "did:jwk:eyJjcnYiOiJQLTI1NiIsImt0eSI6IkVDIiwieCI6ImFjYklRaXVNczNpOF91c3pFakoydHBUdFJNNEVVM3l6OTFQSDZDZEgyVjAiLCJ5IjoiX0tjeUxqOXZXTXB0bm1LdG00NkdxRHo4d2Y3NEk1TEtncmwyR3pIM25TRSJ9";
    const SPEC_X: &str = "acbIQiuMs3i8_uszEjJ2tpTtRM4EU3yz91PH6CdH2V0";
    const SPEC_Y: &str = "_KcyLj9vWMptnmKtm46GqDz8wf74I5LKgrl2GzH3nSE";
    // The same key with members in kty, crv, x, y order.
    const SPEC_KEY_KTY_FIRST: &str = "did:jwk:eyJrdHkiOiJFQyIsImNydiI6IlAtMjU2IiwieCI6ImFjYklRaXVNczNpOF91c3pFakoydHBUdFJNNEVVM3l6OTFQSDZDZEgyVjAiLCJ5IjoiX0tjeUxqOXZXTXB0bm1LdG00NkdxRHo4d2Y3NEk1TEtncmwyR3pIM25TRSJ9";
    // The did:jwk specification's X25519 example: a key type Vellum does not sign with.
    const SPEC_DID_JWK_X25519: &str = "did:jwk:eyJrdHkiOiJPS1AiLCJjcnYiOiJYMjU1MTkiLCJ1c2UiOiJlbmMiLCJ4IjoiM3A3YmZYdDl3YlRUVzJIQzdPUTFOei1EUThoYmVHZE5yZngtRkctSUswOCJ9";

    #[test]
    fn base58btc_matches_known_answers() {
        // Examples from the IETF "Base58 Encoding Scheme" Internet-Draft.
        let cases: [(&[u8], &str); 5] = [
            (b"", ""),
            (b"Hello World!", "2NEpo7TZRRrLZSi2U"),
            (
                b"The quick brown fox jumps over the lazy dog.",
                "USm3fpXnKG5EUBx2ndxBDMPVciP5hGey2Jh4NDv6gmeo1LkMeiKrLJUUBk6Z",
            ),
            (&[0x00, 0x00, 0x28, 0x7f, 0xb4, 0xcd], "11233QC4"),
            (&[0x00], "1"),
        ];
        for (bytes, text) in cases {
            assert_eq!(base58_encode(bytes), text);
            assert_eq!(base58_decode(text).expect("decodes"), bytes);
        }
        for bad in ["0", "O", "I", "l", "abc+", "é"] {
            assert!(base58_decode(bad).is_err(), "{bad} must not decode");
        }
    }

    #[test]
    fn ed25519_did_key_matches_the_did_key_test_vectors() {
        for (seed, base58_key, did) in ED25519_VECTORS {
            let key = SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed));
            let public = key.public_jwk();
            assert_eq!(
                b64_decode(&public.x).expect("x"),
                base58_decode(base58_key).expect("base58")
            );
            assert_eq!(did_key(&public).expect("did:key"), did);
            assert_eq!(did_key(&key.private_jwk()).expect("did:key"), did);
            assert_eq!(jwk_from_did(did).expect("resolves"), public);
            let multibase = did.strip_prefix("did:key:").expect("prefix");
            assert_eq!(
                did_key_verification_method(did),
                format!("{did}#{multibase}")
            );
        }
        // The verification method id exactly as the test vector's DID document lists it.
        assert_eq!(
            did_key_verification_method("did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"),
            "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp#z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
        );
    }

    #[test]
    fn nist_did_keys_match_the_did_key_test_vectors() {
        for (did, crv, x, y, d) in NIST_VECTORS {
            let public = jwk(json!({"kty": "EC", "crv": crv, "x": x, "y": y}));
            assert_eq!(did_key(&public).expect("did:key"), did);
            assert_eq!(jwk_from_did(did).expect("resolves"), public);
            let with_fragment = did_key_verification_method(did);
            assert_eq!(jwk_from_did(&with_fragment).expect("resolves"), public);
            // The vector's private scalar really belongs to the public key.
            let private = jwk(json!({"kty": "EC", "crv": crv, "x": x, "y": y, "d": d}));
            let key = SigningKey::from_jwk(&private).expect("consistent key pair");
            assert_eq!(did_key(&key.public_jwk()).expect("did:key"), did);
        }
    }

    #[test]
    fn ec_points_are_compressed_like_the_curve_crates_do() {
        for algorithm in [Algorithm::ES256, Algorithm::ES384] {
            for _ in 0..8 {
                let key = SigningKey::generate(algorithm);
                let public = key.public_jwk();
                let (expected, prefix): (Vec<u8>, [u8; 2]) = match &key {
                    SigningKey::P256(k) => (
                        k.verifying_key().to_encoded_point(true).as_bytes().to_vec(),
                        P256_PUB,
                    ),
                    SigningKey::P384(k) => (
                        k.verifying_key().to_encoded_point(true).as_bytes().to_vec(),
                        P384_PUB,
                    ),
                    SigningKey::Ed25519(_) => unreachable!("EC only"),
                };
                let did = did_key(&public).expect("did:key");
                let multibase = did.strip_prefix("did:key:z").expect("prefix");
                let bytes = base58_decode(multibase).expect("base58");
                assert_eq!(bytes[..2], prefix);
                assert_eq!(bytes[2..], expected[..]);
            }
        }
    }

    #[test]
    fn did_jwk_matches_the_did_jwk_specification_example() {
        let expected = jwk(json!({"kty": "EC", "crv": "P-256", "x": SPEC_X, "y": SPEC_Y}));
        assert_eq!(jwk_from_did(SPEC_DID_JWK).expect("resolves"), expected);
        assert_eq!(
            did_jwk_verification_method(SPEC_DID_JWK),
            format!("{SPEC_DID_JWK}#0")
        );
        assert_eq!(
            jwk_from_did(&did_jwk_verification_method(SPEC_DID_JWK)).expect("resolves"),
            expected
        );
        // Vellum serialises members in lexical order, exactly as the specification's example;
        // a DID with another member order still resolves to the same key.
        assert_eq!(did_jwk(&expected), SPEC_DID_JWK);
        assert_eq!(
            jwk_from_did(SPEC_KEY_KTY_FIRST).expect("resolves"),
            expected
        );
        // The specification's X25519 key is well formed but not a signing key Vellum supports.
        assert!(matches!(
            jwk_from_did(SPEC_DID_JWK_X25519),
            Err(DidError::UnsupportedKey(_))
        ));
    }

    #[test]
    fn generated_keys_round_trip_through_both_methods() {
        for algorithm in Algorithm::ALL {
            let key = SigningKey::generate(algorithm);
            let public = key.public_jwk();

            let jwk_did = did_jwk(&public);
            assert_eq!(jwk_from_did(&jwk_did).expect("did:jwk"), public);
            let vm = did_jwk_verification_method(&jwk_did);
            assert!(vm.ends_with("#0"));
            assert_eq!(jwk_from_did(&vm).expect("did:jwk URL"), public);

            let key_did = did_key(&public).expect("did:key");
            assert!(key_did.starts_with("did:key:z"));
            assert_eq!(jwk_from_did(&key_did).expect("did:key"), public);
            let vm = did_key_verification_method(&key_did);
            assert_eq!(jwk_from_did(&vm).expect("did:key URL"), public);
            // Already a DID URL: the fragment is replaced, not appended.
            assert_eq!(did_key_verification_method(&vm), vm);
        }
    }

    #[test]
    fn private_key_material_never_enters_a_did() {
        for algorithm in Algorithm::ALL {
            let key = SigningKey::generate(algorithm);
            let private = key.private_jwk();
            let d = private.d.as_deref().expect("private").to_string();
            let did = did_jwk(&private);
            assert_eq!(did, did_jwk(&key.public_jwk()));
            let json = b64_decode(did.strip_prefix("did:jwk:").expect("prefix")).expect("b64");
            let value: Value = serde_json::from_slice(&json).expect("json");
            assert!(value.get("d").is_none());
            assert!(!String::from_utf8(json).expect("utf8").contains(&d));
            assert!(!did.contains(&d));
            assert!(!did_key(&private).expect("did:key").contains(&d));

            // A did:jwk that carries a private key is refused, as the did:jwk spec requires.
            let leaked = format!("did:jwk:{}", b64(private.to_value().to_string()));
            assert_eq!(jwk_from_did(&leaked), Err(DidError::PrivateKey));
        }
    }

    #[test]
    fn malformed_or_unsupported_dids_are_refused() {
        let malformed = [
            "",
            "did",
            "key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
            "did:key:",
            "did:key:z",
            // Not base58btc multibase.
            "did:key:u7QE",
            "did:key:6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
            // Characters outside the base58 alphabet.
            "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooW0",
            "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWl",
            "did:jwk:",
            "did:jwk:!!!",
            "did:jwk:bm90IGpzb24", // "not json"
            "did:jwk:WzEsMiwzXQ",  // [1,2,3]
        ];
        for did in malformed {
            assert!(
                matches!(jwk_from_did(did), Err(DidError::Malformed(_))),
                "{did:?} must be malformed, got {:?}",
                jwk_from_did(did)
            );
        }
        let too_long = format!("did:key:z{}", "2".repeat(MAX_MULTIBASE_LEN + 1));
        assert!(matches!(
            jwk_from_did(&too_long),
            Err(DidError::Malformed(_))
        ));

        assert_eq!(
            jwk_from_did("did:web:issuer.example"),
            Err(DidError::UnsupportedMethod("web".into()))
        );

        // Other multicodecs from the did:key test vectors: X25519 and P-521.
        for did in [
            "did:key:z6LShs9GGnqk85isEBzzshkuVWrVKsRp24GnDuHk8QWkARMW",
            "did:key:z2J9gaYxrKVpdoG9A4gRnmpnRCcxU6agDtFVVBVdn1JedouoZN7SzcyREXXzWgt3gGiwpoHq7K68X4m32D8HgzG8wv3sY5j7",
        ] {
            assert!(matches!(
                jwk_from_did(did),
                Err(DidError::UnsupportedKey(_))
            ));
        }

        let encode = |bytes: &[u8]| format!("did:key:z{}", base58_encode(bytes));
        // Right prefix, wrong length.
        let mut short = P256_PUB.to_vec();
        short.extend_from_slice(&[0x02; 32]);
        assert!(matches!(
            jwk_from_did(&encode(&short)),
            Err(DidError::InvalidKey(_))
        ));
        let mut short = ED25519_PUB.to_vec();
        short.extend_from_slice(&[0x01; 31]);
        assert!(matches!(
            jwk_from_did(&encode(&short)),
            Err(DidError::InvalidKey(_))
        ));
        // A compressed P-256 "point" whose x is not a field element.
        let mut off_curve = P256_PUB.to_vec();
        off_curve.push(0x02);
        off_curve.extend_from_slice(&[0xff; 32]);
        assert!(matches!(
            jwk_from_did(&encode(&off_curve)),
            Err(DidError::InvalidKey(_))
        ));
        // An uncompressed point where a compressed one belongs.
        let mut uncompressed_point = P256_PUB.to_vec();
        let point = match SigningKey::generate(Algorithm::ES256) {
            SigningKey::P256(k) => k.verifying_key().to_encoded_point(false),
            _ => unreachable!("P-256"),
        };
        uncompressed_point.extend_from_slice(point.as_bytes());
        assert!(matches!(
            jwk_from_did(&encode(&uncompressed_point)),
            Err(DidError::InvalidKey(_))
        ));

        // did:jwk with an EC key missing y, or with a point that is not on the curve.
        let no_y = format!(
            "did:jwk:{}",
            b64(json!({"kty": "EC", "crv": "P-256", "x": SPEC_X}).to_string())
        );
        assert!(jwk_from_did(&no_y).is_err());
        let off_curve = format!(
            "did:jwk:{}",
            b64(json!({"kty": "EC", "crv": "P-256", "x": SPEC_X, "y": SPEC_X}).to_string())
        );
        assert!(matches!(
            jwk_from_did(&off_curve),
            Err(DidError::InvalidKey(_))
        ));

        // did_key refuses keys it cannot encode.
        let off_curve_jwk = Jwk {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: SPEC_X.into(),
            y: Some(SPEC_X.into()),
            d: None,
        };
        assert!(matches!(
            did_key(&off_curve_jwk),
            Err(DidError::InvalidKey(_))
        ));
        let x25519 = Jwk {
            kty: "OKP".into(),
            crv: "X25519".into(),
            x: "3p7bfXt9wbTTW2HC7OQ1Nz-DQ8hbeGdNrfx-FG-IK08".into(),
            y: None,
            d: None,
        };
        assert!(matches!(did_key(&x25519), Err(DidError::UnsupportedKey(_))));
    }
}
