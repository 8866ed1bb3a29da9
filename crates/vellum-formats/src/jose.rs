//! JWS compact serialisation, JWKs and the three signature algorithms Vellum uses.
//!
//! Written by hand: the surface is small (ES256, ES384, EdDSA), and owning it lets the issuer
//! check every header field the way OID4VCI requires. Keys are RustCrypto's (p256, p384,
//! ed25519-dalek: parsing, JWKs, points); ECDSA signatures are made and checked by ring, several
//! times faster than the pure-Rust curve arithmetic (docs/BENCHMARKS.md, issue 16).

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JoseError {
    #[error("malformed JWS: {0}")]
    Malformed(&'static str),
    #[error("unsupported algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    #[error("signature does not verify")]
    BadSignature,
}

/// Base64url without padding, as JOSE uses everywhere.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64_decode(text: &str) -> Result<Vec<u8>, JoseError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JoseError::Malformed("invalid base64url"))
}

/// The JWS algorithms Vellum signs and verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    ES256,
    ES384,
    EdDSA,
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA];

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    pub fn parse(name: &str) -> Result<Self, JoseError> {
        Self::ALL
            .into_iter()
            .find(|alg| alg.as_str() == name)
            .ok_or_else(|| JoseError::UnsupportedAlgorithm(name.to_owned()))
    }

    /// The JWK curve name of keys for this algorithm.
    pub fn curve(self) -> &'static str {
        match self {
            Algorithm::ES256 => "P-256",
            Algorithm::ES384 => "P-384",
            Algorithm::EdDSA => "Ed25519",
        }
    }

    fn from_curve(kty: &str, crv: &str) -> Result<Self, JoseError> {
        match (kty, crv) {
            ("EC", "P-256") => Ok(Algorithm::ES256),
            ("EC", "P-384") => Ok(Algorithm::ES384),
            ("OKP", "Ed25519") => Ok(Algorithm::EdDSA),
            _ => Err(JoseError::InvalidKey("unsupported kty/crv")),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A JSON Web Key for the curves above. `d` is present only on private keys and is wiped on drop.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<Zeroizing<String>>,
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kty", &self.kty)
            .field("crv", &self.crv)
            .field("x", &self.x)
            .field("y", &self.y)
            .field("d", &self.d.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl Jwk {
    /// Parses a public or private JWK from JSON, ignoring members such as `kid`, `use` and `alg`.
    pub fn from_value(value: &Value) -> Result<Self, JoseError> {
        let jwk: Jwk = serde_json::from_value(value.clone())
            .map_err(|_| JoseError::InvalidKey("not a JWK with kty, crv and x"))?;
        Algorithm::from_curve(&jwk.kty, &jwk.crv)?;
        if jwk.kty == "EC" && jwk.y.is_none() {
            return Err(JoseError::InvalidKey("EC key without y"));
        }
        Ok(jwk)
    }

    pub fn is_private(&self) -> bool {
        self.d.is_some()
    }

    pub fn algorithm(&self) -> Result<Algorithm, JoseError> {
        Algorithm::from_curve(&self.kty, &self.crv)
    }

    /// The same key without its private part.
    pub fn to_public(&self) -> Jwk {
        Jwk {
            d: None,
            ..self.clone()
        }
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// RFC 7638 thumbprint (SHA-256, base64url), from the required members in lexical order.
    pub fn thumbprint(&self) -> String {
        let canonical = match &self.y {
            Some(y) => format!(
                r#"{{"crv":{},"kty":{},"x":{},"y":{}}}"#,
                json_string(&self.crv),
                json_string(&self.kty),
                json_string(&self.x),
                json_string(y)
            ),
            None => format!(
                r#"{{"crv":{},"kty":{},"x":{}}}"#,
                json_string(&self.crv),
                json_string(&self.kty),
                json_string(&self.x)
            ),
        };
        b64(Sha256::digest(canonical.as_bytes()))
    }
}

fn json_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

fn decode_fixed<const N: usize>(text: &str, what: &'static str) -> Result<[u8; N], JoseError> {
    b64_decode(text)?
        .try_into()
        .map_err(|_| JoseError::InvalidKey(what))
}

/// A private signing key.
#[derive(Clone)]
pub enum SigningKey {
    P256(EcKey<p256::ecdsa::SigningKey>),
    P384(EcKey<p384::ecdsa::SigningKey>),
    Ed25519(ed25519_dalek::SigningKey),
}

/// An ECDSA key: the curve crate's key (its scalar and point), and ring's key pair for signing,
/// made from it at the first signature and shared by every clone.
#[derive(Clone)]
pub struct EcKey<K> {
    key: K,
    signer: Arc<OnceLock<Option<ring::signature::EcdsaKeyPair>>>,
}

impl<K> EcKey<K> {
    fn new(key: K) -> Self {
        EcKey {
            key,
            signer: Arc::default(),
        }
    }
}

impl<K> Deref for EcKey<K> {
    type Target = K;

    fn deref(&self) -> &K {
        &self.key
    }
}

/// ring's key pair for a private scalar and its uncompressed public point; `None` only if
/// ring refuses a key the curve crate accepted, which it does not for a valid key.
fn ring_signer(
    algorithm: &'static ring::signature::EcdsaSigningAlgorithm,
    scalar: &[u8],
    point: &[u8],
) -> Option<ring::signature::EcdsaKeyPair> {
    ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
        algorithm,
        scalar,
        point,
        &ring::rand::SystemRandom::new(),
    )
    .ok()
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, [redacted])", self.algorithm())
    }
}

impl SigningKey {
    pub fn generate(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::ES256 => {
                SigningKey::P256(EcKey::new(p256::ecdsa::SigningKey::random(&mut OsRng)))
            }
            Algorithm::ES384 => {
                SigningKey::P384(EcKey::new(p384::ecdsa::SigningKey::random(&mut OsRng)))
            }
            Algorithm::EdDSA => {
                SigningKey::Ed25519(ed25519_dalek::SigningKey::generate(&mut OsRng))
            }
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            SigningKey::P256(_) => Algorithm::ES256,
            SigningKey::P384(_) => Algorithm::ES384,
            SigningKey::Ed25519(_) => Algorithm::EdDSA,
        }
    }

    /// Builds a key from a private JWK, checking that the public members match the private scalar.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, JoseError> {
        let d = jwk
            .d
            .as_ref()
            .ok_or(JoseError::InvalidKey("JWK has no private part (d)"))?;
        let key = match jwk.algorithm()? {
            Algorithm::ES256 => {
                let d = Zeroizing::new(decode_fixed::<32>(d, "P-256 d must be 32 bytes")?);
                SigningKey::P256(EcKey::new(
                    p256::ecdsa::SigningKey::from_slice(d.as_slice())
                        .map_err(|_| JoseError::InvalidKey("invalid P-256 private scalar"))?,
                ))
            }
            Algorithm::ES384 => {
                let d = Zeroizing::new(decode_fixed::<48>(d, "P-384 d must be 48 bytes")?);
                SigningKey::P384(EcKey::new(
                    p384::ecdsa::SigningKey::from_slice(d.as_slice())
                        .map_err(|_| JoseError::InvalidKey("invalid P-384 private scalar"))?,
                ))
            }
            Algorithm::EdDSA => {
                let d = Zeroizing::new(decode_fixed::<32>(d, "Ed25519 d must be 32 bytes")?);
                SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&d))
            }
        };
        if key.public_jwk() != jwk.to_public() {
            return Err(JoseError::InvalidKey(
                "public members do not match the private key",
            ));
        }
        Ok(key)
    }

    pub fn public_jwk(&self) -> Jwk {
        match self {
            SigningKey::P256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                ec_jwk("P-256", point.x(), point.y())
            }
            SigningKey::P384(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                ec_jwk("P-384", point.x(), point.y())
            }
            SigningKey::Ed25519(key) => Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: b64(key.verifying_key().as_bytes()),
                y: None,
                d: None,
            },
        }
    }

    /// The private JWK, for sealing into storage. Never serialise this anywhere else.
    pub fn private_jwk(&self) -> Jwk {
        let d = match self {
            SigningKey::P256(key) => b64(key.to_bytes()),
            SigningKey::P384(key) => b64(key.to_bytes()),
            SigningKey::Ed25519(key) => b64(key.to_bytes()),
        };
        Jwk {
            d: Some(Zeroizing::new(d)),
            ..self.public_jwk()
        }
    }

    /// Signs `message`; ECDSA signatures are the fixed-size `r || s` form JWS requires.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer as _;
        let signer = match self {
            SigningKey::P256(key) => key.signer.get_or_init(|| {
                let point = key.verifying_key().to_encoded_point(false);
                ring_signer(
                    &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &key.to_bytes(),
                    point.as_bytes(),
                )
            }),
            SigningKey::P384(key) => key.signer.get_or_init(|| {
                let point = key.verifying_key().to_encoded_point(false);
                ring_signer(
                    &ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                    &key.to_bytes(),
                    point.as_bytes(),
                )
            }),
            SigningKey::Ed25519(key) => return key.sign(message).to_bytes().to_vec(),
        };
        if let Some(signature) = signer
            .as_ref()
            .and_then(|signer| signer.sign(&ring::rand::SystemRandom::new(), message).ok())
        {
            return signature.as_ref().to_vec();
        }
        // Only if ring refused the key or its randomness failed.
        self.sign_deterministic(message)
    }

    /// Signs `message` with the curve crates' deterministic ECDSA (RFC 6979): the same bytes
    /// always give the same signature, for what must come out the same each time it is made
    /// (development certificates); slower than [`SigningKey::sign`].
    pub fn sign_deterministic(&self, message: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer as _;
        match self {
            SigningKey::P256(key) => {
                let signature: p256::ecdsa::Signature = key.key.sign(message);
                signature.to_bytes().to_vec()
            }
            SigningKey::P384(key) => {
                let signature: p384::ecdsa::Signature = key.key.sign(message);
                signature.to_bytes().to_vec()
            }
            SigningKey::Ed25519(key) => key.sign(message).to_bytes().to_vec(),
        }
    }
}

