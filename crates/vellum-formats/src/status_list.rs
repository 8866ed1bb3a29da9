//! Status lists: one small number per issued credential, packed into a byte array that is
//! compressed and published, so that a verifier learns whether a credential is still valid
//! without telling the issuer which one it checks.
//!
//! Two encodings of the same idea, which differ in bit order and compression:
//! - the IETF Token Status List (draft-ietf-oauth-status-list): 1, 2, 4 or 8 bits per entry, the
//!   first entry in the least significant bits of the first byte, zlib (RFC 1950) compressed; the
//!   JWT form carries it base64url in `status_list.lst`, the CWT form as a byte string;
//! - the W3C Bitstring Status List v1.0: one bit per entry and purpose, the first entry in the
//!   most significant bit of the first byte, GZIP (RFC 1952) compressed, multibase base64url
//!   (`u` prefix) in `encodedList`; at least 131,072 entries (16 KiB), for herd privacy.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::{GzDecoder, ZlibDecoder};
use flate2::write::{GzEncoder, ZlibEncoder};

use crate::jose;

/// The statuses of the IETF Token Status List (the values every verifier knows).
pub const VALID: u8 = 0;
pub const INVALID: u8 = 1;
pub const SUSPENDED: u8 = 2;

/// The smallest W3C Bitstring Status List, in entries (§6.1: 16 KiB uncompressed).
pub const BITSTRING_MIN_ENTRIES: usize = 131_072;

/// The largest compressed or decompressed list this module reads: 16 MiB, far beyond any list
/// an issuer publishes, so that a hostile list cannot exhaust memory.
const MAX_LIST_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatusListError {
    #[error("bits must be 1, 2, 4 or 8")]
    Bits,
    #[error("index {0} is outside the list")]
    Index(usize),
    #[error("status {0} does not fit in the list's bits")]
    Value(u8),
    #[error("the list is not validly compressed or encoded: {0}")]
    Encoding(&'static str),
}

/// Which way entries are packed into each byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitOrder {
    /// The first entry in the least significant bits (IETF Token Status List).
    LeastSignificantFirst,
    /// The first entry in the most significant bit (W3C Bitstring Status List).
    MostSignificantFirst,
}

/// A status list in memory: `len` entries of `bits` bits each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusList {
    bits: u8,
    order: BitOrder,
    bytes: Vec<u8>,
}

impl StatusList {
    /// A list of `len` entries of `bits` bits, all 0 (valid), rounded up to whole bytes.
    pub fn new(bits: u8, order: BitOrder, len: usize) -> Result<Self, StatusListError> {
        check_bits(bits)?;
        let bytes = vec![0; (len * usize::from(bits)).div_ceil(8)];
        Ok(StatusList { bits, order, bytes })
    }

    /// An IETF Token Status List of `len` entries.
    pub fn token(bits: u8, len: usize) -> Result<Self, StatusListError> {
        Self::new(bits, BitOrder::LeastSignificantFirst, len)
    }

