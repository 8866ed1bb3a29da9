//! JSON Web Encryption (RFC 7516) in compact serialisation, for the encrypted credential
//! requests and responses of OID4VCI 1.0 (§8.3.1.2 and §10).
//!
//! One key management algorithm, `ECDH-ES` on P-256 (RFC 7518 §4.6: direct key agreement, the
//! Concat KDF output is the content encryption key, the encrypted key is empty), and two content
//! encryptions, `A128GCM` and `A256GCM` (RFC 7518 §5.3), with the plaintext optionally DEFLATE
//! compressed first (`zip: "DEF"`). Like [`crate::jose`], written by hand on RustCrypto
//! primitives so that every header member is checked: anything not understood is refused.

use std::fmt;
use std::io::{Read, Write};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce, Tag};
use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::jose::{self, Jwk, b64};

/// The `alg` of every JWE this module writes, and the only one it reads.
pub const ALG_ECDH_ES: &str = "ECDH-ES";
/// The `zip` value for DEFLATE (RFC 1951), the only compression JWE registers.
pub const ZIP_DEFLATE: &str = "DEF";

/// GCM uses a 96-bit IV and a 128-bit authentication tag (RFC 7518 §5.3).
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JweError {
    #[error("malformed JWE: {0}")]
    Malformed(&'static str),
    #[error("unsupported JWE algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("unsupported JWE content encryption {0:?}")]
    UnsupportedEncryption(String),
    #[error("unsupported JWE compression {0:?}")]
    UnsupportedCompression(String),
    #[error(
        "the JWE header has critical extensions (crit) this implementation does not understand"
    )]
    CriticalExtension,
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    #[error("the JWE does not decrypt: wrong key, or the token was altered")]
    Decryption,
    #[error("the plaintext is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("could not encrypt: {0}")]
    Encryption(&'static str),
}

/// A header value echoed in an error, cut short: it comes from whoever sent the token.
fn shown(name: &str) -> String {
    name.chars().take(40).collect()
}

/// The content encryption algorithms (`enc`) Vellum encrypts and decrypts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ContentEncryption {
    #[serde(rename = "A128GCM")]
    A128Gcm,
    #[serde(rename = "A256GCM")]
    A256Gcm,
}

impl ContentEncryption {
    pub const ALL: [ContentEncryption; 2] =
        [ContentEncryption::A128Gcm, ContentEncryption::A256Gcm];

    pub fn as_str(self) -> &'static str {
        match self {
            ContentEncryption::A128Gcm => "A128GCM",
            ContentEncryption::A256Gcm => "A256GCM",
        }
    }

    pub fn parse(name: &str) -> Result<Self, JweError> {
        Self::ALL
            .into_iter()
            .find(|enc| enc.as_str() == name)
            .ok_or_else(|| JweError::UnsupportedEncryption(shown(name)))
    }

    /// The length of the content encryption key, in bytes.
    pub fn key_len(self) -> usize {
        match self {
            ContentEncryption::A128Gcm => 16,
            ContentEncryption::A256Gcm => 32,
        }
    }
}

impl fmt::Display for ContentEncryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A P-256 private key that JWEs are encrypted to. The scalar is wiped on drop.
#[derive(Clone)]
pub struct DecryptionKey(p256::SecretKey);

impl fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DecryptionKey(P-256, [redacted])")
    }
}

impl DecryptionKey {
    pub fn generate() -> Self {
        DecryptionKey(p256::SecretKey::random(&mut OsRng))
    }

    /// A key derived from 32 secret bytes (a key derivation's output): the same bytes, the same
    /// key, so that every instance sharing a master secret decrypts the same requests. Bytes
    /// that are no valid scalar (probability about 2^-128) are refused.
    pub fn from_secret_bytes(bytes: &[u8; 32]) -> Result<Self, JweError> {
        p256::SecretKey::from_slice(bytes)
            .map(DecryptionKey)
            .map_err(|_| JweError::InvalidKey("the bytes are no valid P-256 private scalar"))
    }