fn ec_jwk(crv: &str, x: Option<&impl AsRef<[u8]>>, y: Option<&impl AsRef<[u8]>>) -> Jwk {
    Jwk {
        kty: "EC".into(),
        crv: crv.into(),
        x: x.map(b64).unwrap_or_default(),
        y: y.map(b64),
        d: None,
    }
}

/// Verifies `signature` over `message` with a public JWK under `algorithm`.
pub fn verify(
    jwk: &Jwk,
    algorithm: Algorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), JoseError> {
    if jwk.algorithm()? != algorithm {
        return Err(JoseError::InvalidKey("key does not match the algorithm"));
    }
    let bad = |_| JoseError::BadSignature;
    let ring_verify = |algorithm: &'static ring::signature::EcdsaVerificationAlgorithm,
                       point: &[u8]| {
        ring::signature::UnparsedPublicKey::new(algorithm, point)
            .verify(message, signature)
            .map_err(|_| JoseError::BadSignature)
    };
    match algorithm {
        // The curve crate checks the point (a clear error for a key off the curve); ring checks
        // the signature.
        Algorithm::ES256 => {
            let point = sec1_point::<32>(jwk)?;
            p256::PublicKey::from_sec1_bytes(&point)
                .map_err(|_| JoseError::InvalidKey("not a P-256 point"))?;
            ring_verify(&ring::signature::ECDSA_P256_SHA256_FIXED, &point)
        }
        Algorithm::ES384 => {
            let point = sec1_point::<48>(jwk)?;
            p384::PublicKey::from_sec1_bytes(&point)
                .map_err(|_| JoseError::InvalidKey("not a P-384 point"))?;
            ring_verify(&ring::signature::ECDSA_P384_SHA384_FIXED, &point)
        }
        Algorithm::EdDSA => {
            let x = decode_fixed::<32>(&jwk.x, "Ed25519 x must be 32 bytes")?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&x)
                .map_err(|_| JoseError::InvalidKey("not an Ed25519 point"))?;
            let signature = ed25519_dalek::Signature::from_slice(signature).map_err(bad)?;
            key.verify_strict(message, &signature).map_err(bad)
        }
    }
}

