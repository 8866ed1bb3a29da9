//! ISO/IEC 18013-5 mdoc issuance (`mso_mdoc`): the `IssuerSigned` structure a wallet stores,
//! with its Mobile Security Object signed as an untagged COSE_Sign1.
//!
//! ```text
//! IssuerSigned     = {"nameSpaces": {ns: [+ #6.24(bstr .cbor IssuerSignedItem)]}, "issuerAuth": COSE_Sign1}
//! IssuerSignedItem = {"digestID": uint, "random": bstr, "elementIdentifier": tstr, "elementValue": any}
//! MSO              = {"version", "digestAlgorithm", "valueDigests", "deviceKeyInfo", "docType", "validityInfo"}
//! ```
//!
//! Element values come from JSON. Types JSON lacks are written as single-member objects:
//! `{"full-date": "YYYY-MM-DD"}` (tag 1004), `{"tdate": "<RFC 3339>"}` (tag 0, normalised to UTC
//! without fractional seconds) and `{"bytes": "<base64>"}` (standard or URL-safe alphabet,
//! padding optional). In the mDL namespace, plain strings of the well-known date and image
//! elements are converted the same way (see [`MDL_NAMESPACE`]).

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ciborium::Value as Cbor;
use coset::{AsCborValue, CoseSign1Builder, HeaderBuilder, iana};
use rand::RngCore;
use rand::seq::SliceRandom;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, UtcOffset};

use crate::jose::{self, Algorithm, Jwk, SigningKey};

/// The mDL namespace. In it, plain strings of `birth_date` become `full-date`; `issue_date` and
/// `expiry_date` become `full-date` (or `tdate` when they carry a time); `portrait` and
/// `signature_usual_mark` are decoded from base64 into byte strings; and the `issue_date` /
/// `expiry_date` members of each `driving_privileges` entry become `full-date`.
pub const MDL_NAMESPACE: &str = "org.iso.18013.5.1";
/// The mDL document type.
pub const MDL_DOC_TYPE: &str = "org.iso.18013.5.1.mDL";
/// COSE header label of `x5chain` (RFC 9360).
pub const X5CHAIN: i64 = 33;

/// CBOR tag of an embedded CBOR data item (`#6.24(bstr)`).
const TAG_ENCODED_CBOR: u64 = 24;
/// CBOR tag of an RFC 3339 date-time string.
const TAG_TDATE: u64 = 0;
/// CBOR tag of an RFC 8943 `full-date` string.
const TAG_FULL_DATE: u64 = 1004;
/// Bytes of randomness in every `IssuerSignedItem` (18013-5 asks for at least 16).
const RANDOM_LEN: usize = 32;

const BASE64_INDIFFERENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const BASE64_STANDARD: GeneralPurpose =
    GeneralPurpose::new(&alphabet::STANDARD, BASE64_INDIFFERENT);