    /// Builds a key from a private P-256 JWK, checking that the public members match `d`.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, JweError> {
        if jwk.kty != "EC" || jwk.crv != "P-256" {
            return Err(JweError::InvalidKey(
                "a decryption key must be an EC P-256 key",
            ));
        }
        let d = jwk
            .d
            .as_ref()
            .ok_or(JweError::InvalidKey("JWK has no private part (d)"))?;
        let d: Zeroizing<Vec<u8>> = Zeroizing::new(
            jose::b64_decode(d).map_err(|_| JweError::InvalidKey("d is not base64url"))?,
        );
        if d.len() != 32 {
            return Err(JweError::InvalidKey("P-256 d must be 32 bytes"));
        }
        let key = DecryptionKey(
            p256::SecretKey::from_slice(&d)
                .map_err(|_| JweError::InvalidKey("invalid P-256 private scalar"))?,
        );
        if key.public_jwk() != jwk.to_public() {
            return Err(JweError::InvalidKey(
                "public members do not match the private key",
            ));
        }
        Ok(key)
    }

    /// The public JWK to publish or send, so that others can encrypt to this key.
    pub fn public_jwk(&self) -> Jwk {
        p256_jwk(&self.0.public_key())
    }

    /// The private JWK, for sealing into storage. Never serialise this anywhere else.
    pub fn private_jwk(&self) -> Jwk {
        let d = Zeroizing::new(self.0.to_bytes());
        Jwk {
            d: Some(Zeroizing::new(b64(&d[..]))),
            ..self.public_jwk()
        }
    }
}

/// A public P-256 key as a JWK with only kty, crv, x and y (the form `epk` takes).
fn p256_jwk(key: &p256::PublicKey) -> Jwk {
    let point = key.to_encoded_point(false);
    Jwk {
        kty: "EC".into(),
        crv: "P-256".into(),
        x: point.x().map(b64).unwrap_or_default(),
        y: point.y().map(b64),
        d: None,
    }
}

/// The P-256 point of a public JWK, checked to be on the curve.
fn p256_public(jwk: &Jwk) -> Result<p256::PublicKey, &'static str> {
    if jwk.kty != "EC" || jwk.crv != "P-256" {
        return Err("ECDH-ES here takes EC P-256 keys only");
    }
    if jwk.d.is_some() {
        return Err("a public key was expected, but the JWK has a private part (d)");
    }
    let coordinate = |text: &str| {
        jose::b64_decode(text)
            .ok()
            .filter(|bytes| bytes.len() == 32)
            .ok_or("P-256 x and y must be 32 bytes of base64url")
    };
    let x = coordinate(&jwk.x)?;
    let y = coordinate(jwk.y.as_deref().ok_or("EC key without y")?)?;
    let mut point = Vec::with_capacity(65);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    p256::PublicKey::from_sec1_bytes(&point).map_err(|_| "not a point on P-256")
}

/// Encrypts `plaintext` to a public P-256 JWK with ECDH-ES and `enc`, as a compact JWE
/// `header..iv.ciphertext.tag` (the encrypted key is empty under direct key agreement).
///
/// The protected header carries `alg`, `enc` and a fresh `epk`, plus `kid` and `cty` when given
/// and `zip: "DEF"` when `compress` is set (the plaintext is then DEFLATE compressed first).
pub fn encrypt(
    plaintext: &[u8],
    recipient_key: &Jwk,
    enc: ContentEncryption,
    kid: Option<&str>,
    compress: bool,
    content_type: Option<&str>,
) -> Result<String, JweError> {
    let recipient = p256_public(recipient_key).map_err(JweError::InvalidKey)?;
    let ephemeral = Zeroizing::new(p256::NonZeroScalar::random(&mut OsRng));
    let epk = p256::PublicKey::from_secret_scalar(&ephemeral);
    let mut header = Map::new();
    header.insert("alg".into(), Value::from(ALG_ECDH_ES));
    header.insert("enc".into(), Value::from(enc.as_str()));
    header.insert("epk".into(), p256_jwk(&epk).to_value());
    if let Some(kid) = kid {
        header.insert("kid".into(), Value::from(kid));
    }
    if let Some(content_type) = content_type {
        header.insert("cty".into(), Value::from(content_type));
    }
    let body = if compress {
        header.insert("zip".into(), Value::from(ZIP_DEFLATE));
        deflate(plaintext)?
    } else {
        plaintext.to_vec()
    };
    let cek = agree(&ephemeral, &recipient, enc, &[], &[])?;
    seal(header, enc, &cek, body)
}