fn sec1_point<const N: usize>(jwk: &Jwk) -> Result<Vec<u8>, JoseError> {
    let x = decode_fixed::<N>(&jwk.x, "EC x has the wrong length")?;
    let y = decode_fixed::<N>(
        jwk.y
            .as_deref()
            .ok_or(JoseError::InvalidKey("EC key without y"))?,
        "EC y has the wrong length",
    )?;
    let mut point = Vec::with_capacity(1 + 2 * N);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(point)
}

/// Produces a compact JWS. `header` must not contain `alg`: it is set from the key.
pub fn sign_compact(mut header: Map<String, Value>, payload: &Value, key: &SigningKey) -> String {
    header.insert("alg".into(), Value::from(key.algorithm().as_str()));
    let mut token = b64(Value::Object(header).to_string());
    token.push('.');
    token.push_str(&b64(payload.to_string()));
    let signature = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&b64(signature));
    token
}

/// A compact JWS split into its parts; the signature is not yet checked.
#[derive(Debug)]
pub struct UnverifiedJws {
    pub header: Map<String, Value>,
    pub payload: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

impl UnverifiedJws {
    pub fn parse(token: &str) -> Result<Self, JoseError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JoseError::Malformed("expected three dot-separated parts"));
        };
        let header = json_object(&b64_decode(header)?, "header is not a JSON object")?;
        // RFC 7515 §4.1.11: a recipient must refuse a JWS whose `crit` names an extension it
        // does not understand, and Vellum understands none.
        if header.contains_key("crit") {
            return Err(JoseError::Malformed(
                "the header has critical extensions (crit) this verifier does not understand",
            ));
        }
        let payload_object = json_object(&b64_decode(payload)?, "payload is not a JSON object")?;
        Ok(UnverifiedJws {
            header,
            payload: payload_object,
            signing_input: token[..token.len() - signature.len() - 1].to_owned(),
            signature: b64_decode(signature)?,
        })
    }

    /// The `alg` header, refusing `none` and anything Vellum does not implement.
    pub fn algorithm(&self) -> Result<Algorithm, JoseError> {
        match self.header.get("alg") {
            Some(Value::String(name)) => Algorithm::parse(name),
            _ => Err(JoseError::Malformed("missing alg header")),
        }
    }

    pub fn verify_with(&self, jwk: &Jwk) -> Result<(), JoseError> {
        verify(
            jwk,
            self.algorithm()?,
            self.signing_input.as_bytes(),
            &self.signature,
        )
    }
}