const BASE64_URL_SAFE: GeneralPurpose =
    GeneralPurpose::new(&alphabet::URL_SAFE, BASE64_INDIFFERENT);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MdocError {
    /// A namespace or element that cannot be encoded; `path` is `namespace/element/...`.
    #[error("{path}: {reason}")]
    Element { path: String, reason: &'static str },
    #[error("invalid device key: {0}")]
    DeviceKey(&'static str),
    #[error("invalid validity: {0}")]
    Validity(&'static str),
    #[error("invalid mdoc input: {0}")]
    Input(&'static str),
    #[error("CBOR encoding failed")]
    Encoding,
}

/// Everything an mdoc carries besides the issuer's signing key.
pub struct MdocInput<'a> {
    /// For example [`MDL_DOC_TYPE`].
    pub doc_type: &'a str,
    /// `{namespace: {elementIdentifier: elementValue}}`, values typed as the module docs describe.
    pub namespaces: &'a Map<String, Value>,
    /// The holder key from the proof; only its public members are used.
    pub device_key: &'a Jwk,
    /// Unix seconds. 18013-5 requires `signed <= valid_from < valid_until`.
    pub signed: i64,
    pub valid_from: i64,
    pub valid_until: i64,
    /// DER certificates, document signer first. Must not be empty.
    pub x5chain: &'a [Vec<u8>],
    /// Its entry in a Token Status List (the MSO's `status`, ISO/IEC 18013-5 second edition,
    /// draft-ietf-oauth-status-list): index and list URI.
    pub status: Option<(u64, &'a str)>,
}

/// Checks that every namespace and element value can be encoded, as `issue` would encode it,
/// so typing mistakes surface when a credential profile is created rather than at issuance.
pub fn validate_namespaces(namespaces: &Map<String, Value>) -> Result<(), MdocError> {
    encode_namespaces(namespaces).map(|_| ())
}

/// Builds and signs an `IssuerSigned` structure and returns its CBOR encoding. Digest IDs are a
/// fresh permutation per namespace and every item gets fresh randomness from `rng`.
pub fn issue(
    input: &MdocInput<'_>,
    key: &SigningKey,
    rng: &mut impl RngCore,
) -> Result<Vec<u8>, MdocError> {
    if input.doc_type.is_empty() {
        return Err(MdocError::Input("docType must not be empty"));
    }
    let x5chain = match input.x5chain {
        [] => {
            return Err(MdocError::Input(
                "x5chain needs the document signer certificate",
            ));
        }
        [single] => Cbor::Bytes(single.clone()),
        chain => Cbor::Array(chain.iter().cloned().map(Cbor::Bytes).collect()),
    };
    if input.valid_from < input.signed {
        return Err(MdocError::Validity("validFrom is earlier than signed"));
    }
    if input.valid_until <= input.valid_from {
        return Err(MdocError::Validity(
            "validUntil is not later than validFrom",
        ));
    }
    let validity_info = map([
        ("signed", unix_tdate(input.signed)?),
        ("validFrom", unix_tdate(input.valid_from)?),
        ("validUntil", unix_tdate(input.valid_until)?),
    ]);
    let device_key = cose_key(input.device_key)?;

    let mut issuer_namespaces = Vec::new();
    let mut value_digests = Vec::new();
    for (namespace, elements) in encode_namespaces(input.namespaces)? {
        let mut digest_ids: Vec<u64> = (0..elements.len() as u64).collect();
        digest_ids.shuffle(rng);
        let mut items = Vec::with_capacity(elements.len());
        let mut digests = Vec::with_capacity(elements.len());
        for ((identifier, value), digest_id) in elements.into_iter().zip(digest_ids) {
            let mut random = vec![0u8; RANDOM_LEN];
            rng.fill_bytes(&mut random);
            let item = map([
                ("digestID", Cbor::from(digest_id)),
                ("random", Cbor::Bytes(random)),
                ("elementIdentifier", Cbor::Text(identifier)),
                ("elementValue", value),
            ]);
            let tagged = embedded(&item)?;
            digests.push((
                digest_id,
                Cbor::Bytes(Sha256::digest(encode(&tagged)?).to_vec()),
            ));
            items.push(tagged);
        }
        digests.sort_by_key(|(id, _)| *id);
        let digests = digests
            .into_iter()
            .map(|(id, digest)| (Cbor::from(id), digest))
            .collect();
        value_digests.push((Cbor::Text(namespace.clone()), Cbor::Map(digests)));
        issuer_namespaces.push((Cbor::Text(namespace), Cbor::Array(items)));
    }

    let mut mso = map([
        ("version", Cbor::Text("1.0".into())),
        ("digestAlgorithm", Cbor::Text("SHA-256".into())),
        ("valueDigests", Cbor::Map(value_digests)),
        ("deviceKeyInfo", map([("deviceKey", device_key)])),
        ("docType", Cbor::Text(input.doc_type.to_owned())),
        ("validityInfo", validity_info),
    ]);
    if let (Some((index, uri)), Cbor::Map(entries)) = (input.status, &mut mso) {
        let status_list = map([
            ("idx", Cbor::from(index)),
            ("uri", Cbor::Text(uri.to_owned())),
        ]);
        entries.push((
            Cbor::Text("status".into()),
            map([("status_list", status_list)]),
        ));
    }
    let payload = encode(&embedded(&mso)?)?;

    let algorithm = match key.algorithm() {
        Algorithm::ES256 => iana::Algorithm::ES256,
        Algorithm::ES384 => iana::Algorithm::ES384,
        Algorithm::EdDSA => iana::Algorithm::EdDSA,
    };
    let issuer_auth = CoseSign1Builder::new()
        .protected(HeaderBuilder::new().algorithm(algorithm).build())
        .unprotected(HeaderBuilder::new().value(X5CHAIN, x5chain).build())
        .payload(payload)
        .create_signature(&[], |to_be_signed| key.sign(to_be_signed))
        .build()
        .to_cbor_value()
        .map_err(|_| MdocError::Encoding)?;

    encode(&map([
        ("nameSpaces", Cbor::Map(issuer_namespaces)),
        ("issuerAuth", issuer_auth),
    ]))
}

type Elements = Vec<(String, Cbor)>;

fn encode_namespaces(
    namespaces: &Map<String, Value>,
) -> Result<Vec<(String, Elements)>, MdocError> {
    if namespaces.is_empty() {
        return Err(element_error(
            String::new(),
            "an mdoc needs at least one namespace",
        ));
    }
    namespaces
        .iter()
        .map(|(namespace, elements)| {
            let Value::Object(elements) = elements else {
                return Err(element_error(
                    namespace.clone(),
                    "a namespace must be an object of elements",
                ));
            };
            if namespace.is_empty() {
                return Err(element_error(
                    String::new(),
                    "namespace names must not be empty",
                ));
            }
            if elements.is_empty() {
                return Err(element_error(
                    namespace.clone(),
                    "a namespace needs at least one element",
                ));
            }
            let mdl = namespace == MDL_NAMESPACE;
            let elements = elements
                .iter()
                .map(|(identifier, value)| {
                    let path = format!("{namespace}/{identifier}");
                    if identifier.is_empty() {
                        return Err(element_error(path, "element identifiers must not be empty"));
                    }
                    let hint = if mdl {
                        Hint::mdl(identifier)
                    } else {
                        Hint::Plain
                    };
                    Ok((identifier.clone(), element_value(value, &path, hint)?))
                })
                .collect::<Result<Elements, _>>()?;
            Ok((namespace.clone(), elements))
        })
        .collect()
}

/// How a plain JSON string is read, for the mDL conveniences.
#[derive(Debug, Clone, Copy)]
enum Hint {
    Plain,
    FullDate,
    /// `full-date` if the string is a date only, `tdate` if it carries a time.
    Date,
    Bytes,
    DrivingPrivileges,
    DrivingPrivilege,
}

impl Hint {
    fn mdl(identifier: &str) -> Hint {
        match identifier {
            "birth_date" => Hint::FullDate,
            "issue_date" | "expiry_date" => Hint::Date,
            "portrait" | "signature_usual_mark" => Hint::Bytes,
            "driving_privileges" => Hint::DrivingPrivileges,
            _ => Hint::Plain,
        }
    }

    fn array_element(self) -> Hint {
        match self {
            Hint::DrivingPrivileges => Hint::DrivingPrivilege,
            _ => Hint::Plain,
        }
    }

    fn member(self, name: &str) -> Hint {
        match (self, name) {
            (Hint::DrivingPrivilege, "issue_date" | "expiry_date") => Hint::FullDate,
            _ => Hint::Plain,
        }
    }
}

fn element_value(value: &Value, path: &str, hint: Hint) -> Result<Cbor, MdocError> {
    Ok(match value {
        Value::Null => Cbor::Null,
        Value::Bool(flag) => Cbor::Bool(*flag),
        Value::Number(number) => {
            if let Some(int) = number.as_i64() {
                Cbor::from(int)
            } else if let Some(uint) = number.as_u64() {
                Cbor::from(uint)
            } else {
                let float = number.as_f64().unwrap_or(f64::NAN);
                if float.fract() == 0.0 && float.abs() < 9.0e15 {
                    Cbor::from(float as i64)
                } else {
                    Cbor::Float(float)
                }
            }
        }
        Value::String(text) => match hint {
            Hint::FullDate => full_date(text, path)?,
            Hint::Date if text.len() == 10 => full_date(text, path)?,
            Hint::Date => tdate(text, path)?,
            Hint::Bytes => bytes(text, path)?,
            _ => Cbor::Text(text.clone()),
        },
        Value::Array(elements) => Cbor::Array(
            elements
                .iter()
                .enumerate()
                .map(|(index, element)| {
                    element_value(element, &format!("{path}/{index}"), hint.array_element())
                })
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(members) => {
            if let Some((kind @ ("full-date" | "tdate" | "bytes"), typed)) = single_member(members)
            {
                let Value::String(text) = typed else {
                    return Err(element_error(
                        format!("{path}/{kind}"),
                        "a typed value must be a string",
                    ));
                };
                return match kind {
                    "full-date" => full_date(text, path),
                    "tdate" => tdate(text, path),
                    _ => bytes(text, path),
                };
            }
            Cbor::Map(
                members
                    .iter()
                    .map(|(name, member)| {
                        let value =
                            element_value(member, &format!("{path}/{name}"), hint.member(name))?;
                        Ok((Cbor::Text(name.clone()), value))
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
    })
}

fn single_member(members: &Map<String, Value>) -> Option<(&str, &Value)> {
    let mut iter = members.iter();
    match (iter.next(), iter.next()) {
        (Some((name, value)), None) => Some((name.as_str(), value)),
        _ => None,
    }
}

fn full_date(text: &str, path: &str) -> Result<Cbor, MdocError> {
    let format = format_description!("[year]-[month]-[day]");
    if text.len() != 10 || Date::parse(text, format).is_err() {
        return Err(element_error(path, "not a full-date (YYYY-MM-DD)"));
    }
    Ok(Cbor::Tag(
        TAG_FULL_DATE,
        Box::new(Cbor::Text(text.to_owned())),
    ))
}

fn tdate(text: &str, path: &str) -> Result<Cbor, MdocError> {
    let invalid = || element_error(path, "not an RFC 3339 date-time");
    let instant = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| invalid())?;
    tagged_tdate(instant).ok_or_else(invalid)
}

fn unix_tdate(seconds: i64) -> Result<Cbor, MdocError> {
    OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(tagged_tdate)
        .ok_or(MdocError::Validity("time out of the RFC 3339 range"))
}

/// `#6.0` RFC 3339 in UTC (`Z`) without fractional seconds, as 18013-5 requires for `tdate`.
fn tagged_tdate(instant: OffsetDateTime) -> Option<Cbor> {
    let text = instant
        .to_offset(UtcOffset::UTC)
        .replace_nanosecond(0)
        .ok()?
        .format(&Rfc3339)
        .ok()?;
    Some(Cbor::Tag(TAG_TDATE, Box::new(Cbor::Text(text))))
}

fn bytes(text: &str, path: &str) -> Result<Cbor, MdocError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    BASE64_STANDARD
        .decode(&compact)
        .or_else(|_| BASE64_URL_SAFE.decode(&compact))
        .map(Cbor::Bytes)
        .map_err(|_| element_error(path, "not base64"))
}

fn element_error(path: impl Into<String>, reason: &'static str) -> MdocError {
    MdocError::Element {
        path: path.into(),
        reason,
    }
}

/// The holder's public key as a COSE_Key (RFC 9052 §7): EC2 P-256 / P-384 or OKP Ed25519.
fn cose_key(jwk: &Jwk) -> Result<Cbor, MdocError> {
    let decode = |text: &str, len: usize, what: &'static str| {
        jose::b64_decode(text)
            .ok()
            .filter(|bytes| bytes.len() == len)
            .ok_or(MdocError::DeviceKey(what))
    };
    let algorithm = jwk
        .algorithm()
        .map_err(|_| MdocError::DeviceKey("unsupported kty/crv"))?;
    let entries = match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => {
            let (len, crv) = match algorithm {
                Algorithm::ES256 => (32, iana::EllipticCurve::P_256),
                _ => (48, iana::EllipticCurve::P_384),
            };
            let x = decode(&jwk.x, len, "EC x has the wrong length")?;
            let y = decode(
                jwk.y
                    .as_deref()
                    .ok_or(MdocError::DeviceKey("EC key without y"))?,
                len,
                "EC y has the wrong length",
            )?;
            let point = [&[0x04][..], &x, &y].concat();
            let on_curve = match algorithm {
                Algorithm::ES256 => p256::PublicKey::from_sec1_bytes(&point).is_ok(),
                _ => p384::PublicKey::from_sec1_bytes(&point).is_ok(),
            };
            if !on_curve {
                return Err(MdocError::DeviceKey("not a point on the curve"));
            }
            vec![
                (iana::KeyParameter::Kty as i64, iana::KeyType::EC2 as i64),
                (iana::Ec2KeyParameter::Crv as i64, crv as i64),
            ]
            .into_iter()
            .map(|(label, value)| (Cbor::from(label), Cbor::from(value)))
            .chain([
                (Cbor::from(iana::Ec2KeyParameter::X as i64), Cbor::Bytes(x)),
                (Cbor::from(iana::Ec2KeyParameter::Y as i64), Cbor::Bytes(y)),
            ])
            .collect()
        }
        Algorithm::EdDSA => {
            let x = decode(&jwk.x, 32, "Ed25519 x must be 32 bytes")?;
            let point: [u8; 32] = x
                .as_slice()
                .try_into()
                .map_err(|_| MdocError::DeviceKey("Ed25519 x must be 32 bytes"))?;
            if ed25519_dalek::VerifyingKey::from_bytes(&point).is_err() {
                return Err(MdocError::DeviceKey("not an Ed25519 point"));
            }
            vec![
                (
                    Cbor::from(iana::KeyParameter::Kty as i64),
                    Cbor::from(iana::KeyType::OKP as i64),
                ),
                (
                    Cbor::from(iana::OkpKeyParameter::Crv as i64),
                    Cbor::from(iana::EllipticCurve::Ed25519 as i64),
                ),
                (Cbor::from(iana::OkpKeyParameter::X as i64), Cbor::Bytes(x)),
            ]
        }
    };
    Ok(Cbor::Map(entries))
}

fn map<const N: usize>(entries: [(&str, Cbor); N]) -> Cbor {
    Cbor::Map(
        entries
            .into_iter()
            .map(|(key, value)| (Cbor::Text(key.to_owned()), value))
            .collect(),
    )
}

/// `#6.24(bstr .cbor value)`.
fn embedded(value: &Cbor) -> Result<Cbor, MdocError> {
    Ok(Cbor::Tag(
        TAG_ENCODED_CBOR,
        Box::new(Cbor::Bytes(encode(value)?)),
    ))
}

fn encode(value: &Cbor) -> Result<Vec<u8>, MdocError> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).map_err(|_| MdocError::Encoding)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::b64;
    use coset::iana::EnumI64;
    use coset::{CoseSign1, Label, SignatureContext, sig_structure_data};
    use rand::rngs::OsRng;
    use serde_json::json;
    use std::collections::{BTreeMap, BTreeSet};

    const PORTRAIT: &[u8] = &[
        0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0xfb,
    ];
    // 2023-11-14T22:13:20Z
    const SIGNED: i64 = 1_700_000_000;

    fn mdl_namespaces() -> Map<String, Value> {
        let portrait = base64::engine::general_purpose::STANDARD.encode(PORTRAIT);
        json!({
            MDL_NAMESPACE: {
                "family_name": "Mustermann",
                "given_name": "Erika",
                "birth_date": "1971-09-01",
                "issue_date": "2024-01-15",
                "expiry_date": {"tdate": "2034-01-14T23:59:59.750+02:00"},
                "issuing_country": "DE",
                "document_number": "T22000129",
                "portrait": portrait,
                "age_over_18": true,
                "age_in_years": 52,
                "height": 172.5,
                "un_distinguishing_sign": "D",
                "driving_privileges": [
                    {"vehicle_category_code": "B", "issue_date": "2020-03-01",
                     "expiry_date": "2035-02-28"},
                    {"vehicle_category_code": "AM", "codes": [{"code": "96"}]}
                ]
            },
            "org.example.extra": {
                "note": {"bytes": "AQID-_8"},
                "member_since": {"full-date": "2001-02-03"},
                "nothing": null
            }
        })
        .as_object()
        .expect("object")
        .clone()
    }

    struct Issued {
        bytes: Vec<u8>,
        input_key: Jwk,
        signer: SigningKey,
    }

    fn issue_with(issuer: Algorithm, device: Algorithm, chain: &[Vec<u8>]) -> Issued {
        let namespaces = mdl_namespaces();
        let holder = SigningKey::generate(device).public_jwk();
        let signer = SigningKey::generate(issuer);
        let input = MdocInput {
            doc_type: MDL_DOC_TYPE,
            namespaces: &namespaces,
            device_key: &holder,
            signed: SIGNED,
            valid_from: SIGNED + 60,
            valid_until: SIGNED + 365 * 86_400,
            x5chain: chain,
            status: None,
        };
        let bytes = issue(&input, &signer, &mut OsRng).expect("issues");
        Issued {
            bytes,
            input_key: holder,
            signer,
        }
    }

    fn decode(bytes: &[u8]) -> Cbor {
        ciborium::from_reader(bytes).expect("valid CBOR")
    }

    fn text_map(value: &Cbor) -> BTreeMap<String, Cbor> {
        let Cbor::Map(entries) = value else {
            panic!("expected a map, got {value:?}");
        };
        let map: BTreeMap<String, Cbor> = entries
            .iter()
            .map(|(key, value)| (key.as_text().expect("text key").to_owned(), value.clone()))
            .collect();
        assert_eq!(map.len(), entries.len(), "duplicate keys");
        map
    }

    fn field<'a>(map: &'a BTreeMap<String, Cbor>, key: &str) -> &'a Cbor {
        map.get(key)
            .unwrap_or_else(|| panic!("missing {key:?} in {map:?}"))
    }

    /// `#6.24(bstr)` -> the embedded bytes.
    fn embedded_bytes(value: &Cbor) -> &[u8] {
        match value {
            Cbor::Tag(24, inner) => inner.as_bytes().expect("tag 24 wraps a bstr"),
            other => panic!("expected #6.24, got {other:?}"),
        }
    }

    fn tagged_text(value: &Cbor, tag: u64) -> &str {
        match value {
            Cbor::Tag(found, inner) if *found == tag => inner.as_text().expect("tagged tstr"),
            other => panic!("expected #6.{tag}, got {other:?}"),
        }
    }

    fn int(value: &Cbor) -> i128 {
        value.as_integer().expect("integer").into()
    }

    /// What a verifier sees after checking the structure, the digests and the signature.
    struct Verified {
        elements: BTreeMap<String, BTreeMap<String, Cbor>>,
        mso: BTreeMap<String, Cbor>,
        sign1: CoseSign1,
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Failure {
        Digest(String, String),
        Signature,
    }

    /// Checks an encoded IssuerSigned element by element, the way a reader would.
    fn verify_issuer_signed(bytes: &[u8], signer: &Jwk) -> Result<Verified, Failure> {
        let issuer_signed = text_map(&decode(bytes));
        assert_eq!(issuer_signed.len(), 2);

        // issuerAuth: untagged COSE_Sign1, protected {1: alg}, unprotected {33: x5chain}.
        let issuer_auth = field(&issuer_signed, "issuerAuth").clone();
        assert!(matches!(issuer_auth, Cbor::Array(ref parts) if parts.len() == 4));
        let sign1 = CoseSign1::from_cbor_value(issuer_auth).expect("COSE_Sign1");
        let algorithm = signer.algorithm().expect("alg");
        let (cose_alg, raw_protected): (i64, &[u8]) = match algorithm {
            Algorithm::ES256 => (-7, &[0xa1, 0x01, 0x26]),
            Algorithm::ES384 => (-35, &[0xa1, 0x01, 0x38, 0x22]),
            Algorithm::EdDSA => (-8, &[0xa1, 0x01, 0x27]),
        };
        assert_eq!(
            sign1.protected.header.alg,
            Some(coset::RegisteredLabelWithPrivate::Assigned(
                iana::Algorithm::from_i64(cose_alg).expect("known alg")
            ))
        );
        let protected = sign1.protected.clone().cbor_bstr().expect("bstr");
        assert_eq!(protected.as_bytes().expect("bstr"), raw_protected);
        assert!(sign1.unprotected.key_id.is_empty(), "no kid");
        assert_eq!(sign1.unprotected.rest.len(), 1);
        assert_eq!(sign1.unprotected.rest[0].0, Label::Int(X5CHAIN));
        let payload = sign1.payload.clone().expect("attached payload");
        let to_be_signed = sig_structure_data(
            SignatureContext::CoseSign1,
            sign1.protected.clone(),
            None,
            &[],
            &payload,
        );
        assert_eq!(to_be_signed, sign1.tbs_data(&[]));
        let expected_tbs = encode(&Cbor::Array(vec![
            Cbor::Text("Signature1".into()),
            Cbor::Bytes(raw_protected.to_vec()),
            Cbor::Bytes(Vec::new()),
            Cbor::Bytes(payload.clone()),
        ]))
        .expect("encodes");
        assert_eq!(to_be_signed, expected_tbs);
        jose::verify(signer, algorithm, &to_be_signed, &sign1.signature)
            .map_err(|_| Failure::Signature)?;

        // MSO: payload is the encoding of #6.24(bstr .cbor MSO).
        let mso = text_map(&decode(embedded_bytes(&decode(&payload))));
        assert_eq!(mso.len(), 6);
        assert_eq!(field(&mso, "version"), &Cbor::Text("1.0".into()));
        assert_eq!(
            field(&mso, "digestAlgorithm"),
            &Cbor::Text("SHA-256".into())
        );
        let value_digests = text_map(field(&mso, "valueDigests"));

        // nameSpaces: every item digest must be listed under its digestID.
        let namespaces = text_map(field(&issuer_signed, "nameSpaces"));
        assert_eq!(
            namespaces.keys().collect::<Vec<_>>(),
            value_digests.keys().collect::<Vec<_>>()
        );
        let mut elements = BTreeMap::new();
        for (namespace, items) in &namespaces {
            let Cbor::Map(digests) = field(&value_digests, namespace) else {
                panic!("valueDigests[{namespace}] is not a map");
            };
            let digests: BTreeMap<i128, Vec<u8>> = digests
                .iter()
                .map(|(id, digest)| (int(id), digest.as_bytes().expect("bstr").clone()))
                .collect();
            let items = items.as_array().expect("array of items");
            assert_eq!(digests.len(), items.len());
            let mut ids = BTreeSet::new();
            let mut values = BTreeMap::new();
            for tagged in items {
                let item = text_map(&decode(embedded_bytes(tagged)));
                assert_eq!(item.len(), 4);
                let id = int(field(&item, "digestID"));
                assert!(id >= 0);
                assert!(ids.insert(id), "digestID {id} repeated in {namespace}");
                assert!(field(&item, "random").as_bytes().expect("bstr").len() >= 16);
                let identifier = field(&item, "elementIdentifier")
                    .as_text()
                    .expect("tstr")
                    .to_owned();
                let full_item = encode(tagged).expect("encodes");
                if digests.get(&id).map(Vec::as_slice) != Some(&Sha256::digest(&full_item)[..]) {
                    return Err(Failure::Digest(namespace.clone(), identifier));
                }
                values.insert(identifier, field(&item, "elementValue").clone());
            }
            elements.insert(namespace.clone(), values);
        }
        Ok(Verified {
            elements,
            mso,
            sign1,
        })
    }

    fn device_key_matches(device_key: &Cbor, jwk: &Jwk) {
        let Cbor::Map(entries) = device_key else {
            panic!("deviceKey is not a map");
        };
        let key: BTreeMap<i128, Cbor> = entries
            .iter()
            .map(|(label, value)| (int(label), value.clone()))
            .collect();
        let coordinate = |label| b64(key[&label].as_bytes().expect("bstr"));
        match jwk.crv.as_str() {
            "P-256" | "P-384" => {
                assert_eq!(key.len(), 4);
                assert_eq!(int(&key[&1]), 2);
                assert_eq!(int(&key[&-1]), if jwk.crv == "P-256" { 1 } else { 2 });
                assert_eq!(coordinate(-2), jwk.x);
                assert_eq!(Some(coordinate(-3)), jwk.y);
            }
            _ => {
                assert_eq!(key.len(), 3);
                assert_eq!(int(&key[&1]), 1);
                assert_eq!(int(&key[&-1]), 6);
                assert_eq!(coordinate(-2), jwk.x);
            }
        }
    }

    #[test]
    fn mdl_issuer_signed_decodes_and_verifies_element_by_element() {
        let chain = vec![vec![0x30, 0x82, 0x01], vec![0x30, 0x82, 0x02]];
        let issued = issue_with(Algorithm::ES256, Algorithm::ES256, &chain);
        let verified =
            verify_issuer_signed(&issued.bytes, &issued.signer.public_jwk()).expect("verifies");

        assert_eq!(
            verified.sign1.unprotected.rest[0].1,
            Cbor::Array(chain.iter().cloned().map(Cbor::Bytes).collect())
        );
        let mso = &verified.mso;
        assert_eq!(field(mso, "docType"), &Cbor::Text(MDL_DOC_TYPE.into()));
        let validity = text_map(field(mso, "validityInfo"));
        assert_eq!(
            tagged_text(field(&validity, "signed"), 0),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            tagged_text(field(&validity, "validFrom"), 0),
            "2023-11-14T22:14:20Z"
        );
        assert_eq!(
            tagged_text(field(&validity, "validUntil"), 0),
            "2024-11-13T22:13:20Z"
        );
        let device_key_info = text_map(field(mso, "deviceKeyInfo"));
        device_key_matches(field(&device_key_info, "deviceKey"), &issued.input_key);

        let mdl = &verified.elements[MDL_NAMESPACE];
        assert_eq!(mdl.len(), 13);
        assert_eq!(mdl["family_name"], Cbor::Text("Mustermann".into()));
        assert_eq!(tagged_text(&mdl["birth_date"], 1004), "1971-09-01");
        assert_eq!(tagged_text(&mdl["issue_date"], 1004), "2024-01-15");
        assert_eq!(tagged_text(&mdl["expiry_date"], 0), "2034-01-14T21:59:59Z");
        assert_eq!(mdl["portrait"], Cbor::Bytes(PORTRAIT.to_vec()));
        assert_eq!(mdl["age_over_18"], Cbor::Bool(true));
        assert_eq!(int(&mdl["age_in_years"]), 52);
        assert_eq!(mdl["height"], Cbor::Float(172.5));
        let privileges = mdl["driving_privileges"].as_array().expect("array");
        assert_eq!(privileges.len(), 2);
        let first = text_map(&privileges[0]);
        assert_eq!(first["vehicle_category_code"], Cbor::Text("B".into()));
        assert_eq!(tagged_text(&first["issue_date"], 1004), "2020-03-01");
        assert_eq!(tagged_text(&first["expiry_date"], 1004), "2035-02-28");
        let second = text_map(&privileges[1]);
        let codes = second["codes"].as_array().expect("codes");
        assert_eq!(text_map(&codes[0])["code"], Cbor::Text("96".into()));

        let extra = &verified.elements["org.example.extra"];
        assert_eq!(extra["note"], Cbor::Bytes(vec![1, 2, 3, 0xfb, 0xff]));
        assert_eq!(tagged_text(&extra["member_since"], 1004), "2001-02-03");
        assert_eq!(extra["nothing"], Cbor::Null);
    }

    #[test]
    fn every_issuer_and_device_algorithm_round_trips() {
        let chain = vec![vec![0x30, 0x03, 0x02, 0x01, 0x01]];
        for issuer in Algorithm::ALL {
            for device in Algorithm::ALL {
                let issued = issue_with(issuer, device, &chain);
                let verified = verify_issuer_signed(&issued.bytes, &issued.signer.public_jwk())
                    .unwrap_or_else(|failure| panic!("{issuer}/{device}: {failure:?}"));
                // A single certificate is a bare bstr, not an array.
                assert_eq!(
                    verified.sign1.unprotected.rest[0].1,
                    Cbor::Bytes(chain[0].clone())
                );
                let info = text_map(field(&verified.mso, "deviceKeyInfo"));
                device_key_matches(field(&info, "deviceKey"), &issued.input_key);
                let other = SigningKey::generate(issuer).public_jwk();
                assert_eq!(
                    verify_issuer_signed(&issued.bytes, &other).err(),
                    Some(Failure::Signature)
                );
            }
        }
    }

    #[test]
    fn a_tampered_element_value_fails_its_digest() {
        let issued = issue_with(Algorithm::ES256, Algorithm::ES256, &[vec![0x30, 0x00]]);
        let signer = issued.signer.public_jwk();
        let Cbor::Map(mut top) = decode(&issued.bytes) else {
            panic!("map");
        };
        let namespaces = &mut top
            .iter_mut()
            .find(|(key, _)| key.as_text() == Some("nameSpaces"))
            .expect("nameSpaces")
            .1;
        let Cbor::Map(namespaces) = namespaces else {
            panic!("map");
        };
        let (_, items) = namespaces
            .iter_mut()
            .find(|(key, _)| key.as_text() == Some(MDL_NAMESPACE))
            .expect("mDL namespace");
        let Cbor::Array(items) = items else {
            panic!("array");
        };
        let mut tampered = false;
        for tagged in items.iter_mut() {
            let Cbor::Map(mut item) = decode(embedded_bytes(tagged)) else {
                panic!("map");
            };
            let is_age = item.iter().any(|(key, value)| {
                key.as_text() == Some("elementIdentifier") && value.as_text() == Some("age_over_18")
            });
            if is_age {
                for (key, value) in item.iter_mut() {
                    if key.as_text() == Some("elementValue") {
                        *value = Cbor::Bool(false);
                    }
                }
                *tagged = embedded(&Cbor::Map(item)).expect("re-encodes");
                tampered = true;
            }
        }
        assert!(tampered);
        let forged = encode(&Cbor::Map(top)).expect("encodes");
        // The signature still verifies (the MSO is untouched), but the digest does not match.
        assert_eq!(
            verify_issuer_signed(&forged, &signer).err(),
            Some(Failure::Digest(MDL_NAMESPACE.into(), "age_over_18".into()))
        );
        // The untouched original passes.
        assert!(verify_issuer_signed(&issued.bytes, &signer).is_ok());
    }

    #[test]
    fn randoms_and_digest_ids_are_fresh_per_issuance() {
        let chain = [vec![0x30, 0x00]];
        let first = issue_with(Algorithm::ES256, Algorithm::ES256, &chain);
        let second = issue_with(Algorithm::ES256, Algorithm::ES256, &chain);
        let items = |bytes: &[u8]| -> Vec<BTreeMap<String, Cbor>> {
            let top = text_map(&decode(bytes));
            let namespaces = text_map(field(&top, "nameSpaces"));
            namespaces[MDL_NAMESPACE]
                .as_array()
                .expect("array")
                .iter()
                .map(|tagged| text_map(&decode(embedded_bytes(tagged))))
                .collect()
        };
        let (first, second) = (items(&first.bytes), items(&second.bytes));
        let randoms: BTreeSet<Vec<u8>> = first
            .iter()
            .chain(&second)
            .map(|item| field(item, "random").as_bytes().expect("bstr").clone())
            .collect();
        assert_eq!(randoms.len(), first.len() + second.len());
        let ids = |items: &[BTreeMap<String, Cbor>]| -> Vec<i128> {
            items
                .iter()
                .map(|item| int(field(item, "digestID")))
                .collect()
        };
        let (first_ids, second_ids) = (ids(&first), ids(&second));
        let mut sorted = first_ids.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..13).collect::<Vec<_>>());
        // 13! orderings: equal orders would mean the IDs are not shuffled.
        assert_ne!(first_ids, second_ids);
    }

    #[test]
    fn validate_namespaces_reports_the_element_path() {
        let error = |namespaces: Value| {
            validate_namespaces(namespaces.as_object().expect("object")).expect_err("invalid")
        };
        let path = |error: MdocError| match error {
            MdocError::Element { path, .. } => path,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(
            path(error(json!({MDL_NAMESPACE: {"birth_date": "01.09.1971"}}))),
            "org.iso.18013.5.1/birth_date"
        );
        assert_eq!(
            path(error(json!({MDL_NAMESPACE: {"birth_date": "1971-02-30"}}))),
            "org.iso.18013.5.1/birth_date"
        );
        assert_eq!(
            path(error(json!({MDL_NAMESPACE: {"portrait": "not base64!"}}))),
            "org.iso.18013.5.1/portrait"
        );
        assert_eq!(
            path(error(json!({MDL_NAMESPACE: {"driving_privileges": [
                {"vehicle_category_code": "B", "issue_date": "2020-03-01"},
                {"vehicle_category_code": "C", "expiry_date": "soon"}
            ]}}))),
            "org.iso.18013.5.1/driving_privileges/1/expiry_date"
        );
        assert_eq!(
            path(error(
                json!({"org.example": {"a": {"b": {"tdate": "yesterday"}}}})
            )),
            "org.example/a/b"
        );
        assert_eq!(
            path(error(
                json!({"org.example": {"a": {"full-date": 20200101}}})
            )),
            "org.example/a/full-date"
        );
        assert_eq!(path(error(json!({"org.example": "flat"}))), "org.example");
        assert_eq!(path(error(json!({"org.example": {}}))), "org.example");
        assert_eq!(path(error(json!({}))), "");
        assert!(
            error(json!({"org.example": ["x"]}))
                .to_string()
                .contains("must be an object")
        );
        // Outside the mDL namespace plain strings stay text.
        validate_namespaces(
            json!({"org.example": {"birth_date": "whenever", "portrait": "!"}})
                .as_object()
                .expect("object"),
        )
        .expect("plain strings");
        validate_namespaces(&mdl_namespaces()).expect("valid");
    }

    #[test]
    fn bad_inputs_are_refused() {
        let namespaces = mdl_namespaces();
        let holder = SigningKey::generate(Algorithm::ES256).public_jwk();
        let signer = SigningKey::generate(Algorithm::ES256);
        let chain = [vec![0x30, 0x00]];
        let good = MdocInput {
            doc_type: MDL_DOC_TYPE,
            namespaces: &namespaces,
            device_key: &holder,
            signed: SIGNED,
            valid_from: SIGNED,
            valid_until: SIGNED + 1,
            x5chain: &chain,
            status: None,
        };
        assert!(issue(&good, &signer, &mut OsRng).is_ok());
        let attempt = |input: MdocInput<'_>| issue(&input, &signer, &mut OsRng).expect_err("bad");
        assert!(matches!(
            attempt(MdocInput {
                x5chain: &[],
                ..good
            }),
            MdocError::Input(_)
        ));
        assert!(matches!(
            attempt(MdocInput {
                doc_type: "",
                ..good
            }),
            MdocError::Input(_)
        ));
        assert!(matches!(
            attempt(MdocInput {
                valid_until: SIGNED,
                ..good
            }),
            MdocError::Validity(_)
        ));
        assert!(matches!(
            attempt(MdocInput {
                valid_from: SIGNED - 1,
                ..good
            }),
            MdocError::Validity(_)
        ));
        let mut off_curve = holder.clone();
        off_curve.y = Some(b64([7u8; 32]));
        assert_eq!(
            attempt(MdocInput {
                device_key: &off_curve,
                ..good
            }),
            MdocError::DeviceKey("not a point on the curve")
        );
        let mut short = holder.clone();
        short.x = b64([1u8; 31]);
        assert!(matches!(
            attempt(MdocInput {
                device_key: &short,
                ..good
            }),
            MdocError::DeviceKey(_)
        ));
    }
}