/// Encrypts `body` under `cek` and assembles the compact JWE; the header is the AAD.
fn seal(
    header: Map<String, Value>,
    enc: ContentEncryption,
    cek: &[u8],
    mut body: Vec<u8>,
) -> Result<String, JweError> {
    let protected = b64(Value::Object(header).to_string());
    let mut iv = [0u8; IV_LEN];
    OsRng.fill_bytes(&mut iv);
    let nonce = &Nonce::from(iv);
    let aad = protected.as_bytes();
    let failed = |_| JweError::Encryption("AES-GCM refused the input");
    let tag: Tag = match enc {
        ContentEncryption::A128Gcm => Aes128Gcm::new_from_slice(cek)
            .map_err(|_| JweError::Encryption("wrong content key length"))?
            .encrypt_in_place_detached(nonce, aad, &mut body)
            .map_err(failed)?,
        ContentEncryption::A256Gcm => Aes256Gcm::new_from_slice(cek)
            .map_err(|_| JweError::Encryption("wrong content key length"))?
            .encrypt_in_place_detached(nonce, aad, &mut body)
            .map_err(failed)?,
    };
    Ok(format!(
        "{protected}..{}.{}.{}",
        b64(iv),
        b64(&body),
        b64(tag)
    ))
}

/// Decrypts `body` in place under `cek`, checking the tag over it and the AAD.
fn open(
    enc: ContentEncryption,
    cek: &[u8],
    iv: &[u8; IV_LEN],
    aad: &[u8],
    body: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), JweError> {
    let nonce = &Nonce::from(*iv);
    let tag = &Tag::from(*tag);
    let outcome = match enc {
        ContentEncryption::A128Gcm => Aes128Gcm::new_from_slice(cek)
            .map_err(|_| JweError::Decryption)?
            .decrypt_in_place_detached(nonce, aad, body, tag),
        ContentEncryption::A256Gcm => Aes256Gcm::new_from_slice(cek)
            .map_err(|_| JweError::Decryption)?
            .decrypt_in_place_detached(nonce, aad, body, tag),
    };
    outcome.map_err(|_| JweError::Decryption)
}

/// ECDH on P-256 then the Concat KDF: the content encryption key of direct key agreement.
fn agree(
    secret: &p256::NonZeroScalar,
    public: &p256::PublicKey,
    enc: ContentEncryption,
    apu: &[u8],
    apv: &[u8],
) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let shared = p256::ecdh::diffie_hellman(secret, public.as_affine());
    concat_kdf(
        shared.raw_secret_bytes(),
        enc.as_str().as_bytes(),
        apu,
        apv,
        enc.key_len(),
    )
}