fn json_object(bytes: &[u8], what: &'static str) -> Result<Map<String, Value>, JoseError> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JoseError::Malformed(what)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// ring signs and verifies; the curve crates, an implementation of their own, agree both
    /// ways, and a signature over other bytes or by another key fails.
    #[test]
    fn ecdsa_signatures_agree_with_the_curve_crates_both_ways() {
        use p256::ecdsa::signature::{Signer as _, Verifier as _};
        let message = b"header.payload";
        for _ in 0..16 {
            let key = SigningKey::generate(Algorithm::ES256);
            let SigningKey::P256(inner) = &key else {
                unreachable!("P-256")
            };
            let ours = key.sign(message);
            let signature = p256::ecdsa::Signature::from_slice(&ours).expect("r || s");
            inner
                .verifying_key()
                .verify(message, &signature)
                .expect("p256 verifies ring's");
            let theirs: p256::ecdsa::Signature = inner.key.sign(message);
            verify(
                &key.public_jwk(),
                Algorithm::ES256,
                message,
                &theirs.to_bytes(),
            )
            .expect("ring verifies p256's");
            assert_eq!(
                verify(&key.public_jwk(), Algorithm::ES256, b"other", &ours),
                Err(JoseError::BadSignature)
            );
            let other = SigningKey::generate(Algorithm::ES256).public_jwk();
            assert_eq!(
                verify(&other, Algorithm::ES256, message, &ours),
                Err(JoseError::BadSignature)
            );
        }
        let key = SigningKey::generate(Algorithm::ES384);
        let SigningKey::P384(inner) = &key else {
            unreachable!("P-384")
        };
        let ours = key.sign(message);
        let signature = p384::ecdsa::Signature::from_slice(&ours).expect("r || s");
        inner
            .verifying_key()
            .verify(message, &signature)
            .expect("p384 verifies ring's");
        let theirs: p384::ecdsa::Signature = inner.key.sign(message);
        verify(
            &key.public_jwk(),
            Algorithm::ES384,
            message,
            &theirs.to_bytes(),
        )
        .expect("ring verifies p384's");
        // RFC 6979 signatures repeat; ring's are randomized, and both verify.
        assert_eq!(
            key.sign_deterministic(message),
            key.sign_deterministic(message)
        );
        assert_ne!(key.sign(message), key.sign(message));
        verify(
            &key.public_jwk(),
            Algorithm::ES384,
            message,
            &key.sign_deterministic(message),
        )
        .expect("a deterministic signature verifies");
        // A clone shares the signer made at the first signature.
        let clone = key.clone();
        verify(
            &key.public_jwk(),
            Algorithm::ES384,
            message,
            &clone.sign(message),
        )
        .expect("a clone signs");
    }

    #[test]
    fn every_algorithm_signs_and_verifies_a_compact_jws() {
        for algorithm in Algorithm::ALL {
            let key = SigningKey::generate(algorithm);
            let token = sign_compact(Map::new(), &json!({"hello": "world"}), &key);
            let jws = UnverifiedJws::parse(&token).expect("parses");
            assert_eq!(jws.algorithm(), Ok(algorithm));
            jws.verify_with(&key.public_jwk()).expect("verifies");
            let other = SigningKey::generate(algorithm);
            assert_eq!(
                jws.verify_with(&other.public_jwk()),
                Err(JoseError::BadSignature)
            );
        }
    }

    #[test]
    fn a_private_jwk_round_trips_and_a_mismatched_one_is_refused() {
        for algorithm in Algorithm::ALL {
            let key = SigningKey::generate(algorithm);
            let jwk = key.private_jwk();
            let again = SigningKey::from_jwk(&jwk).expect("round trip");
            assert_eq!(again.public_jwk(), key.public_jwk());
            let mut wrong = jwk.clone();
            wrong.x = SigningKey::generate(algorithm).public_jwk().x;
            assert!(SigningKey::from_jwk(&wrong).is_err());
        }
    }

    #[test]
    fn debug_output_never_shows_the_private_part() {
        let jwk = SigningKey::generate(Algorithm::ES256).private_jwk();
        let d = jwk.d.clone().expect("private");
        let shown = format!("{jwk:?}");
        assert!(!shown.contains(d.as_str()));
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn thumbprint_matches_rfc_8037_appendix_a3() {
        let jwk = Jwk::from_value(&json!({
            "kty": "OKP", "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        }))
        .expect("jwk");
        assert_eq!(
            jwk.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn tampered_or_malformed_tokens_are_refused() {
        let key = SigningKey::generate(Algorithm::ES256);
        let token = sign_compact(Map::new(), &json!({"a": 1}), &key);
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = b64(json!({"a": 2}).to_string());
        parts[1] = &forged;
        let jws = UnverifiedJws::parse(&parts.join(".")).expect("parses");
        assert_eq!(
            jws.verify_with(&key.public_jwk()),
            Err(JoseError::BadSignature)
        );
        assert!(UnverifiedJws::parse("a.b").is_err());
        for crit in [json!(["exp"]), json!([]), json!("b64")] {
            let mut header = Map::new();
            header.insert("crit".into(), crit);
            let token = sign_compact(header, &json!({"a": 1}), &key);
            assert!(
                matches!(UnverifiedJws::parse(&token), Err(JoseError::Malformed(_))),
                "crit must be refused"
            );
        }
        assert!(UnverifiedJws::parse("a.b.c.d").is_err());
        let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64("{}"));
        let jws = UnverifiedJws::parse(&none).expect("parses");
        assert!(matches!(
            jws.algorithm(),
            Err(JoseError::UnsupportedAlgorithm(_))
        ));
    }
}