    /// A W3C Bitstring Status List of `len` entries (at least [`BITSTRING_MIN_ENTRIES`]).
    pub fn bitstring(len: usize) -> Self {
        StatusList {
            bits: 1,
            order: BitOrder::MostSignificantFirst,
            bytes: vec![0; len.max(BITSTRING_MIN_ENTRIES).div_ceil(8)],
        }
    }

    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// How many entries the list holds.
    pub fn len(&self) -> usize {
        self.bytes.len() * 8 / usize::from(self.bits)
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The packed bytes, uncompressed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Where entry `index` sits: its byte and the shift of its lowest bit within it.
    fn position(&self, index: usize) -> Result<(usize, u32), StatusListError> {
        if index >= self.len() {
            return Err(StatusListError::Index(index));
        }
        let per_byte = 8 / usize::from(self.bits);
        let slot = index % per_byte;
        let shift = match self.order {
            BitOrder::LeastSignificantFirst => slot * usize::from(self.bits),
            BitOrder::MostSignificantFirst => 8 - (slot + 1) * usize::from(self.bits),
        };
        Ok((index / per_byte, shift as u32))
    }

    fn mask(&self) -> u8 {
        u8::MAX >> (8 - self.bits)
    }

    pub fn get(&self, index: usize) -> Result<u8, StatusListError> {
        let (byte, shift) = self.position(index)?;
        Ok((self.bytes[byte] >> shift) & self.mask())
    }

    pub fn set(&mut self, index: usize, status: u8) -> Result<(), StatusListError> {
        if status > self.mask() {
            return Err(StatusListError::Value(status));
        }
        let (byte, shift) = self.position(index)?;
        let mask = self.mask() << shift;
        self.bytes[byte] = (self.bytes[byte] & !mask) | (status << shift);
        Ok(())
    }

    /// The IETF list's bytes, zlib compressed (the CWT `lst`).
    pub fn to_zlib(&self) -> Vec<u8> {
        let mut encoder = ZlibEncoder::new(Vec::new(), Compression::best());
        // Writing to a Vec cannot fail.
        let _ = encoder.write_all(&self.bytes);
        encoder.finish().unwrap_or_default()
    }

    /// The IETF list's `lst` for a JWT: zlib compressed, base64url.
    pub fn to_lst(&self) -> String {
        jose::b64(self.to_zlib())
    }

    /// An IETF list from its zlib-compressed bytes.
    pub fn from_zlib(bits: u8, compressed: &[u8]) -> Result<Self, StatusListError> {
        check_bits(bits)?;
        let bytes = inflate(ZlibDecoder::new(compressed))?;
        Ok(StatusList {
            bits,
            order: BitOrder::LeastSignificantFirst,
            bytes,
        })
    }

    /// An IETF list from a JWT's `lst`.
    pub fn from_lst(bits: u8, lst: &str) -> Result<Self, StatusListError> {
        let compressed =
            jose::b64_decode(lst).map_err(|_| StatusListError::Encoding("lst is not base64url"))?;
        Self::from_zlib(bits, &compressed)
    }

    /// The W3C `encodedList`: GZIP compressed, multibase base64url (`u` prefix).
    pub fn to_encoded_list(&self) -> String {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        let _ = encoder.write_all(&self.bytes);
        format!("u{}", jose::b64(encoder.finish().unwrap_or_default()))
    }

    /// A W3C list from its `encodedList`.
    pub fn from_encoded_list(encoded: &str) -> Result<Self, StatusListError> {
        let compressed = encoded
            .strip_prefix('u')
            .and_then(|text| jose::b64_decode(text).ok())
            .ok_or(StatusListError::Encoding(
                "encodedList is not multibase base64url (u...)",
            ))?;
        let bytes = inflate(GzDecoder::new(compressed.as_slice()))?;
        Ok(StatusList {
            bits: 1,
            order: BitOrder::MostSignificantFirst,
            bytes,
        })
    }
}

/// The `typ` of a Status List Token as a JWT, and its media type.
pub const JWT_TYP: &str = "statuslist+jwt";
pub const JWT_MEDIA_TYPE: &str = "application/statuslist+jwt";
/// The media type of a Status List Token as a CWT (its COSE `typ`, header 16).
pub const CWT_MEDIA_TYPE: &str = "application/statuslist+cwt";

/// CWT claim keys (RFC 8392; the status list draft for `ttl` and `status_list`) and the COSE
/// header labels (RFC 9596 `typ`, RFC 9360 `x5chain`).
const CWT_ISS: i64 = 1;
const CWT_SUB: i64 = 2;
const CWT_EXP: i64 = 4;
const CWT_IAT: i64 = 6;
const CWT_TTL: i64 = 65534;
const CWT_STATUS_LIST: i64 = 65533;
const COSE_TYP: i64 = 16;
const COSE_X5CHAIN: i64 = 33;

/// What a Status List Token says besides the list, and who signs it.
#[derive(Debug, Clone, Copy)]
pub struct TokenClaims<'a> {
    /// The list's URI, where it is served (`sub`), as credentials reference it.
    pub uri: &'a str,
    /// The issuer of the credentials that reference it (`iss`).
    pub issuer: &'a str,
    /// The signing key's id (`kid`), as the credentials name it.
    pub kid: &'a str,
    /// Unix seconds.
    pub issued_at: i64,
    pub expires_at: i64,
    /// How long a verifier may cache it, in seconds.
    pub ttl: u64,
}

/// The Status List Token as a JWT signed by `key`, with `x5c` (standard base64 DER
/// certificates, leaf first) when given.
pub fn token_jwt(
    list: &StatusList,
    claims: &TokenClaims<'_>,
    x5c: &[String],
    key: &jose::SigningKey,
) -> String {
    let mut header = serde_json::Map::new();
    header.insert("typ".into(), serde_json::Value::from(JWT_TYP));
    header.insert("kid".into(), serde_json::Value::from(claims.kid));
    if !x5c.is_empty() {
        header.insert("x5c".into(), serde_json::Value::from(x5c.to_vec()));
    }
    let payload = serde_json::json!({
        "iss": claims.issuer,
        "sub": claims.uri,
        "iat": claims.issued_at,
        "exp": claims.expires_at,
        "ttl": claims.ttl,
        "status_list": {"bits": list.bits, "lst": list.to_lst()},
    });
    jose::sign_compact(header, &payload, key)
}