/// The Concat KDF of NIST SP 800-56A with SHA-256, as RFC 7518 §4.6.2 instantiates it:
/// OtherInfo is AlgorithmID, PartyUInfo and PartyVInfo, each prefixed with its 32-bit
/// big-endian length, then SuppPubInfo (the key length in bits, 32-bit big-endian).
fn concat_kdf(
    z: &[u8],
    algorithm_id: &[u8],
    apu: &[u8],
    apv: &[u8],
    key_len: usize,
) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let too_long = |_| JweError::Malformed("apu or apv is too long");
    let mut other_info = Vec::with_capacity(16 + algorithm_id.len() + apu.len() + apv.len());
    for field in [algorithm_id, apu, apv] {
        other_info.extend_from_slice(&u32::try_from(field.len()).map_err(too_long)?.to_be_bytes());
        other_info.extend_from_slice(field);
    }
    let bits = key_len
        .checked_mul(8)
        .and_then(|bits| u32::try_from(bits).ok())
        .ok_or(JweError::Encryption("key length out of range"))?;
    other_info.extend_from_slice(&bits.to_be_bytes());
    let rounds = key_len.div_ceil(32);
    let mut key = Zeroizing::new(Vec::with_capacity(rounds * 32));
    for round in 1..=rounds {
        let counter = u32::try_from(round).map_err(|_| JweError::Encryption("too many rounds"))?;
        let mut hash = Sha256::new();
        hash.update(counter.to_be_bytes());
        hash.update(z);
        hash.update(&other_info);
        key.extend_from_slice(&hash.finalize());
    }
    key.truncate(key_len);
    Ok(key)
}

fn deflate(plaintext: &[u8]) -> Result<Vec<u8>, JweError> {
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(plaintext)
        .map_err(|_| JweError::Encryption("DEFLATE failed"))?;
    encoder
        .finish()
        .map_err(|_| JweError::Encryption("DEFLATE failed"))
}

/// Inflates raw DEFLATE, refusing output beyond `limit` bytes without producing more than one
/// byte past it, so that a small ciphertext cannot expand without bound.
fn inflate(compressed: &[u8], limit: usize) -> Result<Vec<u8>, JweError> {
    let mut plaintext = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    DeflateDecoder::new(compressed)
        .take(cap)
        .read_to_end(&mut plaintext)
        .map_err(|_| JweError::Malformed("the compressed plaintext is not valid DEFLATE"))?;
    if plaintext.len() > limit {
        return Err(JweError::TooLarge { limit });
    }
    Ok(plaintext)
}

/// A decrypted JWE: its protected header, now authenticated, and the plaintext.
pub struct Decrypted {
    pub header: Map<String, Value>,
    pub plaintext: Vec<u8>,
}

impl fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decrypted")
            .field("header", &self.header)
            .field(
                "plaintext",
                &format_args!("[{} bytes]", self.plaintext.len()),
            )
            .finish()
    }
}

/// The five parts of a compact JWE.
fn split(compact: &str) -> Result<[&str; 5], JweError> {
    let mut parts = compact.split('.');
    let (Some(header), Some(key), Some(iv), Some(ciphertext), Some(tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(JweError::Malformed("expected five dot-separated parts"));
    };
    Ok([header, key, iv, ciphertext, tag])
}

fn decode(text: &str, what: &'static str) -> Result<Vec<u8>, JweError> {
    jose::b64_decode(text).map_err(|_| JweError::Malformed(what))
}

fn parse_header(text: &str) -> Result<Map<String, Value>, JweError> {
    let bytes = decode(text, "the header is not base64url")?;
    let Ok(Value::Object(header)) = serde_json::from_slice(&bytes) else {
        return Err(JweError::Malformed("the header is not a JSON object"));
    };
    // RFC 7516 §4.1.13: a recipient must refuse a JWE whose `crit` names an extension it does
    // not understand, and this module understands none.
    if header.contains_key("crit") {
        return Err(JweError::CriticalExtension);
    }
    Ok(header)
}

/// The protected header of a compact JWE, without decrypting it: for choosing the key by `kid`.
/// Nothing in it is authenticated until [`decrypt`] succeeds.
pub fn protected_header(compact: &str) -> Result<Map<String, Value>, JweError> {
    parse_header(split(compact)?[0])
}

fn string_member<'h>(
    header: &'h Map<String, Value>,
    name: &str,
    what: &'static str,
) -> Result<Option<&'h str>, JweError> {
    match header.get(name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(JweError::Malformed(what)),
    }
}

/// Decrypts a compact JWE made with ECDH-ES on P-256 to `key`, refusing plaintexts (after
/// decompression, when `zip` is `DEF`) longer than `max_plaintext` bytes.
pub fn decrypt(
    compact: &str,
    key: &DecryptionKey,
    max_plaintext: usize,
) -> Result<Decrypted, JweError> {
    let [protected, encrypted_key, iv, ciphertext, tag] = split(compact)?;
    let header = parse_header(protected)?;
    match string_member(&header, "alg", "alg must be a string")? {
        Some(ALG_ECDH_ES) => {}
        Some(other) => return Err(JweError::UnsupportedAlgorithm(shown(other))),
        None => return Err(JweError::Malformed("missing alg header")),
    }
    let enc = ContentEncryption::parse(
        string_member(&header, "enc", "enc must be a string")?
            .ok_or(JweError::Malformed("missing enc header"))?,
    )?;
    let compressed = match string_member(&header, "zip", "zip must be a string")? {
        None => false,
        Some(ZIP_DEFLATE) => true,
        Some(other) => return Err(JweError::UnsupportedCompression(shown(other))),
    };
    if !encrypted_key.is_empty() {
        return Err(JweError::Malformed(
            "the encrypted key must be empty under ECDH-ES direct key agreement",
        ));
    }
    let epk = header
        .get("epk")
        .ok_or(JweError::Malformed("missing epk header"))?;
    let epk = Jwk::from_value(epk)
        .ok()
        .and_then(|jwk| p256_public(&jwk).ok())
        .ok_or(JweError::Malformed("epk is not a public key on P-256"))?;
    let party = |name, what| -> Result<Vec<u8>, JweError> {
        match string_member(&header, name, what)? {
            Some(text) => decode(text, what),
            None => Ok(Vec::new()),
        }
    };
    let apu = party("apu", "apu must be a base64url string")?;
    let apv = party("apv", "apv must be a base64url string")?;
    let iv: [u8; IV_LEN] = decode(iv, "the IV is not base64url")?
        .try_into()
        .map_err(|_| JweError::Malformed("the IV must be 12 bytes"))?;
    let tag: [u8; TAG_LEN] = decode(tag, "the tag is not base64url")?
        .try_into()
        .map_err(|_| JweError::Malformed("the authentication tag must be 16 bytes"))?;
    let mut body = decode(ciphertext, "the ciphertext is not base64url")?;
    if !compressed && body.len() > max_plaintext {
        return Err(JweError::TooLarge {
            limit: max_plaintext,
        });
    }
    let secret = Zeroizing::new(key.0.to_nonzero_scalar());
    let cek = agree(&secret, &epk, enc, &apu, &apv)?;
    open(enc, &cek, &iv, protected.as_bytes(), &mut body, &tag)?;
    let plaintext = if compressed {
        inflate(&body, max_plaintext)?
    } else {
        body
    };
    Ok(Decrypted { header, plaintext })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::{Algorithm, SigningKey};
    use serde_json::json;

    const LIMIT: usize = 1 << 20;

    #[test]
    fn a_key_from_secret_bytes_is_the_same_key_each_time_and_decrypts() {
        let bytes = [7u8; 32];
        let one = DecryptionKey::from_secret_bytes(&bytes).expect("key");
        let again = DecryptionKey::from_secret_bytes(&bytes).expect("key");
        assert_eq!(one.public_jwk(), again.public_jwk());
        let token = encrypt(
            b"hello",
            &one.public_jwk(),
            ContentEncryption::A128Gcm,
            None,
            false,
            None,
        )
        .expect("encrypt");
        assert_eq!(
            decrypt(&token, &again, LIMIT).expect("decrypt").plaintext,
            b"hello"
        );
        assert!(
            DecryptionKey::from_secret_bytes(&[0u8; 32]).is_err(),
            "zero is no scalar"
        );
    }

    /// RFC 7518 Appendix C: Alice's ephemeral key and Bob's static key.
    fn alice() -> Jwk {
        Jwk::from_value(&json!({
            "kty": "EC", "crv": "P-256",
            "x": "gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0",
            "y": "SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps",
            "d": "0_NxaRPUMQoAJt50Gz8YiTr8gRTwyEaCumd-MToTmIo"
        }))
        .expect("jwk")
    }

    fn bob() -> Jwk {
        Jwk::from_value(&json!({
            "kty": "EC", "crv": "P-256",
            "x": "weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ",
            "y": "e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck",
            "d": "VEmDZpDXXK8p8N0Cndsxs924q6nS1RXFASRl6BfUqdw"
        }))
        .expect("jwk")
    }

    const RFC_DERIVED_KEY: &str = "VqqN6vgjbSBcIijNcacQGg";

    #[test]
    fn the_concat_kdf_matches_rfc_7518_appendix_c() {
        let expected = jose::b64_decode(RFC_DERIVED_KEY).expect("b64");
        // Z as the appendix prints it.
        let z = [
            158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49,
            110, 163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196,
        ];
        let derived = concat_kdf(&z, b"A128GCM", b"Alice", b"Bob", 16).expect("kdf");
        assert_eq!(derived.as_slice(), expected.as_slice());

        // The same key from either side of the key agreement.
        let alice = DecryptionKey::from_jwk(&alice()).expect("alice");
        let bob = DecryptionKey::from_jwk(&bob()).expect("bob");
        for (secret, public) in [(&bob, &alice), (&alice, &bob)] {
            let public = p256_public(&public.public_jwk()).expect("point");
            let cek = agree(
                &secret.0.to_nonzero_scalar(),
                &public,
                ContentEncryption::A128Gcm,
                b"Alice",
                b"Bob",
            )
            .expect("agree");
            assert_eq!(cek.as_slice(), expected.as_slice());
        }
    }

    #[test]
    fn decrypt_reads_apu_and_apv_into_the_kdf() {
        let bob = DecryptionKey::from_jwk(&bob()).expect("bob");
        let cek = jose::b64_decode(RFC_DERIVED_KEY).expect("b64");
        let header = json!({
            "alg": "ECDH-ES", "enc": "A128GCM", "apu": "QWxpY2U", "apv": "Qm9i",
            "epk": alice().to_public().to_value()
        });
        let Value::Object(header) = header else {
            unreachable!("a JSON object literal")
        };
        let token =
            seal(header, ContentEncryption::A128Gcm, &cek, b"to Bob".to_vec()).expect("seal");
        let decrypted = decrypt(&token, &bob, LIMIT).expect("decrypts");
        assert_eq!(decrypted.plaintext, b"to Bob");
        assert_eq!(decrypted.header["apu"], "QWxpY2U");
    }

    #[test]
    fn both_encryptions_round_trip_with_and_without_deflate() {
        let key = DecryptionKey::generate();
        let plaintext = br#"{"credential":"a credential repeated, a credential repeated"}"#;
        for enc in ContentEncryption::ALL {
            for compress in [false, true] {
                let token = encrypt(
                    plaintext,
                    &key.public_jwk(),
                    enc,
                    Some("key-1"),
                    compress,
                    Some("json"),
                )
                .expect("encrypts");
                let parts: Vec<&str> = token.split('.').collect();
                assert_eq!(parts.len(), 5);
                assert!(parts[1].is_empty(), "no encrypted key under ECDH-ES");
                let decrypted = decrypt(&token, &key, LIMIT).expect("decrypts");
                assert_eq!(decrypted.plaintext, plaintext);
                let header = &decrypted.header;
                assert_eq!(header["alg"], "ECDH-ES");
                assert_eq!(header["enc"], enc.as_str());
                assert_eq!(header["kid"], "key-1");
                assert_eq!(header["cty"], "json");
                assert_eq!(header.get("zip").is_some(), compress);
                let Some(Value::Object(epk)) = header.get("epk") else {
                    panic!("epk is an object")
                };
                let mut members: Vec<&str> = epk.keys().map(String::as_str).collect();
                members.sort_unstable();
                assert_eq!(members, ["crv", "kty", "x", "y"]);
                assert_eq!(protected_header(&token).as_ref(), Ok(header));
            }
        }
        let bare = encrypt(
            b"",
            &key.public_jwk(),
            ContentEncryption::A256Gcm,
            None,
            false,
            None,
        )
        .expect("encrypts");
        let decrypted = decrypt(&bare, &key, LIMIT).expect("decrypts");
        assert!(decrypted.plaintext.is_empty());
        for member in ["kid", "cty", "zip"] {
            assert!(!decrypted.header.contains_key(member), "{member}");
        }
    }

    fn flip(part: &str) -> String {
        let mut bytes = jose::b64_decode(part).expect("b64");
        bytes[0] ^= 1;
        b64(bytes)
    }

    fn replace_part(token: &str, index: usize, part: &str) -> String {
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[index] = part;
        parts.join(".")
    }

    fn with_header(token: &str, edit: impl FnOnce(&mut Map<String, Value>)) -> String {
        let mut header = protected_header(token).expect("header");
        edit(&mut header);
        replace_part(token, 0, &b64(Value::Object(header).to_string()))
    }

    #[test]
    fn altered_tokens_and_wrong_keys_do_not_decrypt() {
        let key = DecryptionKey::generate();
        for enc in ContentEncryption::ALL {
            let token =
                encrypt(b"secret", &key.public_jwk(), enc, None, true, None).expect("encrypts");
            let parts: Vec<&str> = token.split('.').collect();
            for index in [2, 3, 4] {
                let altered = replace_part(&token, index, &flip(parts[index]));
                assert_eq!(
                    decrypt(&altered, &key, LIMIT).map(|_| ()),
                    Err(JweError::Decryption),
                    "part {index}"
                );
            }
            // A header that still parses but differs: the AAD no longer matches.
            let altered = with_header(&token, |header| {
                header.insert("kid".into(), Value::from("other"));
            });
            assert_eq!(
                decrypt(&altered, &key, LIMIT).map(|_| ()),
                Err(JweError::Decryption)
            );
            assert!(decrypt(&replace_part(&token, 0, &flip(parts[0])), &key, LIMIT).is_err());
            let other = DecryptionKey::generate();
            assert_eq!(
                decrypt(&token, &other, LIMIT).map(|_| ()),
                Err(JweError::Decryption)
            );
        }
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_limit() {
        let key = DecryptionKey::generate();
        let zeros = vec![0u8; 8 * LIMIT];
        let token = encrypt(
            &zeros,
            &key.public_jwk(),
            ContentEncryption::A256Gcm,
            None,
            true,
            None,
        )
        .expect("encrypts");
        assert!(token.len() < 64 << 10, "8 MiB of zeros compress well");
        assert_eq!(
            decrypt(&token, &key, LIMIT).map(|_| ()),
            Err(JweError::TooLarge { limit: LIMIT })
        );
        let decrypted = decrypt(&token, &key, zeros.len()).expect("at the limit");
        assert_eq!(decrypted.plaintext.len(), zeros.len());
        let plain = encrypt(
            &[7; 100],
            &key.public_jwk(),
            ContentEncryption::A128Gcm,
            None,
            false,
            None,
        )
        .expect("encrypts");
        assert_eq!(
            decrypt(&plain, &key, 99).map(|_| ()),
            Err(JweError::TooLarge { limit: 99 })
        );
        assert!(decrypt(&plain, &key, 100).is_ok());
    }

    #[test]
    fn only_public_p256_recipient_keys_are_accepted() {
        let rsa = Jwk {
            kty: "RSA".into(),
            crv: String::new(),
            x: String::new(),
            y: None,
            d: None,
        };
        let p384 = SigningKey::generate(Algorithm::ES384).public_jwk();
        let ed25519 = SigningKey::generate(Algorithm::EdDSA).public_jwk();
        let private = DecryptionKey::generate().private_jwk();
        let mut off_curve = DecryptionKey::generate().public_jwk();
        off_curve.y = Some(off_curve.x.clone());
        for jwk in [rsa, p384, ed25519, private, off_curve] {
            assert!(
                matches!(
                    encrypt(b"x", &jwk, ContentEncryption::A128Gcm, None, false, None),
                    Err(JweError::InvalidKey(_))
                ),
                "{jwk:?}"
            );
        }
    }

    #[test]
    fn headers_and_parts_outside_the_profile_are_refused() {
        let key = DecryptionKey::generate();
        let token = encrypt(
            b"x",
            &key.public_jwk(),
            ContentEncryption::A128Gcm,
            None,
            false,
            None,
        )
        .expect("encrypts");
        let refused = |token: &str| decrypt(token, &key, LIMIT).map(|_| ());
        let set = |name: &'static str, value: Value| {
            with_header(&token, move |header| {
                header.insert(name.into(), value);
            })
        };
        assert!(matches!(
            refused(&set("alg", json!("RSA-OAEP"))),
            Err(JweError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            refused(&set("alg", json!("ECDH-ES+A128KW"))),
            Err(JweError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            refused(&set("enc", json!("A128CBC-HS256"))),
            Err(JweError::UnsupportedEncryption(_))
        ));
        assert!(matches!(
            refused(&set("zip", json!("GZIP"))),
            Err(JweError::UnsupportedCompression(_))
        ));
        assert_eq!(
            refused(&set("crit", json!(["exp"]))),
            Err(JweError::CriticalExtension)
        );
        let off_curve = {
            let mut jwk = DecryptionKey::generate().public_jwk();
            jwk.y = Some(jwk.x.clone());
            jwk.to_value()
        };
        let p384 = SigningKey::generate(Algorithm::ES384)
            .public_jwk()
            .to_value();
        for epk in [off_curve, p384, json!("not a key")] {
            assert!(matches!(
                refused(&set("epk", epk)),
                Err(JweError::Malformed(_))
            ));
        }
        let missing_alg = with_header(&token, |header| {
            header.remove("alg");
        });
        assert!(matches!(refused(&missing_alg), Err(JweError::Malformed(_))));
        assert!(matches!(
            refused(&replace_part(&token, 1, &b64([0u8; 16]))),
            Err(JweError::Malformed(_))
        ));
        assert!(matches!(
            refused(&replace_part(&token, 2, &b64([0u8; 16]))),
            Err(JweError::Malformed(_))
        ));
        assert!(matches!(
            refused(&replace_part(&token, 4, &b64([0u8; 15]))),
            Err(JweError::Malformed(_))
        ));
        let parts: Vec<&str> = token.split('.').collect();
        assert!(refused(&parts[..4].join(".")).is_err());
        assert!(refused(&format!("{token}.")).is_err());
        assert!(refused("").is_err());
    }

    #[test]
    fn a_private_jwk_round_trips_and_secrets_stay_out_of_debug_output() {
        let key = DecryptionKey::generate();
        let jwk = key.private_jwk();
        let again = DecryptionKey::from_jwk(&jwk).expect("round trip");
        assert_eq!(again.public_jwk(), key.public_jwk());
        let mut wrong = jwk.clone();
        wrong.x = DecryptionKey::generate().public_jwk().x;
        assert!(DecryptionKey::from_jwk(&wrong).is_err());
        assert!(DecryptionKey::from_jwk(&key.public_jwk()).is_err());

        let d = jwk.d.clone().expect("private");
        assert!(!format!("{key:?}").contains(d.as_str()));
        let token = encrypt(
            b"very private claims",
            &key.public_jwk(),
            ContentEncryption::A128Gcm,
            None,
            false,
            None,
        )
        .expect("encrypts");
        let decrypted = decrypt(&token, &key, LIMIT).expect("decrypts");
        assert!(!format!("{decrypted:?}").contains("private claims"));
    }

    #[test]
    fn content_encryption_names_parse_and_serialise_alike() {
        for enc in ContentEncryption::ALL {
            assert_eq!(ContentEncryption::parse(enc.as_str()), Ok(enc));
            assert_eq!(serde_json::to_value(enc).expect("json"), enc.as_str());
        }
        assert!(ContentEncryption::parse("A192GCM").is_err());
    }
}