/// The Status List Token as a CWT: an untagged COSE_Sign1 with `typ` in the protected header and
/// the certificates (DER, leaf first) as `x5chain` when given.
pub fn token_cwt(
    list: &StatusList,
    claims: &TokenClaims<'_>,
    x5chain: &[Vec<u8>],
    key: &jose::SigningKey,
) -> Result<Vec<u8>, StatusListError> {
    use ciborium::Value as Cbor;
    use coset::{AsCborValue, CoseSign1Builder, HeaderBuilder, iana};
    let encoding = |_| StatusListError::Encoding("CBOR");
    let status_list = Cbor::Map(vec![
        (Cbor::Text("bits".into()), Cbor::from(list.bits)),
        (Cbor::Text("lst".into()), Cbor::Bytes(list.to_zlib())),
    ]);
    let payload = Cbor::Map(vec![
        (Cbor::from(CWT_ISS), Cbor::Text(claims.issuer.to_owned())),
        (Cbor::from(CWT_SUB), Cbor::Text(claims.uri.to_owned())),
        (Cbor::from(CWT_IAT), Cbor::from(claims.issued_at)),
        (Cbor::from(CWT_EXP), Cbor::from(claims.expires_at)),
        (Cbor::from(CWT_TTL), Cbor::from(claims.ttl)),
        (Cbor::from(CWT_STATUS_LIST), status_list),
    ]);
    let mut payload_bytes = Vec::new();
    ciborium::into_writer(&payload, &mut payload_bytes).map_err(encoding)?;
    let algorithm = match key.algorithm() {
        jose::Algorithm::ES256 => iana::Algorithm::ES256,
        jose::Algorithm::ES384 => iana::Algorithm::ES384,
        jose::Algorithm::EdDSA => iana::Algorithm::EdDSA,
    };
    let mut unprotected = HeaderBuilder::new().key_id(claims.kid.as_bytes().to_vec());
    match x5chain {
        [] => {}
        [single] => unprotected = unprotected.value(COSE_X5CHAIN, Cbor::Bytes(single.clone())),
        chain => {
            let chain = chain.iter().cloned().map(Cbor::Bytes).collect();
            unprotected = unprotected.value(COSE_X5CHAIN, Cbor::Array(chain));
        }
    }
    let sign1 = CoseSign1Builder::new()
        .protected(
            HeaderBuilder::new()
                .algorithm(algorithm)
                .value(COSE_TYP, Cbor::Text(CWT_MEDIA_TYPE.into()))
                .build(),
        )
        .unprotected(unprotected.build())
        .payload(payload_bytes)
        .create_signature(&[], |to_be_signed| key.sign(to_be_signed))
        .build()
        .to_cbor_value()
        .map_err(|_| StatusListError::Encoding("COSE_Sign1"))?;
    let mut bytes = Vec::new();
    ciborium::into_writer(&sign1, &mut bytes).map_err(encoding)?;
    Ok(bytes)
}

/// The `status` claim of a Referenced Token (an SD-JWT VC): entry `index` of the list at `uri`.
pub fn reference(index: usize, uri: &str) -> serde_json::Value {
    serde_json::json!({"status_list": {"idx": index, "uri": uri}})
}

/// The `credentialStatus` entry of a W3C VC: entry `index`, for `purpose` (`revocation` or
/// `suspension`), of the Bitstring Status List credential at `uri`.
pub fn bitstring_entry(uri: &str, index: usize, purpose: &str) -> serde_json::Value {
    serde_json::json!({
        "id": format!("{uri}#{index}"),
        "type": "BitstringStatusListEntry",
        "statusPurpose": purpose,
        "statusListIndex": index.to_string(),
        "statusListCredential": uri,
    })
}

/// A Bitstring Status List credential (VCDM 2.0, as a JWT) publishing `list` for `purpose` at
/// `uri`, issued by `issuer` (a DID; `kid` its verification method).
pub fn bitstring_credential_jwt(
    list: &StatusList,
    purpose: &str,
    issuance: &crate::jwt_vc::Issuance<'_>,
    key: &jose::SigningKey,
) -> String {
    let credential = serde_json::json!({
        "@context": [crate::jwt_vc::CONTEXT_V2],
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "credentialSubject": {
            "type": "BitstringStatusList",
            "statusPurpose": purpose,
            "encodedList": list.to_encoded_list(),
        },
    });
    let serde_json::Value::Object(credential) = credential else {
        unreachable!("a JSON object literal")
    };
    crate::jwt_vc::issue(credential, issuance, key)
}

fn check_bits(bits: u8) -> Result<(), StatusListError> {
    if matches!(bits, 1 | 2 | 4 | 8) {
        Ok(())
    } else {
        Err(StatusListError::Bits)
    }
}

/// Everything a decoder yields, up to [`MAX_LIST_BYTES`].
fn inflate(decoder: impl Read) -> Result<Vec<u8>, StatusListError> {
    let mut bytes = Vec::new();
    decoder
        .take(MAX_LIST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|_| StatusListError::Encoding("the compressed data is corrupt"))?;
    if bytes.len() as u64 > MAX_LIST_BYTES {
        return Err(StatusListError::Encoding("the list is too large"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of draft-ietf-oauth-status-list §4.1: one bit per entry, two bytes 0xB9 0xA3.
    const SPEC_LST: &str = "eNrbuRgAAhcBXQ";
    const SPEC_STATUSES: [u8; 16] = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1];

    #[test]
    fn the_specifications_one_bit_example_reads_and_is_written_alike() {
        let list = StatusList::from_lst(1, SPEC_LST).expect("the example decodes");
        assert_eq!(list.as_bytes(), [0xB9, 0xA3]);
        for (index, status) in SPEC_STATUSES.iter().enumerate() {
            assert_eq!(list.get(index), Ok(*status), "entry {index}");
        }
        let mut written = StatusList::token(1, 16).expect("list");
        for (index, status) in SPEC_STATUSES.iter().enumerate() {
            written.set(index, *status).expect("set");
        }
        assert_eq!(written.as_bytes(), [0xB9, 0xA3]);
        assert_eq!(
            written.to_lst(),
            SPEC_LST,
            "zlib at best compression, as the example"
        );
        assert_eq!(
            StatusList::from_lst(1, &written.to_lst()).expect("round trip"),
            written
        );
    }

    #[test]
    fn two_bit_entries_are_packed_least_significant_first_and_keep_their_neighbours() {
        let mut list = StatusList::token(2, 12).expect("list");
        let statuses = [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3];
        for (index, status) in statuses.iter().enumerate() {
            list.set(index, *status).expect("set");
        }
        // Entry 0 in bits 0-1 of byte 0, entry 3 in bits 6-7.
        assert_eq!(list.as_bytes(), [0b1100_1001, 0b0100_0100, 0b1111_1001]);
        list.set(1, VALID).expect("set");
        assert_eq!(
            (list.get(0), list.get(1), list.get(2)),
            (Ok(1), Ok(0), Ok(0))
        );
        assert_eq!(list.set(0, 4), Err(StatusListError::Value(4)));
        assert_eq!(list.get(12), Err(StatusListError::Index(12)));
        assert_eq!(StatusList::token(3, 8), Err(StatusListError::Bits));
    }

    #[test]
    fn the_token_is_a_signed_jwt_and_a_signed_cwt_naming_its_uri() {
        use ciborium::Value as Cbor;
        use coset::{CborSerializable, CoseSign1};
        let key = jose::SigningKey::generate(jose::Algorithm::ES256);
        let mut list = StatusList::token(2, 1000).expect("list");
        list.set(7, SUSPENDED).expect("set");
        let claims = TokenClaims {
            uri: "https://issuer.example/status/1",
            issuer: "https://issuer.example",
            kid: "key-1",
            issued_at: 1_700_000_000,
            expires_at: 1_700_086_400,
            ttl: 300,
        };
        let jwt = token_jwt(&list, &claims, &["AAEC".into()], &key);
        let jws = jose::UnverifiedJws::parse(&jwt).expect("compact JWS");
        jws.verify_with(&key.public_jwk())
            .expect("signed by the key");
        assert_eq!(jws.header["typ"], JWT_TYP);
        assert_eq!(
            (&jws.header["kid"], &jws.payload["iss"]),
            (
                &serde_json::json!("key-1"),
                &serde_json::json!("https://issuer.example")
            )
        );
        assert_eq!(jws.header["x5c"], serde_json::json!(["AAEC"]));
        assert_eq!(jws.payload["sub"], claims.uri);
        assert_eq!(jws.payload["ttl"], 300);
        let lst = jws.payload["status_list"]["lst"].as_str().expect("lst");
        assert_eq!(
            StatusList::from_lst(2, lst).expect("lst").get(7),
            Ok(SUSPENDED)
        );

        let cwt = token_cwt(&list, &claims, &[vec![1, 2, 3]], &key).expect("CWT");
        let sign1 = CoseSign1::from_slice(&cwt).expect("COSE_Sign1");
        sign1
            .verify_signature(&[], |signature, to_be_signed| {
                jose::verify(
                    &key.public_jwk(),
                    jose::Algorithm::ES256,
                    to_be_signed,
                    signature,
                )
            })
            .expect("signed by the key");
        let typ = sign1
            .protected
            .header
            .rest
            .iter()
            .find(|(label, _)| *label == coset::Label::Int(COSE_TYP))
            .map(|(_, value)| value.clone());
        assert_eq!(typ, Some(Cbor::Text(CWT_MEDIA_TYPE.into())));
        let payload: Cbor =
            ciborium::from_reader(sign1.payload.as_deref().expect("payload")).expect("CBOR");
        let entries = payload.as_map().expect("claims");
        let claim = |key: i64| {
            entries
                .iter()
                .find(|(label, _)| *label == Cbor::from(key))
                .map(|(_, value)| value.clone())
                .expect("claim")
        };
        assert_eq!(claim(CWT_SUB), Cbor::Text(claims.uri.into()));
        let status_list = claim(CWT_STATUS_LIST);
        let lst = status_list.as_map().expect("status_list")[1]
            .1
            .as_bytes()
            .expect("lst bytes")
            .clone();
        assert_eq!(StatusList::from_zlib(2, &lst).expect("lst"), list);
    }

    #[test]
    fn credentials_reference_their_entry_and_a_bitstring_list_is_a_vcdm_2_credential() {
        let uri = "https://issuer.example/status/2";
        assert_eq!(
            reference(42, uri),
            serde_json::json!({"status_list": {"idx": 42, "uri": uri}})
        );
        let entry = bitstring_entry(uri, 94567, "revocation");
        assert_eq!(
            entry["statusListIndex"], "94567",
            "a string, as the specification has it"
        );
        assert_eq!(entry["id"], format!("{uri}#94567"));
        let key = jose::SigningKey::generate(jose::Algorithm::ES256);
        let mut list = StatusList::bitstring(0);
        list.set(94567, 1).expect("set");
        let issuance = crate::jwt_vc::Issuance {
            issuer: "did:example:issuer",
            kid: "did:example:issuer#key-1",
            subject: &format!("{uri}#list"),
            issued_at: 1_700_000_000,
            expires_at: 1_700_086_400,
            id: uri,
        };
        let jwt = bitstring_credential_jwt(&list, "revocation", &issuance, &key);
        let jws = jose::UnverifiedJws::parse(&jwt).expect("JWS");
        jws.verify_with(&key.public_jwk()).expect("signed");
        let vc = &jws.payload;
        assert_eq!(vc["id"], uri);
        assert_eq!(vc["type"][1], "BitstringStatusListCredential");
        let subject = &vc["credentialSubject"];
        assert_eq!(subject["statusPurpose"], "revocation");
        let decoded = StatusList::from_encoded_list(subject["encodedList"].as_str().expect("list"))
            .expect("encodedList");
        assert_eq!((decoded.get(94567), decoded.get(94566)), (Ok(1), Ok(0)));
    }

    #[test]
    fn a_bitstring_list_is_most_significant_first_gzip_and_at_least_16_kib() {
        let mut list = StatusList::bitstring(10);
        assert_eq!(list.len(), BITSTRING_MIN_ENTRIES);
        list.set(0, 1).expect("set");
        list.set(9, 1).expect("set");
        assert_eq!(&list.as_bytes()[..2], [0b1000_0000, 0b0100_0000]);
        let encoded = list.to_encoded_list();
        assert!(
            encoded.starts_with("uH4sI"),
            "multibase u, then the GZIP magic: {encoded}"
        );
        assert_eq!(StatusList::from_encoded_list(&encoded), Ok(list));
        assert!(StatusList::from_encoded_list("zabc").is_err());
        assert!(StatusList::from_lst(1, "bm90LXpsaWI").is_err());
    }
}
